"""The ``cpp`` backend (csrc/cpu, in stcformer._C) against the reference op.

Forward and every gradient at shapes that break kernels, float32 / bfloat16 tolerances, float64
gradcheck, opcheck of the registered op and torch.compile(fullgraph=True) through it.
"""
import ctypes
import os

import pytest
import torch

from stcformer import dispatch
from stcformer.ops import stc_attention
from stcformer.reference import stc_attention_reference

_reason = dispatch.unavailable_reason("cpp", "cpu", torch.float32)
pytestmark = pytest.mark.skipif(_reason is not None, reason=str(_reason))

FWD = "stcformer::stc_attention_fwd"


def make_inputs(B, T, J, C, H, dtype=torch.float32, spe=True, seed=0, scale=None):
    """Random op inputs; conv weights/spe scaled so every term of the output matters."""
    g = torch.Generator().manual_seed(seed)
    half, dh = C // 2, C // 2 // H

    def r(*shape, s=1.0):
        return (torch.randn(*shape, generator=g, dtype=torch.float64) * s).to(dtype)

    qkv = r(B, T, J, 3 * C, s=1.5)
    w_s, b_s, w_t, b_t = r(half, 1, 3, 3, s=0.3), r(half, s=0.5), r(half, 1, 3, 3, s=0.3), r(half, s=0.5)
    spe_s, spe_t = (r(J, dh, s=0.5), r(J, dh, s=0.5)) if spe else (None, None)
    return [qkv, w_s, b_s, w_t, b_t, spe_s, spe_t, H, scale if scale is not None else half ** -0.5]


def run_both(args, grad_seed=1, qkv_override=None):
    """(out, grads) of reference (float64 for accuracy) and cpp for the same inputs."""
    qkv = qkv_override if qkv_override is not None else args[0]
    tensors = [qkv] + [t for t in args[1:7]]
    diff_idx = [i for i, t in enumerate(tensors) if t is not None]

    def go(fn, cast):
        ts = [t.detach().to(cast).requires_grad_() if t is not None else None for t in tensors]
        out = fn(*ts, args[7], args[8])
        gout = torch.randn(out.shape, generator=torch.Generator().manual_seed(grad_seed),
                           dtype=torch.float64).to(out.dtype)
        grads = torch.autograd.grad(out, [ts[i] for i in diff_idx], gout)
        return out, grads

    ref = go(lambda *a: stc_attention_reference(*a), torch.float64)
    cpp = go(lambda *a: stc_attention(*a, backend="cpp"), qkv.dtype)
    return ref, cpp, diff_idx


def assert_close(ref, got, rtol, name):
    """Max error relative to the tensor's max magnitude (robust for near-zero entries)."""
    got = got.to(torch.float64)
    assert torch.isfinite(got).all(), f"{name}: non-finite values"
    err = (got - ref).abs().max().item()
    mag = ref.abs().max().item() + 1e-30
    assert err <= rtol * mag, f"{name}: max abs err {err:.3g} > {rtol} * {mag:.3g}"


NAMES = ["qkv", "w_s", "b_s", "w_t", "b_t", "spe_s", "spe_t"]


def check(args, rtol, qkv_override=None):
    (ro, rg), (co, cg), idx = run_both(args, qkv_override=qkv_override)
    assert co.dtype == args[0].dtype and co.shape == ro.shape
    assert_close(ro, co, rtol, "out")
    for i, a, b in zip(idx, rg, cg):
        assert b.shape == a.shape, NAMES[i]
        assert_close(a, b, rtol, "grad " + NAMES[i])


# (T, J, C, H): every T of the design's list, J = 17 and 16, dh = 4 / 16 / 32
SHAPES = [
    (1, 17, 64, 8), (2, 16, 64, 8), (3, 17, 256, 8), (17, 16, 256, 4), (27, 17, 256, 8),
    (81, 17, 64, 8), (243, 17, 256, 4), (300, 16, 64, 8),
]


@pytest.mark.parametrize("T,J,C,H", SHAPES)
@pytest.mark.parametrize("spe", [True, False])
def test_float32_matches_reference(T, J, C, H, spe):
    B = 2 if T <= 81 else 1
    check(make_inputs(B, T, J, C, H, spe=spe, seed=T), rtol=2e-5)


