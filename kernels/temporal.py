"""Temporal half of stc_attention: attention over the T frames of each (b, joint, head).

Flash-style: a program owns BLOCK query frames of NB joints of one (b, head) and streams the keys
in blocks of BLOCK frames with an online softmax, so any T (243, 351, 1000, ...) runs without a
T x T buffer; the forward saves only the row log-sum-exp and the backward recomputes P from it.
Its row tile has R = NB * BLOCK rows: row r = joint j0 + r // BLOCK, frame t0 + r % BLOCK. With
NB = 1 (the GPU choice) this is plain 2D flash attention; NB > 1 (the Triton interpreter, which
pays per operation rather than per element) masks the (R, R) scores to the joint-diagonal blocks.
Temporal channel c of head h is C/2 + h*DH + d; its q, k, v sit at 3c, 3c+1, 3c+2 of qkv and
its output at out[b, t, j, 2*DH*h + DH + d].
"""
import triton
import triton.language as tl

from .common import LN2, LOG2E, dwconv3x3_rows, dwconv3x3_wgrad_rows


@triton.jit
def _program_coords(pid, T, J, H: tl.constexpr, NB: tl.constexpr, BLOCK: tl.constexpr):
    """pid -> (frame block, joint group, head, batch); frame blocks of one group are neighbours."""
    n_tb = tl.cdiv(T, BLOCK)
    n_jg = tl.cdiv(J, NB)
    tb = pid % n_tb
    rest = pid // n_tb
    jg = rest % n_jg
    bh = rest // n_jg
    return tb, jg, bh % H, bh // H


@triton.jit
def _pair_mask(r, col_ok, NB: tl.constexpr, BLOCK: tl.constexpr):
    """(R, R) mask: column valid and, when NB > 1, row and column of the same joint."""
    ok = col_ok[None, :]
    if NB > 1:
        ok = ok & ((r // BLOCK)[:, None] == (r // BLOCK)[None, :])
    return ok


@triton.jit
def temporal_fwd_kernel(
    qkv_ptr, w_ptr, b_ptr, spe_ptr, out_ptr, lse_ptr,
    T, J,
    s_qb, s_qt, s_qj, s_qc,
    s_ob, s_ot, s_oj, s_oc,
    scale,
    H: tl.constexpr, DH: tl.constexpr, DHP: tl.constexpr, NB: tl.constexpr, BLOCK: tl.constexpr,
    HAS_SPE: tl.constexpr, DOT_PREC: tl.constexpr,
):
    """Temporal attention (online softmax) + depthwise conv of v + spe, forward.

    Pointers: qkv (B, T, J, 3C) strides s_q*; w (C/2, 1, 3, 3) and b (C/2,) contiguous (the
    temporal conv); spe (J, DH) contiguous (read only if HAS_SPE); out (B, T, J, C) strides s_o*;
    lse (B, H, J, T) float32 contiguous.
    Constexprs: H, DH, DHP = max(16, next_pow2(DH)), NB joints per program, BLOCK query frames =
    key frames per step (NB * BLOCK >= 16), HAS_SPE, DOT_PREC.
    Grid: (B * H * cdiv(J, NB) * cdiv(T, BLOCK),), program =
    ((b * H + h) * cdiv(J, NB) + joint group) * cdiv(T, BLOCK) + frame block.
    """
    pid = tl.program_id(0)
    tb, jg, h, b = _program_coords(pid, T, J, H, NB, BLOCK)
    HALF: tl.constexpr = H * DH
    R: tl.constexpr = NB * BLOCK

    r = tl.arange(0, R)
    pos = r % BLOCK
    j = jg * NB + r // BLOCK
    t = tb * BLOCK + pos
    d = tl.arange(0, DHP)
    jm = j < J
    dm = d < DH
    row_ok = jm & (t < T)
    m2 = row_ok[:, None] & dm[None, :]

    q_ptr = qkv_ptr + b.to(tl.int64) * s_qb + (3 * (HALF + h * DH)) * s_qc
    j_off = j[:, None] * s_qj + d[None, :] * (3 * s_qc)
    q = tl.load(q_ptr + t[:, None] * s_qt + j_off, mask=m2, other=0.0)
    qk_scale = scale * LOG2E

    m_i = tl.full([R], float("-inf"), dtype=tl.float32)
    l_i = tl.zeros([R], dtype=tl.float32)
    acc = tl.zeros([R, DHP], dtype=tl.float32)
    for n0 in range(0, T, BLOCK):
        tk = n0 + pos
        kv_mask = (jm & (tk < T))[:, None] & dm[None, :]
        k = tl.load(q_ptr + s_qc + tk[:, None] * s_qt + j_off, mask=kv_mask, other=0.0)
        v = tl.load(q_ptr + 2 * s_qc + tk[:, None] * s_qt + j_off, mask=kv_mask, other=0.0)
        s = tl.dot(q, tl.trans(k), input_precision=DOT_PREC) * qk_scale
        s = tl.where(_pair_mask(r, tk < T, NB, BLOCK), s, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, axis=1))
        alpha = tl.exp2(m_i - m_new)
        p = tl.exp2(s - m_new[:, None])
        l_i = l_i * alpha + tl.sum(p, axis=1)
        acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision=DOT_PREC)
        m_i = m_new

    o = acc / l_i[:, None]
    o += dwconv3x3_rows(q_ptr + 2 * s_qc, t, j, d, w_ptr + (h * DH) * 9, T, J,
                        s_qt, s_qj, 3 * s_qc, DH, False)
    o += tl.load(b_ptr + h * DH + d, mask=dm, other=0.0).to(tl.float32)[None, :]
    if HAS_SPE:
        o += tl.load(spe_ptr + j[:, None] * DH + d[None, :], mask=jm[:, None] & dm[None, :],
                     other=0.0).to(tl.float32)

    o_ptr = out_ptr + b.to(tl.int64) * s_ob + (2 * h * DH + DH) * s_oc
    tl.store(o_ptr + t[:, None] * s_ot + j[:, None] * s_oj + d[None, :] * s_oc,
             o.to(out_ptr.dtype.element_ty), mask=m2)
    tl.store(lse_ptr + ((b.to(tl.int64) * H + h) * J + j) * T + t, (m_i + tl.log2(l_i)) * LN2,
             mask=row_ok)


