"""Mixed precision: the ``--amp`` choices, their autocast contexts, and the warning when 16-bit
autocast would be slow on this CPU."""
from __future__ import annotations

import sys
from typing import Optional

import torch

from stcformer.ops.host import bf16_native_reason
from stcformer.errors import UsageError

AMP_CHOICES = ("bf16", "fp16", "none")
AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def amp_dtype(amp: Optional[str]) -> Optional[torch.dtype]:
    """The autocast dtype of an ``--amp`` value: None for ``none`` (or None: float32)."""
    if amp in (None, "none"):
        return None
    if amp not in AMP_DTYPES:
        raise UsageError(f"amp must be one of {', '.join(AMP_CHOICES)}, got {amp!r}")
    return AMP_DTYPES[amp]


def amp_autocast(device_type: str, amp: Optional[str]):
    """``torch.autocast`` for ``--amp`` (``none``/None: a disabled autocast, i.e. float32)."""
    dtype = amp_dtype(amp)
    if dtype is None:
        return torch.autocast(device_type, enabled=False)
    return torch.autocast(device_type, dtype=dtype)


def slow_cpu_amp_reason(device_type: str, amp: Optional[str]) -> Optional[str]:
    """Why 16-bit autocast would be slow here (a CPU without native bf16), or None.

    The decision is ``host.bf16_native_reason()`` (the one place that asks the CPU).
    """
    if device_type != "cpu" or amp_dtype(amp) is None:
        return None
    return bf16_native_reason()


def warn_slow_cpu_amp(device_type: str, amp: Optional[str], file=None) -> bool:
    """Print one warning line when 16-bit autocast is asked for on a CPU without native bf16
    (there it is usually several times slower than float32). Returns whether it warned."""
    reason = slow_cpu_amp_reason(device_type, amp)
    if reason is None:
        return False
    print(f"warning: --amp {amp} on this CPU is usually slower than float32 ({reason}); "
          "--amp none is the fast choice here", file=file or sys.stderr, flush=True)
    return True
