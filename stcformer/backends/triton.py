"""The ``triton`` backend: fused Triton kernels (``kernels/``) behind two torch.library ops.

``stcformer::stc_attention_triton_fwd`` and ``stcformer::stc_attention_triton_bwd`` follow the
contract of ``_autograd`` and are defined with ``torch.library.triton_op`` (kernels launched
through ``wrap_triton``), so torch.compile sees through them without graph breaks and
``register_autograd`` makes the forward differentiable.

Per half, one launch does attention + 3x3 depthwise conv of v + spe and writes the official
output layout; qkv is read in its interleaved layout through its strides (no copies).
Precision: softmax and accumulation in float32; float32 inputs use IEEE float32 dots (no tf32),
16-bit inputs feed the tensor cores with 16-bit P / dS (flash-attention style).
Grads of w, b, spe: each program writes partial sums, reduced here by torch (deterministic).
"""
from __future__ import annotations

from typing import List, Optional, Tuple

import torch
import triton
from torch import Tensor
from torch.library import triton_op, wrap_triton

from stcformer.kernels.spatial import spatial_bwd_kernel, spatial_fwd_kernel
from stcformer.kernels.temporal import temporal_bwd_delta_kernel, temporal_bwd_kernel, temporal_fwd_kernel

from ._autograd import register_autograd

FWD = "stcformer::stc_attention_triton_fwd"
BWD = "stcformer::stc_attention_triton_bwd"

SUPPORTED_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
MAX_J = 64  # spatial rows of one frame live in one block


class Config:
    """Block shapes and launch parameters the launcher picks for one problem shape."""

    def __init__(self, T: int, J: int, num_heads: int, dh: int, dtype: torch.dtype):
        self.H = num_heads
        self.DH = dh
        self.DHP = max(16, triton.next_power_of_2(dh))  # tl.dot needs K, N >= 16 on a GPU
        self.BLOCK_J = max(16, triton.next_power_of_2(J))
        self.FRAMES = 8 if self.BLOCK_J <= 32 else 4
        # temporal query/key block: 64 rows (H100-friendly); no wider than T needs (>= 16 for mma)
        self.BLOCK_T = min(64, max(16, triton.next_power_of_2(T)))
        self.DOT_PREC = "ieee" if dtype == torch.float32 else "tf32"
        self.num_warps = 4


