"""Fused GELU + dropout (stcformer.ops.mlp.fused, csrc/cpu/fused_mlp.cpp): values, mask statistics,
the same mask in the backward, the MLP autograd, opcheck and torch.compile; the oneDNN linear
(stcformer.ops.mlp.linear)."""
import math

import pytest
import torch
import torch.nn.functional as F

from stcformer.ops import dispatch
from stcformer.ops.mlp import fused as fused_mlp
from stcformer.ops.mlp import linear as linear_mod

_reason = dispatch.fused_mlp_reason("cpu")
pytestmark = pytest.mark.skipif(_reason is not None, reason=str(_reason))

ops = torch.ops.stcformer if _reason is None else None


def seed(s):
    return torch.tensor([s], dtype=torch.int64)


def test_values_match_gelu_then_scale():
    x = torch.randn(4099) * 3  # odd size: vector tail
    z = ops.gelu_dropout_fwd(x, seed(1), 0, 0.25, False)
    kept = z != 0
    torch.testing.assert_close(z[kept], x[kept] / 0.75, rtol=1e-6, atol=0)
    # same (seed, index) -> same mask whatever the activation (gelu(x) can be 0 itself: compare all)
    y = ops.gelu_dropout_fwd(x, seed(1), 0, 0.25, True)
    want = torch.where(kept, F.gelu(x) / 0.75, torch.zeros_like(x))
    torch.testing.assert_close(y, want, rtol=1e-5, atol=2e-6)


def test_p_zero_is_plain_gelu():
    x = torch.randn(1000) * 4
    y = ops.gelu_dropout_fwd(x, seed(3), 0, 0.0, True)
    torch.testing.assert_close(y, F.gelu(x), rtol=1e-5, atol=2e-6)
    assert torch.equal(fused_mlp.gelu_dropout(x, 0.1, training=False), F.gelu(x))


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_keep_rate_and_scaling(p):
    n = 1 << 20
    y = fused_mlp.dropout(torch.ones(n), p)
    kept = y != 0
    rate = kept.double().mean().item()
    assert abs(rate - (1 - p)) < 6 * math.sqrt(p * (1 - p) / n)
    torch.testing.assert_close(y[kept], torch.full_like(y[kept], 1 / (1 - p)))


def _corr(a, b):
    a, b = a.double() - a.double().mean(), b.double() - b.double().mean()
    return (a * b).sum().item() / math.sqrt((a * a).sum().item() * (b * b).sum().item())


def test_masks_independent_across_calls_and_neighbours():
    n = 1 << 20
    bound = 6 / math.sqrt(n)
    m1 = fused_mlp.dropout(torch.ones(n), 0.5) != 0
    m2 = fused_mlp.dropout(torch.ones(n), 0.5) != 0
    assert abs(_corr(m1, m2)) < bound  # fresh seed each call
    for lag in (1, 2, 8, 16, 1024):  # neighbours in a vector and across rows of fc1's output
        assert abs(_corr(m1[:-lag], m1[lag:])) < bound, lag
    # consecutive seeds and the offset argument give unrelated masks too
    a = ops.gelu_dropout_fwd(torch.ones(n), seed(7), 0, 0.5, False) != 0
    b = ops.gelu_dropout_fwd(torch.ones(n), seed(8), 0, 0.5, False) != 0
    c = ops.gelu_dropout_fwd(torch.ones(n), seed(7), n, 0.5, False) != 0
    assert abs(_corr(a, b)) < bound and abs(_corr(a, c)) < bound


def test_offset_continues_the_stream():
    x = torch.ones(1000)
    whole = ops.gelu_dropout_fwd(x, seed(5), 10, 0.3, False)
    tail = ops.gelu_dropout_fwd(x[600:], seed(5), 610, 0.3, False)
    assert torch.equal(whole[600:], tail)
    # the 64-bit counter carries into its high word
    big = ops.gelu_dropout_fwd(torch.ones(64), seed(5), (1 << 32) - 20, 0.3, False)
    part = ops.gelu_dropout_fwd(torch.ones(40), seed(5), (1 << 32) + 4, 0.3, False)
    assert torch.equal(big[24:], part)


