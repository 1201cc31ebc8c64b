"""Mixed precision: the autocast context of each ``--amp`` choice (``stcformer.choices``), and why
16-bit autocast would be slow on this CPU (the programs turn that into a warning)."""
from __future__ import annotations

from typing import Optional

import torch

from stcformer.ops.host import bf16_native_reason
from stcformer.choices import AMP_CHOICES
from stcformer.errors import UsageError

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

