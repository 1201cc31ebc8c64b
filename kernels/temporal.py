"""Temporal half of stc_attention: attention over the T frames of each (b, joint, head).

Flash-style: a program owns BLOCK query frames of one (b, j, head) and streams the keys in
blocks of BLOCK with an online softmax, so any T (243, 351, 1000, ...) runs without a T x T
buffer; the forward saves only the row log-sum-exp and the backward recomputes P from it.
Temporal channel c of head h is C/2 + h*DH + d; its q, k, v sit at 3c, 3c+1, 3c+2 of qkv and
its output at out[b, t, j, 2*DH*h + DH + d].
"""
import triton
import triton.language as tl

from .common import dwconv3x3_rows, dwconv3x3_wgrad_rows


@triton.jit
def _program_coords(pid, T, J, H: tl.constexpr, BLOCK: tl.constexpr):
    n_tb = tl.cdiv(T, BLOCK)
    tb = pid % n_tb
    bjh = pid // n_tb
    h = bjh % H
    bj = bjh // H
    j = bj % J
    b = bj // J
    return tb, b, j, h


@triton.jit
def temporal_fwd_kernel(
    qkv_ptr, w_ptr, b_ptr, spe_ptr, out_ptr, lse_ptr,
    T, J,
    s_qb, s_qt, s_qj, s_qc,
    s_ob, s_ot, s_oj, s_oc,
    scale,
    H: tl.constexpr, DH: tl.constexpr, DHP: tl.constexpr, BLOCK: tl.constexpr,
    HAS_SPE: tl.constexpr, DOT_PREC: tl.constexpr,
):
    """Temporal attention (online softmax) + depthwise conv of v + spe, forward.

    Pointers: qkv (B, T, J, 3C) strides s_q*; w (C/2, 1, 3, 3) and b (C/2,) contiguous (the
    temporal conv); spe (J, DH) contiguous (read only if HAS_SPE); out (B, T, J, C) strides s_o*;
    lse (B, H, J, T) float32 contiguous.
    Constexprs: H, DH, DHP = max(16, next_pow2(DH)), BLOCK query rows = key rows per step,
    HAS_SPE, DOT_PREC.
    Grid: (B * J * H * cdiv(T, BLOCK),), program = ((b * J + j) * H + h) * cdiv(T, BLOCK) + block:
    the programs sharing one (b, j, h)'s keys are neighbours (L2 reuse).
    """
    pid = tl.program_id(0)
    tb, b, j, h = _program_coords(pid, T, J, H, BLOCK)
    HALF: tl.constexpr = H * DH

    rows = tb * BLOCK + tl.arange(0, BLOCK)
    d = tl.arange(0, DHP)
    rm = rows < T
    dm = d < DH
    m2 = rm[:, None] & dm[None, :]

    # *_grid pointers: element (t=0, j=0) of this head, for the 3x3 neighbourhoods
    q_grid = qkv_ptr + b.to(tl.int64) * s_qb + (3 * (HALF + h * DH)) * s_qc
    q_ptr = q_grid + j * s_qj
    d_off = d[None, :] * (3 * s_qc)
    q = tl.load(q_ptr + rows[:, None] * s_qt + d_off, mask=m2, other=0.0)

    m_i = tl.full([BLOCK], float("-inf"), dtype=tl.float32)
    l_i = tl.zeros([BLOCK], dtype=tl.float32)
    acc = tl.zeros([BLOCK, DHP], dtype=tl.float32)
    for n0 in range(0, T, BLOCK):
        cols = n0 + tl.arange(0, BLOCK)
        cm = cols < T
        kv_mask = cm[:, None] & dm[None, :]
        k = tl.load(q_ptr + s_qc + cols[:, None] * s_qt + d_off, mask=kv_mask, other=0.0)
        v = tl.load(q_ptr + 2 * s_qc + cols[:, None] * s_qt + d_off, mask=kv_mask, other=0.0)
        s = tl.dot(q, tl.trans(k), input_precision=DOT_PREC) * scale
        s = tl.where(cm[None, :], s, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, axis=1))
        alpha = tl.exp(m_i - m_new)
        p = tl.exp(s - m_new[:, None])
        l_i = l_i * alpha + tl.sum(p, axis=1)
        acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision=DOT_PREC)
        m_i = m_new

    o = acc / l_i[:, None]
    jv = tl.zeros([BLOCK], dtype=tl.int32) + j
    o += dwconv3x3_rows(q_grid + 2 * s_qc, rows, jv, d, w_ptr + (h * DH) * 9, T, J,
                        s_qt, s_qj, 3 * s_qc, DH, False)
    o += tl.load(b_ptr + h * DH + d, mask=dm, other=0.0).to(tl.float32)[None, :]
    if HAS_SPE:
        o += tl.load(spe_ptr + j * DH + d, mask=dm, other=0.0).to(tl.float32)[None, :]

    o_ptr = out_ptr + b.to(tl.int64) * s_ob + j * s_oj + (2 * h * DH + DH) * s_oc
    tl.store(o_ptr + rows[:, None] * s_ot + d[None, :] * s_oc,
             o.to(out_ptr.dtype.element_ty), mask=m2)
    lse_row = lse_ptr + ((b.to(tl.int64) * H + h) * J + j) * T
    tl.store(lse_row + rows, m_i + tl.log(l_i), mask=rm)