def test_manual_seed_reproduces():
    x = torch.randn(5000)
    torch.manual_seed(123)
    a = fused_mlp.gelu_dropout(x, 0.2)
    torch.manual_seed(123)
    b = fused_mlp.gelu_dropout(x, 0.2)
    assert torch.equal(a, b)


def test_backward_uses_the_forward_mask():
    x = (torch.randn(3, 7, 1024) * 2).requires_grad_()
    y = fused_mlp.gelu_dropout(x, 0.3)
    kept = (y != 0).detach()
    y.backward(torch.ones_like(y))
    x2 = x.detach().clone().requires_grad_()
    F.gelu(x2).backward(torch.ones_like(x2))
    want = torch.where(kept, x2.grad / 0.7, torch.zeros_like(x2.grad))
    torch.testing.assert_close(x.grad, want, rtol=1e-5, atol=2e-6)


def test_bfloat16_same_mask():
    x = torch.randn(3000)
    y32 = ops.gelu_dropout_fwd(x, seed(9), 0, 0.5, True)
    y16 = ops.gelu_dropout_fwd(x.bfloat16(), seed(9), 0, 0.5, True)
    assert y16.dtype == torch.bfloat16
    assert torch.equal(y16 != 0, y32 != 0)
    torch.testing.assert_close(y16.float(), y32, rtol=2e-2, atol=1e-2)


def test_gradcheck_float64():
    x = torch.randn(2, 37, dtype=torch.float64, requires_grad=True)
    s = seed(11)
    for gelu in (True, False):
        assert torch.autograd.gradcheck(lambda t: ops.gelu_dropout_fwd(t, s, 0, 0.4, gelu), (x,))
    # float64 and float32 share the mask
    m64 = ops.gelu_dropout_fwd(x.detach(), s, 0, 0.4, True) != 0
    m32 = ops.gelu_dropout_fwd(x.detach().float(), s, 0, 0.4, True) != 0
    assert torch.equal(m64, m32)


def _mlp_reference(x, w1, w2, p, s1, s2):
    """The same masks through the plain ops (autograd of gelu_dropout_fwd)."""
    y = ops.gelu_dropout_fwd(F.linear(x, w1), s1, 0, p, True)
    return ops.gelu_dropout_fwd(F.linear(y, w2), s2, 0, p, False)


@pytest.mark.parametrize("rows", [None, 48])  # 48: 170 rows in 4 chunks, the last one short
@pytest.mark.parametrize("bias,recompute", [(False, False), (True, False), (True, True)])
def test_mlp_matches_composition(bias, recompute, rows, monkeypatch):
    """The chunked MLP gives the unchunked composition's output (same masks: a chunk's masks
    are the hash at its offset) and gradients (summed chunk by chunk)."""
    if rows is not None:
        monkeypatch.setattr(fused_mlp, "ROWS", rows)
    torch.manual_seed(0)
    x = torch.randn(2, 5, 17, 32, requires_grad=True)
    w1, w2 = (torch.randn(128, 32) * 0.2).requires_grad_(), (torch.randn(32, 128) * 0.1).requires_grad_()
    b1, b2 = (torch.randn(128).requires_grad_(), torch.randn(32).requires_grad_()) if bias else (None, None)
    s1, s2 = seed(21), seed(22)
    out = fused_mlp._Mlp.apply(x, w1, w2, b1, b2, 0.1, s1, s2, recompute)
    leaves = [t for t in (x, w1, w2, b1, b2) if t is not None]
    g = torch.randn_like(out)
    got = torch.autograd.grad(out, leaves, g)
    y = ops.gelu_dropout_fwd(F.linear(x, w1, b1), s1, 0, 0.1, True)
    want_out = ops.gelu_dropout_fwd(F.linear(y, w2, b2), s2, 0, 0.1, False)
    want = torch.autograd.grad(want_out, leaves, g)
    torch.testing.assert_close(out, want_out)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def _unit_roundoff(dtype):
    return torch.finfo(dtype).eps / 2


