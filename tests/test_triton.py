"""The triton backend against the reference op: forward, lse, all 7 gradients.

On a CPU-only machine the kernels run under TRITON_INTERPRET=1 (set by conftest), so the shapes
here stay tiny; with STCFORMER_GPU_TESTS=1 on a CUDA machine the same tests run on CUDA tensors
and the ``gpu``-marked tests add bf16 and the model's real sizes.

Every comparison goes through stcformer.testing: the raw forward op (for its row
log-sum-exp) and its backward against ``stc_attention_reference`` in float64 on the same
(already rounded) inputs, every allocation of the launcher poisoned with NaN, error max
|got - want| / max |want| per tensor. Tolerances: float32 1e-5 (float32 dots run as 3xTF32 on a
GPU, about float32 accuracy; the interpreter computes them in float32), float16 / bfloat16 1e-2
(16-bit P and dS feed the dots, as in flash attention). Parameters are float32 unless a test
says otherwise (the autocast case).
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from stcformer import settings
from stcformer.ops import dispatch
from stcformer.testing import NAMES, check_backend, check_compile_fullgraph, make_inputs, rel_err

# the Triton interpreter sweeps and the sm_80/sm_90 compile checks (make test-slow)
pytestmark = pytest.mark.slow

tb = pytest.importorskip("stcformer.ops.backends.triton")

INTERPRET = os.environ.get("TRITON_INTERPRET") == "1"
HAS_CUDA = torch.cuda.is_available()
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def dev():
    """Where the small-shape tests run: CPU under the interpreter, else CUDA."""
    if INTERPRET:
        reason = dispatch.unavailable_reason("triton", "cpu", torch.float32)
        if reason:  # e.g. an interpreter that fails under this numpy
            pytest.skip(reason)
        return "cpu"
    if HAS_CUDA:
        return "cuda"
    pytest.skip("triton needs CUDA tensors or TRITON_INTERPRET=1")


def check(shape, dtype=torch.float32, device="cpu", **kw):
    """The harness's check of the triton op, lse included, float32 parameters by default."""
    kw.setdefault("param_dtype", torch.float32)
    return check_backend("triton", shape, dtype, device=device, lse=True, **kw)


def inputs(B, T, J, C, H, device, seed=0, **kw):
    return make_inputs(B, T, J, C, H, device=device, seed=seed, param_dtype=torch.float32, **kw)


# (B, T, J, C, H, spe, memory): awkward T, J = 16 / 17, dh = 4 / 16 / 32, batch 1,
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


@pytest.mark.parametrize("B,T,J,C,H,spe,memory", SHAPES,
                         ids=[f"B{s[0]}-T{s[1]}-J{s[2]}-C{s[3]}-H{s[4]}-{'spe' if s[5] else 'nospe'}-{s[6]}"
                              for s in SHAPES])
def test_float32(dev, B, T, J, C, H, spe, memory):
    check((B, T, J, C, H), device=dev, spe=spe, memory=memory, seed=T)


# head-major qkv (the model's layout on a GPU): both temporal backward paths, dh = 4 and 16
HEAD_MAJOR_SHAPES = [(1, 3, 17, 64, 8, True, "contiguous"),
                     (2, 27, 17, 32, 2, False, "sliced"),
                     (1, 300, 16, 16, 2, True, "transposed")]


@pytest.mark.parametrize("B,T,J,C,H,spe,memory", HEAD_MAJOR_SHAPES,
                         ids=[f"B{s[0]}-T{s[1]}-J{s[2]}-C{s[3]}-H{s[4]}-{s[6]}" for s in HEAD_MAJOR_SHAPES])
def test_head_major(dev, B, T, J, C, H, spe, memory):
    check((B, T, J, C, H), device=dev, spe=spe, memory=memory, layout="head_major", seed=T)


@pytest.mark.parametrize("T,J,C,H,memory", [(17, 17, 64, 8, "contiguous"), (27, 16, 256, 4, "transposed")])
def test_float16(dev, T, J, C, H, memory):
    # fp16 activations with float32 parameters (the autocast case)
    check((1, T, J, C, H), torch.float16, dev, memory=memory, seed=T)


def test_float16_params(dev):
    # fp16 activations and fp16 parameters (a model converted with .half())
    check((1, 5, 17, 64, 8), torch.float16, dev, param_dtype=torch.float16)