@triton.jit
def temporal_bwd_delta_kernel(
    qkv_ptr, w_ptr, b_ptr, spe_ptr, out_ptr, do_ptr, delta_ptr,
    T, J,
    s_qb, s_qt, s_qj, s_qc,
    s_ob, s_ot, s_oj, s_oc,
    s_gb, s_gt, s_gj, s_gc,
    H: tl.constexpr, DH: tl.constexpr, DHP: tl.constexpr, BLOCK: tl.constexpr,
    HAS_SPE: tl.constexpr,
):
    """delta[b, h, j, t] = sum_d grad_out * (attention part of out), for the flash backward.

    The attention part is out - conv(v) - b - spe, recomputed here (the forward saved only out).
    Pointers: qkv, w, b, spe as in ``temporal_fwd_kernel``; out (B, T, J, C) strides s_o*;
    grad_out (B, T, J, C) strides s_g*; delta (B, H, J, T) float32 contiguous.
    Constexprs and grid as in ``temporal_fwd_kernel``.
    """
    pid = tl.program_id(0)
    tb, b, j, h = _program_coords(pid, T, J, H, BLOCK)
    HALF: tl.constexpr = H * DH

    rows = tb * BLOCK + tl.arange(0, BLOCK)
    d = tl.arange(0, DHP)
    rm = rows < T
    dm = d < DH
    m2 = rm[:, None] & dm[None, :]

    # *_grid pointers: element (t=0, j=0) of this head, for the 3x3 neighbourhoods
    q_grid = qkv_ptr + b.to(tl.int64) * s_qb + (3 * (HALF + h * DH)) * s_qc
    q_ptr = q_grid + j * s_qj
    ch = 2 * h * DH + DH
    o = tl.load(out_ptr + b.to(tl.int64) * s_ob + j * s_oj + ch * s_oc
                + rows[:, None] * s_ot + d[None, :] * s_oc, mask=m2, other=0.0).to(tl.float32)
    do = tl.load(do_ptr + b.to(tl.int64) * s_gb + j * s_gj + ch * s_gc
                 + rows[:, None] * s_gt + d[None, :] * s_gc, mask=m2, other=0.0).to(tl.float32)
    jv = tl.zeros([BLOCK], dtype=tl.int32) + j
    o -= dwconv3x3_rows(q_grid + 2 * s_qc, rows, jv, d, w_ptr + (h * DH) * 9, T, J,
                        s_qt, s_qj, 3 * s_qc, DH, False)
    o -= tl.load(b_ptr + h * DH + d, mask=dm, other=0.0).to(tl.float32)[None, :]
    if HAS_SPE:
        o -= tl.load(spe_ptr + j * DH + d, mask=dm, other=0.0).to(tl.float32)[None, :]
    delta_row = delta_ptr + ((b.to(tl.int64) * H + h) * J + j) * T
    tl.store(delta_row + rows, tl.sum(tl.where(m2, o * do, 0.0), axis=1), mask=rm)