def _gamma(k, dtype):
    """Higham's gamma_k = k u / (1 - k u): bounds the rounding error of a k-term sum relative
    to the sum of the terms' magnitudes, in any summation order (blocked, FMA, threads)."""
    ku = k * _unit_roundoff(dtype)
    return ku / (1 - ku)


def assert_linear_close(got, x, w, b=None, acc=torch.float32, out=None):
    """got ~ x @ w.T + b: within the worst-case rounding of a K-term float sum (acc) plus the
    rounding of the output to its dtype (out), from the exact product of the same inputs."""
    x, w = x.detach().double(), w.detach().double()
    exact, mag = F.linear(x, w), F.linear(x.abs(), w.abs())
    k = x.shape[-1]
    if b is not None:
        exact, mag, k = exact + b.detach().double(), mag + b.detach().double().abs(), k + 1
    bound = _gamma(k, acc) * mag + _unit_roundoff(out or got.dtype) * exact.abs() + 1e-30
    err = (got.detach().double() - exact).abs()
    assert (err <= bound).all(), f"max err {err.max().item():.3g}, bound there {bound.flatten()[err.argmax()]:.3g}"


def test_mlp_eval_is_plain():
    torch.manual_seed(0)
    x, w1, w2 = torch.randn(4, 32), torch.randn(128, 32), torch.randn(32, 128)
    got = fused_mlp.mlp(x, w1, w2, 0.1, training=False)
    # exact fc2(gelu(fc1(x))) with the float32 rounding of each GEMM (K = 32, then 128) and of
    # GELU bounded: |error| <= gamma_K * (|w2| @ |g|) + |w2| @ (|GELU'| * error of g) etc.
    h = F.linear(x.double(), w1.double())
    h_err = _gamma(32, torch.float32) * F.linear(x.double().abs(), w1.double().abs())
    g = F.gelu(h)
    g_err = 1.13 * h_err + 8 * _unit_roundoff(torch.float32) * h.abs()  # |GELU'| < 1.13, erf's rounding
    want = F.linear(g, w2.double())
    bound = (_gamma(128, torch.float32) * F.linear(g.abs(), w2.double().abs())
             + F.linear(g_err, w2.double().abs()) + _unit_roundoff(torch.float32) * want.abs())
    for name, y in (("mlp", got), ("plain", F.linear(F.gelu(F.linear(x, w1)), w2))):
        err = (y.double() - want).abs()
        assert (err <= bound).all(), f"{name}: max err {err.max().item():.3g}"
    # the bound is not so loose that another MLP passes: ReLU instead of GELU is far outside it
    wrong = F.linear(F.relu(F.linear(x, w1)), w2).double()
    assert ((wrong - want).abs() > bound).any()


@pytest.mark.parametrize("gelu", [True, False])
def test_opcheck(gelu):
    x = torch.randn(3, 40, requires_grad=True)
    torch.library.opcheck(torch.ops.stcformer.gelu_dropout_fwd.default, (x, seed(1), 0, 0.1, gelu))
    g = torch.randn(3, 40)
    torch.library.opcheck(torch.ops.stcformer.gelu_dropout_bwd.default,
                          (g, x.detach() if gelu else None, seed(1), 0, 0.1, gelu, True))


