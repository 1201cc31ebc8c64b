"""Helpers shared by the command-line programs: one-line errors with exit status 2, the
``--backend`` check and the warning for a slow ``--amp`` (the choices live in ``stcformer.choices``).

Imports no torch at module level: ``python -m stcformer.infer`` checks its paths before torch loads."""
from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Callable, Optional

from stcformer.errors import STCFormerError, UsageError

if TYPE_CHECKING:
    import torch

EXIT_BAD_INPUT = 2


def run(main: Callable[[], int]) -> int:
    """Call ``main``; on bad input (any :class:`STCFormerError`) print ``error: <message>`` as one
    line on stderr and return 2."""
    try:
        return main()
    except STCFormerError as e:
        print(f"error: {one_line(e)}", file=sys.stderr, flush=True)
        return EXIT_BAD_INPUT


def one_line(e: BaseException) -> str:
    """The exception's message on one line, whatever it carried."""
    return " ".join(str(e).split())


def check_backend(backend: Optional[str], device: torch.device, dtype: Optional[torch.dtype] = None) -> str:
    """Check ``--backend`` (or $STCFORMER_BACKEND) before anything runs or is written: a name that is
    unknown, or a backend that cannot run on ``device``, is a :class:`UsageError` saying why.
    Returns the requested name (``auto`` or a backend); ``dtype`` defaults to float32."""
    import torch

    from stcformer.ops import dispatch

    dtype = torch.float32 if dtype is None else dtype
    name = dispatch.requested_backend(backend)
    if name == "auto":
        return name
    reason = dispatch.unavailable_reason(name, torch.device(device).type, dtype)
    if reason is not None:
        raise UsageError(f"--backend {reason}")
    return name


def warn_slow_cpu_amp(device_type: str, amp: Optional[str], file=None) -> bool:
    """Print one warning line when 16-bit autocast is asked for on a CPU without native bf16
    (there it is usually several times slower than float32). Returns whether it warned."""
    from stcformer.ops.precision import slow_cpu_amp_reason

    reason = slow_cpu_amp_reason(device_type, amp)
    if reason is None:
        return False
    print(f"warning: --amp {amp} on this CPU is usually slower than float32 ({reason}); "
          "--amp none is the fast choice here", file=file or sys.stderr, flush=True)
    return True