def _check_inputs(qkv: Tensor, num_heads: int) -> Tuple[int, int, int, int, int]:
    if qkv.dtype not in SUPPORTED_DTYPES:
        raise TypeError(f"stc_attention_triton: dtype {qkv.dtype} is not supported (float32, float16, bfloat16)")
    B, T, J, C3 = qkv.shape
    C = C3 // 3
    if C3 % 6 or (C // 2) % num_heads:
        raise ValueError(f"stc_attention_triton: bad qkv shape {tuple(qkv.shape)} for {num_heads} heads")
    if J > MAX_J:
        raise ValueError(f"stc_attention_triton: J = {J} joints is more than {MAX_J}")
    return B, T, J, C, C // 2 // num_heads


@triton_op(FWD, mutates_args=())
def stc_attention_triton_fwd(
    qkv: Tensor, w_s: Tensor, b_s: Tensor, w_t: Tensor, b_t: Tensor,
    spe_s: Optional[Tensor], spe_t: Optional[Tensor], num_heads: int, scale: float,
) -> Tuple[Tensor, Tensor, Tensor]:
    B, T, J, C, dh = _check_inputs(qkv, num_heads)
    cfg = Config(T, J, num_heads, dh, qkv.dtype)
    H = num_heads
    out = torch.empty((B, T, J, C), device=qkv.device, dtype=qkv.dtype)
    lse_s = torch.empty((B, H, T, J), device=qkv.device, dtype=torch.float32)
    lse_t = torch.empty((B, H, J, T), device=qkv.device, dtype=torch.float32)
    w_s, b_s, w_t, b_t = w_s.contiguous(), b_s.contiguous(), w_t.contiguous(), b_t.contiguous()
    spe_s_ = spe_s.contiguous() if spe_s is not None else b_s  # any pointer when HAS_SPE is off
    spe_t_ = spe_t.contiguous() if spe_t is not None else b_t

    grid_s = (B * H * triton.cdiv(T, cfg.FRAMES),)
    wrap_triton(spatial_fwd_kernel)[grid_s](
        qkv, w_s, b_s, spe_s_, out, lse_s, T, J, *qkv.stride(), *out.stride(), scale,
        H=H, DH=dh, DHP=cfg.DHP, BLOCK_J=cfg.BLOCK_J, FRAMES=cfg.FRAMES,
        HAS_SPE=spe_s is not None, DOT_PREC=cfg.DOT_PREC, num_warps=cfg.num_warps)
    grid_t = (B * J * H * triton.cdiv(T, cfg.BLOCK_T),)
    wrap_triton(temporal_fwd_kernel)[grid_t](
        qkv, w_t, b_t, spe_t_, out, lse_t, T, J, *qkv.stride(), *out.stride(), scale,
        H=H, DH=dh, DHP=cfg.DHP, BLOCK=cfg.BLOCK_T,
        HAS_SPE=spe_t is not None, DOT_PREC=cfg.DOT_PREC, num_warps=cfg.num_warps)
    return out, lse_s, lse_t


@triton_op(BWD, mutates_args=())
def stc_attention_triton_bwd(
    grad_out: Tensor, qkv: Tensor, w_s: Tensor, b_s: Tensor, w_t: Tensor, b_t: Tensor,
    spe_s: Optional[Tensor], spe_t: Optional[Tensor], out: Tensor, lse_s: Tensor, lse_t: Tensor,
    num_heads: int, scale: float,
) -> Tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    B, T, J, C, dh = _check_inputs(qkv, num_heads)
    cfg = Config(T, J, num_heads, dh, qkv.dtype)
    H, DHP, half = num_heads, cfg.DHP, C // 2
    dev = qkv.device
    w_s_, b_s_, w_t_, b_t_ = w_s.contiguous(), b_s.contiguous(), w_t.contiguous(), b_t.contiguous()
    lse_s, lse_t = lse_s.contiguous(), lse_t.contiguous()
    spe_t_ = spe_t.contiguous() if spe_t is not None else b_t_

    grad_qkv = torch.empty((B, T, J, 3 * C), device=dev, dtype=qkv.dtype)

    # temporal half
    n_tb = triton.cdiv(T, cfg.BLOCK_T)
    grid_t = (B * J * H * n_tb,)
    delta = torch.empty((B, H, J, T), device=dev, dtype=torch.float32)
    wrap_triton(temporal_bwd_delta_kernel)[grid_t](
        qkv, w_t_, b_t_, spe_t_, out, grad_out, delta, T, J,
        *qkv.stride(), *out.stride(), *grad_out.stride(),
        H=H, DH=dh, DHP=DHP, BLOCK=cfg.BLOCK_T, HAS_SPE=spe_t is not None,
        num_warps=cfg.num_warps)
    part_t = torch.empty((B, J, H, n_tb, 16, DHP), device=dev, dtype=torch.float32)
    wrap_triton(temporal_bwd_kernel)[grid_t](
        qkv, w_t_, grad_out, lse_t, delta, grad_qkv, part_t, T, J,
        *qkv.stride(), *grad_out.stride(), *grad_qkv.stride(), scale,
        H=H, DH=dh, DHP=DHP, BLOCK=cfg.BLOCK_T, DOT_PREC=cfg.DOT_PREC, num_warps=cfg.num_warps)

    # spatial half
    n_g = triton.cdiv(T, cfg.FRAMES)
    grid_s = (B * H * n_g,)
    part_sw = torch.empty((B, H, n_g, 16, DHP), device=dev, dtype=torch.float32)
    part_sj = torch.empty((B, H, n_g, cfg.BLOCK_J, DHP), device=dev, dtype=torch.float32)
    wrap_triton(spatial_bwd_kernel)[grid_s](
        qkv, w_s_, grad_out, lse_s, grad_qkv, part_sw, part_sj, T, J,
        *qkv.stride(), *grad_out.stride(), *grad_qkv.stride(), scale,
        H=H, DH=dh, DHP=DHP, BLOCK_J=cfg.BLOCK_J, FRAMES=cfg.FRAMES, DOT_PREC=cfg.DOT_PREC,
        num_warps=cfg.num_warps)

    # deterministic reductions of the per-program partials
    taps_t = part_t[..., :9, :dh].sum(dim=(0, 1, 3))          # (H, 9, dh)
    rows_t = part_t[..., 9, :dh]                              # (B, J, H, n_tb, dh)
    taps_s = part_sw[..., :9, :dh].sum(dim=(0, 2))            # (H, 9, dh)
    rows_s = part_sj[..., :J, :dh].sum(dim=(0, 2))            # (H, J, dh)
    g_ws = taps_s.transpose(1, 2).reshape(half, 1, 3, 3).to(w_s.dtype)
    g_wt = taps_t.transpose(1, 2).reshape(half, 1, 3, 3).to(w_t.dtype)
    g_bs = rows_s.sum(dim=1).reshape(half).to(b_s.dtype)
    g_bt = rows_t.sum(dim=(0, 1, 3)).reshape(half).to(b_t.dtype)
    g_spe_s = rows_s.sum(dim=0).to(spe_s.dtype if spe_s is not None else qkv.dtype)
    g_spe_t = rows_t.sum(dim=(0, 2, 3)).to(spe_t.dtype if spe_t is not None else qkv.dtype)
    return grad_qkv, g_ws, g_bs, g_wt, g_bt, g_spe_s, g_spe_t


register_autograd(FWD, torch.ops.stcformer.stc_attention_triton_bwd.default)


def stc_attention(qkv: Tensor, w_s: Tensor, b_s: Tensor, w_t: Tensor, b_t: Tensor,
                  spe_s: Optional[Tensor], spe_t: Optional[Tensor], num_heads: int,
                  scale: float) -> Tensor:
    """``stc_attention`` on the Triton kernels (see ``stcformer.ops.stc_attention``)."""
    out, _, _ = torch.ops.stcformer.stc_attention_triton_fwd(
        qkv, w_s, b_s, w_t, b_t, spe_s, spe_t, int(num_heads), float(scale))
    return out


def kernel_variants(dtypes=SUPPORTED_DTYPES, Ts=(1, 17, 243), Js=(16, 17, 32), dhs=(4, 16, 32)):
    """Every (kernel, signature, constexprs, num_warps) this launcher can choose for these shapes.

    Used by the GPU-target compile test (``tests/triton_gpu_compile_check.py``) to build each
    variant for sm_80 / sm_90 without a GPU.
    """
    tname = {torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16"}
    seen = set()
    out: List[tuple] = []

    def add(kernel, ptrs, n_int, has_scale, const):
        key = (kernel.fn.__name__ if hasattr(kernel, "fn") else kernel.__name__,) + tuple(sorted(const.items())) + ptrs
        if key in seen:
            return
        seen.add(key)
        names = kernel.arg_names
        sig = {}
        it = iter(names)
        for p in ptrs:
            sig[next(it)] = p
        for _ in range(n_int):
            sig[next(it)] = "i32"
        if has_scale:
            sig[next(it)] = "fp32"
        for name in it:
            sig[name] = "constexpr"
        out.append((kernel, sig, dict(const), 4))

    for dt in dtypes:
        x = "*" + tname[dt]
        f = "*fp32"
        for T in Ts:
            for J in Js:
                for dh in dhs:
                    cfg = Config(T, J, 8, dh, dt)
                    common = dict(H=8, DH=dh, DHP=cfg.DHP)
                    for has_spe in (False, True):
                        add(spatial_fwd_kernel, (x, f, f, f, x, f), 2 + 8, True,
                            dict(common, BLOCK_J=cfg.BLOCK_J, FRAMES=cfg.FRAMES, HAS_SPE=has_spe,
                                 DOT_PREC=cfg.DOT_PREC))
                        add(temporal_fwd_kernel, (x, f, f, f, x, f), 2 + 8, True,
                            dict(common, BLOCK=cfg.BLOCK_T, HAS_SPE=has_spe, DOT_PREC=cfg.DOT_PREC))
                        add(temporal_bwd_delta_kernel, (x, f, f, f, x, x, f), 2 + 12, False,
                            dict(common, BLOCK=cfg.BLOCK_T, HAS_SPE=has_spe))
                    add(temporal_bwd_kernel, (x, f, x, f, f, x, f), 2 + 12, True,
                        dict(common, BLOCK=cfg.BLOCK_T, DOT_PREC=cfg.DOT_PREC))
                    add(spatial_bwd_kernel, (x, f, x, f, x, f, f), 2 + 12, True,
                        dict(common, BLOCK_J=cfg.BLOCK_J, FRAMES=cfg.FRAMES, DOT_PREC=cfg.DOT_PREC))
    return out