@pytest.mark.slow  # compile check
def test_torch_compile_fullgraph(monkeypatch):
    monkeypatch.setattr(fused_mlp, "ROWS", 7)  # 18 rows: three chunks, the last one short
    w1, w2 = (torch.randn(64, 16) * 0.2).requires_grad_(), (torch.randn(16, 64) * 0.2).requires_grad_()
    x = torch.randn(2, 9, 16, requires_grad=True)
    ln = torch.nn.LayerNorm(16)

    def f(x):
        return (fused_mlp.mlp(x, w1, w2, 0.1).square().sum() + fused_mlp.gelu_dropout(x, 0.2).sum()
                + fused_mlp.residual_mlp(x, ln, w1, w2, 0.1).square().sum())

    torch._dynamo.reset()
    compiled = torch.compile(f, fullgraph=True)
    torch.manual_seed(4)
    with torch._inductor.config.patch(fallback_random=True):  # the seeds eager would draw
        got = compiled(x)
    g_got = torch.autograd.grad(got, (x, w1, w2))
    torch.manual_seed(4)
    want = f(x)
    g_want = torch.autograd.grad(want, (x, w1, w2))
    torch.testing.assert_close(got, want)
    for a, b in zip(g_got, g_want):
        torch.testing.assert_close(a, b)


def test_onednn_mlp_on_the_model():
    model_mod = pytest.importorskip("stcformer.model.modules")
    torch.manual_seed(0)
    model = model_mod.STCFormer(layers=2, d_hid=64, num_heads=4)
    x = torch.randn(2, 9, 17, 2)
    model.eval()
    with torch.no_grad():
        want = model(x)
    keys = list(model.state_dict())
    model.configure(onednn_mlp=True)
    assert list(model.state_dict()) == keys
    with torch.no_grad():
        torch.testing.assert_close(model(x), want)
    model.train()
    model(x).square().mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all()
               for n, p in model.named_parameters() if "mlp" in n)


@pytest.mark.parametrize("bias", [False, True])
def test_onednn_linear_matches_f_linear(bias):
    torch.manual_seed(0)
    x = torch.randn(3, 50, 64, requires_grad=True)
    w = torch.randn(96, 64, requires_grad=True)
    b = torch.randn(96, requires_grad=True) if bias else None
    leaves = [t for t in (x, w, b) if t is not None]
    g = torch.randn(3, 50, 96)
    got = linear_mod.linear(x, w, b)
    g_got = torch.autograd.grad(got, leaves, g)
    assert_linear_close(got, x, w, b)
    # grad_x = g @ w (K = 96), grad_w = g^T @ x (K = 150 rows), grad_b = column sums of g
    assert_linear_close(g_got[0], g, w.t())
    assert_linear_close(g_got[1], g.reshape(-1, 96).t(), x.reshape(-1, 64).t())
    if bias:
        assert_linear_close(g_got[2], torch.ones(1, 150), g.reshape(-1, 96).t())
    # bfloat16: oneDNN where it has a bf16 GEMM, else F.linear; float32 accumulation either way,
    # output rounded to bf16 (compared with the exact product of the bf16-rounded inputs)
    x16, w16 = x.detach().bfloat16(), w.detach().bfloat16()
    y16 = linear_mod.linear(x16, w16)
    assert y16.dtype == torch.bfloat16
    assert_linear_close(y16, x16, w16)


def test_onednn_linears_on_the_model():
    model_mod = pytest.importorskip("stcformer.model.modules")
    torch.manual_seed(0)
    model = model_mod.STCFormer(layers=2, d_hid=64, num_heads=4).eval()
    x = torch.randn(2, 9, 17, 2)
    with torch.no_grad():
        want = model(x)
        linear_mod.convert_linears(model)
        torch.testing.assert_close(model(x), want, rtol=1e-4, atol=1e-5)


