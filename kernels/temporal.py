"""Temporal half of stc_attention: attention over the T frames of each (b, joint, head).

Temporal channel c = C/2 + h*DH + d has its q, k, v in the head's run of 3*DH values starting
at 3*(C/2 + h*DH) (see ``common`` for SD / SW); its output goes to out[b, t, j, 2*DH*h + DH + d].

Row tiles: a program handles NB joints of one (b, head); tile row r is joint jg*NB + r // BLOCK,
frame t0 + r % BLOCK. On a GPU NB = 1 (plain 2D flash-attention tiles, the joint a splat
constant); under the Triton interpreter, which pays per operation rather than per element,
NB > 1 batches joints and masks the scores to pairs of the same joint (``_rows`` / ``_same``).

Forward (any T): a program owns BLOCK_M query frames and walks the keys in blocks of BLOCK_N
with an online softmax; with BLOCK_N >= T (T <= 256 on a GPU: 27, 81, 243) that is one pass of
a plain softmax with K and V loaded once. Only the row log-sum-exp is saved.

Backward, whole row (T <= BLOCK_N): one program per (b, joints, head) holds all T keys, their
dK / dV accumulators and walks the query blocks once, key-stationary: P^T from the lse,
dP^T = V dO^T, delta = column sums of P^T * dP^T in place (the whole key row is there),
dS^T = P^T (dP^T - delta), dQ of the block written at once; 5 dots and 1 exp per score, no
separate delta kernel, no atomics.

Backward, streaming (T > BLOCK_N): ``temporal_bwd_delta_kernel`` computes delta from out, then
``temporal_bwd_kernel`` programs own BLOCK frames as keys (dK, dV over all query blocks) and then
as queries (dQ over all key blocks). The gradients of w, b and spe come from ``conv``.
"""
import triton
import triton.language as tl

from stcformer.kernels.common import LN2, LOG2E, conv3x3


@triton.jit
def _rows(jg, t0, NB: tl.constexpr, BLOCK: tl.constexpr):
    """(joint, frame) of the NB * BLOCK rows of a tile starting at joint group jg, frame t0."""
    r = tl.arange(0, NB * BLOCK)
    if NB == 1:
        j = jg + tl.zeros([BLOCK], dtype=tl.int32)  # a splat: loads stay contiguous vectors
    else:
        j = jg * NB + r // BLOCK
    return j, t0 + r % BLOCK


@triton.jit
def _same(jq, jk, NB: tl.constexpr):
    """(rows, cols) mask: same joint (always true when NB == 1)."""
    if NB == 1:
        return tl.full([jq.shape[0], jk.shape[0]], 1, tl.int1)
    else:
        return jq[:, None] == jk[None, :]


@triton.jit
def _coords(pid, T, J, H: tl.constexpr, NB: tl.constexpr, BLOCK: tl.constexpr):
    """pid -> (frame block, joint group, b * H + h, head, batch); frame blocks are neighbours."""
    n_tb = tl.cdiv(T, BLOCK)
    n_jg = tl.cdiv(J, NB)
    tb = pid % n_tb
    rest = pid // n_tb
    jg = rest % n_jg
    bh = rest // n_jg
    return tb, jg, bh, bh % H, bh // H