@triton.jit
def temporal_bwd_kernel(
    qkv_ptr, w_ptr, do_ptr, lse_ptr, delta_ptr, dqkv_ptr, part_ptr,
    T, J,
    s_qb, s_qt, s_qj, s_qc,
    s_gb, s_gt, s_gj, s_gc,
    s_db, s_dt, s_dj, s_dc,
    scale,
    H: tl.constexpr, DH: tl.constexpr, DHP: tl.constexpr, BLOCK: tl.constexpr,
    DOT_PREC: tl.constexpr,
):
    """Temporal half, backward: grads of q_t, k_t, v_t and per-program partials of w_t, b_t, spe_t.

    Program (b, j, h, block n) first takes frames n*BLOCK.. as keys (dK, dV over all query
    blocks, plus the adjoint conv into dV), then as queries (dQ over all key blocks): every
    element of grad_qkv is written by exactly one program, no atomics.
    Pointers: qkv (B, T, J, 3C) strides s_q*; w (C/2, 1, 3, 3) contiguous; grad_out (B, T, J, C)
    strides s_g*; lse and delta (B, H, J, T) float32 contiguous; grad_qkv strides s_d* (only the
    temporal channels are written here); part float32 (n_programs, 16, DHP): rows 0..8 this
    program's sums for the 3x3 taps of w, row 9 the sum of grad_out over its frames (the caller
    reduces it to grad b_t and grad spe_t), rows 10..15 zero.
    Constexprs and grid as in ``temporal_fwd_kernel``.
    """
    pid = tl.program_id(0)
    tb, b, j, h = _program_coords(pid, T, J, H, BLOCK)
    HALF: tl.constexpr = H * DH

    rows = tb * BLOCK + tl.arange(0, BLOCK)
    d = tl.arange(0, DHP)
    rm = rows < T
    dm = d < DH
    m2 = rm[:, None] & dm[None, :]

    # *_grid pointers: element (t=0, j=0) of this head, for the 3x3 neighbourhoods
    q_grid = qkv_ptr + b.to(tl.int64) * s_qb + (3 * (HALF + h * DH)) * s_qc
    q_ptr = q_grid + j * s_qj
    g_grid = do_ptr + b.to(tl.int64) * s_gb + (2 * h * DH + DH) * s_gc
    g_ptr = g_grid + j * s_gj
    dq_ptr = dqkv_ptr + b.to(tl.int64) * s_db + j * s_dj + (3 * (HALF + h * DH)) * s_dc
    stat_row = ((b.to(tl.int64) * H + h) * J + j) * T
    d_off = d[None, :] * (3 * s_qc)
    g_off = d[None, :] * s_gc

    # keys/values of this block: dK = scale * dS^T Q, dV = P^T dO, over all query blocks
    k = tl.load(q_ptr + s_qc + rows[:, None] * s_qt + d_off, mask=m2, other=0.0)
    v = tl.load(q_ptr + 2 * s_qc + rows[:, None] * s_qt + d_off, mask=m2, other=0.0)
    dk = tl.zeros([BLOCK, DHP], dtype=tl.float32)
    dv = tl.zeros([BLOCK, DHP], dtype=tl.float32)
    for m0 in range(0, T, BLOCK):
        qr = m0 + tl.arange(0, BLOCK)
        qm = qr < T
        qmask = qm[:, None] & dm[None, :]
        q = tl.load(q_ptr + qr[:, None] * s_qt + d_off, mask=qmask, other=0.0)
        do = tl.load(g_ptr + qr[:, None] * s_gt + g_off, mask=qmask, other=0.0).to(v.dtype)
        lse = tl.load(lse_ptr + stat_row + qr, mask=qm, other=0.0)
        delta = tl.load(delta_ptr + stat_row + qr, mask=qm, other=0.0)
        s_t = tl.dot(k, tl.trans(q), input_precision=DOT_PREC) * scale  # (keys, queries)
        p_t = tl.exp(s_t - lse[None, :])
        p_t = tl.where(qm[None, :], p_t, 0.0)
        dv += tl.dot(p_t.to(v.dtype), do, input_precision=DOT_PREC)
        dp_t = tl.dot(v, tl.trans(do), input_precision=DOT_PREC)
        ds_t = p_t * (dp_t - delta[None, :])
        dk += tl.dot(ds_t.to(q.dtype), q, input_precision=DOT_PREC)
    dk *= scale
    jv = tl.zeros([BLOCK], dtype=tl.int32) + j
    dv += dwconv3x3_rows(g_grid, rows, jv, d, w_ptr + (h * DH) * 9, T, J, s_gt, s_gj, s_gc,
                         DH, True)
    ety = dqkv_ptr.dtype.element_ty
    d_doff = rows[:, None] * s_dt + d[None, :] * (3 * s_dc)
    tl.store(dq_ptr + s_dc + d_doff, dk.to(ety), mask=m2)
    tl.store(dq_ptr + 2 * s_dc + d_doff, dv.to(ety), mask=m2)

    # this block's share of grad w (3x3 taps) and of grad b / grad spe (row 9)
    do_rows = tl.load(g_ptr + rows[:, None] * s_gt + g_off, mask=m2, other=0.0)
    dof = do_rows.to(tl.float32)
    tap = tl.arange(0, 16)
    acc = tl.where(tap[:, None] == 9, tl.sum(dof, axis=0)[None, :], 0.0)
    acc = dwconv3x3_wgrad_rows(acc, dof, q_grid + 2 * s_qc, rows, jv, d, T, J,
                               s_qt, s_qj, 3 * s_qc, DH)
    tl.store(part_ptr + pid.to(tl.int64) * 16 * DHP + tap[:, None] * DHP + d[None, :], acc)

    # queries of this block: dQ = scale * dS K over all key blocks
    q = tl.load(q_ptr + rows[:, None] * s_qt + d_off, mask=m2, other=0.0)
    do = do_rows.to(q.dtype)
    lse = tl.load(lse_ptr + stat_row + rows, mask=rm, other=0.0)
    delta = tl.load(delta_ptr + stat_row + rows, mask=rm, other=0.0)
    dq = tl.zeros([BLOCK, DHP], dtype=tl.float32)
    for n0 in range(0, T, BLOCK):
        cols = n0 + tl.arange(0, BLOCK)
        cm = cols < T
        kv_mask = cm[:, None] & dm[None, :]
        k = tl.load(q_ptr + s_qc + cols[:, None] * s_qt + d_off, mask=kv_mask, other=0.0)
        v = tl.load(q_ptr + 2 * s_qc + cols[:, None] * s_qt + d_off, mask=kv_mask, other=0.0)
        s = tl.dot(q, tl.trans(k), input_precision=DOT_PREC) * scale
        p = tl.exp(s - lse[:, None])
        p = tl.where(cm[None, :], p, 0.0)
        dp = tl.dot(do, tl.trans(v), input_precision=DOT_PREC)
        ds = p * (dp - delta[:, None])
        dq += tl.dot(ds.to(k.dtype), k, input_precision=DOT_PREC)
    dq *= scale
    tl.store(dq_ptr + d_doff, dq.to(ety), mask=m2)