def test_bf16_takes_f_linear_where_onednn_has_no_bf16(monkeypatch, caplog):
    """The capability decision routes bf16 GEMMs: with a reason, F.linear (and one debug line);
    float32 still goes to oneDNN."""
    calls = []

    def fake_onednn(a, b, bias, *rest):
        calls.append(a.dtype)
        return F.linear(a, b, bias)

    monkeypatch.setattr(linear_mod, "_ONEDNN", fake_onednn)
    monkeypatch.setattr(linear_mod, "ONEDNN_BF16_REASON", "oneDNN bf16: (test) no bf16 GEMM here")
    monkeypatch.setattr(linear_mod, "_logged", set())
    x, w = torch.randn(5, 16), torch.randn(8, 16)
    with caplog.at_level("DEBUG", logger="stcformer"):
        y16 = linear_mod.linear(x.bfloat16(), w.bfloat16())
        linear_mod.linear(x.bfloat16(), w.bfloat16())
    assert calls == [] and torch.equal(y16, F.linear(x.bfloat16(), w.bfloat16()))
    said = [r.getMessage() for r in caplog.records if "(test) no bf16 GEMM here" in r.getMessage()]
    assert len(said) == 1 and all(r.levelname == "DEBUG" for r in caplog.records if r.name == "stcformer")
    linear_mod.linear(x, w)
    assert calls == [torch.float32]
    monkeypatch.setattr(linear_mod, "ONEDNN_BF16_REASON", None)  # a CPU with bf16 GEMMs
    linear_mod.linear(x.bfloat16(), w.bfloat16())
    assert calls == [torch.float32, torch.bfloat16]


def test_onednn_bf16_decision_matches_onednn():
    """The decision agrees with oneDNN itself on this machine (and ISA cap): where it says yes,
    a bf16 inner product runs; where it says no, oneDNN cannot create one."""
    if linear_mod._ONEDNN is None:
        pytest.skip("this torch has no oneDNN linear")
    x, w = torch.randn(4, 32).bfloat16(), torch.randn(8, 32).bfloat16()
    try:
        y = linear_mod._ONEDNN(x, w, None, "none", [], "")
        runs, why = True, None
    except RuntimeError as exc:
        runs, why = False, str(exc).splitlines()[0]
    assert runs == (linear_mod.ONEDNN_BF16_REASON is None), (linear_mod.ONEDNN_BF16_REASON, why)
    if runs:
        assert_linear_close(y, x, w)


def test_model_trains_through_the_fused_mlp_by_default(monkeypatch):
    """CPU float32 blocks take fused_mlp.residual_mlp in training and in evaluation (the same
    numbers as the plain modules there); fused=False and autocast do not."""
    model_mod = pytest.importorskip("stcformer.model.modules")
    if dispatch.fused_mlp_reason("cpu") is not None:
        pytest.skip(dispatch.fused_mlp_reason("cpu"))
    calls = []
    orig = fused_mlp.residual_mlp
    monkeypatch.setattr(fused_mlp, "residual_mlp", lambda *a, **k: (calls.append(1), orig(*a, **k))[1])
    monkeypatch.setattr(fused_mlp, "ROWS", 64)  # several chunks per call
    torch.manual_seed(0)
    model = model_mod.STCFormer(layers=2, d_hid=32, num_heads=2)
    x = torch.randn(1, 5, 17, 2)
    model.train()(x).sum().backward()
    assert len(calls) == 2 and all(torch.isfinite(p.grad).all() for p in model.parameters()
                                   if p.grad is not None)
    with torch.no_grad():
        fused_eval = model.eval()(x)
    assert len(calls) == 4
    for block in model.stcformer.stc_block:
        block.mlp.fused = block.stc_att.fused = False
    with torch.no_grad():
        torch.testing.assert_close(fused_eval, model(x), rtol=1e-5, atol=1e-5)
    model.train()(x)
    for block in model.stcformer.stc_block:
        block.mlp.fused = block.stc_att.fused = True
    with torch.autocast("cpu", dtype=torch.bfloat16):
        model(x)
    assert len(calls) == 4


def _chunked_inputs(rows, monkeypatch):
    """x (2, 5, 17, 32) and a LayerNorm with non-trivial affine parameters; ``rows``: chunk size
    (None: the default, one chunk here; 48: 170 rows in 4 chunks, the last one short)."""
    if rows is not None:
        monkeypatch.setattr(fused_mlp, "ROWS", rows)
    torch.manual_seed(0)
    x = torch.randn(2, 5, 17, 32, requires_grad=True)
    ln = torch.nn.LayerNorm(32)
    with torch.no_grad():
        ln.weight.uniform_(0.5, 1.5), ln.bias.uniform_(-0.2, 0.2)
    return x, ln


