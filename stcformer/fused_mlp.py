"""Fused GELU + dropout for the STCFormer MLP on CPU (kernels in csrc/cpu/fused_mlp.cpp).

CPU ``nn.Dropout`` draws its mask with ``bernoulli_`` and keeps it as a float32 tensor for the
backward. Here the mask of element ``i`` is a hash of ``(seed, offset + i)``: nothing is
stored, the backward regenerates it, and GELU, mask and scaling are one pass over memory.
``seed`` is drawn from torch's default generator on every call, so ``torch.manual_seed``
reproduces the masks and two calls get independent masks.

    gelu_dropout(h, p, training)     dropout(gelu(h)), exact (erf) GELU
    dropout(z, p, training)          dropout(z)
    mlp(x, fc1_weight, fc2_weight, p, training)
        dropout(fc2(dropout(gelu(fc1(x))))) with an autograd that saves only x and fc1(x) and
        recomputes fc2's input in the backward (the official MLP, biases optional)
    use_fused_mlp(model)             route every STCFormer block's MLP through ``mlp``
    linear(x, w, b), use_onednn_linear(model)
        nn.Linear through oneDNN: on CPUs where MKL's fp32 sgemm takes its AVX2 path (AMD
        Zen here) oneDNN's AVX-512 GEMM is ~2x faster, at the same fp32 precision. ``mlp``
        uses it for fc1 and fc2. Under torch.compile these fall back to F.linear (Inductor
        cannot lower oneDNN's linear outside its inference freezing path). bfloat16 goes
        through oneDNN only where it has a bf16 GEMM (``cpu_features.onednn_bf16_reason``:
        AVX-512 or newer); elsewhere through F.linear, logged once at debug level.

Float32 and bfloat16 (float32 math), float64 for gradcheck; CPU tensors only.
"""
from __future__ import annotations

import logging
import types
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from . import cpu_features

# the extension is imported only where this CPU can run it (see cpu_features.extension_isa_reason)
_ISA_REASON = cpu_features.extension_isa_reason()
if _ISA_REASON is None:
    from . import _extension

log = logging.getLogger("stcformer")

FWD = "stcformer::gelu_dropout_fwd"
BWD = "stcformer::gelu_dropout_bwd"


def unavailable_reason(device_type: str = "cpu") -> Optional[str]:
    """None if the fused ops can run on tensors of this device type, else why not."""
    if device_type != "cpu":
        return f"fused_mlp: tensors are on {device_type}; the fused MLP ops run on CPU tensors"
    if _ISA_REASON is not None:
        return f"fused_mlp: {_ISA_REASON}"
    if _extension.load_error is not None:
        return f"fused_mlp: stcformer._C could not be loaded ({_extension.load_error})"
    if not _HAS_OPS or not _extension.has_kernel("gelu_dropout_fwd", "CPU"):
        return "fused_mlp: stcformer._C was built without the CPU kernels"
    return None


# an extension built before these ops existed has no schema for them
_HAS_OPS = _ISA_REASON is None and _extension.load_error is None and hasattr(torch.ops.stcformer, "gelu_dropout_fwd")

if _HAS_OPS:

    @torch.library.register_fake(FWD)
    def _fwd_fake(x, seed, offset, p, gelu):
        return torch.empty_like(x)

    @torch.library.register_fake(BWD)
    def _bwd_fake(grad, x, seed, offset, p, gelu, recompute):
        y = torch.empty_like(grad) if gelu and recompute else grad.new_empty((0,))
        return torch.empty_like(grad), y

    def _setup_context(ctx, inputs, output):
        x, seed, offset, p, gelu = inputs
        ctx.save_for_backward(x if gelu else None, seed)
        ctx.offset, ctx.p, ctx.gelu = offset, p, gelu

    def _backward(ctx, grad):
        x, seed = ctx.saved_tensors
        gx, _ = torch.ops.stcformer.gelu_dropout_bwd(grad, x, seed, ctx.offset, ctx.p, ctx.gelu, False)
        return gx, None, None, None, None

    torch.library.register_autograd(FWD, _backward, setup_context=_setup_context)


_CPU_REASON = unavailable_reason("cpu")  # fixed once the extension is loaded; dynamo-friendly


