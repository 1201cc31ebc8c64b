"""The triton backend against the reference op: forward, lse, all 7 gradients.

On a CPU-only machine the kernels run under TRITON_INTERPRET=1 (set by conftest), so the shapes
here stay tiny; with STCFORMER_GPU_TESTS=1 on a CUDA machine the same tests run on CUDA tensors
and the ``gpu``-marked tests add bf16 and the model's real sizes.

Every comparison is against ``stc_attention_reference`` evaluated in float64 on the same
(already rounded) inputs. Error measure: max |got - want| / max |want| per tensor.
Tolerances: float32 1e-5 (float32 dots run as 3xTF32 on a GPU, about float32 accuracy; the
interpreter computes them in float32), float16 / bfloat16 1e-2 (16-bit P and dS feed the dots,
as in flash attention).
Every buffer the op allocates is poisoned with NaN first (``_empty`` swapped for a NaN-filled
allocator), so an element a kernel forgot to write shows up as NaN.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from stcformer.reference import head_major_index, split_qkv, stc_attention_reference

tb = pytest.importorskip("stcformer.backends.triton")

INTERPRET = os.environ.get("TRITON_INTERPRET") == "1"
HAS_CUDA = torch.cuda.is_available()
ROOT = Path(__file__).resolve().parents[1]
TOL = {torch.float32: 1e-5, torch.float16: 1e-2, torch.bfloat16: 1e-2}
GRAD_NAMES = ("qkv", "w_s", "b_s", "w_t", "b_t", "spe_s", "spe_t")


@pytest.fixture
def dev():
    """Where the small-shape tests run: CPU under the interpreter, else CUDA."""
    if INTERPRET:
        return "cpu"
    if HAS_CUDA:
        return "cuda"
    pytest.skip("triton needs CUDA tensors or TRITON_INTERPRET=1")


@pytest.fixture(autouse=True)
def nan_poison(monkeypatch):
    """Every buffer the triton ops allocate starts as NaN (kernels must write all of it)."""
    def nan_empty(shape, *, device=None, dtype=None):
        return torch.full(shape, float("nan"), device=device, dtype=dtype)
    monkeypatch.setattr(tb, "_empty", nan_empty)


def make_inputs(B, T, J, C, H, dtype=torch.float32, device="cpu", spe=True, layout="contiguous",
                param_dtype=torch.float32, seed=None):
    """Fresh random inputs of stc_attention; qkv in the given memory layout."""
    g = torch.Generator().manual_seed(seed if seed is not None else int(torch.randint(0, 2**31, ()).item()))
    half, dh = C // 2, C // 2 // H

    def rnd(*shape, scale=1.0):
        return torch.randn(*shape, generator=g) * scale

    # the layout is made on the device (moving a view to another device copies it)
    if layout == "contiguous":
        qkv = rnd(B, T, J, 3 * C).to(device=device, dtype=dtype)
    elif layout == "transposed":  # strides of a (B, J, T, 3C) tensor
        qkv = rnd(B, J, T, 3 * C).to(device=device, dtype=dtype).transpose(1, 2)
    elif layout == "sliced":      # padded rows and channels: no stride is the contiguous one
        qkv = rnd(B + 1, T, J + 2, 3 * C + 5).to(device=device, dtype=dtype)[1:, :, 1:J + 1, 2:3 * C + 2]
    else:
        raise ValueError(layout)
    params = [rnd(half, 1, 3, 3, scale=0.3), rnd(half, scale=0.1), rnd(half, 1, 3, 3, scale=0.3),
              rnd(half, scale=0.1)]
    spes = [rnd(J, dh, scale=0.1), rnd(J, dh, scale=0.1)] if spe else [None, None]
    params = [p.to(device=device, dtype=param_dtype) for p in params]
    spes = [None if e is None else e.to(device=device, dtype=param_dtype) for e in spes]
    assert (layout == "contiguous") == qkv.is_contiguous()
    return (qkv, *params, *spes, H, half ** -0.5)


def relerr(got, want):
    got, want = got.double(), want.double()
    return ((got - want).abs().max() / want.abs().max().clamp_min(1e-12)).item()


def reference_lse(qkv, num_heads, scale):
    """(B, H, T, J) and (B, H, J, T) row log-sum-exp of the reference scores, in float64."""
    (q_s, k_s, _), (q_t, k_t, _) = split_qkv(qkv.double(), num_heads)
    lse_s = (torch.einsum("btihd,btjhd->bhtij", q_s, k_s) * scale).logsumexp(-1)
    lse_t = (torch.einsum("bujhd,bwjhd->bhjuw", q_t, k_t) * scale).logsumexp(-1)
    return lse_s, lse_t


def to_head_major(qkv, num_heads):
    """The same values in the head-major layout (what the model's permuted qkv Linear gives)."""
    return qkv[..., head_major_index(qkv.shape[-1] // 3, num_heads, qkv.device)]


def check_against_reference(args, tol=None, check_lse=True, head_major=False):
    """Forward, lse and every gradient of the triton op vs the float64 reference.

    head_major: qkv (args[0], official layout) is first permuted to the head-major layout, and
    both the kernels and the reference read it so.
    """
    qkv, w_s, b_s, w_t, b_t, spe_s, spe_t, H, scale = args
    layout = "head_major" if head_major else "interleaved"
    if head_major:
        qkv = to_head_major(qkv, H)
    tol = tol or TOL[qkv.dtype]
    tensors = [qkv, w_s, b_s, w_t, b_t, spe_s, spe_t]
    leaves = [None if x is None else x.detach().clone().requires_grad_(True) for x in tensors]
    leaves64 = [None if x is None else x.detach().double().requires_grad_(True) for x in tensors]

    out, lse_s, lse_t = torch.ops.stcformer.stc_attention_triton_fwd(*leaves, H, scale, head_major)
    want = stc_attention_reference(*leaves64, H, scale, layout=layout)
    assert out.dtype == qkv.dtype and out.shape == want.shape
    assert torch.isfinite(out).all(), "forward left unwritten (NaN) or non-finite elements"
    assert relerr(out, want) < tol, f"out: {relerr(out, want):.2e}"
    if check_lse:
        ls, lt = reference_lse(args[0], H, scale)
        assert torch.isfinite(lse_s).all() and torch.isfinite(lse_t).all()
        assert relerr(lse_s, ls) < tol and relerr(lse_t, lt) < tol

    grad = torch.randn(want.shape, dtype=torch.float64).to(out.device)
    used = [i for i, x in enumerate(leaves) if x is not None]
    got = torch.autograd.grad(out, [leaves[i] for i in used], grad.to(out.dtype))
    ref = torch.autograd.grad(want, [leaves64[i] for i in used], grad)
    for i, g, r in zip(used, got, ref):
        name = GRAD_NAMES[i]
        assert g.dtype == tensors[i].dtype and g.shape == tensors[i].shape, name
        assert torch.isfinite(g).all(), f"grad {name}: unwritten (NaN) or non-finite elements"
        assert relerr(g, r) < tol, f"grad {name}: {relerr(g, r):.2e} > {tol}"
    return out


# (B, T, J, C, H, spe, layout): awkward T, J = 16 / 17, dh = 4 / 16 / 32, batch 1,
# non-contiguous qkv, spe on and off; long T only with small C
SHAPES = [
    (1, 1, 17, 64, 8, True, "contiguous"),
    (2, 2, 16, 64, 8, False, "transposed"),
    (1, 3, 17, 64, 8, True, "sliced"),
    (1, 17, 16, 64, 8, True, "contiguous"),
    (1, 27, 17, 64, 8, False, "contiguous"),
    (1, 81, 16, 32, 4, True, "transposed"),
    (1, 17, 17, 256, 8, True, "sliced"),
    (1, 27, 16, 256, 4, False, "contiguous"),
    (1, 300, 16, 16, 2, True, "contiguous"),
]


@pytest.mark.parametrize("B,T,J,C,H,spe,layout", SHAPES,
                         ids=[f"B{s[0]}-T{s[1]}-J{s[2]}-C{s[3]}-H{s[4]}-{'spe' if s[5] else 'nospe'}-{s[6]}"
                              for s in SHAPES])
def test_float32(dev, B, T, J, C, H, spe, layout):
    check_against_reference(make_inputs(B, T, J, C, H, device=dev, spe=spe, layout=layout))


# head-major qkv (the model's layout on a GPU): both temporal backward paths, dh = 4 and 16
HEAD_MAJOR_SHAPES = [(1, 3, 17, 64, 8, True, "contiguous"),
                     (2, 27, 17, 32, 2, False, "sliced"),
                     (1, 300, 16, 16, 2, True, "transposed")]


@pytest.mark.parametrize("B,T,J,C,H,spe,layout", HEAD_MAJOR_SHAPES,
                         ids=[f"B{s[0]}-T{s[1]}-J{s[2]}-C{s[3]}-H{s[4]}-{s[6]}" for s in HEAD_MAJOR_SHAPES])
def test_head_major(dev, B, T, J, C, H, spe, layout):
    check_against_reference(make_inputs(B, T, J, C, H, device=dev, spe=spe, layout=layout),
                            head_major=True)


@pytest.mark.parametrize("T,J,C,H,layout", [(17, 17, 64, 8, "contiguous"), (27, 16, 256, 4, "transposed")])
def test_float16(dev, T, J, C, H, layout):
    # fp16 activations with float32 parameters (the autocast case)
    check_against_reference(make_inputs(1, T, J, C, H, torch.float16, dev, layout=layout))


def test_float16_params(dev):
    # fp16 activations and fp16 parameters (a model converted with .half())
    check_against_reference(make_inputs(1, 5, 17, 64, 8, torch.float16, dev,
                                        param_dtype=torch.float16))


def test_bfloat16(dev):
    if dev == "cpu":
        pytest.skip("the Triton interpreter has no bfloat16 arithmetic; runs on GPU")
    check_against_reference(make_inputs(2, 27, 17, 64, 8, torch.bfloat16, dev))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_small_blocks(dev, dtype):
    """Blocks smaller than the problem: the forward's online softmax over several key blocks
    with a ragged last one (so the streaming temporal backward), frame groups split over
    several persistent spatial programs, GPU block shapes."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(tb, "OVERRIDES", {"profile": "gpu", "block_m": 16, "block_m_bwd": 16, "block_n": 16,
                                     "stream_block": 16, "frames": 4, "frames_bwd": 2, "nsplit": 3})
        check_against_reference(make_inputs(1, 37, 6, 16, 2, dtype, dev, layout="transposed"),
                                head_major=dtype == torch.float16)


def test_whole_row_several_query_blocks(dev):
    """The whole-row temporal backward with several query blocks and a ragged last one."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(tb, "OVERRIDES", {"block_m": 16, "block_m_bwd": 16, "frames": 2,
                                     "frames_bwd": 2, "nsplit": 2})
        check_against_reference(make_inputs(1, 35, 17, 32, 2, device=dev, layout="sliced"))


def test_finite_differences(dev):
    """Central differences in float32 along a random direction, for each input separately.

    d/de <g, f(x + e u)> at e = 0 vs <grad_x, u>; e = 1e-2 (f is smooth, float32 rounding of
    the difference ~ 1e-7 / 1e-2), tolerance 2e-3 relative to the directional derivative.
    """
    args = make_inputs(1, 6, 5, 16, 2, device=dev, seed=1)
    tensors, H, scale = list(args[:7]), args[7], args[8]
    leaves = [x.detach().clone().requires_grad_(True) for x in tensors]
    out = tb.stc_attention(*leaves, H, scale)
    g = torch.randn_like(out)
    grads = torch.autograd.grad(out, leaves, g)
    eps = 1e-2
    for i, name in enumerate(GRAD_NAMES):
        u = torch.randn_like(tensors[i])
        def f(e):
            xs = [x + e * u if k == i else x for k, x in enumerate(tensors)]
            return (tb.stc_attention(*xs, H, scale).double() * g.double()).sum()
        numeric = ((f(eps) - f(-eps)) / (2 * eps)).item()
        analytic = (grads[i].double() * u.double()).sum().item()
        assert abs(numeric - analytic) <= 2e-3 * max(abs(analytic), 1e-3), (name, numeric, analytic)


def test_deterministic(dev):
    """Two backward passes give bitwise equal gradients (no atomics anywhere)."""
    args = make_inputs(2, 9, 17, 32, 2, device=dev)
    tensors, H, scale = list(args[:7]), args[7], args[8]
    runs = []
    for _ in range(2):
        leaves = [x.detach().clone().requires_grad_(True) for x in tensors]
        out = tb.stc_attention(*leaves, H, scale)
        runs.append(torch.autograd.grad(out, leaves, torch.ones_like(out)))
    for name, a, b in zip(GRAD_NAMES, *runs):
        assert torch.equal(a, b), name


def test_dispatch_and_errors(dev):
    """stcformer.stc_attention(backend='triton') lands here; bad inputs fail with clear errors."""
    import stcformer

    args = make_inputs(1, 3, 17, 16, 2, device=dev)
    out = stcformer.stc_attention(*args, backend="triton")
    assert torch.equal(out, tb.stc_attention(*args))
    with pytest.raises(TypeError, match="float64"):
        tb.stc_attention(args[0].double(), *args[1:])


def test_opcheck(dev):
    args = make_inputs(1, 4, 5, 16, 2, device=dev)
    fwd_args = tuple(x.requires_grad_(True) if isinstance(x, torch.Tensor) else x for x in args)
    torch.library.opcheck(torch.ops.stcformer.stc_attention_triton_fwd.default, fwd_args)
    no_spe = fwd_args[:5] + (None, None) + fwd_args[7:]
    torch.library.opcheck(torch.ops.stcformer.stc_attention_triton_fwd.default, no_spe,
                          test_utils=("test_schema", "test_faketensor"))
    out, lse_s, lse_t = torch.ops.stcformer.stc_attention_triton_fwd(*args)
    bwd_args = (torch.randn_like(out), *args[:7], out, lse_s, lse_t, *args[7:])
    torch.library.opcheck(torch.ops.stcformer.stc_attention_triton_bwd.default, bwd_args,
                          test_utils=("test_schema", "test_faketensor"))


def _compile_check(dev, fn):
    """torch.compile(fn, fullgraph=True) (no graph break) matches eager, forward and grads.

    On CPU (interpreter) with the aot_eager backend (Inductor cannot launch user Triton kernels
    on CPU tensors); on CUDA with Inductor.
    """
    torch._dynamo.reset()
    args = make_inputs(1, 5, 17, 16, 2, device=dev)
    tensors, H, scale = list(args[:7]), args[7], args[8]

    def block(qkv, w_s, b_s, w_t, b_t, spe_s, spe_t):
        return fn(qkv * 1.5, w_s, b_s, w_t, b_t, spe_s, spe_t, H, scale).sin()

    backend = "aot_eager" if dev == "cpu" else "inductor"
    compiled = torch.compile(block, fullgraph=True, backend=backend)
    leaves = [x.detach().clone().requires_grad_(True) for x in tensors]
    out = compiled(*leaves)
    grads = torch.autograd.grad(out.sum(), leaves)
    eager = [x.detach().clone().requires_grad_(True) for x in tensors]
    want = block(*eager)
    want_grads = torch.autograd.grad(want.sum(), eager)
    assert relerr(out, want) < 1e-5
    for name, a, b in zip(GRAD_NAMES, grads, want_grads):
        assert relerr(a, b) < 1e-5, name


def test_compile_fullgraph(dev):
    _compile_check(dev, tb.stc_attention)


def test_compile_fullgraph_public_op(dev, monkeypatch):
    """The same through stcformer.stc_attention with STCFORMER_BACKEND=triton."""
    import stcformer

    monkeypatch.setenv("STCFORMER_BACKEND", "triton")
    _compile_check(dev, stcformer.stc_attention)


def test_gpu_target_compile():
    """Every kernel variant the launcher picks compiles for sm_90 and sm_80 (no GPU needed).

    Runs in a subprocess without TRITON_INTERPRET (the interpreter replaces triton.jit). A GPU
    run (STCFORMER_GPU_TESTS=1) compiles the real kernels anyway and skips this.
    """
    if not INTERPRET:
        pytest.skip("GPU run: the kernels are compiled for the GPU at hand by the other tests")
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    script = str(ROOT / "tests" / "triton_gpu_compile_check.py")
    jobs = [subprocess.Popen([sys.executable, script, "--targets", t, "--set", "ci"], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            for t in ("90", "80")]
    outs = [(j.communicate(timeout=600)[0], j.returncode) for j in jobs]
    for text, rc in outs:
        assert rc == 0, "\n".join(line for line in text.splitlines() if not line.startswith("ok "))


# ---------------------------------------------------------------------------------------------
# GPU only: bf16 / fp16 / fp32 at the model's sizes (run by bench/gpu_suite.sh)

@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("B,T,J,C,H,layout", [(4, 243, 17, 256, 8, "contiguous"),
                                              (2, 81, 17, 256, 8, "transposed"),
                                              (1, 1000, 17, 64, 8, "sliced"),
                                              (3, 351, 16, 128, 4, "contiguous")])
def test_gpu_large(dtype, B, T, J, C, H, layout):
    if INTERPRET:
        pytest.skip("TRITON_INTERPRET=1 runs kernels on the host; set STCFORMER_GPU_TESTS=1")
    check_against_reference(make_inputs(B, T, J, C, H, dtype, "cuda", layout=layout))


@pytest.mark.gpu
def test_gpu_autocast_bf16():
    """bf16 autocast: bf16 qkv from the Linear, float32 conv / spe parameters."""
    if INTERPRET:
        pytest.skip("TRITON_INTERPRET=1 runs kernels on the host; set STCFORMER_GPU_TESTS=1")
    check_against_reference(make_inputs(2, 243, 17, 256, 8, torch.bfloat16, "cuda"))


# ---------------------------------------------------------------------------------------------
# the whole model (stcformer/model.py) with the triton backend vs the reference backend

def test_model_triton_vs_reference(dev):
    model_mod = pytest.importorskip("stcformer.model")
    torch.manual_seed(0)
    m_tri = model_mod.STCFormer(layers=2, d_hid=64, num_heads=8, backend="triton").to(dev)
    m_ref = model_mod.STCFormer(layers=2, d_hid=64, num_heads=8, backend="reference").to(dev)
    m_ref.load_state_dict(m_tri.state_dict())
    m_tri.eval()
    m_ref.eval()
    x = torch.randn(1, 9, 17, 2, device=dev)
    y_tri, y_ref = m_tri(x), m_ref(x)
    assert y_tri.shape == (1, 9, 17, 3)
    assert relerr(y_tri, y_ref) < 1e-4
    y_tri.square().sum().backward()
    y_ref.square().sum().backward()
    for (name, p), q in zip(m_tri.named_parameters(), m_ref.parameters()):
        if p.grad is None and q.grad is None:
            continue
        assert relerr(p.grad, q.grad) < 1e-4, name
