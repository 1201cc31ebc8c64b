"""The ``cpp`` backend (csrc/cpu, in stcformer._C) against the reference op.

Forward and every gradient at shapes that break kernels (stcformer/testing.py: float64
reference, tolerances by dtype), both qkv layouts, float64 gradcheck, opcheck of the registered op
and torch.compile(fullgraph=True) through it.
"""
import os

import pytest
import torch

from stcformer.testing import (_junk_fill_flag, check_backend, check_compile_fullgraph, check_inputs,
                               gradcheck_backend, make_inputs, poisoned_allocations)
from stcformer.ops import dispatch
from stcformer.ops.attention import stc_attention

_reason = dispatch.unavailable_reason("cpp", "cpu", torch.float32)
pytestmark = pytest.mark.skipif(_reason is not None, reason=str(_reason))

FWD = "stcformer::stc_attention_fwd"


def inputs(B, T, J, C, H, dtype=torch.float32, spe=True, seed=0, **kw):
    """The harness's inputs with a sharper softmax (qkv std 1.5)."""
    return make_inputs(B, T, J, C, H, dtype=dtype, spe=spe, seed=seed, qkv_std=1.5, **kw)


# (T, J, C, H): every T of the design's list, J = 17 and 16, dh = 4 / 16 / 32
SHAPES = [
    (1, 17, 64, 8), (2, 16, 64, 8), (3, 17, 256, 8), (17, 16, 256, 4), (27, 17, 256, 8),
    (81, 17, 64, 8), (243, 17, 256, 4), (300, 16, 64, 8),
]


@pytest.mark.parametrize("T,J,C,H", SHAPES)
@pytest.mark.parametrize("spe", [True, False])
def test_float32_matches_reference(T, J, C, H, spe):
    B = 2 if T <= 81 else 1
    check_inputs("cpp", inputs(B, T, J, C, H, spe=spe, seed=T))


@pytest.mark.parametrize("T,J,C,H", [(1, 17, 256, 8), (27, 17, 256, 8), (81, 16, 256, 4), (243, 17, 64, 8)])
def test_bfloat16_matches_reference(T, J, C, H):
    check_inputs("cpp", inputs(1, T, J, C, H, dtype=torch.bfloat16, seed=T))


@pytest.mark.parametrize("T,J,C,H,memory", [(3, 17, 64, 8, "transposed"), (27, 16, 256, 4, "sliced"),
                                            (300, 16, 64, 8, "contiguous")])
def test_head_major_matches_reference(T, J, C, H, memory):
    """qkv in the head-major layout (the model's permuted qkv Linear) against the reference
    reading the same layout."""
    check_backend("cpp", (1, T, J, C, H), layout="head_major", memory=memory, seed=T, qkv_std=1.5)


def test_3dhp_scale_and_batch1():
    check_inputs("cpp", inputs(1, 27, 17, 256, 4, scale=256 ** -0.5, seed=7))


@pytest.mark.parametrize("memory", ["transposed", "sliced"])
def test_non_contiguous_qkv(memory):
    args = inputs(2, 9, 17, 64, 8, seed=3, memory=memory)
    qkv = args[0]
    assert not qkv.is_contiguous()
    check_inputs("cpp", args)
    # the raw op too (the Python wrapper makes qkv contiguous, the kernel must not rely on it)
    op = torch.ops.stcformer.stc_attention_fwd
    a, b = op(qkv, *args[1:]), op(qkv.contiguous(), *args[1:])
    for x, y in zip(a, b):
        torch.testing.assert_close(x, y, rtol=0, atol=0)


@pytest.fixture
def nan_allocations():
    """Every allocation NaN-filled (c10's junk fill for the kernels' at::empty)."""
    if _junk_fill_flag() is None:
        pytest.skip("this libc10 does not export the junk-fill flag")
    with poisoned_allocations():
        assert torch.empty_strided((64,), (1,)).isnan().all(), "junk fill did not take effect"
        yield


@pytest.mark.parametrize("T,J,C,H", [(1, 16, 64, 8), (27, 17, 256, 8), (5, 17, 256, 4)])
def test_every_output_written(nan_allocations, T, J, C, H):
    args = inputs(2, T, J, C, H, seed=5)
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
    check_inputs("cpp", inputs(2, 5, 17, 64, 8, seed=11), lse=True)
    # the raw op reads head-major qkv through its head_major flag: same out, lse and gradients
    check_backend("cpp", (2, 5, 17, 64, 8), layout="head_major", lse=True, seed=12)


def test_weight_grads_deterministic():
    args = inputs(3, 27, 17, 256, 8, seed=9)
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
    torch.ops.stcformer.stc_attention_fwd(*inputs(2, 27, 17, 64, 8))  # _C's runtime is in use
    try:
        with open("/proc/self/maps") as f:
            paths = {ln.split()[-1] for ln in f if "/" in ln}
    except OSError:
        pytest.skip("no /proc/self/maps")
    runtimes = {p for p in paths if os.path.basename(p).startswith(("libgomp", "libomp", "libiomp"))}
    assert len(runtimes) <= 1, runtimes


def test_build_isa_is_checked_before_loading():
    """Every x86 extension _C was compiled for is one that stcformer.ops.host checks before loading
    it (a -march change in setup.py must come with the run-time check), and this CPU has them."""
    from stcformer import _C
    from stcformer.ops import host

    if not host.is_x86_64():
        pytest.skip("x86-64 only")
    assert "avx2" in _C.compiled_isa and "fma" in _C.compiled_isa
    assert set(_C.compiled_isa) <= set(host.X86_64_V3_FLAGS), _C.compiled_isa
    flags = host.cpu_flags()
    if flags is not None:
        assert set(_C.compiled_isa) <= flags


@pytest.mark.parametrize("T,J,spe", [(1, 3, True), (4, 3, False), (3, 5, True)])
def test_gradcheck_float64(T, J, spe):
    assert gradcheck_backend("cpp", (1, T, J, 16, 2), spe=spe, seed=T + J, eps=1e-6, atol=1e-6)


@pytest.mark.parametrize("spe", [True, False])
def test_opcheck(spe):
    args = inputs(2, 5, 17, 64, 8, spe=spe, requires_grad=True)
    torch.library.opcheck(torch.ops.stcformer.stc_attention_fwd.default, tuple(args))


@pytest.mark.slow  # compile check
def test_torch_compile_fullgraph_op():
    from stcformer.ops.backends import extension

    check_compile_fullgraph(extension.stc_attention, shape=(2, 9, 17, 64, 8))


@pytest.mark.slow  # compile check
def test_torch_compile_fullgraph_public_api():
    def attention(*a):
        return stc_attention(*a, backend="cpp")

    check_compile_fullgraph(attention, shape=(2, 9, 17, 64, 8))
