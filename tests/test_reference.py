"""The reference op against a literal formulation written from the contract's index math."""
import pytest
import torch

from stcformer.testing import check_backend, gradcheck_backend, make_inputs
from stcformer.ops.attention import stc_attention
from stcformer.ops.reference import stc_attention_reference


def literal_stc_attention(qkv, w_s, b_s, w_t, b_t, spe_s, spe_t, H, scale):
    """DESIGN.md's formulas, index by index (float64, explicit channel and shift arithmetic)."""
    qkv = qkv.double()
    B, T, J, C3 = qkv.shape
    C = C3 // 3
    half, dh = C // 2, C // 2 // H
    out = torch.empty(B, T, J, C, dtype=torch.float64)
    for branch, (w, b, spe) in enumerate(((w_s, b_s, spe_s), (w_t, b_t, spe_t))):
        for h in range(H):
            ch = torch.tensor([branch * half + h * dh + d for d in range(dh)])
            q, k, v = qkv[..., 3 * ch], qkv[..., 3 * ch + 1], qkv[..., 3 * ch + 2]  # (B, T, J, dh)
            if branch == 0:  # softmax over joints j' for each (b, t, j)
                a = torch.softmax(scale * torch.einsum("btjd,btkd->btjk", q, k), dim=-1)
                o = torch.einsum("btjk,btkd->btjd", a, v)
            else:  # softmax over frames t' for each (b, t, j)
                a = torch.softmax(scale * torch.einsum("btjd,bujd->bjtu", q, k), dim=-1)
                o = torch.einsum("bjtu,bujd->btjd", a, v)
            wc = w.double()[h * dh:(h + 1) * dh, 0]  # (dh, 3, 3)
            conv = b.double()[h * dh:(h + 1) * dh].expand(B, T, J, dh).clone()
            vp = torch.zeros(B, T + 2, J + 2, dh, dtype=torch.float64)  # zero outside the grid
            vp[:, 1:-1, 1:-1] = v
            for u in (-1, 0, 1):  # conv[t, j] += w[u, s] * v[t + u, j + s]
                for s in (-1, 0, 1):
                    conv += wc[:, u + 1, s + 1] * vp[:, 1 + u:1 + u + T, 1 + s:1 + s + J]
            o = o + conv
            if spe is not None:
                o = o + spe.double()
            lo = 2 * dh * h + branch * dh
            out[..., lo:lo + dh] = o
    return out


@pytest.mark.parametrize("B,T,J,C,H,spe", [(2, 5, 17, 32, 2, True), (1, 1, 16, 16, 2, False),
                                           (1, 3, 4, 64, 8, True), (2, 7, 17, 24, 3, True)])
def test_reference_matches_literal(B, T, J, C, H, spe):
    args = make_inputs(B, T, J, C, H, spe=spe, dtype=torch.float64, seed=T)
    torch.testing.assert_close(stc_attention_reference(*args), literal_stc_attention(*args),
                               rtol=1e-10, atol=1e-10)


def test_reference_float32_and_dtype():
    args = make_inputs(2, 6, 17, 32, 4, dtype=torch.float32)
    out = stc_attention_reference(*args)
    assert out.dtype == torch.float32 and out.shape == (2, 6, 17, 32)
    torch.testing.assert_close(out.double(), literal_stc_attention(*args), rtol=1e-5, atol=1e-5)
    bf = [args[0].bfloat16()] + args[1:]
    assert stc_attention_reference(*bf).dtype == torch.bfloat16


def test_reference_gradcheck():
    assert gradcheck_backend("reference", (1, 4, 5, 16, 2))


# the reference in lower precision against itself in float64 (the harness every backend uses)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("layout", ["interleaved", "head_major"])
def test_reference_lower_precision_vs_float64(dtype, layout):
    check_backend("reference", (2, 5, 17, 32, 2), dtype, layout=layout, memory="transposed")


def test_head_major_layout_is_a_channel_permutation():
    """The reference reads the head-major layout: per half and head, q(dh), k(dh), v(dh)."""
    from stcformer.ops.reference import head_major_index

    args = make_inputs(2, 5, 17, 64, 4, seed=3)
    qkv, rest = args[0], args[1:]
    idx = head_major_index(64, 4)
    assert sorted(idx.tolist()) == list(range(192))
    # head 1 of the temporal half: its q, k, v channels in the official layout, then contiguous
    half, dh = 32, 8
    run = idx[3 * (half + dh):3 * (half + 2 * dh)].tolist()
    ch = [half + dh + d for d in range(dh)]
    assert run == [3 * c for c in ch] + [3 * c + 1 for c in ch] + [3 * c + 2 for c in ch]
    want = literal_stc_attention(qkv, *rest)
    got = stc_attention_reference(qkv[..., idx], *rest, layout="head_major")
    torch.testing.assert_close(got.double(), want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("backend", ["reference", "cpp"])
def test_public_op_head_major_on_every_backend(backend):
    """Backends without native head-major kernels get an interleaved copy: same result, and
    the gradient reaches the head-major tensor in its own layout."""
    from stcformer.ops import dispatch
    from stcformer.ops.reference import head_major_index

    if dispatch.unavailable_reason(backend, "cpu", torch.float32):
        pytest.skip(dispatch.unavailable_reason(backend, "cpu", torch.float32))
    args = make_inputs(1, 4, 17, 64, 4, seed=4)
    qkv, rest = args[0], args[1:]
    hm = qkv[..., head_major_index(64, 4)].clone().requires_grad_(True)
    il = qkv.clone().requires_grad_(True)
    out_hm = stc_attention(hm, *rest, backend=backend, layout="head_major")
    out_il = stc_attention(il, *rest, backend=backend)
    torch.testing.assert_close(out_hm, out_il)
    g = torch.randn_like(out_il)
    (gh,) = torch.autograd.grad(out_hm, hm, g)
    (gi,) = torch.autograd.grad(out_il, il, g)
    torch.testing.assert_close(gh, gi[..., head_major_index(64, 4)])


def test_bad_layout_is_a_clear_error():
    args = make_inputs(1, 3, 17, 64, 4, seed=5)
    with pytest.raises(ValueError, match="layout"):
        stc_attention(*args, layout="q_then_k")
