"""Atomic writers: every file the package writes appears whole or not at all.

Each writer writes a temporary file beside the target, then renames it over the target, so an
interrupted run never leaves a half-written checkpoint, npz, json or picture behind.
"""
from __future__ import annotations

import json
import os
import tempfile
from typing import Any, Callable


def atomic_write(path, write: Callable[[str], None], suffix: str = "") -> None:
    """Call ``write(tmp_path)``, then rename the temporary file to ``path`` (no partial files)."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=suffix or os.path.splitext(path)[1], dir=folder)
    os.close(fd)
    try:
        write(tmp)
        umask = os.umask(0)  # mkstemp makes 0600 files; give the file the usual permissions
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def _json_clean(o):
    if isinstance(o, float) and o != o:
        return None  # JSON has no NaN
    if isinstance(o, dict):
        return {k: _json_clean(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_json_clean(v) for v in o]
    return o


def write_json(path, obj) -> None:
    """Write ``obj`` as indented JSON atomically (NaN written as null)."""
    def write(tmp):
        with open(tmp, "w") as f:
            json.dump(_json_clean(obj), f, indent=2)
            f.write("\n")

    atomic_write(path, write, ".json")


def write_npz(path, compressed: bool = False, **arrays) -> None:
    """``np.savez[_compressed]`` atomically (the file handle keeps numpy from renaming it)."""
    import numpy as np

    save = np.savez_compressed if compressed else np.savez

    def write(tmp):
        with open(tmp, "wb") as f:
            save(f, **arrays)

    atomic_write(path, write, ".npz")


def torch_save(obj: Any, path) -> None:
    """``torch.save`` atomically."""
    import torch

    atomic_write(path, lambda tmp: torch.save(obj, tmp), ".pt")


def save_figure(fig, path, dpi: int = 100) -> None:
    """Save a matplotlib figure as PNG atomically."""
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=dpi, format="png"), ".png")


__all__ = ["atomic_write", "write_json", "write_npz", "torch_save", "save_figure"]