@triton.jit
def temporal_fwd_kernel(
    qkv_ptr, w_ptr, b_ptr, spe_ptr, out_ptr, lse_ptr,
    T, J,
    s_qb, s_qt, s_qj,
    s_ob, s_ot, s_oj,
    scale,
    H: tl.constexpr, DH: tl.constexpr, DHP: tl.constexpr, NB: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, SD: tl.constexpr, SW: tl.constexpr,
    HAS_SPE: tl.constexpr, DOT_PREC: tl.constexpr,
):
    """Temporal attention + depthwise conv of v + spe, forward.

    Pointers: qkv (B, T, J, 3C) strides (s_q*, 1); w the prepared conv weights
    (``conv.conv_weight_kernel``: float32 (2, 9, C/2), both halves); b (C/2,) contiguous (the
    temporal conv's bias); spe (J, DH) contiguous (read only if HAS_SPE); out (B, T, J, C)
    strides (s_o*, 1); lse (B, H, J, T) float32 contiguous.
    Constexprs: H, DH, DHP = max(16, next_pow2(DH)), NB joints per program, BLOCK_M query
    frames per program, BLOCK_N key frames per step, SD/SW the qkv layout, HAS_SPE, DOT_PREC.
    Grid: (B * H * cdiv(J, NB) * cdiv(T, BLOCK_M),), program = ((b * H + h) * cdiv(J, NB)
    + joint group) * cdiv(T, BLOCK_M) + query block (neighbours share K and V in L2).
    """
    mb, jg, bh, h, b = _coords(tl.program_id(0), T, J, H, NB, BLOCK_M)
    HALF: tl.constexpr = H * DH
    jq, tq = _rows(jg, mb * BLOCK_M, NB, BLOCK_M)
    d = tl.arange(0, DHP)
    dm = d < DH
    qm = (tq < T) & (jq < J)
    m2 = qm[:, None] & dm[None, :]

    base = qkv_ptr + b.to(tl.int64) * s_qb + 3 * (HALF + h * DH)
    q = tl.load(base + tq[:, None] * s_qt + jq[:, None] * s_qj + d[None, :] * SD, mask=m2, other=0.0)
    qk_scale = scale * LOG2E

    # online softmax on raw scores: the running max m_i is unscaled and the scale rides in
    # the exp2 argument (one FFMA per score); padded keys get -inf by one add per score
    m_i = tl.full([NB * BLOCK_M], float("-inf"), dtype=tl.float32)
    l_i = tl.zeros([NB * BLOCK_M], dtype=tl.float32)
    acc = tl.zeros([NB * BLOCK_M, DHP], dtype=tl.float32)
    tl.assume(T > 0)  # no zero-trip path: ptxas then keeps the wgmma pipelined
    for n0 in range(0, T, BLOCK_N):
        jk, tk = _rows(jg, n0, NB, BLOCK_N)
        km = (tk < T) & (jk < J)
        kv_mask = km[:, None] & dm[None, :]
        kv_off = tk[:, None] * s_qt + jk[:, None] * s_qj + d[None, :] * SD
        k = tl.load(base + SW + kv_off, mask=kv_mask, other=0.0)
        v = tl.load(base + 2 * SW + kv_off, mask=kv_mask, other=0.0)
        s = tl.dot(q, tl.trans(k), input_precision=DOT_PREC)
        if NB == 1:
            s += tl.where(km, 0.0, float("-inf"))[None, :]
        else:
            s = tl.where(km[None, :] & _same(jq, jk, NB), s, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, axis=1))
        alpha = tl.exp2((m_i - m_new) * qk_scale)
        p = tl.exp2(s * qk_scale - (m_new * qk_scale)[:, None])
        l_i = l_i * alpha + tl.sum(p, axis=1)
        acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision=DOT_PREC)
        m_i = m_new

    o = acc / l_i[:, None]
    o += conv3x3(base + 2 * SW, tq[:, None], jq[:, None], d[None, :], w_ptr + 9 * HALF + h * DH,
                 T, J, s_qt, s_qj, SD, DH, HALF, False)
    o += tl.load(b_ptr + h * DH + d, mask=dm, other=0.0).to(tl.float32)[None, :]
    if HAS_SPE:
        o += tl.load(spe_ptr + jq[:, None] * DH + d[None, :], mask=m2, other=0.0).to(tl.float32)

    o_ptr = out_ptr + b.to(tl.int64) * s_ob + 2 * h * DH + DH
    tl.store(o_ptr + tq[:, None] * s_ot + jq[:, None] * s_oj + d[None, :],
             o.to(out_ptr.dtype.element_ty), mask=m2)
    tl.store(lse_ptr + (bh.to(tl.int64) * J + jq) * T + tq, (m_i * qk_scale + tl.log2(l_i)) * LN2,
             mask=qm)