@pytest.mark.parametrize("T,J,C,H", [(1, 17, 256, 8), (27, 17, 256, 8), (81, 16, 256, 4), (243, 17, 64, 8)])
def test_bfloat16_matches_reference(T, J, C, H):
    check(make_inputs(1, T, J, C, H, dtype=torch.bfloat16, seed=T), rtol=2e-2)


def test_3dhp_scale_and_batch1():
    check(make_inputs(1, 27, 17, 256, 4, scale=256 ** -0.5, seed=7), rtol=2e-5)


def test_non_contiguous_qkv():
    args = make_inputs(2, 9, 17, 64, 8, seed=3)
    wide = torch.randn(2, 17, 9, 2 * 192, dtype=torch.float32)
    qkv = wide.transpose(1, 2)[..., ::2]  # (2, 9, 17, 192), strided in every dim
    qkv.copy_(args[0])
    assert not qkv.is_contiguous()
    check(args, rtol=2e-5, qkv_override=qkv)
    # the raw op too (the Python wrapper makes qkv contiguous, the kernel must not rely on it)
    op = torch.ops.stcformer.stc_attention_fwd
    a, b = op(qkv, *args[1:]), op(qkv.contiguous(), *args[1:])
    for x, y in zip(a, b):
        torch.testing.assert_close(x, y, rtol=0, atol=0)


@pytest.fixture
def nan_allocations():
    """Make every CPU allocation NaN-filled (c10's junk-fill flag), so an unwritten output shows."""
    lib = ctypes.CDLL(os.path.join(os.path.dirname(torch.__file__), "lib", "libc10.so"))
    try:
        flag = ctypes.c_bool.in_dll(lib, "FLAGS_caffe2_cpu_allocator_do_junk_fill")
    except ValueError:
        pytest.skip("this libc10 does not export the junk-fill flag")
    flag.value = True
    assert torch.empty(64).isnan().all(), "junk fill did not take effect"
    yield
    flag.value = False


@pytest.mark.parametrize("T,J,C,H", [(1, 16, 64, 8), (27, 17, 256, 8), (5, 17, 256, 4)])
def test_every_output_written(nan_allocations, T, J, C, H):
    args = make_inputs(2, T, J, C, H, seed=5)
    op = torch.ops.stcformer
    out, lse_s, lse_t = op.stc_attention_fwd(*args)
    for t in (out, lse_s, lse_t):
        assert torch.isfinite(t).all()
    grads = op.stc_attention_bwd(torch.randn_like(out).clamp(-3, 3), *args[:7], out, lse_s, lse_t,
                                 args[7], args[8])
    for t in grads:
        assert torch.isfinite(t).all()
    # spe None: its (ignored) gradient is still a real (J, dh) tensor
    grads = op.stc_attention_bwd(torch.ones_like(out), *args[:5], None, None, out, lse_s, lse_t,
                                 args[7], args[8])
    for t in grads:
        assert torch.isfinite(t).all()


def test_lse_matches_reference():
    B, T, J, C, H = 2, 5, 17, 64, 8
    args = make_inputs(B, T, J, C, H, seed=11)
    _, lse_s, lse_t = torch.ops.stcformer.stc_attention_fwd(*args)
    from stcformer.reference import split_qkv

    (q_s, k_s, _), (q_t, k_t, _) = split_qkv(args[0].double(), H)
    s = torch.einsum("btihd,btjhd->bhtij", q_s, k_s) * args[8]
    torch.testing.assert_close(lse_s.double(), s.logsumexp(-1), rtol=1e-5, atol=1e-5)
    s = torch.einsum("bujhd,bwjhd->bhjuw", q_t, k_t) * args[8]
    torch.testing.assert_close(lse_t.double(), s.logsumexp(-1), rtol=1e-5, atol=1e-5)


