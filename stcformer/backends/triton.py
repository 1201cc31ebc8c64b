"""The ``triton`` backend: fused Triton kernels (``kernels/``) behind two torch.library ops.

``stcformer::stc_attention_triton_fwd`` and ``stcformer::stc_attention_triton_bwd`` follow the
contract of ``_autograd`` and are defined with ``torch.library.triton_op`` (kernels launched
through ``wrap_triton``); ``register_autograd`` makes the forward differentiable, and
torch.compile(fullgraph=True) takes them without graph breaks (as opaque ops by default, see
``INLINE_IN_GRAPHS``).

Per half, one launch does attention + 3x3 depthwise conv of v + spe and writes the official
output layout; qkv is read in its interleaved layout through its strides (no copies).
Precision: softmax and accumulation in float32; float32 inputs use 3xTF32 dots (float32-level
accuracy on the tensor cores; $STCFORMER_TRITON_FP32_DOT=ieee|tf32 to change), 16-bit inputs feed
the tensor cores with 16-bit P / dS (flash-attention style).
Grads of w, b, spe: each program writes partial sums, reduced here by torch (deterministic).
"""
from __future__ import annotations

import os
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
FP32_DOT_PRECISION = os.environ.get("STCFORMER_TRITON_FP32_DOT", "tf32x3")  # or "ieee", "tf32"
MAX_J = 64  # the spatial rows of one frame live in one block

# Tests set these to force block shapes (e.g. the GPU shapes under the interpreter):
# keys "profile" ("gpu" or "interpreter"), "temporal_nb", "block_t", "frames".
OVERRIDES: dict = {}

# Every buffer the ops hand to a kernel comes from here (tests swap in a NaN-filled allocator
# to check that the kernels write every element).
_empty = torch.empty


def _interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET") == "1"


# Under TRITON_INTERPRET=1, wrap_triton hands back the interpreted kernel itself (no
# higher-order op to trace), so the fake kernel, which triton_op makes from the op body, must
# not launch anything on fake tensors (``_launches``), and the ops must stay opaque in graphs.
def _launches(t: Tensor) -> bool:
    """False only for fake tensors under the interpreter (shape propagation, no kernels)."""
    return not (_interpreting() and torch._subclasses.fake_tensor.is_fake(t))