def test_bfloat16(dev):
    if dev == "cpu":
        pytest.skip("the Triton interpreter has no bfloat16 arithmetic; runs on GPU")
    check((2, 27, 17, 64, 8), torch.bfloat16, dev)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_small_blocks(dev, dtype):
    """Blocks smaller than the problem: the forward's online softmax over several key blocks
    with a ragged last one (so the streaming temporal backward), frame groups split over
    several persistent spatial programs, GPU block shapes."""
    with settings.override_triton(profile="gpu", block_m=16, block_m_bwd=16, block_n=16, stream_block=16,
                            frames=4, frames_bwd=2, nsplit=3):
        check((1, 37, 6, 16, 2), dtype, dev, memory="transposed",
              layout="head_major" if dtype == torch.float16 else "interleaved")


@pytest.mark.parametrize("dtype,block_n_fwd", [(torch.float32, 16), (torch.float16, 64)])
def test_gpu_profile_whole_row(dev, dtype, block_n_fwd):
    """The GPU block shapes with the whole-row backward: one joint per temporal program, a
    tail-masked key block in the forward, the key-stationary backward over two query blocks
    (a ragged last one), and the w / b / spe gradients summed over several frame chunks."""
    with settings.override_triton(profile="gpu", block_n_fwd=block_n_fwd, nchunk=3, rows_conv=32):
        cfg = tb.Config(1, 37, 5, 2, 16, dtype)
        assert cfg.row_bwd and cfg.NB == 1 and cfg.BLOCK_M_BWD < 37 and cfg.NCHUNK == 3
        check((1, 37, 5, 64, 2), dtype, dev, memory="sliced",
              layout="head_major" if dtype == torch.float16 else "interleaved")


@pytest.mark.parametrize("profile", ["gpu", "interpreter"], ids=["device-blocks", "interpreter-blocks"])
def test_config_every_shape(profile):
    """Config builds for every shape the launcher accepts (J up to MAX_J, any T, both layouts,
    every dtype) with tiles that hold what the kernels assume."""
    for T in (1, 2, 27, 81, 243, 256, 257, 1000):
        for J in (1, 16, 17, 32, 33, 64):
            for dh in (4, 16, 64):
                for dtype in tb.SUPPORTED_DTYPES:
                    for head_major in (True, False):
                        with settings.override_triton(profile=profile):
                            c = tb.Config(42, T, J, 8, dh, dtype, head_major=head_major)
                        assert c.JP >= J and c.ROWS_CONV >= J and c.DHP >= dh
                        assert min(c.FRAMES, c.FRAMES_BWD, c.NSPLIT, c.NCHUNK, c.NB) >= 1
                        assert c.BLOCK_N_FWD <= c.BLOCK_N and c.row_bwd == (T <= c.BLOCK_N)
    with pytest.raises(ValueError, match="rows_conv"):
        with settings.override_triton(rows_conv=16):
            tb.Config(1, 5, 17, 2, 16, torch.float32)


def test_whole_row_several_query_blocks(dev):
    """The whole-row temporal backward with several query blocks and a ragged last one."""
    with settings.override_triton(block_m=16, block_m_bwd=16, frames=2, frames_bwd=2, nsplit=2):
        check((1, 35, 17, 32, 2), device=dev, memory="sliced")


def test_finite_differences(dev):
    """Central differences in float32 along a random direction, for each input separately.

    d/de <g, f(x + e u)> at e = 0 vs <grad_x, u>; e = 1e-2 (f is smooth, float32 rounding of
    the difference ~ 1e-7 / 1e-2), tolerance 2e-3 relative to the directional derivative.
    """
    args = inputs(1, 6, 5, 16, 2, dev, seed=1)
    tensors, H, scale = list(args[:7]), args[7], args[8]
    leaves = [x.detach().clone().requires_grad_(True) for x in tensors]
    out = tb.stc_attention(*leaves, H, scale)
    g = torch.randn_like(out)
    grads = torch.autograd.grad(out, leaves, g)
    eps = 1e-2
    for i, name in enumerate(NAMES):
        u = torch.randn_like(tensors[i])
        def f(e):
            xs = [x + e * u if k == i else x for k, x in enumerate(tensors)]
            return (tb.stc_attention(*xs, H, scale).double() * g.double()).sum()
        numeric = ((f(eps) - f(-eps)) / (2 * eps)).item()
        analytic = (grads[i].double() * u.double()).sum().item()
        assert abs(numeric - analytic) <= 2e-3 * max(abs(analytic), 1e-3), (name, numeric, analytic)


def test_deterministic(dev):
    """Two backward passes give bitwise equal gradients (no atomics anywhere)."""
    args = inputs(2, 9, 17, 32, 2, dev)
    tensors, H, scale = list(args[:7]), args[7], args[8]
    runs = []
    for _ in range(2):
        leaves = [x.detach().clone().requires_grad_(True) for x in tensors]
        out = tb.stc_attention(*leaves, H, scale)
        runs.append(torch.autograd.grad(out, leaves, torch.ones_like(out)))
    for name, a, b in zip(NAMES, *runs):
        assert torch.equal(a, b), name