@triton.jit
def temporal_bwd_delta_kernel(
    qkv_ptr, w_ptr, b_ptr, spe_ptr, out_ptr, do_ptr, delta_ptr,
    T, J,
    s_qb, s_qt, s_qj, s_qc,
    s_ob, s_ot, s_oj, s_oc,
    s_gb, s_gt, s_gj, s_gc,
    H: tl.constexpr, DH: tl.constexpr, DHP: tl.constexpr, NB: tl.constexpr, BLOCK: tl.constexpr,
    HAS_SPE: tl.constexpr,
):
    """delta[b, h, j, t] = sum_d grad_out * (attention part of out), for the flash backward.

    The attention part is out - conv(v) - b - spe, recomputed here (the forward saved only out).
    Pointers: qkv, w, b, spe as in ``temporal_fwd_kernel``; out (B, T, J, C) strides s_o*;
    grad_out (B, T, J, C) strides s_g*; delta (B, H, J, T) float32 contiguous.
    Constexprs and grid as in ``temporal_fwd_kernel``.
    """
    pid = tl.program_id(0)
    tb, jg, h, b = _program_coords(pid, T, J, H, NB, BLOCK)
    HALF: tl.constexpr = H * DH
    R: tl.constexpr = NB * BLOCK

    r = tl.arange(0, R)
    j = jg * NB + r // BLOCK
    t = tb * BLOCK + r % BLOCK
    d = tl.arange(0, DHP)
    jm = j < J
    dm = d < DH
    row_ok = jm & (t < T)
    m2 = row_ok[:, None] & dm[None, :]

    ch = 2 * h * DH + DH
    o = tl.load(out_ptr + b.to(tl.int64) * s_ob + ch * s_oc + t[:, None] * s_ot + j[:, None] * s_oj
                + d[None, :] * s_oc, mask=m2, other=0.0).to(tl.float32)
    do = tl.load(do_ptr + b.to(tl.int64) * s_gb + ch * s_gc + t[:, None] * s_gt + j[:, None] * s_gj
                 + d[None, :] * s_gc, mask=m2, other=0.0).to(tl.float32)
    v_ptr = qkv_ptr + b.to(tl.int64) * s_qb + (3 * (HALF + h * DH) + 2) * s_qc
    o -= dwconv3x3_rows(v_ptr, t, j, d, w_ptr + (h * DH) * 9, T, J, s_qt, s_qj, 3 * s_qc,
                        DH, False)
    o -= tl.load(b_ptr + h * DH + d, mask=dm, other=0.0).to(tl.float32)[None, :]
    if HAS_SPE:
        o -= tl.load(spe_ptr + j[:, None] * DH + d[None, :], mask=jm[:, None] & dm[None, :],
                     other=0.0).to(tl.float32)
    delta = tl.sum(tl.where(m2, o * do, 0.0), axis=1)
    tl.store(delta_ptr + ((b.to(tl.int64) * H + h) * J + j) * T + t, delta, mask=row_ok)


