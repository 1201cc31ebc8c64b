"""The ``cuda`` backend (csrc/cuda, in stcformer._C built with CUDA) against the reference op.

Forward, lse and every gradient at shapes that break kernels (B = 1..3, T from 1 to 300 across
the whole-row / streamed limit, J from 1 to 32, odd head counts, dh = 4 .. 64), both qkv
layouts, float32 / float16 / bfloat16 tolerances, NaN-poisoned output buffers, opcheck,
torch.compile, the whole model, and bit-identical gradients across runs. Everything is skipped
without a CUDA device and a build of stcformer._C with the CUDA kernels.

Every comparison is against ``stc_attention_reference`` in float64 on the same (already rounded)
inputs; error = max |got - want| / max |want| per tensor.
Tolerances: float32 2e-5 (plain FMA, no TF32), float16 / bfloat16 2e-2.
"""
from __future__ import annotations

import pytest
import torch

from stcformer.ops import dispatch
from stcformer.ops.attention import stc_attention
from stcformer.ops.reference import head_major_index, split_qkv, stc_attention_reference

NAMES = ("qkv", "w_s", "b_s", "w_t", "b_t", "spe_s", "spe_t")


def make_inputs(B, T, J, C, H, dtype=torch.float32, spe=True, seed=0, scale=None):
    """Random op inputs drawn in float64 and rounded to dtype (CPU); conv weights and spe scaled
    so that every term of the output matters."""
    g = torch.Generator().manual_seed(seed)
    half, dh = C // 2, C // 2 // H

    def r(*shape, s=1.0):
        return (torch.randn(*shape, generator=g, dtype=torch.float64) * s).to(dtype)

    qkv = r(B, T, J, 3 * C, s=1.5)
    w_s, b_s, w_t, b_t = r(half, 1, 3, 3, s=0.3), r(half, s=0.5), r(half, 1, 3, 3, s=0.3), r(half, s=0.5)
    spe_s, spe_t = (r(J, dh, s=0.5), r(J, dh, s=0.5)) if spe else (None, None)
    return [qkv, w_s, b_s, w_t, b_t, spe_s, spe_t, H, scale if scale is not None else half ** -0.5]


def assert_close(ref, got, rtol, name):
    """Max error relative to the tensor's max magnitude (robust for near-zero entries)."""
    got = got.to(device=ref.device, dtype=torch.float64)
    assert torch.isfinite(got).all(), f"{name}: non-finite values"
    err = (got - ref).abs().max().item()
    mag = ref.abs().max().item() + 1e-30
    assert err <= rtol * mag, f"{name}: max abs err {err:.3g} > {rtol} * {mag:.3g}"

_reason = (None if torch.cuda.is_available() else "no CUDA device") or \
    dispatch.unavailable_reason("cuda", "cuda", torch.float32)
pytestmark = [pytest.mark.gpu, pytest.mark.skipif(_reason is not None, reason=str(_reason))]

TOL = {torch.float32: 2e-5, torch.float16: 2e-2, torch.bfloat16: 2e-2}
DEV = "cuda"


def cuda_inputs(B, T, J, C, H, dtype=torch.float32, spe=True, seed=0, scale=None,
                param_dtype=torch.float32):
    """make_inputs (float64 draws, rounded to dtype) on the GPU."""
    args = make_inputs(B, T, J, C, H, dtype=torch.float64, spe=spe, seed=seed, scale=scale)
    qkv = args[0].to(dtype)
    params = [None if t is None else t.to(param_dtype) for t in args[1:7]]
    return [qkv.to(DEV)] + [None if t is None else t.to(DEV) for t in params] + args[7:]