@triton.jit
def temporal_bwd_row_kernel(
    qkv_ptr, w_ptr, do_ptr, lse_ptr, dqkv_ptr,
    T, J,
    s_qb, s_qt, s_qj,
    s_gb, s_gt, s_gj,
    s_db, s_dt, s_dj,
    scale,
    H: tl.constexpr, DH: tl.constexpr, DHP: tl.constexpr, NB: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, SD: tl.constexpr, SW: tl.constexpr,
    DOT_PREC: tl.constexpr,
):
    """Temporal half, backward, whole key row per program (T <= BLOCK_N), key-stationary.

    The program holds all T keys (K, V and the dK / dV accumulators) and streams the query
    blocks: S^T = K Q^T and dP^T = V dO^T are (keys, queries) tiles, so P^T and dS^T are
    the register operands of dV += P^T dO and dK += dS^T Q; only dQ = dS K needs a transpose.
    delta = rowsum(P * dP) is exact here (the whole key row is in the tile).
    Pointers: qkv (B, T, J, 3C) strides (s_q*, 1); w the prepared conv weights (as in
    ``temporal_fwd_kernel``); grad_out
    (B, T, J, C) strides (s_g*, 1); lse (B, H, J, T) float32 contiguous; grad_qkv strides
    (s_d*, 1), qkv's layout (only the temporal channels are written here).
    Constexprs: as in ``temporal_fwd_kernel``; BLOCK_N >= T.
    Grid: (B * H * cdiv(J, NB),), program = (b * H + h) * cdiv(J, NB) + joint group.
    """
    _tb, jg, bh, h, b = _coords(tl.program_id(0), T, J, H, NB, BLOCK_N)
    HALF: tl.constexpr = H * DH

    jk, tk = _rows(jg, 0, NB, BLOCK_N)
    d = tl.arange(0, DHP)
    dm = d < DH
    km = (tk < T) & (jk < J)
    k_mask = km[:, None] & dm[None, :]
    base = qkv_ptr + b.to(tl.int64) * s_qb + 3 * (HALF + h * DH)
    g_ptr = do_ptr + b.to(tl.int64) * s_gb + 2 * h * DH + DH
    dbase = dqkv_ptr + b.to(tl.int64) * s_db + 3 * (HALF + h * DH)
    qk_scale = scale * LOG2E

    kv_off = tk[:, None] * s_qt + jk[:, None] * s_qj + d[None, :] * SD
    k = tl.load(base + SW + kv_off, mask=k_mask, other=0.0)
    v = tl.load(base + 2 * SW + kv_off, mask=k_mask, other=0.0)
    dk = tl.zeros([NB * BLOCK_N, DHP], dtype=tl.float32)
    dv = tl.zeros([NB * BLOCK_N, DHP], dtype=tl.float32)
    ety = dqkv_ptr.dtype.element_ty
    tl.assume(T > 0)  # no zero-trip path: ptxas then keeps the wgmma pipelined
    for m0 in range(0, T, BLOCK_M):
        jq, tq = _rows(jg, m0, NB, BLOCK_M)
        qm = (tq < T) & (jq < J)
        q_mask = qm[:, None] & dm[None, :]
        q = tl.load(base + tq[:, None] * s_qt + jq[:, None] * s_qj + d[None, :] * SD, mask=q_mask,
                    other=0.0)
        do = tl.load(g_ptr + tq[:, None] * s_gt + jq[:, None] * s_gj + d[None, :], mask=q_mask,
                     other=0.0).to(q.dtype)
        # padded queries read lse = +inf: their column of P^T is 0 without a mask
        lse = tl.load(lse_ptr + (bh.to(tl.int64) * J + jq) * T + tq, mask=qm,
                      other=float("inf")) * LOG2E
        s_t = tl.dot(k, tl.trans(q), input_precision=DOT_PREC)          # (keys, queries)
        p_t = tl.exp2(s_t * qk_scale - lse[None, :])
        # padded keys (score 0) are masked: their exp2(-lse) could overflow
        p_t = tl.where(km[:, None] & _same(jk, jq, NB), p_t, 0.0)
        # dS = P (dP - delta) as P dP - P delta: P dP is delta's summand, so one FFMA a score
        pdp_t = p_t * tl.dot(v, tl.trans(do), input_precision=DOT_PREC)
        delta = tl.sum(pdp_t, axis=0)
        ds_t = pdp_t - p_t * delta[None, :]
        dv += tl.dot(p_t.to(v.dtype), do, input_precision=DOT_PREC)
        dk += tl.dot(ds_t.to(q.dtype), q, input_precision=DOT_PREC)
        dq = tl.dot(tl.trans(ds_t).to(k.dtype), k, input_precision=DOT_PREC) * scale
        tl.store(dbase + tq[:, None] * s_dt + jq[:, None] * s_dj + d[None, :] * SD, dq.to(ety),
                 mask=q_mask)

    d_off = tk[:, None] * s_dt + jk[:, None] * s_dj + d[None, :] * SD
    tl.store(dbase + SW + d_off, (dk * scale).to(ety), mask=k_mask)
    # adjoint conv: grad_out of the 3x3 neighbours (other joints too) flows into dV
    # unrolled: here the taps stay a runtime loop otherwise, 9 trips of loop overhead
    dv += conv3x3(g_ptr, tk[:, None], jk[:, None], d[None, :], w_ptr + 9 * HALF + h * DH, T, J,
                  s_gt, s_gj, 1, DH, HALF, True, False)
    tl.store(dbase + 2 * SW + d_off, dv.to(ety), mask=k_mask)


