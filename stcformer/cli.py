"""Helpers shared by the command-line programs: one-line errors with exit status 2, the ``--amp``
choices and their autocast contexts."""
from __future__ import annotations

import sys
from typing import Callable, Optional

import torch

from .errors import STCFormerError, UsageError  # noqa: F401  (UsageError: raised by the programs)
from .precision import (AMP_CHOICES, AMP_DTYPES, amp_autocast, amp_dtype,  # noqa: F401
                        slow_cpu_amp_reason, warn_slow_cpu_amp)

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


def pick_device(device_arg: Optional[str], world: int = 1, local_rank: int = 0,
                local_world: int = 1) -> torch.device:
    """The device of this process: ``--device`` if given, else cuda when available, else cpu.

    With CUDA and several processes (torchrun), process ``LOCAL_RANK`` of a machine uses
    ``cuda:LOCAL_RANK``. Raises :class:`UsageError` (one line) when CUDA is asked for and absent,
    when an index names no visible GPU, and when a machine runs more processes than it has GPUs.
    """
    name = device_arg or ("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise UsageError(f"--device {name}: not a device (use cpu, cuda or cuda:N)") from None
    if device.type != "cuda":
        return device
    if not torch.cuda.is_available():
        raise UsageError(f"--device {name}: CUDA is not available here (torch {torch.__version__} sees no GPU); "
                         "use --device cpu")
    visible = torch.cuda.device_count()
    index = device.index
    if world > 1:
        if index is not None and local_world > 1:
            raise UsageError(f"--device {name} puts all {local_world} processes of this machine on one GPU; "
                             "use --device cuda (process i uses cuda:LOCAL_RANK)")
        if index is None:
            if local_world > visible or local_rank >= visible:
                raise UsageError(f"{max(local_world, local_rank + 1)} processes were started on this machine "
                                 f"but only {visible} GPU(s) are visible: start at most {visible} per machine "
                                 "(torchrun --nproc-per-node), or train with --device cpu")
            index = local_rank
    elif index is None:
        index = torch.cuda.current_device()
    if index >= visible:
        raise UsageError(f"--device {name}: only {visible} GPU(s) are visible (cuda:0 to cuda:{visible - 1})")
    return torch.device("cuda", index)


def check_backend(backend: Optional[str], device: torch.device, dtype: torch.dtype = torch.float32) -> str:
    """Check ``--backend`` (or $STCFORMER_BACKEND) before anything runs or is written: a name that is
    unknown, or a backend that cannot run on ``device``, is a :class:`UsageError` saying why.
    Returns the requested name (``auto`` or a backend)."""
    from . import dispatch

    name = dispatch.requested_backend(backend)
    if name == "auto":
        return name
    reason = dispatch.unavailable_reason(name, torch.device(device).type, dtype)
    if reason is not None:
        raise UsageError(f"--backend {reason}")
    return name