@pytest.mark.parametrize("rows", [None, 48])
@pytest.mark.parametrize("bias", [False, True])
def test_layer_norm_linear_matches_composition(bias, rows, monkeypatch):
    """linear(layer_norm(x)) in chunks: the composition's output and every gradient, with and
    without autograd."""
    x, ln = _chunked_inputs(rows, monkeypatch)
    w = (torch.randn(96, 32) * 0.2).requires_grad_()
    b = torch.randn(96).requires_grad_() if bias else None
    out = fused_mlp.layer_norm_linear(x, ln, w, b)
    want_out = F.linear(ln(x), w, b)
    leaves = [t for t in (x, ln.weight, ln.bias, w, b) if t is not None]
    g = torch.randn_like(out)
    for a, c in zip(torch.autograd.grad(out, leaves, g), torch.autograd.grad(want_out, leaves, g)):
        torch.testing.assert_close(a, c, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out, want_out, rtol=1e-5, atol=1e-5)
    with torch.no_grad():
        torch.testing.assert_close(fused_mlp.layer_norm_linear(x, ln, w, b), want_out, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("rows", [None, 48])
@pytest.mark.parametrize("bias,recompute", [(False, False), (True, False), (False, True)])
def test_residual_mlp_matches_composition(bias, recompute, rows, monkeypatch):
    """x + mlp(layer_norm(x)) in chunks: the composition's output (same masks) and every gradient
    (LayerNorm's included), with and without the kept hidden."""
    x, ln = _chunked_inputs(rows, monkeypatch)
    w1, w2 = (torch.randn(128, 32) * 0.2).requires_grad_(), (torch.randn(32, 128) * 0.1).requires_grad_()
    b1, b2 = (torch.randn(128).requires_grad_(), torch.randn(32).requires_grad_()) if bias else (None, None)
    s1, s2 = seed(31), seed(32)
    out = fused_mlp._ResidualMlp.apply(x, ln.weight, ln.bias, ln.eps, w1, w2, b1, b2, 0.1, s1, s2, recompute, False)
    leaves = [t for t in (x, ln.weight, ln.bias, w1, w2, b1, b2) if t is not None]
    g = torch.randn_like(out)
    got = torch.autograd.grad(out, leaves, g)
    y = ops.gelu_dropout_fwd(F.linear(ln(x), w1, b1), s1, 0, 0.1, True)
    want_out = x + ops.gelu_dropout_fwd(F.linear(y, w2, b2), s2, 0, 0.1, False)
    want = torch.autograd.grad(want_out, leaves, g)
    torch.testing.assert_close(out, want_out)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    # evaluation: no dropout, no autograd, the residual inside fc2's GEMM
    with torch.no_grad():
        ev = fused_mlp.residual_mlp(x, ln, w1, w2, 0.1, False, b1, b2)
        torch.testing.assert_close(ev, x + F.linear(F.gelu(F.linear(ln(x), w1, b1)), w2, b2), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("recompute", [False, True])
def test_kept_hidden_is_chunk_sized(recompute, monkeypatch):
    """fc1's output is kept as one block per chunk of rows (blocks the allocator reuses between
    steps), never as one (rows, 4C) tensor; with recompute it is not kept at all."""
    monkeypatch.setattr(fused_mlp, "ROWS", 8)
    x = torch.randn(20, 16, requires_grad=True)
    ln = torch.nn.LayerNorm(16)
    w1, w2 = torch.randn(64, 16, requires_grad=True), torch.randn(16, 64, requires_grad=True)
    shapes = []

    def pack(t):
        shapes.append(tuple(t.shape))
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fused_mlp._ResidualMlp.apply(x, ln.weight, ln.bias, ln.eps, w1, w2, None, None, 0.1,
                                     seed(1), seed(2), recompute, False).sum().backward()
    hidden = [s for s in shapes if s[-1] == 64 and s != (64, 16) and s != (16, 64)]
    assert hidden == ([] if recompute else [(8, 64), (8, 64), (4, 64)])
