"""Loads the compiled extension stcformer._C if it was built; never fails at import."""
from __future__ import annotations

from typing import Optional

import torch

from stcformer.ops.cpu_features import extension_isa_reason

# the library is built for one x86-64 level and may run its instructions while it loads:
# a CPU below that level must never import it
load_error: Optional[str] = extension_isa_reason()
if load_error is None:
    try:
        import stcformer._C  # noqa: F401  (registers torch.ops.stcformer.* kernels)
    except ImportError as exc:  # not built, or built against another torch
        load_error = str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def has_kernel(op: str, dispatch_key: str) -> bool:
    """Whether torch.ops.stcformer.<op> has a kernel for ``dispatch_key`` ("CPU" or "CUDA")."""
    if load_error is not None:
        return False
    try:
        return torch._C._dispatch_has_kernel_for_dispatch_key(f"stcformer::{op}", dispatch_key)
    except RuntimeError:
        return False