_ONEDNN = (getattr(torch.ops.mkldnn, "_linear_pointwise", None)
           if torch.backends.mkldnn.is_available() else None)
ONEDNN_GEMM = True  # False: the MLP and linear() GEMMs go through F.linear (MKL) instead
# oneDNN has no bf16 inner product below AVX-512 ("could not create a primitive descriptor"):
# there bf16 takes F.linear. Asked once (a constant under torch.compile).
ONEDNN_BF16_REASON = cpu_features.onednn_bf16_reason()
_logged: set = set()


def _use_onednn(*ts: Tensor) -> bool:
    if not ONEDNN_GEMM or _ONEDNN is None or torch.compiler.is_compiling():
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


def _mm_nt(a: Tensor, b: Tensor, bias: Optional[Tensor] = None, onednn: bool = True) -> Tensor:
    """``a @ b.T (+ bias)`` for a (..., K), b (N, K): oneDNN where it runs (and ``onednn``),
    else F.linear."""
    if onednn and _use_onednn(a, b):
        return _ONEDNN(a, b, bias, "none", [], "")
    return F.linear(a, b, bias)


class _Linear(torch.autograd.Function):
    """F.linear with every GEMM (forward, grad input, grad weight) on oneDNN."""

    @staticmethod
    def forward(ctx, x, w, b):
        ctx.save_for_backward(x, w)
        ctx.has_bias = b is not None
        return _mm_nt(x, w, b)

    @staticmethod
    def backward(ctx, grad):
        x, w = ctx.saved_tensors
        g2 = grad.reshape(-1, grad.shape[-1])
        gx = _mm_nt(grad, w.t().contiguous()) if ctx.needs_input_grad[0] else None
        gw = _mm_nt(g2.t(), x.reshape(-1, x.shape[-1]).t()) if ctx.needs_input_grad[1] else None
        gb = g2.sum(0) if ctx.has_bias and ctx.needs_input_grad[2] else None
        return gx, gw, gb


def linear(x: Tensor, weight: Tensor, bias: Optional[Tensor] = None) -> Tensor:
    """``F.linear`` with its GEMMs on oneDNN (CPU float32/bfloat16 outside torch.compile)."""
    if not _use_onednn(x, weight):
        return F.linear(x, weight, bias)
    return _Linear.apply(x, weight, bias)


def _check(x: Tensor) -> None:
    reason = _CPU_REASON if x.device.type == "cpu" else unavailable_reason(x.device.type)
    if reason is not None:
        raise RuntimeError(reason)


def new_seed() -> Tensor:
    """A fresh int64 seed from torch's default generator (a CPU tensor: no .item(), no graph break)."""
    return torch.randint(0, 2 ** 62, (1,), dtype=torch.int64)


def gelu_dropout(h: Tensor, p: float, training: bool = True) -> Tensor:
    """``dropout(gelu(h), p)`` (exact GELU) with the mask regenerated in the backward."""
    if not training or p == 0.0:
        return F.gelu(h)
    _check(h)
    return torch.ops.stcformer.gelu_dropout_fwd(h, new_seed(), 0, float(p), True)


def dropout(z: Tensor, p: float, training: bool = True) -> Tensor:
    """``dropout(z, p)`` with a hashed mask: nothing is kept for the backward but the seed."""
    if not training or p == 0.0:
        return z
    _check(z)
    return torch.ops.stcformer.gelu_dropout_fwd(z, new_seed(), 0, float(p), False)


