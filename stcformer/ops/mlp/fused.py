"""Fused GELU + dropout and the chunked MLP autograd Functions on CPU (kernels in csrc/cpu/fused_mlp.cpp).

CPU ``nn.Dropout`` draws its mask with ``bernoulli_`` and keeps it as a float32 tensor for the
backward. Here the mask of element ``i`` is a hash of ``(seed, offset + i)``: nothing is
stored, the backward regenerates it, and GELU, mask and scaling are one pass over memory.
``seed`` is drawn from torch's default generator on every call, so ``torch.manual_seed``
reproduces the masks and two calls get independent masks.

    gelu_dropout(h, p, training)     dropout(gelu(h)), exact (erf) GELU
    dropout(z, p, training)          dropout(z)
    mlp(x, fc1_weight, fc2_weight, p, training)
        dropout(fc2(dropout(gelu(fc1(x))))) with an autograd that saves only x and fc1(x) and
        recomputes fc2's input in the backward (the official MLP, biases optional); its GEMMs
        on oneDNN by default (:mod:`stcformer.ops.mlp.linear`)
    residual_mlp(x, layer_norm, ...), layer_norm_linear(x, layer_norm, w, b)
        the two halves of an STCFormer block around the attention, in row chunks

Whether these can run here is :func:`stcformer.ops.dispatch.fused_mlp_reason`.
Float32 and bfloat16 (float32 math), float64 for gradcheck; CPU tensors only.
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from stcformer.ops import dispatch, host
from stcformer.ops.mlp.linear import linear, mm_nt as _mm_nt, mm_nt_into as _mm_nt_into

FWD = "stcformer::gelu_dropout_fwd"
BWD = "stcformer::gelu_dropout_bwd"


# an extension built before these ops existed has no schema for them
# (the extension is loaded only where this CPU can run it: extension_load_error checks first)
_HAS_OPS = host.extension_load_error() is None and hasattr(torch.ops.stcformer, "gelu_dropout_fwd")

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


_CPU_REASON = dispatch.fused_mlp_reason("cpu")  # fixed once the extension is loaded; dynamo-friendly


def _check(x: Tensor) -> None:
    reason = _CPU_REASON if x.device.type == "cpu" else dispatch.fused_mlp_reason(x.device.type)
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


# Rows per chunk of the MLP: a chunk's 4C-wide hidden (4 MiB at C = 256) stays in the caches
# between fc1, GELU + dropout and fc2, and no temporary as large as the hidden is allocated
# (large ones come from fresh, page-faulting mmap'd memory on every step); bench/RESULTS.md
# ("Fused MLP chunks") has the timings.
ROWS = 1024


def _needs_grad(*ts: Optional[Tensor]) -> bool:
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in ts)


def _chunk_forward(a: Tensor, start: int, w1: Tensor, w2: Tensor, b1: Optional[Tensor],
                   b2: Optional[Tensor], seed1: Tensor, seed2: Tensor, p: float,
                   onednn: bool) -> Tuple[Tensor, Tensor]:
    """The MLP forward of one chunk of rows starting at row ``start`` (``a`` fc1's input):
    ``(dropout(fc2(dropout(gelu(fc1(a))))), fc1(a))``.

    The autograd Functions keep fc1's output chunk by chunk, one tensor per chunk: chunk-sized
    blocks are reused from the C allocator's heap step after step, where one (rows, 4C) tensor
    is past glibc's mmap threshold at long windows and faults in fresh pages on every step
    (bench/RESULTS.md, "Fused MLP chunks")."""
    ops = torch.ops.stcformer
    hid, c_out = w1.shape[0], w2.shape[0]
    h = _mm_nt(a, w1, b1, onednn)
    y = ops.gelu_dropout_fwd(h, seed1, start * hid, p, True)
    return ops.gelu_dropout_fwd(_mm_nt(y, w2, b2, onednn), seed2, start * c_out, p, False), h


def _chunk_backward(gc: Tensor, a: Tensor, h: Tensor, start: int, w1t: Tensor, w2t: Tensor,
                    seed1: Tensor, seed2: Tensor, p: float, onednn: bool, grads: tuple,
                    out: Optional[Tensor] = None) -> Tensor:
    """The MLP backward of one chunk of rows starting at row ``start``: ``gc`` the gradient of
    its output, ``a`` fc1's input, ``h`` fc1's output. Adds into ``grads`` (grad fc1 weight, fc2
    weight, fc1 bias or None, fc2 bias or None) and returns the gradient of ``a`` (in ``out``)."""
    ops = torch.ops.stcformer
    g_w1, g_w2, g_b1, g_b2 = grads
    hid, c_out = w2t.shape
    gz, _ = ops.gelu_dropout_bwd(gc, None, seed2, start * c_out, p, False, False)
    gh, y = ops.gelu_dropout_bwd(_mm_nt(gz, w2t, None, onednn), h, seed1, start * hid, p, True, True)
    g_w2.addmm_(gz.t(), y)  # y: fc2's input, recomputed
    g_w1.addmm_(gh.t(), a)
    if g_b1 is not None:
        g_b1 += gh.sum(0)
    if g_b2 is not None:
        g_b2 += gz.sum(0)
    if out is None:
        return _mm_nt(gh, w1t, None, onednn)
    return _mm_nt_into(out, gh, w1t, None, onednn)


class _Mlp(torch.autograd.Function):
    """fc1 -> GELU -> dropout -> fc2 -> dropout over row chunks of ``ROWS``, saving x and
    fc1(x) only (x only with recompute: fc1(x) is recomputed in the backward, one GEMM more).

    A chunk's masks are the hash at the chunk's element offset, so chunking changes no mask;
    the weight gradients are summed chunk by chunk in a fixed order (deterministic)."""

    @staticmethod
    def forward(ctx, x, w1, w2, b1, b2, p, seed1, seed2, recompute=False, onednn=True):
        x2 = x.reshape(-1, x.shape[-1])
        n, c_out = x2.shape[0], w2.shape[0]
        hs = []  # fc1's output per chunk (none with recompute)
        out = x2.new_empty((n, c_out))
        for s in range(0, n, ROWS):
            out[s:s + ROWS], h = _chunk_forward(x2[s:s + ROWS], s, w1, w2, b1, b2, seed1, seed2, p, onednn)
            if not recompute:
                hs.append(h)
        ctx.save_for_backward(x2, w1, w2, b1, seed1, seed2, *hs)
        ctx.p = p
        ctx.onednn = onednn
        ctx.has_bias = (b1 is not None, b2 is not None)
        ctx.x_shape = x.shape
        return out.view(*x.shape[:-1], c_out)

    @staticmethod
    def backward(ctx, grad):
        x2, w1, w2, b1, seed1, seed2, *hs = ctx.saved_tensors
        dnn, p = ctx.onednn, ctx.p
        g2 = grad.reshape(-1, grad.shape[-1])
        n = x2.shape[0]
        w1t, w2t, gx, grads = _backward_buffers(x2, w1, w2, b1, ctx.has_bias)
        for i, s in enumerate(range(0, n, ROWS)):
            xc = x2[s:s + ROWS]
            h = hs[i] if hs else _mm_nt(xc, w1, b1, dnn)
            _chunk_backward(g2[s:s + ROWS], xc, h, s, w1t, w2t, seed1, seed2, p, dnn, grads, out=gx[s:s + ROWS])
        return (gx.view(ctx.x_shape), *grads, None, None, None, None, None)


def _backward_buffers(x2: Tensor, w1: Tensor, w2: Tensor, b1: Optional[Tensor], has_bias) -> tuple:
    """What a chunked MLP backward works in: ``(w1.T, w2.T)`` contiguous, the input gradient (to
    fill) and the zeroed ``(g_w1, g_w2, g_b1, g_b2)`` that :func:`_chunk_backward` accumulates
    into (a bias gradient None where the layer has no bias)."""
    grads = (torch.zeros_like(w1), torch.zeros_like(w2), torch.zeros_like(b1) if has_bias[0] else None,
             torch.zeros_like(w2[:, 0]) if has_bias[1] else None)
    return w1.t().contiguous(), w2.t().contiguous(), torch.empty_like(x2), grads


class _ResidualMlp(torch.autograd.Function):
    """``x + dropout(fc2(dropout(gelu(fc1(layer_norm(x))))))`` over row chunks of ``ROWS``.

    Saved: x and fc1's output (x only with ``recompute``). The LayerNorm output is recomputed
    chunk by chunk in the backward (a cache-resident pass), so neither it nor any temporary as
    large as the hidden is kept; masks as in :class:`_Mlp`."""

    @staticmethod
    def forward(ctx, x, ln_w, ln_b, eps, w1, w2, b1, b2, p, seed1, seed2, recompute=False, onednn=True):
        x2 = x.reshape(-1, x.shape[-1])
        n, c = x2.shape
        hs = []  # fc1's output per chunk (none with recompute)
        out = torch.empty_like(x2)
        for s in range(0, n, ROWS):
            xc = x2[s:s + ROWS]
            ln = torch.native_layer_norm(xc, (c,), ln_w, ln_b, eps)[0]
            z, h = _chunk_forward(ln, s, w1, w2, b1, b2, seed1, seed2, p, onednn)
            if not recompute:
                hs.append(h)
            torch.add(xc, z, out=out[s:s + ROWS])
        ctx.save_for_backward(x2, ln_w, ln_b, w1, w2, b1, seed1, seed2, *hs)
        ctx.eps, ctx.p, ctx.onednn, ctx.x_shape = eps, p, onednn, x.shape
        ctx.has_bias = (b1 is not None, b2 is not None)
        return out.view(x.shape)

    @staticmethod
    def backward(ctx, grad):
        x2, ln_w, ln_b, w1, w2, b1, seed1, seed2, *hs = ctx.saved_tensors
        dnn, p, eps = ctx.onednn, ctx.p, ctx.eps
        g2 = grad.reshape(-1, grad.shape[-1])
        n, c = x2.shape
        w1t, w2t, gx, grads = _backward_buffers(x2, w1, w2, b1, ctx.has_bias)
        g_lnw, g_lnb = torch.zeros_like(ln_w), torch.zeros_like(ln_b)
        for i, s in enumerate(range(0, n, ROWS)):
            xc, gc = x2[s:s + ROWS], g2[s:s + ROWS]
            ln, mean, rstd = torch.native_layer_norm(xc, (c,), ln_w, ln_b, eps)
            h = hs[i] if hs else _mm_nt(ln, w1, b1, dnn)
            g_ln = _chunk_backward(gc, ln, h, s, w1t, w2t, seed1, seed2, p, dnn, grads)
            dx, dw, db = torch.ops.aten.native_layer_norm_backward(
                g_ln, xc, (c,), mean, rstd, ln_w, ln_b, [True, True, True])
            g_lnw += dw
            g_lnb += db
            torch.add(gc, dx, out=gx[s:s + ROWS])  # the residual's gradient plus the branch's
        return (gx.view(ctx.x_shape), g_lnw, g_lnb, None, *grads, None, None, None, None, None)


def _layer_norm_linear_rows(x: Tensor, ln_w, ln_b, eps: float, w: Tensor, b: Optional[Tensor]) -> Tensor:
    """``linear(layer_norm(x), w, b)`` chunk by chunk (no autograd of its own)."""
    x2 = x.reshape(-1, x.shape[-1])
    out = x2.new_empty((x2.shape[0], w.shape[0]))
    for s in range(0, x2.shape[0], ROWS):
        ln = F.layer_norm(x2[s:s + ROWS], (x2.shape[1],), ln_w, ln_b, eps)
        _mm_nt_into(out[s:s + ROWS], ln, w, b, False)
    return out.view(*x.shape[:-1], w.shape[0])


class _LayerNormLinear(torch.autograd.Function):
    """``linear(layer_norm(x), w, b)`` over row chunks of ``ROWS``, saving x (not the LayerNorm
    output: it is recomputed chunk by chunk in the backward)."""

    @staticmethod
    def forward(ctx, x, ln_w, ln_b, eps, w, b):
        ctx.save_for_backward(x.reshape(-1, x.shape[-1]), ln_w, ln_b, w, b)
        ctx.eps, ctx.x_shape = eps, x.shape
        return _layer_norm_linear_rows(x, ln_w, ln_b, eps, w, b)

    @staticmethod
    def backward(ctx, grad):
        x2, ln_w, ln_b, w, b = ctx.saved_tensors
        g2 = grad.reshape(-1, grad.shape[-1])
        n, c = x2.shape
        wt = w.t().contiguous()
        gx = torch.empty_like(x2)
        g_w, g_lnw, g_lnb = torch.zeros_like(w), torch.zeros_like(ln_w), torch.zeros_like(ln_b)
        g_b = torch.zeros_like(b) if b is not None else None
        for s in range(0, n, ROWS):
            xc, gc = x2[s:s + ROWS], g2[s:s + ROWS]
            ln, mean, rstd = torch.native_layer_norm(xc, (c,), ln_w, ln_b, ctx.eps)
            g_w.addmm_(gc.t(), ln)
            if g_b is not None:
                g_b += gc.sum(0)
            dx, dw, db = torch.ops.aten.native_layer_norm_backward(
                _mm_nt(gc, wt, None, False), xc, (c,), mean, rstd, ln_w, ln_b, [True, True, True])
            gx[s:s + ROWS] = dx
            g_lnw += dw
            g_lnb += db
        return gx.view(ctx.x_shape), g_lnw, g_lnb, None, g_w, g_b


def layer_norm_linear(x: Tensor, layer_norm: torch.nn.LayerNorm, weight: Tensor,
                      bias: Optional[Tensor] = None) -> Tensor:
    """``F.linear(layer_norm(x), weight, bias)`` in row chunks: with gradients it keeps x instead
    of the LayerNorm output (one C-wide activation less per call); plain torch ops, any CPU."""
    ln_w, ln_b, eps = layer_norm.weight, layer_norm.bias, layer_norm.eps
    if _needs_grad(x, ln_w, ln_b, weight, bias):
        return _LayerNormLinear.apply(x, ln_w, ln_b, float(eps), weight, bias)
    return _layer_norm_linear_rows(x, ln_w, ln_b, eps, weight, bias)


def _residual_mlp_eval(x: Tensor, ln_w, ln_b, eps: float, w1, w2, b1, b2) -> Tensor:
    """The no-dropout, no-autograd form of :class:`_ResidualMlp` (plain torch ops: any CPU)."""
    x2 = x.reshape(-1, x.shape[-1])
    c = x2.shape[1]
    out = torch.empty_like(x2)
    for s in range(0, x2.shape[0], ROWS):
        xc, oc = x2[s:s + ROWS], out[s:s + ROWS]
        h = F.gelu(F.linear(F.layer_norm(xc, (c,), ln_w, ln_b, eps), w1, b1))
        torch.addmm(xc, h, w2.t(), out=oc)  # x + fc2(h) in one GEMM
        if b2 is not None:
            oc += b2
    return out.view(x.shape)


def residual_mlp(x: Tensor, layer_norm: torch.nn.LayerNorm, fc1_weight: Tensor, fc2_weight: Tensor,
                 p: float, training: bool = True, fc1_bias: Optional[Tensor] = None,
                 fc2_bias: Optional[Tensor] = None, recompute: bool = False, onednn: bool = False) -> Tensor:
    """``x + mlp(layer_norm(x))`` (the second half of an STCFormer block) in row chunks.

    Same arguments as :func:`mlp`, plus the block's ``layer_norm``. With gradients it saves x
    and fc1's output only (neither the LayerNorm output nor a hidden-sized temporary); without
    (evaluation, ``torch.no_grad``) it runs plain torch ops chunk by chunk, with the residual
    added inside fc2's GEMM. ``onednn`` defaults to False here: F.linear (MKL), the same bits
    eager and under torch.compile.
    """
    ln_w, ln_b, eps = layer_norm.weight, layer_norm.bias, layer_norm.eps
    if not _needs_grad(x, ln_w, ln_b, fc1_weight, fc2_weight, fc1_bias, fc2_bias) and (not training or p == 0.0):
        return _residual_mlp_eval(x, ln_w, ln_b, eps, fc1_weight, fc2_weight, fc1_bias, fc2_bias)
    _check(x)
    if not training:
        p = 0.0
    return _ResidualMlp.apply(x, ln_w, ln_b, float(eps), fc1_weight, fc2_weight, fc1_bias, fc2_bias,
                              float(p), new_seed(), new_seed(), recompute, onednn)


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


__all__ = ["gelu_dropout", "dropout", "mlp", "residual_mlp", "layer_norm_linear", "new_seed", "ROWS"]