def test_dispatch_and_errors(dev):
    """stcformer.stc_attention(backend='triton') lands here; bad inputs fail with clear errors."""
    import stcformer

    args = inputs(1, 3, 17, 16, 2, dev)
    out = stcformer.stc_attention(*args, backend="triton")
    assert torch.equal(out, tb.stc_attention(*args))
    with pytest.raises(TypeError, match="float64"):
        tb.stc_attention(args[0].double(), *args[1:])


def test_opcheck(dev):
    args = inputs(1, 4, 5, 16, 2, dev)
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
    """torch.compile(fullgraph=True): on CPU (interpreter) with aot_eager (Inductor cannot launch
    user Triton kernels on CPU tensors), on CUDA with Inductor."""
    check_compile_fullgraph(fn, device=dev, compile_backend="aot_eager" if dev == "cpu" else "inductor")


def test_compile_fullgraph(dev):
    _compile_check(dev, tb.stc_attention)


def test_compile_fullgraph_public_op(dev, monkeypatch):
    """The same through stcformer.stc_attention with the backend set to triton (settings)."""
    import stcformer

    with settings.override(backend="triton"):
        _compile_check(dev, stcformer.stc_attention)


def test_gpu_target_compile():
    """Every kernel variant the launcher picks compiles for sm_90 and sm_80 (no GPU needed).

    Runs in a subprocess without TRITON_INTERPRET (the interpreter replaces triton.jit). A GPU
    run (STCFORMER_GPU_TESTS=1) compiles the real kernels anyway and skips this.
    """
    if not INTERPRET:
        pytest.skip("GPU run: the kernels are compiled for the GPU at hand by the other tests")
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    jobs = [subprocess.Popen([sys.executable, "-m", "bench.compile_check", "--targets", t, "--set", "ci"],
                             cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            for t in ("90", "80")]
    outs = [(j.communicate(timeout=600)[0], j.returncode) for j in jobs]
    for text, rc in outs:
        assert rc == 0, "\n".join(line for line in text.splitlines() if not line.startswith("ok "))


# ---------------------------------------------------------------------------------------------
# GPU only: bf16 / fp16 / fp32 at the model's sizes (run by bench/gpu_suite.sh)

@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("B,T,J,C,H,memory", [(4, 243, 17, 256, 8, "contiguous"),
                                              (2, 81, 17, 256, 8, "transposed"),
                                              (1, 1000, 17, 64, 8, "sliced"),
                                              (3, 351, 16, 128, 4, "contiguous")])
def test_gpu_large(dtype, B, T, J, C, H, memory):
    if INTERPRET:
        pytest.skip("TRITON_INTERPRET=1 runs kernels on the host; set STCFORMER_GPU_TESTS=1")
    check((B, T, J, C, H), dtype, "cuda", memory=memory, seed=T)


@pytest.mark.gpu
def test_gpu_autocast_bf16():
    """bf16 autocast: bf16 qkv from the Linear, float32 conv / spe parameters."""
    if INTERPRET:
        pytest.skip("TRITON_INTERPRET=1 runs kernels on the host; set STCFORMER_GPU_TESTS=1")
    check((2, 243, 17, 256, 8), torch.bfloat16, "cuda")


# ---------------------------------------------------------------------------------------------
# the whole model (stcformer/model/modules.py) with the triton backend vs the reference backend

def test_model_triton_vs_reference(dev):
    model_mod = pytest.importorskip("stcformer.model.modules")
    torch.manual_seed(0)
    m_tri = model_mod.STCFormer(layers=2, d_hid=64, num_heads=8, backend="triton").to(dev)
    m_ref = model_mod.STCFormer(layers=2, d_hid=64, num_heads=8, backend="reference").to(dev)
    m_ref.load_state_dict(m_tri.state_dict())
    m_tri.eval()
    m_ref.eval()
    x = torch.randn(1, 9, 17, 2, device=dev)
    y_tri, y_ref = m_tri(x), m_ref(x)
    assert y_tri.shape == (1, 9, 17, 3)
    assert rel_err(y_tri, y_ref) < 1e-4
    y_tri.square().sum().backward()
    y_ref.square().sum().backward()
    for (name, p), q in zip(m_tri.named_parameters(), m_ref.parameters()):
        if p.grad is None and q.grad is None:
            continue
        assert rel_err(p.grad, q.grad) < 1e-4, name
