"""Plain-PyTorch ``stc_attention``: the ground truth every backend is tested against.

Written for clarity, not speed. It stays ordinary traceable PyTorch (no custom op) so that
``torch.compile(stc_attention_reference)`` is the honest compiler baseline.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    # softmax and accumulation in float32 whatever the input; float64 stays float64 (gradcheck)
    return torch.float64 if dtype == torch.float64 else torch.float32


LAYOUTS = ("interleaved", "head_major")


def head_major_index(C: int, num_heads: int, device=None) -> Tensor:
    """(3C,) index: position p of the head-major layout holds official channel index[p].

    Head-major: per half (spatial, then temporal), per head, one run of 3*dh values ordered
    q(dh), k(dh), v(dh). ``F.linear(x, W[index], b[index])`` produces it from the qkv Linear.
    """
    half = C // 2
    dh = half // num_heads
    s, h, w, d = torch.meshgrid(torch.arange(2), torch.arange(num_heads), torch.arange(3),
                                torch.arange(dh), indexing="ij")
    return (3 * (s * half + h * dh + d) + w).reshape(-1).to(device)


def split_qkv(qkv: Tensor, num_heads: int, layout: str = "interleaved"):
    """qkv in ``layout`` -> per-branch q, k, v of shape (B, T, J, H, dh).

    interleaved (official): channel i of q, k, v sits at 3i, 3i+1, 3i+2; channels i < C/2 are
    the spatial half. head_major: see ``head_major_index``.
    Returns ((q_s, k_s, v_s), (q_t, k_t, v_t)).
    """
    B, T, J, C3 = qkv.shape
    C = C3 // 3
    half = C // 2
    dh = half // num_heads
    if layout == "head_major":
        x = qkv.reshape(B, T, J, 2, num_heads, 3, dh)
        parts = [x[..., w, :].reshape(B, T, J, 2, half) for w in range(3)]
        q, k, v = (p.reshape(B, T, J, C) for p in parts)
    elif layout == "interleaved":
        x = qkv.reshape(B, T, J, C, 3)
        q, k, v = x[..., 0], x[..., 1], x[..., 2]
    else:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")

    def heads(t: Tensor, lo: int) -> Tensor:
        return t[..., lo:lo + half].reshape(B, T, J, num_heads, dh)

    return (heads(q, 0), heads(k, 0), heads(v, 0)), (heads(q, half), heads(k, half), heads(v, half))


def depthwise_conv_tj(v: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
    """3x3 depthwise conv of v over the (time, joint index) grid, zero padded.

    v: (B, T, J, H, dh); weight: (H*dh, 1, 3, 3); bias: (H*dh,). Returns (B, T, J, H, dh).
    """
    B, T, J, H, dh = v.shape
    img = v.reshape(B, T, J, H * dh).permute(0, 3, 1, 2)  # (B, C/2, T, J)
    y = F.conv2d(img, weight.to(v.dtype), bias.to(v.dtype), padding=1, groups=H * dh)
    return y.permute(0, 2, 3, 1).reshape(B, T, J, H, dh)


def stc_attention_reference(
    qkv: Tensor,
    w_s: Tensor,
    b_s: Tensor,
    w_t: Tensor,
    b_t: Tensor,
    spe_s: Optional[Tensor],
    spe_t: Optional[Tensor],
    num_heads: int,
    scale: float,
    layout: str = "interleaved",
) -> Tensor:
    """Split-channel spatio-temporal criss-cross attention (see ``stcformer.ops.attention.stc_attention``).

    qkv: (B, T, J, 3C) output of the qkv Linear in ``layout`` (official: interleaved).
    Returns (B, T, J, C): per head, dh spatial channels then dh temporal channels.
    """
    in_dtype = qkv.dtype
    cdt = _compute_dtype(in_dtype)
    B, T, J, C3 = qkv.shape
    (q_s, k_s, v_s), (q_t, k_t, v_t) = split_qkv(qkv.to(cdt), num_heads, layout)

    # spatial: per (b, t, head) attention over the J joints
    s = torch.einsum("btihd,btjhd->bthij", q_s, k_s) * scale
    o_s = torch.einsum("bthij,btjhd->btihd", s.softmax(dim=-1), v_s)
    o_s = o_s + depthwise_conv_tj(v_s, w_s, b_s)
    if spe_s is not None:
        o_s = o_s + spe_s.to(cdt)[None, None, :, None, :]

    # temporal: per (b, joint, head) attention over the T frames, no mask
    s = torch.einsum("bujhd,bwjhd->bjhuw", q_t, k_t) * scale
    o_t = torch.einsum("bjhuw,bwjhd->bujhd", s.softmax(dim=-1), v_t)
    o_t = o_t + depthwise_conv_tj(v_t, w_t, b_t)
    if spe_t is not None:
        o_t = o_t + spe_t.to(cdt)[None, None, :, None, :]

    out = torch.stack([o_s, o_t], dim=-2)  # (B, T, J, H, 2, dh): head-interleaved [s | t]
    return out.reshape(B, T, J, C3 // 3).to(in_dtype)