@triton.jit
def temporal_bwd_delta_kernel(
    qkv_ptr, w_ptr, b_ptr, spe_ptr, out_ptr, do_ptr, delta_ptr,
    T, J,
    s_qb, s_qt, s_qj,
    s_ob, s_ot, s_oj,
    s_gb, s_gt, s_gj,
    H: tl.constexpr, DH: tl.constexpr, DHP: tl.constexpr, NB: tl.constexpr,
    BLOCK: tl.constexpr, SD: tl.constexpr, SW: tl.constexpr, HAS_SPE: tl.constexpr,
):
    """Streaming backward, step 1: delta[b, h, j, t] = sum_d grad_out * (attention part of out).

    The attention part is out - conv(v) - b - spe, recomputed here (the forward saved only out).
    Pointers: qkv, w, b, spe as in ``temporal_fwd_kernel``; out and grad_out (B, T, J, C)
    strides (s_o*, 1) and (s_g*, 1); delta (B, H, J, T) float32 contiguous.
    Grid: (B * H * cdiv(J, NB) * cdiv(T, BLOCK),), program order as in ``temporal_fwd_kernel``.
    """
    tb, jg, bh, h, b = _coords(tl.program_id(0), T, J, H, NB, BLOCK)
    HALF: tl.constexpr = H * DH
    j, t = _rows(jg, tb * BLOCK, NB, BLOCK)
    d = tl.arange(0, DHP)
    dm = d < DH
    tm = (t < T) & (j < J)
    m2 = tm[:, None] & dm[None, :]
    ch = 2 * h * DH + DH
    o = tl.load(out_ptr + b.to(tl.int64) * s_ob + ch + t[:, None] * s_ot + j[:, None] * s_oj
                + d[None, :], mask=m2, other=0.0).to(tl.float32)
    do = tl.load(do_ptr + b.to(tl.int64) * s_gb + ch + t[:, None] * s_gt + j[:, None] * s_gj
                 + d[None, :], mask=m2, other=0.0).to(tl.float32)
    v_ptr = qkv_ptr + b.to(tl.int64) * s_qb + 3 * (HALF + h * DH) + 2 * SW
    o -= conv3x3(v_ptr, t[:, None], j[:, None], d[None, :], w_ptr + 9 * HALF + h * DH, T, J, s_qt,
                 s_qj, SD, DH, HALF, False)
    o -= tl.load(b_ptr + h * DH + d, mask=dm, other=0.0).to(tl.float32)[None, :]
    if HAS_SPE:
        o -= tl.load(spe_ptr + j[:, None] * DH + d[None, :], mask=m2, other=0.0).to(tl.float32)
    delta = tl.sum(tl.where(m2, o * do, 0.0), axis=1)
    tl.store(delta_ptr + (bh.to(tl.int64) * J + j) * T + t, delta, mask=tm)