def check(args, tol, layout="interleaved", grad_seed=1):
    """Forward and all 7 gradients of the cuda backend vs the float64 reference."""
    qkv, H, scale = args[0], args[7], args[8]
    if layout == "head_major":
        qkv = qkv[..., head_major_index(qkv.shape[-1] // 3, H, qkv.device)].contiguous()
    tensors = [qkv] + list(args[1:7])
    idx = [i for i, t in enumerate(tensors) if t is not None]

    def go(fn, cast):
        ts = [None if t is None else t.detach().to(cast or t.dtype).requires_grad_() for t in tensors]
        out = fn(*ts)
        g = torch.randn(out.shape, generator=torch.Generator().manual_seed(grad_seed),
                        dtype=torch.float64).to(device=out.device, dtype=out.dtype)
        return out, torch.autograd.grad(out, [ts[i] for i in idx], g)

    ro, rg = go(lambda *a: stc_attention_reference(*a, H, scale, layout=layout), torch.float64)
    co, cg = go(lambda *a: stc_attention(*a, H, scale, backend="cuda", layout=layout), None)
    assert co.dtype == qkv.dtype and co.shape == ro.shape and co.is_cuda
    assert_close(ro, co, tol, "out")
    for i, a, b in zip(idx, rg, cg):
        assert b.shape == a.shape, NAMES[i]
        assert_close(a, b, tol, "grad " + NAMES[i])


# (B, T, J, C, H): T across 1 .. 300 (whole line staged up to 256 frames at dh = 16, 128 at
# dh = 32; streamed above), J in {1, 5, 17, 32}, odd head counts, dh = 4, 8, 16, 32, 64
SHAPES = [
    (1, 1, 17, 256, 8), (2, 2, 5, 96, 3), (3, 27, 17, 256, 8), (2, 81, 32, 160, 5),
    (1, 243, 17, 256, 8), (1, 300, 17, 192, 3), (2, 27, 1, 64, 8), (1, 243, 5, 512, 8),
    (2, 17, 16, 256, 2), (1, 130, 17, 128, 1), (2, 9, 17, 64, 4),
]


@pytest.mark.parametrize("layout", ["interleaved", "head_major"])
@pytest.mark.parametrize("B,T,J,C,H", SHAPES)
def test_float32_matches_reference(B, T, J, C, H, layout):
    check(cuda_inputs(B, T, J, C, H, seed=T + J), TOL[torch.float32], layout)


@pytest.mark.parametrize("spe", [True, False])
@pytest.mark.parametrize("T", [1, 27, 300])
def test_float32_without_spe_and_3dhp_scale(T, spe):
    check(cuda_inputs(2, T, 17, 256, 4, spe=spe, scale=256 ** -0.5, seed=T), TOL[torch.float32])


@pytest.mark.parametrize("layout", ["interleaved", "head_major"])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("B,T,J,C,H", [(2, 27, 17, 256, 8), (1, 243, 17, 256, 8),
                                       (1, 300, 32, 96, 3), (3, 1, 5, 64, 8)])
def test_16bit_matches_reference(B, T, J, C, H, dtype, layout):
    check(cuda_inputs(B, T, J, C, H, dtype=dtype, seed=T), TOL[dtype], layout)


def test_16bit_activations_with_float32_params():
    """The autocast case: bf16 qkv, float32 conv weights / biases / spe."""
    check(cuda_inputs(2, 27, 17, 256, 8, dtype=torch.bfloat16, param_dtype=torch.float32),
          TOL[torch.bfloat16])


def test_lse_matches_reference():
    B, T, J, C, H = 2, 81, 17, 256, 8
    args = cuda_inputs(B, T, J, C, H, seed=11)
    _, lse_s, lse_t = torch.ops.stcformer.stc_attention_fwd(*args)
    (q_s, k_s, _), (q_t, k_t, _) = split_qkv(args[0].double(), H)
    s = torch.einsum("btihd,btjhd->bhtij", q_s, k_s) * args[8]
    torch.testing.assert_close(lse_s.double(), s.logsumexp(-1), rtol=1e-5, atol=1e-5)
    s = torch.einsum("bujhd,bwjhd->bhjuw", q_t, k_t) * args[8]
    torch.testing.assert_close(lse_t.double(), s.logsumexp(-1), rtol=1e-5, atol=1e-5)


def test_matches_cpp_kernels_bit_for_bit_in_layout_handling():
    """head_major=True on the raw ops gives the interleaved results (grad_qkv permuted)."""
    args = cuda_inputs(2, 27, 17, 256, 8, seed=2)
    idx = head_major_index(256, 8, DEV)
    op = torch.ops.stcformer
    out, ls, lt = op.stc_attention_fwd(*args)
    hm = args[0][..., idx].contiguous()
    out_h, ls_h, lt_h = op.stc_attention_fwd(hm, *args[1:], True)
    for a, b in ((out, out_h), (ls, ls_h), (lt, lt_h)):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)
    g = torch.randn_like(out)
    gi = op.stc_attention_bwd(g, *args[:7], out, ls, lt, 8, args[8])
    gh = op.stc_attention_bwd(g, hm, *args[1:7], out, ls, lt, 8, args[8], True)
    torch.testing.assert_close(gh[0], gi[0][..., idx], rtol=1e-6, atol=1e-6)


def test_non_contiguous_qkv():
    args = cuda_inputs(2, 9, 17, 64, 8, seed=3)
    wide = torch.randn(2, 17, 9, 2 * 192, device=DEV)
    qkv = wide.transpose(1, 2)[..., ::2]
    qkv.copy_(args[0])
    assert not qkv.is_contiguous()
    op = torch.ops.stcformer.stc_attention_fwd
    for x, y in zip(op(qkv, *args[1:]), op(qkv.contiguous(), *args[1:])):
        torch.testing.assert_close(x, y, rtol=0, atol=0)
    check([qkv] + args[1:], TOL[torch.float32])


def _poison_cache(tensors_like):
    """Fill the caching allocator's free blocks of these sizes with NaN: the op's next
    allocations of the same sizes get them back (best fit), so an unwritten element shows."""
    torch.cuda.synchronize()
    junk = [torch.full((2 * t.numel() + 1024,), float("nan"), device=DEV, dtype=t.dtype)
            for t in tensors_like] + \
        [torch.full(t.shape, float("nan"), device=DEV, dtype=t.dtype) for t in tensors_like]
    del junk


@pytest.mark.parametrize("B,T,J,C,H", [(2, 27, 17, 256, 8), (1, 300, 17, 64, 8), (3, 1, 32, 96, 3)])
@pytest.mark.parametrize("head_major", [False, True])
def test_every_output_written(B, T, J, C, H, head_major):
    args = cuda_inputs(B, T, J, C, H, seed=5)
    op = torch.ops.stcformer
    fwd = op.stc_attention_fwd(*args, head_major)
    _poison_cache(fwd)
    out, lse_s, lse_t = op.stc_attention_fwd(*args, head_major)
    for t in (out, lse_s, lse_t):
        assert torch.isfinite(t).all()
    g = torch.randn_like(out).clamp(-3, 3)
    grads = op.stc_attention_bwd(g, *args[:7], out, lse_s, lse_t, H, args[8], head_major)
    _poison_cache(grads)
    grads = op.stc_attention_bwd(g, *args[:7], out, lse_s, lse_t, H, args[8], head_major)
    for t in grads:
        assert torch.isfinite(t).all()
    grads = op.stc_attention_bwd(torch.ones_like(out), *args[:5], None, None, out, lse_s, lse_t, H,
                                 args[8], head_major)
    for t in grads:
        assert torch.isfinite(t).all()


def test_gradients_deterministic():
    args = cuda_inputs(3, 243, 17, 256, 8, dtype=torch.bfloat16, seed=9)
    op = torch.ops.stcformer
    out, ls, lt = op.stc_attention_fwd(*args)
    g = torch.randn_like(out)
    a = op.stc_attention_bwd(g, *args[:7], out, ls, lt, args[7], args[8])
    for _ in range(3):
        b = op.stc_attention_bwd(g, *args[:7], out, ls, lt, args[7], args[8])
        for x, y in zip(a, b):
            assert torch.equal(x, y)


def test_empty_inputs():
    args = cuda_inputs(2, 0, 17, 64, 8)
    out, ls, lt = torch.ops.stcformer.stc_attention_fwd(*args)
    assert out.shape == (2, 0, 17, 64)
    grads = torch.ops.stcformer.stc_attention_bwd(out, *args[:7], out, ls, lt, 8, args[8])
    assert all(torch.count_nonzero(t) == 0 for t in grads[1:])


def test_clear_errors():
    args = cuda_inputs(1, 3, 17, 64, 8, dtype=torch.float64)
    with pytest.raises(RuntimeError, match="dtype Double is not supported"):
        torch.ops.stcformer.stc_attention_fwd(*args)
    big = cuda_inputs(1, 3, 5, 256, 1)  # dh = 128
    with pytest.raises(RuntimeError, match="head dim"):
        torch.ops.stcformer.stc_attention_fwd(*big)
    cpu_w = [args[0].float()] + [args[1].cpu()] + [t.float() for t in args[2:7]] + args[7:]
    with pytest.raises(RuntimeError, match="w_s is on cpu"):
        torch.ops.stcformer.stc_attention_fwd(*cpu_w)


@pytest.mark.parametrize("spe", [True, False])
@pytest.mark.parametrize("head_major", [False, True])
def test_opcheck(spe, head_major):
    args = cuda_inputs(2, 5, 17, 64, 8, spe=spe)
    args = [a.requires_grad_() if isinstance(a, torch.Tensor) else a for a in args]
    torch.library.opcheck(torch.ops.stcformer.stc_attention_fwd.default, tuple(args) + (head_major,))


def test_torch_compile_fullgraph():
    args = cuda_inputs(2, 9, 17, 64, 8, seed=4)
    ts = [t.requires_grad_() for t in args[:7]]
    proj = torch.nn.Linear(64, 64).to(DEV)

    def f(*a):
        return proj(stc_attention(*a, 8, args[8], backend="cuda", layout="head_major")).square().sum()

    torch._dynamo.reset()
    got = torch.compile(f, fullgraph=True)(*ts)
    g_got = torch.autograd.grad(got, ts)
    want = f(*ts)
    g_want = torch.autograd.grad(want, ts)
    torch.testing.assert_close(got, want)
    for a, b in zip(g_got, g_want):
        torch.testing.assert_close(a, b)


def test_auto_prefers_triton_then_cuda():
    assert dispatch.AUTO_ORDER["cuda"][:2] == ("triton", "cuda")
    want = "triton" if dispatch.unavailable_reason("triton", "cuda", torch.float32) is None else "cuda"
    assert dispatch.choose("auto", "cuda", torch.float32) == want


def test_whole_model_against_reference():
    from stcformer.model.modules import STCFormer

    torch.manual_seed(0)
    model = STCFormer(layers=2, d_hid=64, spe_coef=1e-3).to(DEV).eval()
    x = torch.randn(2, 27, 17, 2, device=DEV)
    outs, grads = {}, {}
    for backend in ("reference", "cuda"):
        model.configure(backend=backend)
        model.zero_grad()
        y = model(x)
        y.square().sum().backward()
        outs[backend] = y.detach()
        grads[backend] = [p.grad.detach().clone() for p in model.parameters() if p.grad is not None]
    torch.testing.assert_close(outs["cuda"], outs["reference"], rtol=1e-4, atol=1e-5)
    assert len(grads["cuda"]) == len(grads["reference"])
    for a, b in zip(grads["cuda"], grads["reference"]):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-5)
