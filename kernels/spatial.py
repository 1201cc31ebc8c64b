"""Spatial half of stc_attention: attention over the J joints of each (b, t, head).

A program owns one (b, head) and FRAMES consecutive frames as a 3D tile (FRAMES, JP, DHP):
JP = max(16, next_pow2(J)) joint slots (17 -> 32), DHP = max(16, next_pow2(DH)) channels. The
scores are a batch of FRAMES (JP, JP) blocks (one batched tl.dot), so no score is computed
between joints of different frames.
Spatial channel c = h*DH + d has its q, k, v in the head's run of 3*DH values starting at
3*h*DH (see ``common`` for SD / SW); its output goes to out[b, t, j, 2*DH*h + d].

The backward is persistent: program (b, head, split) walks frame groups split, split + NSPLIT,
...; the gradients of w, b and spe are not reduced here but in one pass over both halves
(``conv.conv_grad_kernel``): a per-tap reduction across each tile costs more than the
attention backward itself.
"""
import triton
import triton.language as tl

from stcformer.kernels.common import LN2, LOG2E, conv3x3


@triton.jit
def spatial_fwd_kernel(
    qkv_ptr, w_ptr, b_ptr, spe_ptr, out_ptr, lse_ptr,
    T, J,
    s_qb, s_qt, s_qj,
    s_ob, s_ot, s_oj,
    scale,
    H: tl.constexpr, DH: tl.constexpr, DHP: tl.constexpr, JP: tl.constexpr,
    FRAMES: tl.constexpr, SD: tl.constexpr, SW: tl.constexpr, HAS_SPE: tl.constexpr,
    DOT_PREC: tl.constexpr,
):
    """Spatial attention + depthwise conv of v + spe, forward.

    Pointers: qkv (B, T, J, 3C) strides (s_qb, s_qt, s_qj, 1); w the prepared conv weights
    (``conv.conv_weight_kernel``: float32 (2, 9, C/2), both halves); b (C/2,) contiguous; spe
    (J, DH) contiguous (read only if HAS_SPE); out (B, T, J, C) strides (s_ob, s_ot, s_oj, 1);
    lse (B, H, T, J) float32 contiguous.
    Constexprs: H heads, DH, DHP, JP (see module doc), FRAMES frames per program (power of 2),
    SD/SW the qkv layout, HAS_SPE, DOT_PREC the tl.dot input_precision for float32 inputs.
    Grid: (B * H * cdiv(T, FRAMES),), program = (b * H + h) * cdiv(T, FRAMES) + frame group.
    """
    pid = tl.program_id(0)
    n_groups = tl.cdiv(T, FRAMES)
    g = pid % n_groups
    bh = pid // n_groups
    h = bh % H
    b = bh // H

    f2 = tl.arange(0, FRAMES)[:, None]
    j2 = tl.arange(0, JP)[None, :]
    t2 = g * FRAMES + f2                      # (F, 1)
    t = t2[:, :, None]                        # (F, 1, 1)
    j = j2[:, :, None]                        # (1, JP, 1)
    d = tl.arange(0, DHP)[None, None, :]      # (1, 1, DHP)
    m3 = (t < T) & (j < J) & (d < DH)

    base = qkv_ptr + b.to(tl.int64) * s_qb + 3 * h * DH
    offs = t * s_qt + j * s_qj + d * SD
    q = tl.load(base + offs, mask=m3, other=0.0)
    k = tl.load(base + SW + offs, mask=m3, other=0.0)
    v = tl.load(base + 2 * SW + offs, mask=m3, other=0.0)

    # raw scores; the scale is folded into the exp2 argument (one FFMA per score)
    qk_scale = scale * LOG2E
    s = tl.dot(q, tl.permute(k, (0, 2, 1)), input_precision=DOT_PREC)
    s = tl.where(tl.arange(0, JP)[None, None, :] < J, s, float("-inf"))  # padded key slots
    mx = tl.max(s, axis=2) * qk_scale
    p = tl.exp2(s * qk_scale - mx[:, :, None])
    l = tl.sum(p, axis=2)
    o = tl.dot(p.to(v.dtype), v, input_precision=DOT_PREC) / l[:, :, None]

    o += conv3x3(base + 2 * SW, t, j, d, w_ptr + h * DH, T, J, s_qt, s_qj, SD, DH, H * DH, False)
    o += tl.load(b_ptr + h * DH + d, mask=d < DH, other=0.0).to(tl.float32)
    if HAS_SPE:
        o += tl.load(spe_ptr + j * DH + d, mask=(j < J) & (d < DH), other=0.0).to(tl.float32)
    o_ptr = out_ptr + b.to(tl.int64) * s_ob + 2 * h * DH
    tl.store(o_ptr + t * s_ot + j * s_oj + d, o.to(out_ptr.dtype.element_ty), mask=m3)
    tl.store(lse_ptr + (bh.to(tl.int64) * T + t2) * J + j2, (mx + tl.log2(l)) * LN2,
             mask=(t2 < T) & (j2 < J))


