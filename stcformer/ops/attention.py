"""The public op ``stc_attention`` and its backend dispatch.

Everything between the qkv Linear and the proj Linear of one STCFormer block is one op:
split-channel spatial attention (over joints) and temporal attention (over frames), each plus a
3x3 depthwise conv of its v and an additive per-joint term, written in the official layout.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Callable, Optional

import torch
from torch import Tensor

from stcformer import settings
from stcformer.errors import BackendError
from stcformer.ops import dispatch
from stcformer.ops.reference import LAYOUTS, head_major_index, stc_attention_reference


def preferred_layout(backend: Optional[str], device_type: str, dtype: torch.dtype) -> str:
    """The qkv layout the backend that would run reads fastest (the model asks before its qkv
    Linear). The GPU kernels (triton, cuda) load a head's q, k, v as contiguous vectors in
    ``head_major``; the CPU kernels gather into scratch anyway, so they keep the official layout.
    Raises BackendError where a named backend cannot run."""
    plan = resolve(backend, device_type, dtype)
    if plan.error is not None:
        raise BackendError(plan.error)
    return plan.layout


@dataclass(frozen=True)
class Plan:
    """What runs ``stc_attention`` for one (backend request, device type, dtype): the backend,
    the qkv layout it reads fastest and its function; or, for a named backend that cannot run,
    the error the call raises."""

    backend: str
    layout: str
    run: Optional[Callable]
    error: Optional[str] = None

    def __call__(self, qkv, w_s, b_s, w_t, b_t, spe_s, spe_t, num_heads, scale, layout):
        if self.error is not None:
            raise BackendError(self.error)
        return self.run(qkv, w_s, b_s, w_t, b_t, spe_s, spe_t, num_heads, scale, layout=layout)


@functools.lru_cache(maxsize=None)
def _resolve(requested: str, device_type: str, dtype: torch.dtype, version: int) -> Plan:
    try:
        name = dispatch.choose(requested, device_type, dtype)
    except BackendError as e:
        return Plan(requested, "interleaved", None, str(e))
    return Plan(name, "head_major" if name in ("triton", "cuda") else "interleaved", _impl(name))


def resolve(backend: Optional[str], device_type: str, dtype: torch.dtype) -> Plan:
    """The :class:`Plan` of a backend request (None: the settings' backend) on tensors of this
    device type and dtype, made once per settings version (a model block keeps its plans)."""
    return _resolve(dispatch.requested_backend(backend), device_type, dtype, settings.version())


def _impl(name: str):
    # plain imports (not importlib) so that torch.compile traces through without a graph break;
    # backends load on first use only (triton is an optional dependency)
    if name == "reference":
        return stc_attention_reference
    if name == "triton":
        from stcformer.ops.backends import triton as backend_module
    else:  # cpp and cuda: one pair of ops in stcformer._C with CPU and CUDA kernels
        from stcformer.ops.backends import extension as backend_module
    return backend_module.stc_attention


def _check(qkv, w_s, b_s, w_t, b_t, spe_s, spe_t, num_heads, layout="interleaved"):
    if layout not in LAYOUTS:
        raise ValueError(f"stc_attention: layout must be one of {LAYOUTS}, got {layout!r}")
    if isinstance(num_heads, bool) or not isinstance(num_heads, int):
        raise TypeError(f"stc_attention: num_heads must be an int, got {type(num_heads).__name__}")
    for name, t in (("w_s", w_s), ("b_s", b_s), ("w_t", w_t), ("b_t", b_t), ("spe_s", spe_s), ("spe_t", spe_t)):
        if t is not None and t.device != qkv.device:
            raise ValueError(f"stc_attention: {name} is on {t.device} but qkv is on {qkv.device}")
    if qkv.dim() != 4 or qkv.shape[-1] % 6:
        raise ValueError(f"stc_attention: qkv must be (B, T, J, 3C) with C even, got {tuple(qkv.shape)}")
    half = qkv.shape[-1] // 6
    if num_heads <= 0 or half % num_heads:
        raise ValueError(f"stc_attention: C/2 = {half} is not divisible by num_heads = {num_heads}")
    dh = half // num_heads
    for name, w in (("w_s", w_s), ("w_t", w_t)):
        if tuple(w.shape) != (half, 1, 3, 3):
            raise ValueError(f"stc_attention: {name} must be ({half}, 1, 3, 3), got {tuple(w.shape)}")
    for name, b in (("b_s", b_s), ("b_t", b_t)):
        if tuple(b.shape) != (half,):
            raise ValueError(f"stc_attention: {name} must be ({half},), got {tuple(b.shape)}")
    for name, e in (("spe_s", spe_s), ("spe_t", spe_t)):
        if e is not None and tuple(e.shape) != (qkv.shape[2], dh):
            raise ValueError(f"stc_attention: {name} must be ({qkv.shape[2]}, {dh}), got {tuple(e.shape)}")


def stc_attention(
    qkv: Tensor,
    w_s: Tensor,
    b_s: Tensor,
    w_t: Tensor,
    b_t: Tensor,
    spe_s: Optional[Tensor],
    spe_t: Optional[Tensor],
    num_heads: int,
    scale: float,
    backend: Optional[str] = None,
    layout: str = "interleaved",
) -> Tensor:
    """Spatio-temporal criss-cross attention of one STCFormer block.

    Args:
        qkv: (B, T, J, 3C) output of the qkv Linear, official interleaved layout (channel i of
            q, k, v at 3i, 3i+1, 3i+2; i < C/2 spatial, the rest temporal).
        w_s, b_s: (C/2, 1, 3, 3), (C/2,) depthwise conv of the spatial v.
        w_t, b_t: the same for the temporal v.
        spe_s, spe_t: (J, dh) additive per-joint terms (already scaled) or None.
        num_heads: H; dh = C / (2H).
        scale: softmax scale, (C/2)^-1/2 for the H36M family, C^-1/2 for 3DHP.
        backend: ``auto``, ``reference``, ``triton``, ``cpp`` or ``cuda``; default
            $STCFORMER_BACKEND or ``auto``. A named backend that cannot run raises.
        layout: ``interleaved`` (official, above) or ``head_major``: per half, per head, one
            run of 3*dh values ordered q(dh), k(dh), v(dh) (``head_major_index`` gives the
            permutation of the qkv Linear's rows that produces it). The output layout is the
            same for both.

    Returns:
        (B, T, J, C) in qkv's dtype: per head, dh spatial channels then dh temporal channels.
    """
    _check(qkv, w_s, b_s, w_t, b_t, spe_s, spe_t, num_heads, layout)
    name = dispatch.choose(dispatch.requested_backend(backend), qkv.device.type, qkv.dtype)
    # every backend reads both layouts (the compiled ops through their head_major flag)
    return _impl(name)(qkv, w_s, b_s, w_t, b_t, spe_s, spe_t, num_heads, scale, layout=layout)


__all__ = ["stc_attention", "stc_attention_reference", "preferred_layout", "head_major_index"]
