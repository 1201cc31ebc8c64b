"""The ``triton`` backend: fused Triton kernels (``kernels/``) behind two torch.library ops.

``stcformer::stc_attention_triton_fwd`` and ``stcformer::stc_attention_triton_bwd`` follow the
contract of ``_autograd`` (plus a trailing ``head_major`` flag for the qkv layout) and are
defined with ``torch.library.triton_op`` (kernels launched through ``wrap_triton``);
``register_autograd`` makes the forward differentiable, and torch.compile(fullgraph=True) takes
them without graph breaks (as opaque ops by default, see ``INLINE_IN_GRAPHS``).

Launches per call: forward 3 (conv weights tap-major, spatial, temporal); backward 5 for
T <= 256 (the weights again, spatial persistent, temporal whole-row, the conv / bias / spe
gradients of both halves and their deterministic reduction), 6 above (temporal delta +
streaming); no torch kernels besides the allocations.
Precision: softmax and accumulation in float32; float32 inputs use 3xTF32 dots (float32-level
accuracy on the tensor cores; $STCFORMER_TRITON_FP32_DOT=ieee|tf32 to change), 16-bit inputs feed
the tensor cores with 16-bit P / dS (flash-attention style).
"""
from __future__ import annotations

import functools
from typing import Optional, Tuple

import torch
import triton
from torch import Tensor
from torch.library import triton_op
from torch.library import wrap_triton as _wrap_triton

from stcformer.kernels.conv import conv_grad_kernel, conv_grad_reduce_kernel, conv_weight_kernel
from stcformer.kernels.spatial import spatial_bwd_kernel, spatial_fwd_kernel
from stcformer.kernels.temporal import (temporal_bwd_delta_kernel, temporal_bwd_kernel,
                                        temporal_bwd_row_kernel, temporal_fwd_kernel)

from stcformer import settings
from stcformer.ops.backends.autograd import register_autograd

FWD = "stcformer::stc_attention_triton_fwd"
BWD = "stcformer::stc_attention_triton_bwd"

SUPPORTED_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
MAX_J = 64        # the joints of one frame live in one tile
MAX_ROW_T = 256   # temporal backward keeps the whole key row in one program up to this T

def _interpreting() -> bool:
    return settings.triton_interpret()


# Under TRITON_INTERPRET=1, wrap_triton hands back the interpreted kernel itself (no
# higher-order op to trace), so the fake kernel, which triton_op makes from the op body, must
# not launch anything on fake tensors (``_launches``), and the ops must stay opaque in graphs.
def _launches(t: Tensor) -> bool:
    """False only for fake tensors under the interpreter (shape propagation, no kernels)."""
    return not (_interpreting() and torch._subclasses.fake_tensor.is_fake(t))


def wrap_triton(kernel):
    """``torch.library.wrap_triton``; under the interpreter the kernel itself (what torch 2.13
    hands back there; torch 2.11 refuses interpreted kernels with a RuntimeError)."""
    return kernel if _interpreting() else _wrap_triton(kernel)


@functools.lru_cache(maxsize=None)
def _sm_count(index: int) -> int:
    return torch.cuda.get_device_properties(index).multi_processor_count


def _np2(n: int, lo: int = 16) -> int:
    return max(lo, triton.next_power_of_2(max(1, n)))


