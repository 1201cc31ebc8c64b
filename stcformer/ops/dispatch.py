"""Every can-this-backend-run decision lives here, and nowhere else.

``unavailable_reason(name, device_type, dtype)`` returns None when the backend can run on such
tensors, or one sentence saying why it cannot. ``choose(requested, device_type, dtype)`` turns a
request (``auto`` or a name) into the backend that runs, raising when a named backend cannot.
``fused_mlp_reason(device_type)`` says the same of the fused CPU MLP ops (:mod:`.fused_mlp`).
What the host itself can do (ISA of the compiled extension, bf16, its load state) is asked of ``host``.
"""
from __future__ import annotations

import functools
import importlib.util
import logging
import re
from typing import Optional

import torch

from stcformer import settings
from stcformer.errors import BackendError
from stcformer.ops import host

log = logging.getLogger("stcformer")

BACKENDS = ("reference", "triton", "cpp", "cuda")
ENV_VAR = "STCFORMER_BACKEND"

# dtypes each backend's kernels are written for
SUPPORTED_DTYPES = {
    "reference": (torch.float32, torch.float16, torch.bfloat16, torch.float64),
    "triton": (torch.float32, torch.float16, torch.bfloat16),
    "cpp": (torch.float32, torch.bfloat16, torch.float64),
    "cuda": (torch.float32, torch.float16, torch.bfloat16),
}

# auto: first backend in the list that can run. On CUDA tensors triton comes first until the
# cuda backend (csrc/cuda: float32 FMA kernels, no tensor cores yet) is measured faster than the
# Triton kernels on a GPU; cuda is the fallback where triton is not installed.
AUTO_ORDER = {
    "cuda": ("triton", "cuda", "reference"),
    "cpu": ("cpp", "reference"),
}


def _extension_reason(dispatch_key: str, backend: str) -> Optional[str]:
    # before loading: on a CPU below the extension's build ISA even loading it may crash
    isa = host.extension_isa_reason()
    if isa is not None:
        return f"{backend}: {isa}"
    if host.extension_load_error() is not None:
        return f"{backend}: stcformer._C could not be loaded ({host.extension_load_error()})"
    if not host.has_kernel("stc_attention_fwd", dispatch_key):
        what = "CPU" if dispatch_key == "CPU" else "CUDA"
        return f"{backend}: stcformer._C was built without the {what} kernels"
    return None


def _version(module) -> tuple:
    return tuple(int(x) for x in re.findall(r"\d+", module.__version__)[:2])


@functools.lru_cache(maxsize=None)
def _interpreter_reason() -> Optional[str]:
    # Triton 3.6's interpreter fails on every kernel under numpy 2.4 ("only 0-dimensional
    # arrays can be converted to Python scalars"); 3.6 with numpy 2.3 and 3.9 with 2.4 work.
    # 3.7 and 3.8 were not tried, so they are refused with the same reason.
    import numpy
    import triton

    if _version(triton) < (3, 9) and _version(numpy) >= (2, 4):
        return (f"triton: the interpreter of triton {triton.__version__} fails under numpy "
                f"{numpy.__version__} (install numpy<2.4, or triton>=3.9)")
    return None


@functools.lru_cache(maxsize=None)
def _triton_installed() -> bool:
    return importlib.util.find_spec("triton") is not None


def _triton_reason(device_type: str) -> Optional[str]:
    if not _triton_installed():
        return "triton: the triton package is not installed"
    if device_type == "cpu" and not settings.triton_interpret():
        return "triton: tensors are on CPU and TRITON_INTERPRET is not set"
    if device_type == "cpu":
        return _interpreter_reason()
    if device_type == "cuda" and settings.triton_interpret():
        return "triton: TRITON_INTERPRET=1 runs kernels on the host, so CUDA tensors cannot be used"
    return None


def unavailable_reason(name: str, device_type: str, dtype: torch.dtype) -> Optional[str]:
    """None if backend ``name`` can run on tensors of this device type and dtype, else why not."""
    if name not in BACKENDS:
        return f"{name}: unknown backend; choose one of auto, {', '.join(BACKENDS)}"
    if dtype not in SUPPORTED_DTYPES[name]:
        return f"{name}: dtype {dtype} is not supported (supported: {', '.join(str(d) for d in SUPPORTED_DTYPES[name])})"
    if name == "reference":
        return None
    if name == "triton":
        if device_type not in ("cuda", "cpu"):
            return f"triton: tensors are on {device_type}; triton runs on CUDA (or CPU under TRITON_INTERPRET=1)"
        return _triton_reason(device_type)
    if name == "cpp":
        if device_type != "cpu":
            return f"cpp: tensors are on {device_type}; the cpp backend runs on CPU tensors"
        return _extension_reason("CPU", "cpp")
    if name == "cuda":
        if device_type != "cuda":
            return f"cuda: tensors are on {device_type}; the cuda backend runs on CUDA tensors"
        return _extension_reason("CUDA", "cuda")
    raise AssertionError(name)


def requested_backend(backend: Optional[str] = None) -> str:
    """The backend asked for: the argument, else the settings' (``settings.set_backend``, read
    from $STCFORMER_BACKEND), else ``auto``."""
    if backend is None:
        return settings.backend()
    return (backend or "auto").strip().lower()


@torch.compiler.assume_constant_result
def choose(requested: str, device_type: str, dtype: torch.dtype) -> str:
    """The backend that runs. Named backends that cannot run raise; ``auto`` falls back."""
    if requested != "auto":
        reason = unavailable_reason(requested, device_type, dtype)
        if reason is not None:
            raise BackendError(f"stc_attention backend {reason}")
        return requested
    for name in AUTO_ORDER.get(device_type, ("reference",)):
        reason = unavailable_reason(name, device_type, dtype)
        if reason is None:
            return name
        log.debug("stc_attention auto: skipping %s", reason)
    return "reference"


def fused_mlp_reason(device_type: str = "cpu") -> Optional[str]:
    """None if the fused MLP ops (stcformer.ops.mlp.fused) can run on tensors of this device
    type, else why not."""
    if device_type != "cpu":
        return f"fused_mlp: tensors are on {device_type}; the fused MLP ops run on CPU tensors"
    isa = host.extension_isa_reason()  # before loading, as in _extension_reason
    if isa is not None:
        return f"fused_mlp: {isa}"
    if host.extension_load_error() is not None:
        return f"fused_mlp: stcformer._C could not be loaded ({host.extension_load_error()})"
    # an extension built before these ops existed has no schema for them
    if not hasattr(torch.ops.stcformer, "gelu_dropout_fwd") or not host.has_kernel("gelu_dropout_fwd", "CPU"):
        return "fused_mlp: stcformer._C was built without the CPU kernels"
    return None


def available_backends(device_type: str = "cpu", dtype: torch.dtype = torch.float32) -> dict:
    """{backend: None or reason} for every backend (``python -m stcformer`` prints them)."""
    return {name: unavailable_reason(name, device_type, dtype) for name in BACKENDS}