@triton.jit
def temporal_bwd_kernel(
    qkv_ptr, w_ptr, do_ptr, lse_ptr, delta_ptr, dqkv_ptr,
    T, J,
    s_qb, s_qt, s_qj,
    s_gb, s_gt, s_gj,
    s_db, s_dt, s_dj,
    scale,
    H: tl.constexpr, DH: tl.constexpr, DHP: tl.constexpr, NB: tl.constexpr,
    BLOCK: tl.constexpr, SD: tl.constexpr, SW: tl.constexpr, DOT_PREC: tl.constexpr,
):
    """Streaming backward, step 2: grads of q_t, k_t, v_t (the conv's adjoint included).

    A program first takes its BLOCK frames as keys (dK, dV over all query blocks, plus the
    adjoint conv into dV), then as queries (dQ over all key blocks): every element of grad_qkv
    is written by exactly one program, with no atomics.
    Pointers: as in ``temporal_bwd_row_kernel``, plus delta (B, H, J, T) float32 contiguous.
    Grid and program order as in ``temporal_bwd_delta_kernel``.
    """
    pid = tl.program_id(0)
    tb, jg, bh, h, b = _coords(pid, T, J, H, NB, BLOCK)
    HALF: tl.constexpr = H * DH
    j, t = _rows(jg, tb * BLOCK, NB, BLOCK)
    d = tl.arange(0, DHP)
    dm = d < DH
    tm = (t < T) & (j < J)
    m2 = tm[:, None] & dm[None, :]
    base = qkv_ptr + b.to(tl.int64) * s_qb + 3 * (HALF + h * DH)
    g_ptr = do_ptr + b.to(tl.int64) * s_gb + 2 * h * DH + DH
    dbase = dqkv_ptr + b.to(tl.int64) * s_db + 3 * (HALF + h * DH)
    stat = (bh.to(tl.int64) * J + j) * T   # row starts in lse / delta
    qk_scale = scale * LOG2E
    off = t[:, None] * s_qt + j[:, None] * s_qj + d[None, :] * SD
    g_off = t[:, None] * s_gt + j[:, None] * s_gj + d[None, :]

    # this program's frames as keys: dK = scale * dS^T Q, dV = P^T dO over all query blocks
    k = tl.load(base + SW + off, mask=m2, other=0.0)
    v = tl.load(base + 2 * SW + off, mask=m2, other=0.0)
    dk = tl.zeros([NB * BLOCK, DHP], dtype=tl.float32)
    dv = tl.zeros([NB * BLOCK, DHP], dtype=tl.float32)
    for m0 in range(0, T, BLOCK):
        jq, tq = _rows(jg, m0, NB, BLOCK)
        qm = (tq < T) & (jq < J)
        qmask = qm[:, None] & dm[None, :]
        q = tl.load(base + tq[:, None] * s_qt + jq[:, None] * s_qj + d[None, :] * SD, mask=qmask,
                    other=0.0)
        do = tl.load(g_ptr + tq[:, None] * s_gt + jq[:, None] * s_gj + d[None, :], mask=qmask,
                     other=0.0).to(v.dtype)
        q_stat = (bh.to(tl.int64) * J + jq) * T + tq
        lse = tl.load(lse_ptr + q_stat, mask=qm, other=0.0)
        delta = tl.load(delta_ptr + q_stat, mask=qm, other=0.0)
        s_t = tl.dot(k, tl.trans(q), input_precision=DOT_PREC) * qk_scale  # (keys, queries)
        ok = tm[:, None] & qm[None, :] & _same(j, jq, NB)
        p_t = tl.where(ok, tl.exp2(s_t - (lse * LOG2E)[None, :]), 0.0)
        dv += tl.dot(p_t.to(v.dtype), do, input_precision=DOT_PREC)
        dp_t = tl.dot(v, tl.trans(do), input_precision=DOT_PREC)
        ds_t = p_t * (dp_t - delta[None, :])
        dk += tl.dot(ds_t.to(q.dtype), q, input_precision=DOT_PREC)
    dk *= scale
    dv += conv3x3(g_ptr, t[:, None], j[:, None], d[None, :], w_ptr + 9 * HALF + h * DH, T, J,
                  s_gt, s_gj, 1, DH, HALF, True)
    ety = dqkv_ptr.dtype.element_ty
    d_off = t[:, None] * s_dt + j[:, None] * s_dj + d[None, :] * SD
    tl.store(dbase + SW + d_off, dk.to(ety), mask=m2)
    tl.store(dbase + 2 * SW + d_off, dv.to(ety), mask=m2)

    # this program's frames as queries: dQ = scale * dS K over all key blocks
    q = tl.load(base + off, mask=m2, other=0.0)
    do = tl.load(g_ptr + g_off, mask=m2, other=0.0).to(q.dtype)
    lse2 = tl.load(lse_ptr + stat + t, mask=tm, other=0.0) * LOG2E
    delta = tl.load(delta_ptr + stat + t, mask=tm, other=0.0)
    dq = tl.zeros([NB * BLOCK, DHP], dtype=tl.float32)
    for n0 in range(0, T, BLOCK):
        jk, tk = _rows(jg, n0, NB, BLOCK)
        km = (tk < T) & (jk < J)
        kv_mask = km[:, None] & dm[None, :]
        kv_off = tk[:, None] * s_qt + jk[:, None] * s_qj + d[None, :] * SD
        k = tl.load(base + SW + kv_off, mask=kv_mask, other=0.0)
        v = tl.load(base + 2 * SW + kv_off, mask=kv_mask, other=0.0)
        s = tl.dot(q, tl.trans(k), input_precision=DOT_PREC) * qk_scale
        p = tl.where(km[None, :] & _same(j, jk, NB), tl.exp2(s - lse2[:, None]), 0.0)
        dp = tl.dot(do, tl.trans(v), input_precision=DOT_PREC)
        ds = p * (dp - delta[:, None])
        dq += tl.dot(ds.to(k.dtype), k, input_precision=DOT_PREC)
    tl.store(dbase + d_off, (dq * scale).to(ety), mask=m2)