@triton.jit
def temporal_bwd_kernel(
    qkv_ptr, w_ptr, do_ptr, lse_ptr, delta_ptr, dqkv_ptr, pw_ptr, pj_ptr,
    T, J,
    s_qb, s_qt, s_qj, s_qc,
    s_gb, s_gt, s_gj, s_gc,
    s_db, s_dt, s_dj, s_dc,
    scale,
    H: tl.constexpr, DH: tl.constexpr, DHP: tl.constexpr, NB: tl.constexpr, BLOCK: tl.constexpr,
    DOT_PREC: tl.constexpr,
):
    """Temporal half, backward: grads of q_t, k_t, v_t and per-program partials of w_t, b_t, spe_t.

    A program first takes its frames as keys (dK, dV over all query blocks, plus the adjoint
    conv into dV), then as queries (dQ over all key blocks): every element of grad_qkv is
    written by exactly one program, with no atomics.
    Pointers: qkv (B, T, J, 3C) strides s_q*; w (C/2, 1, 3, 3) contiguous; grad_out (B, T, J, C)
    strides s_g*; lse and delta (B, H, J, T) float32 contiguous; grad_qkv strides s_d* (only the
    temporal channels are written here); pw float32 (n_programs, 16, DHP): rows 0..8 this
    program's sums for the 3x3 taps of w, rows 9..15 zero; pj float32 (n_programs, NB, DHP):
    sum of grad_out over the program's frames, per joint (the caller reduces it to grad b_t and
    grad spe_t). Constexprs and grid as in ``temporal_fwd_kernel``.
    """
    pid = tl.program_id(0)
    tb, jg, h, b = _program_coords(pid, T, J, H, NB, BLOCK)
    HALF: tl.constexpr = H * DH
    R: tl.constexpr = NB * BLOCK

    r = tl.arange(0, R)
    pos = r % BLOCK
    j = jg * NB + r // BLOCK
    t = tb * BLOCK + pos
    d = tl.arange(0, DHP)
    jm = j < J
    dm = d < DH
    row_ok = jm & (t < T)
    m2 = row_ok[:, None] & dm[None, :]

    q_ptr = qkv_ptr + b.to(tl.int64) * s_qb + (3 * (HALF + h * DH)) * s_qc
    g_ptr = do_ptr + b.to(tl.int64) * s_gb + (2 * h * DH + DH) * s_gc
    stat_ptr = ((b.to(tl.int64) * H + h) * J + j) * T  # (R,) row starts in lse / delta
    j_off = j[:, None] * s_qj + d[None, :] * (3 * s_qc)
    g_off = j[:, None] * s_gj + d[None, :] * s_gc
    qk_scale = scale * LOG2E

    # this program's frames as keys: dK = scale * dS^T Q, dV = P^T dO over all query blocks
    k = tl.load(q_ptr + s_qc + t[:, None] * s_qt + j_off, mask=m2, other=0.0)
    v = tl.load(q_ptr + 2 * s_qc + t[:, None] * s_qt + j_off, mask=m2, other=0.0)
    dk = tl.zeros([R, DHP], dtype=tl.float32)
    dv = tl.zeros([R, DHP], dtype=tl.float32)
    for m0 in range(0, T, BLOCK):
        tq = m0 + pos
        q_ok = jm & (tq < T)
        qmask = q_ok[:, None] & dm[None, :]
        q = tl.load(q_ptr + tq[:, None] * s_qt + j_off, mask=qmask, other=0.0)
        do = tl.load(g_ptr + tq[:, None] * s_gt + g_off, mask=qmask, other=0.0).to(v.dtype)
        lse = tl.load(lse_ptr + stat_ptr + tq, mask=q_ok, other=0.0)
        delta = tl.load(delta_ptr + stat_ptr + tq, mask=q_ok, other=0.0)
        s_t = tl.dot(k, tl.trans(q), input_precision=DOT_PREC) * qk_scale  # (keys, queries)
        ok = _pair_mask(r, tq < T, NB, BLOCK) & row_ok[:, None]  # padded keys stay 0
        p_t = tl.where(ok, tl.exp2(s_t - (lse * LOG2E)[None, :]), 0.0)
        dv += tl.dot(p_t.to(v.dtype), do, input_precision=DOT_PREC)
        dp_t = tl.dot(v, tl.trans(do), input_precision=DOT_PREC)
        ds_t = p_t * (dp_t - delta[None, :])
        dk += tl.dot(ds_t.to(q.dtype), q, input_precision=DOT_PREC)
    dk *= scale
    dv += dwconv3x3_rows(g_ptr, t, j, d, w_ptr + (h * DH) * 9, T, J, s_gt, s_gj, s_gc,
                         DH, True)
    ety = dqkv_ptr.dtype.element_ty
    dq_ptr = dqkv_ptr + b.to(tl.int64) * s_db + (3 * (HALF + h * DH)) * s_dc
    d_off = t[:, None] * s_dt + j[:, None] * s_dj + d[None, :] * (3 * s_dc)
    tl.store(dq_ptr + s_dc + d_off, dk.to(ety), mask=m2)
    tl.store(dq_ptr + 2 * s_dc + d_off, dv.to(ety), mask=m2)

    # this program's share of grad w (3x3 taps) and of grad b / grad spe (per joint)
    do_rows = tl.load(g_ptr + t[:, None] * s_gt + g_off, mask=m2, other=0.0)
    dof = do_rows.to(tl.float32)
    taps = dwconv3x3_wgrad_rows(tl.zeros([16, DHP], dtype=tl.float32), dof, q_ptr + 2 * s_qc,
                                t, j, d, T, J, s_qt, s_qj, 3 * s_qc, DH)
    tap = tl.arange(0, 16)
    tl.store(pw_ptr + pid.to(tl.int64) * 16 * DHP + tap[:, None] * DHP + d[None, :], taps)
    if NB == 1:
        per_joint = tl.sum(dof, axis=0)[None, :]
    else:
        per_joint = tl.sum(tl.reshape(dof, (NB, BLOCK, DHP)), axis=1)
    item = tl.arange(0, NB)
    tl.store(pj_ptr + pid.to(tl.int64) * NB * DHP + item[:, None] * DHP + d[None, :], per_joint)

    # this program's frames as queries: dQ = scale * dS K over all key blocks
    q = tl.load(q_ptr + t[:, None] * s_qt + j_off, mask=m2, other=0.0)
    do = do_rows.to(q.dtype)
    lse2 = tl.load(lse_ptr + stat_ptr + t, mask=row_ok, other=0.0) * LOG2E
    delta = tl.load(delta_ptr + stat_ptr + t, mask=row_ok, other=0.0)
    dq = tl.zeros([R, DHP], dtype=tl.float32)
    for n0 in range(0, T, BLOCK):
        tk = n0 + pos
        kv_mask = (jm & (tk < T))[:, None] & dm[None, :]
        k = tl.load(q_ptr + s_qc + tk[:, None] * s_qt + j_off, mask=kv_mask, other=0.0)
        v = tl.load(q_ptr + 2 * s_qc + tk[:, None] * s_qt + j_off, mask=kv_mask, other=0.0)
        s = tl.dot(q, tl.trans(k), input_precision=DOT_PREC) * qk_scale
        p = tl.where(_pair_mask(r, tk < T, NB, BLOCK), tl.exp2(s - lse2[:, None]), 0.0)
        dp = tl.dot(do, tl.trans(v), input_precision=DOT_PREC)
        ds = p * (dp - delta[:, None])
        dq += tl.dot(ds.to(k.dtype), k, input_precision=DOT_PREC)
    tl.store(dq_ptr + d_off, (dq * scale).to(ety), mask=m2)
