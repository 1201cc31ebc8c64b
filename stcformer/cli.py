"""Helpers shared by the command-line tools: one-line errors with exit status 2, atomic writes,
the ``--amp`` choices and their autocast contexts."""
from __future__ import annotations

import json
import os
import sys
import tempfile
from typing import Callable, Optional

import torch

from .data.errors import DataError

EXIT_BAD_INPUT = 2


class UsageError(Exception):
    """Bad input that is not a data file or checkpoint problem; the message is one line."""


def bad_input_types():
    from .checkpoint import CheckpointError
    return (DataError, UsageError, CheckpointError)


def run(main: Callable[[], int]) -> int:
    """Call ``main``; on bad input print ``error: <file>: <problem>`` on stderr and return 2."""
    try:
        return main()
    except bad_input_types() as e:
        msg = " ".join(str(e).split())  # one line, whatever the exception carried
        print(f"error: {msg}", file=sys.stderr, flush=True)
        return EXIT_BAD_INPUT


def atomic_write(path: str, write: Callable[[str], None], suffix: str = "") -> None:
    """Call ``write(tmp_path)``, then rename the temporary file to ``path`` (no partial files)."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=suffix or os.path.splitext(path)[1], dir=folder)
    os.close(fd)
    try:
        write(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def write_json(path: str, obj) -> None:
    """Write ``obj`` as indented JSON atomically (NaN written as null)."""
    def clean(o):
        if isinstance(o, float) and o != o:
            return None
        if isinstance(o, dict):
            return {k: clean(v) for k, v in o.items()}
        if isinstance(o, (list, tuple)):
            return [clean(v) for v in o]
        return o

    def write(tmp):
        with open(tmp, "w") as f:
            json.dump(clean(obj), f, indent=2)
            f.write("\n")

    atomic_write(path, write, ".json")


# ---------------------------------------------------------------- mixed precision
AMP_CHOICES = ("bf16", "fp16", "none")
AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def amp_dtype(amp: Optional[str]) -> Optional[torch.dtype]:
    """The autocast dtype of an ``--amp`` value: None for ``none`` (or None: float32)."""
    if amp in (None, "none"):
        return None
    if amp not in AMP_DTYPES:
        raise ValueError(f"amp must be one of {', '.join(AMP_CHOICES)}, got {amp!r}")
    return AMP_DTYPES[amp]


def amp_autocast(device_type: str, amp: Optional[str]):
    """``torch.autocast`` for ``--amp`` (``none``/None: a disabled autocast, i.e. float32)."""
    dtype = amp_dtype(amp)
    if dtype is None:
        return torch.autocast(device_type, enabled=False)
    return torch.autocast(device_type, dtype=dtype)


def slow_cpu_amp_reason(device_type: str, amp: Optional[str]) -> Optional[str]:
    """Why 16-bit autocast would be slow here (a CPU without native bf16), or None.

    The decision is ``cpu_features.bf16_native_reason()`` (the one place that asks the CPU).
    """
    if device_type != "cpu" or amp_dtype(amp) is None:
        return None
    try:
        from .cpu_features import bf16_native_reason
    except ImportError:  # pragma: no cover - a package without the CPU capability module
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