class Config:
    """Block shapes and launch parameters the launcher picks for one problem shape.

    GPU: temporal programs of 1 joint x 64 frames (flash-attention tiles), spatial programs of
    64 rows (e.g. 2 frames x 32 joint slots). Interpreter: it pays per operation, not per
    element, so each program takes many joints / frames (far fewer programs, same code).
    """

    def __init__(self, T: int, J: int, num_heads: int, dh: int, dtype: torch.dtype,
                 profile: Optional[str] = None):
        profile = OVERRIDES.get("profile", profile or ("interpreter" if _interpreting() else "gpu"))
        self.H = num_heads
        self.DH = dh
        self.DHP = max(16, triton.next_power_of_2(dh))  # tl.dot needs K, N >= 16 on a GPU
        self.BLOCK_J = max(16, triton.next_power_of_2(J))
        t_pow2 = max(16, triton.next_power_of_2(T))
        if profile == "gpu":
            self.NB = 1
            self.BLOCK_T = min(64, t_pow2)
            self.FRAMES = max(1, min(64 // self.BLOCK_J, triton.next_power_of_2(T)))
        else:  # tiles of up to 1024 rows: numpy does not mind, the op count is what costs
            self.BLOCK_T = min(128, t_pow2)
            self.NB = min(self.BLOCK_J, 1024 // self.BLOCK_T)
            self.FRAMES = min(triton.next_power_of_2(T), max(1, 1024 // self.BLOCK_J))
        self.NB = OVERRIDES.get("temporal_nb", self.NB)
        self.BLOCK_T = OVERRIDES.get("block_t", self.BLOCK_T)
        self.FRAMES = OVERRIDES.get("frames", self.FRAMES)
        # float32 dots: 3xTF32 (about float32 accuracy on the tensor cores; "ieee" is ~10x
        # slower on an H100, plain "tf32" ~1e-3 relative error)
        self.DOT_PREC = FP32_DOT_PRECISION if dtype == torch.float32 else "tf32"
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
    out = _empty((B, T, J, C), device=qkv.device, dtype=qkv.dtype)
    lse_s = _empty((B, H, T, J), device=qkv.device, dtype=torch.float32)
    lse_t = _empty((B, H, J, T), device=qkv.device, dtype=torch.float32)
    w_s, b_s, w_t, b_t = w_s.contiguous(), b_s.contiguous(), w_t.contiguous(), b_t.contiguous()
    spe_s_ = spe_s.contiguous() if spe_s is not None else b_s  # any pointer when HAS_SPE is off
    spe_t_ = spe_t.contiguous() if spe_t is not None else b_t

    if not _launches(qkv):
        return out, lse_s, lse_t
    grid_s = (B * H * triton.cdiv(T, cfg.FRAMES),)
    wrap_triton(spatial_fwd_kernel)[grid_s](
        qkv, w_s, b_s, spe_s_, out, lse_s, T, J, *qkv.stride(), *out.stride(), scale,
        H=H, DH=dh, DHP=cfg.DHP, BLOCK_J=cfg.BLOCK_J, FRAMES=cfg.FRAMES,
        HAS_SPE=spe_s is not None, DOT_PREC=cfg.DOT_PREC, num_warps=cfg.num_warps)
    grid_t = (B * H * triton.cdiv(J, cfg.NB) * triton.cdiv(T, cfg.BLOCK_T),)
    wrap_triton(temporal_fwd_kernel)[grid_t](
        qkv, w_t, b_t, spe_t_, out, lse_t, T, J, *qkv.stride(), *out.stride(), scale,
        H=H, DH=dh, DHP=cfg.DHP, NB=cfg.NB, BLOCK=cfg.BLOCK_T,
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
    H, DHP, NB, half = num_heads, cfg.DHP, cfg.NB, C // 2
    dev = qkv.device
    w_s_, w_t_, b_t_ = w_s.contiguous(), w_t.contiguous(), b_t.contiguous()
    lse_s, lse_t = lse_s.contiguous(), lse_t.contiguous()
    spe_t_ = spe_t.contiguous() if spe_t is not None else b_t_

    launch = _launches(qkv)
    grad_qkv = _empty((B, T, J, 3 * C), device=dev, dtype=qkv.dtype)

    # temporal half: delta = rowsum(dO * O_attn), then dK dV (keys) and dQ (queries)
    n_tb, n_jg = triton.cdiv(T, cfg.BLOCK_T), triton.cdiv(J, NB)
    grid_t = (B * H * n_jg * n_tb,)
    delta = _empty((B, H, J, T), device=dev, dtype=torch.float32)
    if launch:
        wrap_triton(temporal_bwd_delta_kernel)[grid_t](
            qkv, w_t_, b_t_, spe_t_, out, grad_out, delta, T, J,
            *qkv.stride(), *out.stride(), *grad_out.stride(),
            H=H, DH=dh, DHP=DHP, NB=NB, BLOCK=cfg.BLOCK_T, HAS_SPE=spe_t is not None,
            num_warps=cfg.num_warps)
    pw_t = _empty((B, H, n_jg, n_tb, 16, DHP), device=dev, dtype=torch.float32)
    pj_t = _empty((B, H, n_jg, n_tb, NB, DHP), device=dev, dtype=torch.float32)
    if launch:
        wrap_triton(temporal_bwd_kernel)[grid_t](
            qkv, w_t_, grad_out, lse_t, delta, grad_qkv, pw_t, pj_t, T, J,
            *qkv.stride(), *grad_out.stride(), *grad_qkv.stride(), scale,
            H=H, DH=dh, DHP=DHP, NB=NB, BLOCK=cfg.BLOCK_T, DOT_PREC=cfg.DOT_PREC,
            num_warps=cfg.num_warps)

    # spatial half
    n_g = triton.cdiv(T, cfg.FRAMES)
    grid_s = (B * H * n_g,)
    pw_s = _empty((B, H, n_g, 16, DHP), device=dev, dtype=torch.float32)
    pj_s = _empty((B, H, n_g, cfg.BLOCK_J, DHP), device=dev, dtype=torch.float32)
    if launch:
        wrap_triton(spatial_bwd_kernel)[grid_s](
            qkv, w_s_, grad_out, lse_s, grad_qkv, pw_s, pj_s, T, J,
            *qkv.stride(), *grad_out.stride(), *grad_qkv.stride(), scale,
            H=H, DH=dh, DHP=DHP, BLOCK_J=cfg.BLOCK_J, FRAMES=cfg.FRAMES, DOT_PREC=cfg.DOT_PREC,
            num_warps=cfg.num_warps)

    # deterministic reductions of the per-program partials
    taps_s = pw_s[..., :9, :dh].sum(dim=(0, 2))                          # (H, 9, dh)
    taps_t = pw_t[..., :9, :dh].sum(dim=(0, 2, 3))                       # (H, 9, dh)
    rows_s = pj_s[..., :J, :dh].sum(dim=(0, 2))                          # (H, J, dh)
    rows_t = pj_t[..., :dh].sum(dim=(0, 3)).reshape(H, n_jg * NB, dh)[:, :J]  # (H, J, dh)
    g_ws = taps_s.transpose(1, 2).reshape(half, 1, 3, 3).to(w_s.dtype)
    g_wt = taps_t.transpose(1, 2).reshape(half, 1, 3, 3).to(w_t.dtype)
    g_bs = rows_s.sum(dim=1).reshape(half).to(b_s.dtype)
    g_bt = rows_t.sum(dim=1).reshape(half).to(b_t.dtype)
    g_spe_s = rows_s.sum(dim=0).to(spe_s.dtype if spe_s is not None else qkv.dtype)
    g_spe_t = rows_t.sum(dim=0).to(spe_t.dtype if spe_t is not None else qkv.dtype)
    return grad_qkv, g_ws, g_bs, g_wt, g_bt, g_spe_s, g_spe_t


register_autograd(FWD, torch.ops.stcformer.stc_attention_triton_bwd.default)

# torch.compile: triton_op lets AOTAutograd inline the op bodies (the kernels become graph nodes
# that Inductor schedules). With torch 2.11 Inductor's scheduler failed on these graphs
# (KeyError in Scheduler.compute_ancestors, seen on an H100), and under the interpreter the
# kernels would vanish from the graph, so by default the ops stay opaque custom ops in the
# graph (still no graph break; Inductor calls them as they are). STCFORMER_TRITON_INLINE=1
# restores triton_op's inlining on a GPU.
INLINE_IN_GRAPHS = os.environ.get("STCFORMER_TRITON_INLINE") == "1" and not _interpreting()


def _keep_opaque(mode, op, types, args, kwargs):
    return mode.__torch_dispatch__(op, types, args, kwargs)


if not INLINE_IN_GRAPHS:
    from torch._subclasses.functional_tensor import FunctionalTensorMode

    for _op in (stc_attention_triton_fwd, stc_attention_triton_bwd):
        _op.register_torch_dispatch(FunctionalTensorMode, _keep_opaque)


def stc_attention(qkv: Tensor, w_s: Tensor, b_s: Tensor, w_t: Tensor, b_t: Tensor,
                  spe_s: Optional[Tensor], spe_t: Optional[Tensor], num_heads: int,
                  scale: float) -> Tensor:
    """``stc_attention`` on the Triton kernels (see ``stcformer.ops.stc_attention``)."""
    out, _, _ = torch.ops.stcformer.stc_attention_triton_fwd(
        qkv, w_s, b_s, w_t, b_t, spe_s, spe_t, int(num_heads), float(scale))
    return out


def _signature(kernel, x: str, p: str) -> dict:
    """Triton signature of one of our kernels: *_ptr args get x (activations) or p (params)."""
    sig = {}
    for name in kernel.arg_names:
        if name.endswith("_ptr"):
            if name in ("w_ptr", "b_ptr", "spe_ptr"):
                sig[name] = "*" + p
            elif name in ("lse_ptr", "delta_ptr", "pw_ptr", "pj_ptr"):
                sig[name] = "*fp32"
            else:
                sig[name] = "*" + x
        elif name in ("T", "J") or name.startswith("s_"):
            sig[name] = "i32"
        elif name == "scale":
            sig[name] = "fp32"
        else:
            sig[name] = "constexpr"
    return sig


def kernel_variants(dtypes=SUPPORTED_DTYPES, shapes=((1, 17, 4), (3, 16, 16), (243, 17, 16), (27, 17, 32)),
                    profile: str = "gpu", spe=(False, True)):
    """Every distinct (kernel, signature, constexprs, num_warps) the launcher picks for these
    dtypes and (T, J, dh) shapes, for ``triton.compile`` against a GPU target without a GPU
    (see tests/triton_gpu_compile_check.py). Parameters (w, b, spe) are float32 (the autocast
    case) except for the first shape, where they share the activations' dtype. ``spe``: the
    HAS_SPE values to build (False only drops a load).
    """
    tname = {torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16"}
    seen = set()
    variants: List[tuple] = []

    def add(kernel, x, p, const, num_warps):
        key = (kernel.fn.__name__, x, p, tuple(sorted(const.items())))
        if key not in seen:
            seen.add(key)
            variants.append((kernel, _signature(kernel, x, p), dict(const), num_warps))

    for dt in dtypes:
        x = tname[dt]
        for i, (T, J, dh) in enumerate(shapes):
            cfg = Config(T, J, 8, dh, dt, profile=profile)
            p = x if i == 0 else "fp32"
            common = dict(H=8, DH=dh, DHP=cfg.DHP)
            sp = dict(common, BLOCK_J=cfg.BLOCK_J, FRAMES=cfg.FRAMES)
            tm = dict(common, NB=cfg.NB, BLOCK=cfg.BLOCK_T)
            for has_spe in spe:
                add(spatial_fwd_kernel, x, p, dict(sp, HAS_SPE=has_spe, DOT_PREC=cfg.DOT_PREC), cfg.num_warps)
                add(temporal_fwd_kernel, x, p, dict(tm, HAS_SPE=has_spe, DOT_PREC=cfg.DOT_PREC), cfg.num_warps)
                add(temporal_bwd_delta_kernel, x, p, dict(tm, HAS_SPE=has_spe), cfg.num_warps)
            add(temporal_bwd_kernel, x, p, dict(tm, DOT_PREC=cfg.DOT_PREC), cfg.num_warps)
            add(spatial_bwd_kernel, x, p, dict(sp, DOT_PREC=cfg.DOT_PREC), cfg.num_warps)
    return variants
