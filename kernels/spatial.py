"""Spatial half of stc_attention: attention over the J joints of each (b, t, head).

One program owns one (b, head) and a group of FRAMES consecutive frames: a 2D row tile of
R = FRAMES * BLOCK_J rows, row r = frame r // BLOCK_J, joint r % BLOCK_J (J <= BLOCK_J, e.g.
17 -> 32). Its scores are one (R, R) block, masked to the frame-diagonal blocks (a row's keys are
the joints of its own frame): plain 2D tiles, no reshapes, dot shapes >= 16.
q, k, v are read from qkv in the official interleaved layout: spatial channel c of head h
(c = h*DH + d) has q, k, v at 3c, 3c+1, 3c+2, so a head is one contiguous run of 3*DH values.
The output goes straight into the official layout: out[b, t, j, 2*DH*h + d].
"""
import triton
import triton.language as tl

from .common import LN2, LOG2E, dwconv3x3_rows, dwconv3x3_wgrad_rows


@triton.jit
def spatial_fwd_kernel(
    qkv_ptr, w_ptr, b_ptr, spe_ptr, out_ptr, lse_ptr,
    T, J,
    s_qb, s_qt, s_qj, s_qc,
    s_ob, s_ot, s_oj, s_oc,
    scale,
    H: tl.constexpr, DH: tl.constexpr, DHP: tl.constexpr, BLOCK_J: tl.constexpr,
    FRAMES: tl.constexpr, HAS_SPE: tl.constexpr, DOT_PREC: tl.constexpr,
):
    """Spatial attention + depthwise conv of v + spe, forward.

    Pointers: qkv (B, T, J, 3C) any strides (s_q*); w (C/2, 1, 3, 3) and b (C/2,) contiguous
    (the spatial conv); spe (J, DH) contiguous (read only if HAS_SPE); out (B, T, J, C) strides
    s_o*; lse (B, H, T, J) float32 contiguous.
    Constexprs: H heads, DH = C/(2H), DHP = max(16, next_pow2(DH)) (dot-legal padding),
    BLOCK_J = max(16, next_pow2(J)), FRAMES frames per program (power of 2), HAS_SPE,
    DOT_PREC the tl.dot input_precision for float32 inputs.
    Grid: (B * H * cdiv(T, FRAMES),), program = (b * H + h) * cdiv(T, FRAMES) + frame group.
    """
    pid = tl.program_id(0)
    n_groups = tl.cdiv(T, FRAMES)
    g = pid % n_groups
    bh = pid // n_groups
    h = bh % H
    b = bh // H
    R: tl.constexpr = FRAMES * BLOCK_J

    r = tl.arange(0, R)
    t = g * FRAMES + r // BLOCK_J
    j = r % BLOCK_J
    d = tl.arange(0, DHP)
    row_ok = (t < T) & (j < J)
    dm = d < DH
    m2 = row_ok[:, None] & dm[None, :]

    q_ptr = qkv_ptr + b.to(tl.int64) * s_qb + (3 * h * DH) * s_qc
    offs = t[:, None] * s_qt + j[:, None] * s_qj + d[None, :] * (3 * s_qc)
    q = tl.load(q_ptr + offs, mask=m2, other=0.0)
    k = tl.load(q_ptr + s_qc + offs, mask=m2, other=0.0)
    v = tl.load(q_ptr + 2 * s_qc + offs, mask=m2, other=0.0)

    s = tl.dot(q, tl.trans(k), input_precision=DOT_PREC) * (scale * LOG2E)
    key_ok = (j < J)[None, :]
    if FRAMES > 1:  # keys of the row's own frame only
        key_ok = key_ok & ((r // BLOCK_J)[:, None] == (r // BLOCK_J)[None, :])
    s = tl.where(key_ok, s, float("-inf"))
    mx = tl.max(s, axis=1)
    p = tl.exp2(s - mx[:, None])
    l = tl.sum(p, axis=1)
    o = tl.dot(p.to(v.dtype), v, input_precision=DOT_PREC) / l[:, None]

    o += dwconv3x3_rows(q_ptr + 2 * s_qc, t, j, d, w_ptr + h * DH * 9, T, J,
                        s_qt, s_qj, 3 * s_qc, DH, False)
    o += tl.load(b_ptr + h * DH + d, mask=dm, other=0.0).to(tl.float32)[None, :]
    if HAS_SPE:
        o += tl.load(spe_ptr + j[:, None] * DH + d[None, :], mask=m2, other=0.0).to(tl.float32)
    o_ptr = out_ptr + b.to(tl.int64) * s_ob + (2 * h * DH) * s_oc
    tl.store(o_ptr + t[:, None] * s_ot + j[:, None] * s_oj + d[None, :] * s_oc,
             o.to(out_ptr.dtype.element_ty), mask=m2)
    tl.store(lse_ptr + bh.to(tl.int64) * T * J + t * J + j, (mx + tl.log2(l)) * LN2, mask=row_ok)


@triton.jit
def spatial_bwd_kernel(
    qkv_ptr, w_ptr, do_ptr, lse_ptr, dqkv_ptr, pw_ptr, pj_ptr,
    T, J,
    s_qb, s_qt, s_qj, s_qc,
    s_gb, s_gt, s_gj, s_gc,
    s_db, s_dt, s_dj, s_dc,
    scale,
    H: tl.constexpr, DH: tl.constexpr, DHP: tl.constexpr, BLOCK_J: tl.constexpr,
    FRAMES: tl.constexpr, DOT_PREC: tl.constexpr,
):
    """Spatial half, backward: grads of q_s, k_s, v_s and per-program partials of w_s, b_s, spe_s.

    Pointers: qkv (B, T, J, 3C) strides s_q*; w (C/2, 1, 3, 3) contiguous; grad_out (B, T, J, C)
    strides s_g*; lse (B, H, T, J) float32 contiguous (from the forward); grad_qkv (B, T, J, 3C)
    strides s_d* (only the spatial channels are written here); pw float32 (n_programs, 16, DHP):
    rows 0..8 this program's sums for the 3x3 taps of w (rows 9..15 zero); pj float32
    (n_programs, BLOCK_J, DHP): sum of grad_out over the program's frames, per joint (the
    caller reduces it to grad b_s and grad spe_s).
    P is recomputed from lse (nothing of size J x J was saved); a frame's keys are all in the
    block, so rowsum(P * dP) is exact here. Constexprs and grid as in ``spatial_fwd_kernel``.
    """
    pid = tl.program_id(0)
    n_groups = tl.cdiv(T, FRAMES)
    g = pid % n_groups
    bh = pid // n_groups
    h = bh % H
    b = bh // H
    R: tl.constexpr = FRAMES * BLOCK_J

    r = tl.arange(0, R)
    t = g * FRAMES + r // BLOCK_J
    j = r % BLOCK_J
    d = tl.arange(0, DHP)
    row_ok = (t < T) & (j < J)
    dm = d < DH
    m2 = row_ok[:, None] & dm[None, :]

    q_ptr = qkv_ptr + b.to(tl.int64) * s_qb + (3 * h * DH) * s_qc
    g_ptr = do_ptr + b.to(tl.int64) * s_gb + (2 * h * DH) * s_gc
    offs = t[:, None] * s_qt + j[:, None] * s_qj + d[None, :] * (3 * s_qc)
    q = tl.load(q_ptr + offs, mask=m2, other=0.0)
    k = tl.load(q_ptr + s_qc + offs, mask=m2, other=0.0)
    v = tl.load(q_ptr + 2 * s_qc + offs, mask=m2, other=0.0)
    do_raw = tl.load(g_ptr + t[:, None] * s_gt + j[:, None] * s_gj + d[None, :] * s_gc,
                     mask=m2, other=0.0)
    do = do_raw.to(v.dtype)
    lse = tl.load(lse_ptr + bh.to(tl.int64) * T * J + t * J + j, mask=row_ok, other=0.0)

    ok = row_ok[:, None] & (j < J)[None, :]
    if FRAMES > 1:
        ok = ok & ((r // BLOCK_J)[:, None] == (r // BLOCK_J)[None, :])
    s = tl.dot(q, tl.trans(k), input_precision=DOT_PREC) * (scale * LOG2E)
    p = tl.where(ok, tl.exp2(s - (lse * LOG2E)[:, None]), 0.0)
    dp = tl.dot(do, tl.trans(v), input_precision=DOT_PREC)
    delta = tl.sum(p * dp, axis=1)
    ds = p * (dp - delta[:, None])

    dq = tl.dot(ds.to(k.dtype), k, input_precision=DOT_PREC) * scale
    dk = tl.dot(tl.trans(ds).to(q.dtype), q, input_precision=DOT_PREC) * scale
    dv = tl.dot(tl.trans(p).to(v.dtype), do, input_precision=DOT_PREC)
    dv += dwconv3x3_rows(g_ptr, t, j, d, w_ptr + h * DH * 9, T, J, s_gt, s_gj, s_gc, DH, True)

    ety = dqkv_ptr.dtype.element_ty
    dq_ptr = dqkv_ptr + b.to(tl.int64) * s_db + (3 * h * DH) * s_dc
    doffs = t[:, None] * s_dt + j[:, None] * s_dj + d[None, :] * (3 * s_dc)
    tl.store(dq_ptr + doffs, dq.to(ety), mask=m2)
    tl.store(dq_ptr + s_dc + doffs, dk.to(ety), mask=m2)
    tl.store(dq_ptr + 2 * s_dc + doffs, dv.to(ety), mask=m2)

    # this program's share of grad w (3x3 taps) and of grad b / grad spe (per joint)
    dof = do_raw.to(tl.float32)
    taps = dwconv3x3_wgrad_rows(tl.zeros([16, DHP], dtype=tl.float32), dof, q_ptr + 2 * s_qc,
                                t, j, d, T, J, s_qt, s_qj, 3 * s_qc, DH)
    per_joint = tl.sum(tl.reshape(dof, (FRAMES, BLOCK_J, DHP)), axis=0)
    tap = tl.arange(0, 16)
    jj = tl.arange(0, BLOCK_J)
    tl.store(pw_ptr + pid.to(tl.int64) * 16 * DHP + tap[:, None] * DHP + d[None, :], taps)
    tl.store(pj_ptr + pid.to(tl.int64) * BLOCK_J * DHP + jj[:, None] * DHP + d[None, :], per_joint)
