"""Autograd glue shared by every compiled backend.

Each compiled backend registers a forward op and a backward op with the same contract:

  <fwd>(qkv, w_s, b_s, w_t, b_t, spe_s?, spe_t?, num_heads, scale) -> (out, lse_s, lse_t)
      out   (B, T, J, C) in qkv's dtype
      lse_s (B, H, T, J) float32 (float64 for float64 input): log-sum-exp of each spatial row
      lse_t (B, H, J, T) same, for each temporal row
  <bwd>(grad_out, qkv, w_s, b_s, w_t, b_t, spe_s?, spe_t?, out, lse_s, lse_t, num_heads, scale)
      -> (grad_qkv, grad_w_s, grad_b_s, grad_w_t, grad_b_t, grad_spe_s, grad_spe_t)
      grad_spe_* are (J, dh) even when spe_* is None (then they are ignored).

Only inputs, the output and the row log-sum-exp are saved: no (T x T) or (J x J) probabilities.
A backend may add non-tensor arguments after ``scale`` (the triton ops take ``head_major``);
they are passed on to its backward op unchanged.
"""
from __future__ import annotations

import torch


def _setup_context(ctx, inputs, output):
    qkv, w_s, b_s, w_t, b_t, spe_s, spe_t, num_heads, scale, *extra = inputs
    out, lse_s, lse_t = output
    ctx.save_for_backward(qkv, w_s, b_s, w_t, b_t, spe_s, spe_t, out, lse_s, lse_t)
    ctx.num_heads = num_heads
    ctx.scale = scale
    ctx.extra = tuple(extra)
    ctx.has_spe = (spe_s is not None, spe_t is not None)
    ctx.mark_non_differentiable(lse_s, lse_t)


def register_autograd(fwd_qualname: str, bwd_op) -> None:
    """Make ``fwd_qualname`` differentiable through ``bwd_op`` (an OpOverload or callable)."""

    def backward(ctx, grad_out, _grad_lse_s, _grad_lse_t):
        qkv, w_s, b_s, w_t, b_t, spe_s, spe_t, out, lse_s, lse_t = ctx.saved_tensors
        g = bwd_op(grad_out.contiguous(), qkv, w_s, b_s, w_t, b_t, spe_s, spe_t, out, lse_s, lse_t,
                   ctx.num_heads, ctx.scale, *ctx.extra)
        g_qkv, g_ws, g_bs, g_wt, g_bt, g_spe_s, g_spe_t = g
        return (g_qkv, g_ws, g_bs, g_wt, g_bt,
                g_spe_s if ctx.has_spe[0] else None,
                g_spe_t if ctx.has_spe[1] else None,
                None, None) + (None,) * len(ctx.extra)

    torch.library.register_autograd(fwd_qualname, backward, setup_context=_setup_context)


def fake_outputs(qkv, num_heads: int):
    """Empty tensors shaped like the forward op's outputs (for fake/meta kernels)."""
    B, T, J, C3 = qkv.shape
    lse_dtype = torch.float64 if qkv.dtype == torch.float64 else torch.float32
    out = qkv.new_empty((B, T, J, C3 // 3))
    lse_s = qkv.new_empty((B, num_heads, T, J), dtype=lse_dtype)
    lse_t = qkv.new_empty((B, num_heads, J, T), dtype=lse_dtype)
    return out, lse_s, lse_t