def test_weight_grads_deterministic():
    args = make_inputs(3, 27, 17, 256, 8, seed=9)
    op = torch.ops.stcformer
    out, ls, lt = op.stc_attention_fwd(*args)
    g = torch.randn_like(out)
    a = op.stc_attention_bwd(g, *args[:7], out, ls, lt, args[7], args[8])
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        b = op.stc_attention_bwd(g, *args[:7], out, ls, lt, args[7], args[8])
    finally:
        torch.set_num_threads(threads)
    for x, y in zip(a, b):
        assert torch.equal(x, y)


# Bad inputs to these ops (half, int, shapes, heads, ...): tests/test_fuzz.py, in a child process
# that first runs multi-threaded kernels and changes the thread count, so that a crash (seen here
# on another machine) is a failing test, not a dead test run.


def test_one_openmp_runtime():
    """_C's parallel regions and torch's run on one OpenMP runtime (setup.py links the one
    torch loads): two copies mean two thread pools and two sets of OpenMP state in one process."""
    torch.ops.stcformer.stc_attention_fwd(*make_inputs(2, 27, 17, 64, 8))  # _C's runtime is in use
    try:
        with open("/proc/self/maps") as f:
            paths = {ln.split()[-1] for ln in f if "/" in ln}
    except OSError:
        pytest.skip("no /proc/self/maps")
    runtimes = {p for p in paths if os.path.basename(p).startswith(("libgomp", "libomp", "libiomp"))}
    assert len(runtimes) <= 1, runtimes


def test_build_isa_is_checked_before_loading():
    """Every x86 extension _C was compiled for is one that cpu_features checks before loading
    it (a -march change in setup.py must come with the run-time check), and this CPU has them."""
    from stcformer import _C, cpu_features

    if not cpu_features.is_x86_64():
        pytest.skip("x86-64 only")
    assert "avx2" in _C.compiled_isa and "fma" in _C.compiled_isa
    assert set(_C.compiled_isa) <= set(cpu_features.X86_64_V3_FLAGS), _C.compiled_isa
    flags = cpu_features.cpu_flags()
    if flags is not None:
        assert set(_C.compiled_isa) <= flags


@pytest.mark.parametrize("T,J,spe", [(1, 3, True), (4, 3, False), (3, 5, True)])
def test_gradcheck_float64(T, J, spe):
    args = make_inputs(1, T, J, 16, 2, dtype=torch.float64, spe=spe, seed=T + J)
    ts = [t.requires_grad_() if t is not None else None for t in args[:7]]

    def f(qkv, w_s, b_s, w_t, b_t, spe_s, spe_t):
        return stc_attention(qkv, w_s, b_s, w_t, b_t, spe_s, spe_t, args[7], args[8], backend="cpp")

    assert torch.autograd.gradcheck(f, ts, eps=1e-6, atol=1e-6)


@pytest.mark.parametrize("spe", [True, False])
def test_opcheck(spe):
    args = make_inputs(2, 5, 17, 64, 8, spe=spe)
    args = [a.requires_grad_() if isinstance(a, torch.Tensor) else a for a in args]
    torch.library.opcheck(torch.ops.stcformer.stc_attention_fwd.default, tuple(args))


def _compile_check(attention):
    args = make_inputs(2, 9, 17, 64, 8, seed=4)
    ts = [t.requires_grad_() for t in args[:7]]
    proj = torch.nn.Linear(64, 64)

    def f(qkv, w_s, b_s, w_t, b_t, spe_s, spe_t):
        out = attention(qkv, w_s, b_s, w_t, b_t, spe_s, spe_t, 8, args[8])
        return proj(out).square().sum()

    torch._dynamo.reset()
    compiled = torch.compile(f, fullgraph=True)
    got = compiled(*ts)
    g_got = torch.autograd.grad(got, ts)
    want = f(*ts)
    g_want = torch.autograd.grad(want, ts)
    torch.testing.assert_close(got, want)
    for a, b in zip(g_got, g_want):
        torch.testing.assert_close(a, b)


def test_torch_compile_fullgraph_op():
    from stcformer.backends import compiled

    _compile_check(compiled.stc_attention)


def test_torch_compile_fullgraph_public_api():
    def attention(*a):
        return stc_attention(*a, backend="cpp")

    _compile_check(attention)