@triton.jit
def spatial_bwd_kernel(
    qkv_ptr, w_ptr, do_ptr, lse_ptr, dqkv_ptr,
    T, J, NSPLIT,
    s_qb, s_qt, s_qj,
    s_gb, s_gt, s_gj,
    s_db, s_dt, s_dj,
    scale,
    H: tl.constexpr, DH: tl.constexpr, DHP: tl.constexpr, JP: tl.constexpr,
    FRAMES: tl.constexpr, SD: tl.constexpr, SW: tl.constexpr, DOT_PREC: tl.constexpr,
):
    """Spatial half, backward: grads of q_s, k_s, v_s (the conv's adjoint included).

    P is recomputed from lse (nothing of size J x J was saved); a frame's keys are all in the
    tile, so delta = rowsum(P * dP) is exact here.
    Pointers: qkv (B, T, J, 3C) strides (s_q*, 1); w as in ``spatial_fwd_kernel``; grad_out
    (B, T, J, C) strides (s_g*, 1); lse (B, H, T, J) float32 contiguous; grad_qkv strides
    (s_d*, 1), same layout as qkv (only the spatial channels are written here).
    Constexprs as in ``spatial_fwd_kernel``.
    Grid: (B * H * NSPLIT,), program = (b * H + h) * NSPLIT + split.
    """
    pid = tl.program_id(0)
    split = pid % NSPLIT
    bh = pid // NSPLIT
    h = bh % H
    b = bh // H

    f2 = tl.arange(0, FRAMES)[:, None]
    j2 = tl.arange(0, JP)[None, :]
    j = j2[:, :, None]
    d = tl.arange(0, DHP)[None, None, :]
    key_ok = tl.arange(0, JP)[None, None, :] < J
    qk_scale = scale * LOG2E

    base = qkv_ptr + b.to(tl.int64) * s_qb + 3 * h * DH
    g_ptr = do_ptr + b.to(tl.int64) * s_gb + 2 * h * DH
    dbase = dqkv_ptr + b.to(tl.int64) * s_db + 3 * h * DH
    w_h = w_ptr + h * DH
    for grp in range(split, tl.cdiv(T, FRAMES), NSPLIT):
        t2 = grp * FRAMES + f2
        t = t2[:, :, None]
        m3 = (t < T) & (j < J) & (d < DH)
        offs = t * s_qt + j * s_qj + d * SD
        q = tl.load(base + offs, mask=m3, other=0.0)
        k = tl.load(base + SW + offs, mask=m3, other=0.0)
        v = tl.load(base + 2 * SW + offs, mask=m3, other=0.0)
        do = tl.load(g_ptr + t * s_gt + j * s_gj + d, mask=m3, other=0.0).to(v.dtype)
        # padded rows read lse = +inf, so their P is 0 without a row mask; padded key slots
        # (score 0) are masked: their exp2(-lse) could overflow
        lse = tl.load(lse_ptr + (bh.to(tl.int64) * T + t2) * J + j2, mask=(t2 < T) & (j2 < J),
                      other=float("inf")) * LOG2E

        s = tl.dot(q, tl.permute(k, (0, 2, 1)), input_precision=DOT_PREC)
        p = tl.where(key_ok, tl.exp2(s * qk_scale - lse[:, :, None]), 0.0)
        # dS = P (dP - delta) as P dP - P delta: P dP is delta's summand, so one FFMA a score
        pdp = p * tl.dot(do, tl.permute(v, (0, 2, 1)), input_precision=DOT_PREC)
        delta = tl.sum(pdp, axis=2)
        ds = pdp - p * delta[:, :, None]

        dq = tl.dot(ds.to(k.dtype), k, input_precision=DOT_PREC) * scale
        dk = tl.dot(tl.permute(ds, (0, 2, 1)).to(q.dtype), q, input_precision=DOT_PREC) * scale
        dv = tl.dot(tl.permute(p, (0, 2, 1)).to(v.dtype), do, input_precision=DOT_PREC)
        dv += conv3x3(g_ptr, t, j, d, w_h, T, J, s_gt, s_gj, 1, DH, H * DH, True)

        ety = dqkv_ptr.dtype.element_ty
        doffs = t * s_dt + j * s_dj + d * SD
        tl.store(dbase + doffs, dq.to(ety), mask=m3)
        tl.store(dbase + SW + doffs, dk.to(ety), mask=m3)
        tl.store(dbase + 2 * SW + doffs, dv.to(ety), mask=m3)

