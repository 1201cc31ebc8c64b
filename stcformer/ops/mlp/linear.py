"""``nn.Linear`` through oneDNN on CPU, and the GEMM helpers the fused MLP runs on.

On CPUs where MKL's fp32 sgemm takes its AVX2 path (AMD Zen) oneDNN's AVX-512 GEMM is faster
(bench/RESULTS.md), at the same fp32 precision. Under torch.compile these fall back to F.linear
(Inductor cannot lower oneDNN's linear outside its inference freezing path). bfloat16 goes
through oneDNN only where it has a bf16 GEMM (``host.onednn_bf16_reason``: AVX-512 or
newer); elsewhere through F.linear, logged once at debug level.

    linear(x, w, b)                 F.linear with every GEMM (forward and backward) on oneDNN
    OneDNNLinear                    an nn.Linear whose forward is ``linear``
    convert_linears(module)         every nn.Linear of ``module`` as a OneDNNLinear (same parameters)
"""
from __future__ import annotations

import logging
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from stcformer import settings
from stcformer.ops import host

log = logging.getLogger("stcformer")

_ONEDNN = (getattr(torch.ops.mkldnn, "_linear_pointwise", None)
           if torch.backends.mkldnn.is_available() else None)
# oneDNN has no bf16 inner product below AVX-512 ("could not create a primitive descriptor"):
# there bf16 takes F.linear. Asked once (a constant under torch.compile).
ONEDNN_BF16_REASON = host.onednn_bf16_reason()
_logged: set = set()


def use_onednn(*ts: Tensor) -> bool:
    """Whether a GEMM of these tensors runs on oneDNN (CPU float32, bfloat16 where it has a bf16
    GEMM, outside torch.compile, ``settings.onednn_gemm()`` on)."""
    if not settings.onednn_gemm() or _ONEDNN is None or torch.compiler.is_compiling():
        return False
    dtype = ts[0].dtype
    if any(t.device.type != "cpu" or t.dtype != dtype for t in ts):
        return False  # F.linear runs (or rejects) these
    if dtype == torch.float32:
        return True
    if dtype != torch.bfloat16:
        return False
    if ONEDNN_BF16_REASON is None:
        return True
    if "bf16" not in _logged:  # once: this runs for every GEMM
        _logged.add("bf16")
        log.debug("fused_mlp: bfloat16 GEMMs go through F.linear, not oneDNN: %s", ONEDNN_BF16_REASON)
    return False


def mm_nt(a: Tensor, b: Tensor, bias: Optional[Tensor] = None, onednn: bool = True) -> Tensor:
    """``a @ b.T (+ bias)`` for a (..., K), b (N, K): oneDNN where it runs (and ``onednn``),
    else F.linear."""
    if onednn and use_onednn(a, b):
        return _ONEDNN(a, b, bias, "none", [], "")
    return F.linear(a, b, bias)


def mm_nt_into(out: Tensor, a: Tensor, b: Tensor, bias: Optional[Tensor], onednn: bool) -> Tensor:
    """``out = a @ b.T (+ bias)`` (``out`` a row slice of a larger tensor)."""
    if onednn and use_onednn(a, b):
        return out.copy_(_ONEDNN(a, b, bias, "none", [], ""))
    if bias is not None:
        return torch.addmm(bias, a, b.t(), out=out)
    return torch.mm(a, b.t(), out=out)


class _Linear(torch.autograd.Function):
    """F.linear with every GEMM (forward, grad input, grad weight) on oneDNN."""

    @staticmethod
    def forward(ctx, x, w, b):
        ctx.save_for_backward(x, w)
        ctx.has_bias = b is not None
        return mm_nt(x, w, b)

    @staticmethod
    def backward(ctx, grad):
        x, w = ctx.saved_tensors
        g2 = grad.reshape(-1, grad.shape[-1])
        gx = mm_nt(grad, w.t().contiguous()) if ctx.needs_input_grad[0] else None
        gw = mm_nt(g2.t(), x.reshape(-1, x.shape[-1]).t()) if ctx.needs_input_grad[1] else None
        gb = g2.sum(0) if ctx.has_bias and ctx.needs_input_grad[2] else None
        return gx, gw, gb


def linear(x: Tensor, weight: Tensor, bias: Optional[Tensor] = None) -> Tensor:
    """``F.linear`` with its GEMMs on oneDNN (CPU float32/bfloat16 outside torch.compile)."""
    if not use_onednn(x, weight):
        return F.linear(x, weight, bias)
    return _Linear.apply(x, weight, bias)


class OneDNNLinear(nn.Linear):
    """``nn.Linear`` whose forward runs :func:`linear` (the same parameters and state_dict)."""

    def forward(self, x: Tensor) -> Tensor:
        return linear(x, self.weight, self.bias)

    @classmethod
    def from_linear(cls, lin: nn.Linear) -> "OneDNNLinear":
        """A OneDNNLinear sharing ``lin``'s parameters (no copy)."""
        new = cls.__new__(cls)
        nn.Module.__init__(new)
        new.in_features, new.out_features = lin.in_features, lin.out_features
        new.register_parameter("weight", lin.weight)
        new.register_parameter("bias", lin.bias)  # None: no bias, as in nn.Linear
        new.train(lin.training)
        return new


def convert_linears(module: nn.Module) -> nn.Module:
    """Replace every ``nn.Linear`` below ``module`` by a :class:`OneDNNLinear` sharing its
    parameters (module names, hence state_dict keys, unchanged), as timm's
    ``convert_sync_batchnorm`` does for BatchNorm. Returns ``module`` (a Linear itself: the new one)."""
    if type(module) is nn.Linear:
        return OneDNNLinear.from_linear(module)
    for name, child in module.named_children():
        new = convert_linears(child)
        if new is not child:
            setattr(module, name, new)
    return module


__all__ = ["linear", "OneDNNLinear", "convert_linears", "use_onednn", "mm_nt", "mm_nt_into"]
