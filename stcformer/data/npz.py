"""Reading the pickled-dict npz files of the VideoPose3D and P-STMO layouts, with clear errors."""
from __future__ import annotations

import os
import numpy as np

from stcformer.errors import DataError


def load_npz_dict(path, key: str):
    """``np.load(path)[key].item()`` for a pickled object entry; DataError on any problem."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise DataError(path, "file not found")
    try:
        with np.load(path, allow_pickle=True) as npz:
            if key not in npz.files:
                raise DataError(path, f"no key {key!r} (keys: {', '.join(npz.files) or 'none'})")
            value = npz[key]
    except DataError:
        raise
    except Exception as e:  # noqa: BLE001 - zip, pickle or format errors all mean 'unreadable'
        detail = str(e).splitlines()[0][:120] if str(e) else ""
        raise DataError(path, f"not a readable npz file ({type(e).__name__}: {detail})") from None
    if value.dtype == object and value.shape == ():
        value = value.item()
    return value


def check_array(path, where: str, value, ndim_shape: tuple) -> np.ndarray:
    """Check an array's shape against a pattern (None = any size) and that it is finite; float32 copy."""
    try:
        arr = np.asarray(value)
    except Exception:  # noqa: BLE001 - anything that is not array-like
        arr = None
    if arr is None or arr.dtype == object or not np.issubdtype(arr.dtype, np.number):
        raise DataError(path, f"{where} is not a numeric array")
    if arr.ndim != len(ndim_shape) or any(s is not None and s != a for s, a in zip(ndim_shape, arr.shape)):
        want = "(" + ", ".join("N" if s is None else str(s) for s in ndim_shape) + ")"
        raise DataError(path, f"{where} has shape {arr.shape}, expected {want}")
    if not np.isfinite(arr).all():
        raise DataError(path, f"{where} contains NaN or infinite values")
    return arr.astype(np.float32)