class _Mlp(torch.autograd.Function):
    """fc1 -> GELU -> dropout -> fc2 -> dropout, saving x and fc1(x) only (x only with
    recompute: fc1(x) is recomputed in the backward, one GEMM more)."""

    @staticmethod
    def forward(ctx, x, w1, w2, b1, b2, p, seed1, seed2, recompute=False, onednn=True):
        ops = torch.ops.stcformer
        h = _mm_nt(x, w1, b1, onednn)
        y = ops.gelu_dropout_fwd(h, seed1, 0, p, True)
        z = _mm_nt(y, w2, b2, onednn)
        ctx.save_for_backward(x, None if recompute else h, w1, w2, b1, seed1, seed2)
        ctx.p = p
        ctx.onednn = onednn
        ctx.has_bias = (b1 is not None, b2 is not None)
        return ops.gelu_dropout_fwd(z, seed2, 0, p, False)

    @staticmethod
    def backward(ctx, grad):
        ops = torch.ops.stcformer
        x, h, w1, w2, b1, seed1, seed2 = ctx.saved_tensors
        dnn = ctx.onednn
        if h is None:
            h = _mm_nt(x, w1, b1, dnn)
        gz, _ = ops.gelu_dropout_bwd(grad, None, seed2, 0, ctx.p, False, False)
        gy = _mm_nt(gz, w2.t().contiguous(), None, dnn)
        gh, y = ops.gelu_dropout_bwd(gy, h, seed1, 0, ctx.p, True, True)  # y recomputed
        gz2, gh2 = gz.reshape(-1, gz.shape[-1]), gh.reshape(-1, gh.shape[-1])
        g_w2 = _mm_nt(gz2.t(), y.reshape(-1, y.shape[-1]).t(), None, dnn)
        g_w1 = _mm_nt(gh2.t(), x.reshape(-1, x.shape[-1]).t(), None, dnn)
        g_b1 = gh2.sum(0) if ctx.has_bias[0] else None
        g_b2 = gz2.sum(0) if ctx.has_bias[1] else None
        return (_mm_nt(gh, w1.t().contiguous(), None, dnn), g_w1, g_w2, g_b1, g_b2,
                None, None, None, None, None)


def mlp(x: Tensor, fc1_weight: Tensor, fc2_weight: Tensor, p: float, training: bool = True,
        fc1_bias: Optional[Tensor] = None, fc2_bias: Optional[Tensor] = None,
        recompute: bool = False, onednn: bool = True) -> Tensor:
    """``dropout(fc2(dropout(gelu(fc1(x)))))``: the official MLP without the masks and fc2's
    input among the saved activations.

    Args:
        x: (..., C) input; fc1_weight (4C, C); fc2_weight (C, 4C); biases optional.
        p: dropout probability of both dropouts; ``training=False`` skips them.
        recompute: also drop fc1(x) (4C per token) from the saved activations and recompute
            it in the backward (one more fc1-sized GEMM).
        onednn: GEMMs on oneDNN where it runs (False: F.linear, as under torch.compile, so
            eager and compiled runs give the same bits).
    """
    if not training or p == 0.0:
        return linear(F.gelu(linear(x, fc1_weight, fc1_bias)), fc2_weight, fc2_bias)
    _check(x)
    return _Mlp.apply(x, fc1_weight, fc2_weight, fc1_bias, fc2_bias, float(p), new_seed(), new_seed(),
                      recompute, onednn)


def _fused_forward(self, x: Tensor) -> Tensor:
    return mlp(x, self.fc1.weight, self.fc2.weight, self.drop.p, self.training,
               self.fc1.bias, self.fc2.bias, self._stc_recompute)


def use_fused_mlp(model: torch.nn.Module, recompute: bool = False) -> torch.nn.Module:
    """Route every official-style MLP (``fc1``, exact-GELU ``act``, ``fc2``, ``drop``) of
    ``model`` through :func:`mlp`. Parameters and state_dict keys are unchanged."""
    n = 0
    for m in model.modules():
        if (all(hasattr(m, a) for a in ("fc1", "fc2", "drop", "act"))
                and isinstance(m.act, torch.nn.GELU) and m.act.approximate == "none"):
            m._stc_recompute = recompute
            m.forward = types.MethodType(_fused_forward, m)
            n += 1
    if n == 0:
        raise ValueError("use_fused_mlp: no MLP with fc1, GELU act, fc2 and drop found")
    return model


def _onednn_forward(self, x: Tensor) -> Tensor:
    return linear(x, self.weight, self.bias)


def use_onednn_linear(model: torch.nn.Module) -> torch.nn.Module:
    """Run every ``nn.Linear`` of ``model`` through :func:`linear` (same parameters)."""
    for m in model.modules():
        if isinstance(m, torch.nn.Linear):
            m.forward = types.MethodType(_onednn_forward, m)
    return model


__all__ = ["gelu_dropout", "dropout", "mlp", "use_fused_mlp", "linear", "use_onednn_linear",
           "unavailable_reason", "new_seed"]