class Config:
    """Block shapes and launch parameters for one problem shape.

    GPU: spatial tiles of FRAMES x JP rows (4 x 32 forward, 2 x 32 backward for J = 17), the
    backward persistent over about 8 waves; temporal query blocks of 64 frames against
    128-frame key blocks (forward), the whole key row (T <= 256) against 32-frame query blocks
    (backward). Interpreter: it pays per operation, not per element, so programs take many
    frames (far fewer programs, same code).
    """

    def __init__(self, B: int, T: int, J: int, num_heads: int, dh: int, dtype: torch.dtype,
                 profile: Optional[str] = None, sm_count: int = 132, head_major: bool = True,
                 overrides: Optional[dict] = None, fp32_dot: Optional[str] = None,
                 interpreting: Optional[bool] = None):
        # the settings' launch overrides, dot precision and interpreter flag unless given
        o = settings.triton_overrides() if overrides is None else overrides
        interpreting = _interpreting() if interpreting is None else interpreting
        profile = o.get("profile", profile or ("interpreter" if interpreting else "gpu"))
        self.H, self.DH = num_heads, dh
        self.DHP = _np2(dh)  # tl.dot needs K, N >= 16 on a GPU
        self.JP = _np2(J)
        n_t = _np2(T)
        self.BLOCK_N = min(MAX_ROW_T, n_t)
        self.STREAM = o.get("stream_block", 64 if profile == "gpu" else min(128, n_t))
        self.warps_fwd_t = self.warps_bwd_t = self.warps_s = self.warps_stream = self.warps_conv = 4
        self.stages_fwd_t = self.stages_bwd_t = None  # Triton's default
        if profile == "gpu":
            self._gpu_tiles(B, T, J, num_heads, dtype, sm_count, head_major, n_t)
        else:
            self._interpreter_tiles(T, J, n_t)
        self._apply_overrides(o, T, J)
        # float32 dots: 3xTF32 (about float32 accuracy on the tensor cores; "ieee" leaves the
        # tensor cores, plain "tf32" has ~1e-3 relative error)
        fp32_dot = settings.triton_fp32_dot() if fp32_dot is None else fp32_dot
        self.DOT_PREC = fp32_dot if dtype == torch.float32 else "tf32"

    def _gpu_tiles(self, B: int, T: int, J: int, num_heads: int, dtype: torch.dtype, sm_count: int,
                   head_major: bool, n_t: int) -> None:
        # Register budget (sm_90, checked with bench/kernel_report.py): no spills, and
        # under ~168 registers (12 resident warps per SM) where the tiles allow it.
        self.NB = 1
        # spatial tiles: 4 frames x 32 joint slots forward, 2 frames per backward tile (1
        # in float32: 3xTF32 triples the dot operands); with 8 forward frames the conv's
        # tap loop stays rolled, which costs more than the per-program overhead it saves
        fp32 = dtype == torch.float32
        self.FRAMES = max(1, min(128 // self.JP, n_t))
        self.FRAMES_BWD = max(1, min((32 if fp32 else 64) // self.JP, n_t))
        # forward: 64 query frames per program against 128-frame key blocks (online
        # softmax); backward: the whole key row, key-stationary, 32 query frames a step
        self.BLOCK_M = min(64, self.BLOCK_N)
        self.BLOCK_N_FWD = min(128, self.BLOCK_N)
        self.BLOCK_M_BWD = min(32, self.BLOCK_N)
        if fp32:
            # 3xTF32 dots triple the operand tiles: float32 streams 64-frame key blocks
            self.BLOCK_N = min(64, self.BLOCK_N)
            self.BLOCK_N_FWD = self.BLOCK_M = min(64, self.BLOCK_N)
            self.BLOCK_M_BWD = min(32, self.BLOCK_N)
        # persistent spatial backward: about 8 waves of the 3 programs an SM holds, so
        # that the last wave's tail is short
        groups = -(-T // self.FRAMES_BWD)
        self.NSPLIT = max(1, min(groups, -(-8 * 3 * sm_count // max(1, B * num_heads))))
        self.stages_fwd_t = 1
        # whole-row backward: 4 warps without software pipelining fit 256 head-major keys
        # in 255 registers without spills, two programs per SM (8 warps: one program and
        # more issue); the interleaved layout's stride-3 loads need 8 warps not to spill
        self.warps_bwd_t = 4 if head_major else 8
        self.stages_bwd_t = 1
        # parameter gradients: 64-row tiles of whole frames, about 8 programs per SM
        self.ROWS_CONV = max(64 if head_major else 32, self.JP)   # whole frames: >= J rows
        steps = -(-T // (self.ROWS_CONV // J))
        self.NCHUNK = max(1, min(steps, -(-8 * sm_count // max(1, 2 * B * num_heads))))

    def _interpreter_tiles(self, T: int, J: int, n_t: int) -> None:
        # tiles of up to 1024 rows: numpy does not mind, the op count is what costs
        self.FRAMES = self.FRAMES_BWD = max(1, min(n_t, 1024 // self.JP))
        self.BLOCK_M = self.BLOCK_M_BWD = min(128, self.BLOCK_N)
        self.BLOCK_N_FWD = self.BLOCK_N
        # joints per temporal program: a power of 2 (tile rows), up to ~1024 rows
        self.NB = min(_np2(J, 1), 1 << (1024 // max(self.BLOCK_N, self.STREAM)).bit_length() - 1)
        self.NSPLIT = 1
        self.ROWS_CONV = max(self.JP, min(1024, _np2(T * J)))
        self.NCHUNK = 1

    def _apply_overrides(self, o: dict, T: int, J: int) -> None:
        """Replace the profile's choices by those ``o`` (``settings.override_triton``) names."""
        self.FRAMES = o.get("frames", self.FRAMES)
        self.FRAMES_BWD = o.get("frames_bwd", self.FRAMES_BWD)
        self.BLOCK_M = o.get("block_m", self.BLOCK_M)
        self.BLOCK_M_BWD = o.get("block_m_bwd", self.BLOCK_M_BWD)
        self.BLOCK_N = o.get("block_n", self.BLOCK_N)
        self.BLOCK_N_FWD = min(o.get("block_n_fwd", self.BLOCK_N_FWD), self.BLOCK_N)
        self.NSPLIT = o.get("nsplit", self.NSPLIT)
        self.NB = o.get("nb", self.NB)
        self.row_bwd = T <= self.BLOCK_N and "stream_block" not in o
        self.warps_s = o.get("warps_s", self.warps_s)
        self.warps_fwd_t = o.get("warps_fwd_t", self.warps_fwd_t)
        self.warps_bwd_t = o.get("warps_bwd_t", self.warps_bwd_t)
        self.stages_bwd_t = o.get("stages_bwd_t", self.stages_bwd_t)
        self.stages_fwd_t = o.get("stages_fwd_t", self.stages_fwd_t)
        self.warps_stream = o.get("warps_stream", self.warps_stream)
        self.ROWS_CONV = o.get("rows_conv", self.ROWS_CONV)
        if self.ROWS_CONV < J:
            raise ValueError(f"triton Config: rows_conv = {self.ROWS_CONV} holds no whole frame of {J} joints")
        self.NCHUNK = o.get("nchunk", self.NCHUNK)


@functools.lru_cache(maxsize=256)
def _cached_config(B: int, T: int, J: int, num_heads: int, dh: int, dtype: torch.dtype, sms: int,
                   head_major: bool, overrides: tuple, fp32_dot: str, interpreting: bool) -> Config:
    return Config(B, T, J, num_heads, dh, dtype, sm_count=sms, head_major=head_major, overrides=dict(overrides),
                  fp32_dot=fp32_dot, interpreting=interpreting)


def _config(qkv: Tensor, num_heads: int, dh: int, head_major: bool) -> Config:
    """The Config of this call, built once per shape (host time counts at short windows)."""
    B, T, J, _ = qkv.shape
    sms = _sm_count(qkv.device.index or 0) if qkv.is_cuda else 132
    now = settings.current()
    return _cached_config(B, T, J, num_heads, dh, qkv.dtype, sms, head_major, now.triton_overrides,
                          now.triton_fp32_dot, now.triton_interpret)


def _stages(n: Optional[int]) -> dict:
    """num_stages for a launch when the Config sets one (else Triton's default)."""
    return {} if n is None else {"num_stages": n}


def _layout(head_major: bool, dh: int) -> dict:
    """constexpr strides of one head's run of 3*dh values (see kernels/common.py)."""
    return dict(SD=1, SW=dh) if head_major else dict(SD=3, SW=1)


def _unit_last(t: Tensor) -> Tensor:
    # the kernels assume unit channel stride (contiguous vectors); other strides are free
    return t if t.stride(-1) == 1 else t.contiguous()


def _conv_weights(w_s: Tensor, w_t: Tensor) -> Tensor:
    """Both conv weights tap-major in float32 (2, 9, C/2), the layout every kernel reads."""
    half = w_s.shape[0]
    out = torch.empty((2, 9, half), device=w_s.device, dtype=torch.float32)
    block = min(128, _np2(half))
    wrap_triton(conv_weight_kernel)[(2 * triton.cdiv(half, block),)](
        w_s.contiguous(), w_t.contiguous(), out, HALF=half, BLOCK=block, num_warps=4)
    return out


def _check_inputs(qkv: Tensor, num_heads: int) -> Tuple[int, int, int, int, int]:
    if qkv.dtype not in SUPPORTED_DTYPES:
        raise TypeError(f"stc_attention_triton: dtype {qkv.dtype} is not supported (float32, float16, bfloat16)")
    if qkv.dim() != 4:
        raise ValueError(f"stc_attention_triton: qkv must be (B, T, J, 3C), got {tuple(qkv.shape)}")
    B, T, J, C3 = qkv.shape
    C = C3 // 3
    if C3 % 6 or num_heads <= 0 or (C // 2) % num_heads:
        raise ValueError(f"stc_attention_triton: bad qkv shape {tuple(qkv.shape)} for {num_heads} heads")
    if J > MAX_J:
        raise ValueError(f"stc_attention_triton: J = {J} joints is more than {MAX_J}")
    return B, T, J, C, C // 2 // num_heads


@triton_op(FWD, mutates_args=())
def stc_attention_triton_fwd(
    qkv: Tensor, w_s: Tensor, b_s: Tensor, w_t: Tensor, b_t: Tensor,
    spe_s: Optional[Tensor], spe_t: Optional[Tensor], num_heads: int, scale: float,
    head_major: bool = False,
) -> Tuple[Tensor, Tensor, Tensor]:
    B, T, J, C, dh = _check_inputs(qkv, num_heads)
    H = num_heads
    out = torch.empty((B, T, J, C), device=qkv.device, dtype=qkv.dtype)
    lse_s = torch.empty((B, H, T, J), device=qkv.device, dtype=torch.float32)
    lse_t = torch.empty((B, H, J, T), device=qkv.device, dtype=torch.float32)
    if not _launches(qkv) or out.numel() == 0:
        return out, lse_s, lse_t
    cfg = _config(qkv, H, dh, head_major)
    qkv = _unit_last(qkv)
    w = _conv_weights(w_s, w_t)
    b_s, b_t = b_s.contiguous(), b_t.contiguous()
    spe_s_ = spe_s.contiguous() if spe_s is not None else b_s  # any pointer when HAS_SPE is off
    spe_t_ = spe_t.contiguous() if spe_t is not None else b_t
    common = dict(H=H, DH=dh, DHP=cfg.DHP, DOT_PREC=cfg.DOT_PREC, **_layout(head_major, dh))
    strides = (*qkv.stride()[:3], *out.stride()[:3])

    wrap_triton(spatial_fwd_kernel)[(B * H * triton.cdiv(T, cfg.FRAMES),)](
        qkv, w, b_s, spe_s_, out, lse_s, T, J, *strides, scale,
        JP=cfg.JP, FRAMES=cfg.FRAMES, HAS_SPE=spe_s is not None, num_warps=cfg.warps_s, **common)
    n_jg = triton.cdiv(J, cfg.NB)
    wrap_triton(temporal_fwd_kernel)[(B * H * n_jg * triton.cdiv(T, cfg.BLOCK_M),)](
        qkv, w, b_t, spe_t_, out, lse_t, T, J, *strides, scale, NB=cfg.NB,
        BLOCK_M=cfg.BLOCK_M, BLOCK_N=cfg.BLOCK_N_FWD, HAS_SPE=spe_t is not None,
        num_warps=cfg.warps_fwd_t, **_stages(cfg.stages_fwd_t), **common)
    return out, lse_s, lse_t


def _temporal_bwd(qkv, w, b_t_, spe_t, out, grad_out, lse_t, grad_qkv, strides, scale, cfg, common) -> None:
    """The temporal half's grad_qkv: the whole key row per program, else streamed key blocks."""
    B, T, J, _ = qkv.shape
    H = common["H"]
    NB, n_jg = cfg.NB, triton.cdiv(J, cfg.NB)
    if cfg.row_bwd:
        wrap_triton(temporal_bwd_row_kernel)[(B * H * n_jg,)](
            qkv, w, grad_out, lse_t, grad_qkv, T, J, *strides, scale, NB=NB,
            BLOCK_M=cfg.BLOCK_M_BWD, BLOCK_N=cfg.BLOCK_N, DOT_PREC=cfg.DOT_PREC,
            num_warps=cfg.warps_bwd_t, **_stages(cfg.stages_bwd_t), **common)
    else:
        grid = (B * H * n_jg * triton.cdiv(T, cfg.STREAM),)
        spe_t_ = spe_t.contiguous() if spe_t is not None else b_t_
        delta = torch.empty((B, H, J, T), device=qkv.device, dtype=torch.float32)
        wrap_triton(temporal_bwd_delta_kernel)[grid](
            qkv, w, b_t_, spe_t_, out, grad_out, delta, T, J,
            *qkv.stride()[:3], *out.stride()[:3], *grad_out.stride()[:3],
            NB=NB, BLOCK=cfg.STREAM, HAS_SPE=spe_t is not None, num_warps=4, **common)
        wrap_triton(temporal_bwd_kernel)[grid](
            qkv, w, grad_out, lse_t, delta, grad_qkv, T, J, *strides, scale,
            NB=NB, BLOCK=cfg.STREAM, DOT_PREC=cfg.DOT_PREC, num_warps=cfg.warps_stream, **common)



def _param_grads(qkv, grad_out, w_s, b_s, w_t, b_t, spe_s, spe_t, cfg, common) -> tuple:
    """``(g_ws, g_bs, g_wt, g_bt, g_spe_s, g_spe_t)`` of both halves: per-program partials, then a
    fixed-order reduction."""
    B, T, J, _ = qkv.shape
    H, dh, DHP, dev = common["H"], common["DH"], cfg.DHP, qkv.device
    spe_dtype = lambda e: e.dtype if e is not None else qkv.dtype  # noqa: E731
    n_c = B * 2 * H * cfg.NCHUNK
    pw = torch.empty((n_c, 16, DHP), device=dev, dtype=torch.float32)
    pj = torch.empty((n_c, cfg.ROWS_CONV, DHP), device=dev, dtype=torch.float32)
    wrap_triton(conv_grad_kernel)[(n_c,)](
        qkv, grad_out, pw, pj, T, J, cfg.NCHUNK, *qkv.stride()[:3], *grad_out.stride()[:3],
        R=cfg.ROWS_CONV, num_warps=cfg.warps_conv, **common)
    g_ws = torch.empty(w_s.shape, device=dev, dtype=w_s.dtype)
    g_wt = torch.empty(w_t.shape, device=dev, dtype=w_t.dtype)
    g_bs = torch.empty(b_s.shape, device=dev, dtype=b_s.dtype)
    g_bt = torch.empty(b_t.shape, device=dev, dtype=b_t.dtype)
    g_spe_s = torch.empty((J, dh), device=dev, dtype=spe_dtype(spe_s))
    g_spe_t = torch.empty((J, dh), device=dev, dtype=spe_dtype(spe_t))
    wrap_triton(conv_grad_reduce_kernel)[(2 * H + 2 * J,)](
        pw, pj, g_ws, g_bs, g_spe_s, g_wt, g_bt, g_spe_t, B, J, cfg.NCHUNK, R=cfg.ROWS_CONV, PB=8, QB=64,
        num_warps=4, **{k: common[k] for k in ("H", "DH", "DHP")})
    return g_ws, g_bs, g_wt, g_bt, g_spe_s, g_spe_t


@triton_op(BWD, mutates_args=())
def stc_attention_triton_bwd(
    grad_out: Tensor, qkv: Tensor, w_s: Tensor, b_s: Tensor, w_t: Tensor, b_t: Tensor,
    spe_s: Optional[Tensor], spe_t: Optional[Tensor], out: Tensor, lse_s: Tensor, lse_t: Tensor,
    num_heads: int, scale: float, head_major: bool = False,
) -> Tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    B, T, J, C, dh = _check_inputs(qkv, num_heads)
    H = num_heads
    dev = qkv.device
    grad_qkv = torch.empty((B, T, J, 3 * C), device=dev, dtype=qkv.dtype)
    spe_dtype = lambda e: e.dtype if e is not None else qkv.dtype  # noqa: E731
    if not _launches(qkv) or grad_qkv.numel() == 0:
        z = lambda shape, dt: torch.zeros(shape, device=dev, dtype=dt)  # noqa: E731
        return (grad_qkv, z(w_s.shape, w_s.dtype), z(b_s.shape, b_s.dtype), z(w_t.shape, w_t.dtype),
                z(b_t.shape, b_t.dtype), z((J, dh), spe_dtype(spe_s)), z((J, dh), spe_dtype(spe_t)))
    cfg = _config(qkv, H, dh, head_major)
    DHP = cfg.DHP
    qkv, grad_out, out = _unit_last(qkv), _unit_last(grad_out), _unit_last(out)
    w, b_t_ = _conv_weights(w_s, w_t), b_t.contiguous()
    lse_s, lse_t = lse_s.contiguous(), lse_t.contiguous()
    common = dict(H=H, DH=dh, DHP=DHP, **_layout(head_major, dh))
    strides = (*qkv.stride()[:3], *grad_out.stride()[:3], *grad_qkv.stride()[:3])

    # spatial half: persistent programs over frame groups
    wrap_triton(spatial_bwd_kernel)[(B * H * cfg.NSPLIT,)](
        qkv, w, grad_out, lse_s, grad_qkv, T, J, cfg.NSPLIT, *strides, scale,
        JP=cfg.JP, FRAMES=cfg.FRAMES_BWD, DOT_PREC=cfg.DOT_PREC, num_warps=cfg.warps_s, **common)

    _temporal_bwd(qkv, w, b_t_, spe_t, out, grad_out, lse_t, grad_qkv, strides, scale, cfg, common)
    g_ws, g_bs, g_wt, g_bt, g_spe_s, g_spe_t = _param_grads(qkv, grad_out, w_s, b_s, w_t, b_t, spe_s, spe_t,
                                                            cfg, common)
    return grad_qkv, g_ws, g_bs, g_wt, g_bt, g_spe_s, g_spe_t


register_autograd(FWD, torch.ops.stcformer.stc_attention_triton_bwd.default)

# torch.compile: triton_op lets AOTAutograd inline the op bodies (the kernels become graph nodes
# that Inductor schedules). With torch 2.11 Inductor's scheduler failed on these graphs
# (KeyError in Scheduler.compute_ancestors, seen on an H100), and under the interpreter the
# kernels would vanish from the graph, so by default the ops stay opaque custom ops in the
# graph (still no graph break; Inductor calls them as they are). STCFORMER_TRITON_INLINE=1
# restores triton_op's inlining on a GPU.
INLINE_IN_GRAPHS = settings.triton_inline() and not _interpreting()


def _keep_opaque(mode, op, types, args, kwargs):
    return mode.__torch_dispatch__(op, types, args, kwargs)


if not INLINE_IN_GRAPHS:
    from torch._subclasses.functional_tensor import FunctionalTensorMode

    for _op in (stc_attention_triton_fwd, stc_attention_triton_bwd):
        _op.register_torch_dispatch(FunctionalTensorMode, _keep_opaque)


def stc_attention(qkv: Tensor, w_s: Tensor, b_s: Tensor, w_t: Tensor, b_t: Tensor,
                  spe_s: Optional[Tensor], spe_t: Optional[Tensor], num_heads: int,
                  scale: float, layout: str = "interleaved") -> Tensor:
    """``stc_attention`` on the Triton kernels (see ``stcformer.ops.attention.stc_attention``)."""
    out, _, _ = torch.ops.stcformer.stc_attention_triton_fwd(
        qkv, w_s, b_s, w_t, b_t, spe_s, spe_t, int(num_heads), float(scale),
        layout == "head_major")
    return out
