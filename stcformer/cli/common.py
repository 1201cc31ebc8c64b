"""Helpers shared by the command-line programs: one-line errors with exit status 2 and the
``--backend`` check (the ``--amp`` choices live in ``stcformer.ops.precision``).

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
