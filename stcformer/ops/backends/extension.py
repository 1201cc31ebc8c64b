"""The ``cpp`` and ``cuda`` backends: one pair of ops in stcformer._C with CPU and CUDA kernels.

csrc/register.cpp defines the schemas (see ``_autograd`` for the contract; both ops take a
trailing ``head_major`` flag for the qkv layout, passed on to the backward unchanged); csrc/cpu
and csrc/cuda add the kernels. Here we add what torch.library needs beside them: fake kernels
(torch.compile, opcheck) and autograd.
"""
from __future__ import annotations

import torch

from stcformer.ops import host
from stcformer.ops.backends.autograd import fake_outputs, register_autograd

FWD = "stcformer::stc_attention_fwd"
BWD = "stcformer::stc_attention_bwd"

if host.extension_load_error() is None:

    @torch.library.register_fake(FWD)
    def _fwd_fake(qkv, w_s, b_s, w_t, b_t, spe_s, spe_t, num_heads, scale, head_major=False):
        return fake_outputs(qkv, num_heads)

    @torch.library.register_fake(BWD)
    def _bwd_fake(grad_out, qkv, w_s, b_s, w_t, b_t, spe_s, spe_t, out, lse_s, lse_t, num_heads,
                  scale, head_major=False):
        J = qkv.shape[2]
        dh = qkv.shape[3] // 6 // num_heads
        spe = lambda: qkv.new_empty((J, dh))  # noqa: E731
        return (torch.empty_like(qkv, memory_format=torch.contiguous_format), torch.empty_like(w_s),
                torch.empty_like(b_s), torch.empty_like(w_t), torch.empty_like(b_t), spe(), spe())

    register_autograd(FWD, torch.ops.stcformer.stc_attention_bwd.default)


def stc_attention(qkv, w_s, b_s, w_t, b_t, spe_s, spe_t, num_heads: int, scale: float,
                  layout: str = "interleaved"):
    """``stc_attention`` on the stcformer._C kernels of qkv's device (see ``stcformer.ops.attention``)."""
    out, _, _ = torch.ops.stcformer.stc_attention_fwd(
        qkv.contiguous(), w_s, b_s, w_t, b_t, spe_s, spe_t, num_heads, float(scale),
        layout == "head_major")
    return out
