"""Spatial half of stc_attention: attention over the J joints of each (b, t, head).

One program owns one (b, head) and a group of FRAMES consecutive frames; it loops over the frames
and keeps the whole (J x J) score block of a frame in registers (J <= BLOCK_J, e.g. 17 -> 32).
q, k, v are read from qkv in the official interleaved layout: spatial channel c of head h
(c = h*DH + d) has q, k, v at 3c, 3c+1, 3c+2, so a head is one contiguous run of 3*DH values.
The output goes straight into the official layout: out[b, t, j, 2*DH*h + d].
"""
import triton
import triton.language as tl

from .common import dwconv3x3_rows, dwconv3x3_wgrad_rows


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
    BLOCK_J = max(16, next_pow2(J)), FRAMES frames per program, HAS_SPE, DOT_PREC the tl.dot
    input_precision ("ieee" for float32 inputs).
    Grid: (B * H * cdiv(T, FRAMES),), program = (b * H + h) * cdiv(T, FRAMES) + frame group.
    """
    pid = tl.program_id(0)
    n_groups = tl.cdiv(T, FRAMES)
    g = pid % n_groups
    bh = pid // n_groups
    h = bh % H
    b = bh // H

    j = tl.arange(0, BLOCK_J)
    d = tl.arange(0, DHP)
    jm = j < J
    dm = d < DH

    q_ptr = qkv_ptr + b.to(tl.int64) * s_qb + (3 * h * DH) * s_qc
    o_ptr = out_ptr + b.to(tl.int64) * s_ob + (2 * h * DH) * s_oc
    lse_row = lse_ptr + bh.to(tl.int64) * T * J
    w_h = w_ptr + h * DH * 9

    bias = tl.load(b_ptr + h * DH + d, mask=dm, other=0.0).to(tl.float32)
    if HAS_SPE:
        extra = tl.load(spe_ptr + j[:, None] * DH + d[None, :], mask=jm[:, None] & dm[None, :],
                        other=0.0).to(tl.float32) + bias[None, :]
    else:
        extra = tl.zeros([BLOCK_J, DHP], dtype=tl.float32) + bias[None, :]

    for i in range(FRAMES):
        t = g * FRAMES + i
        tv = tl.zeros([BLOCK_J], dtype=tl.int32) + t
        row_ok = jm & (tv < T)
        m2 = row_ok[:, None] & dm[None, :]
        offs = t * s_qt + j[:, None] * s_qj + d[None, :] * (3 * s_qc)
        q = tl.load(q_ptr + offs, mask=m2, other=0.0)
        k = tl.load(q_ptr + s_qc + offs, mask=m2, other=0.0)
        v = tl.load(q_ptr + 2 * s_qc + offs, mask=m2, other=0.0)

        s = tl.dot(q, tl.trans(k), input_precision=DOT_PREC) * scale
        s = tl.where(jm[None, :], s, float("-inf"))  # padded joints are no keys
        mx = tl.max(s, axis=1)
        p = tl.exp(s - mx[:, None])
        l = tl.sum(p, axis=1)
        o = tl.dot(p.to(v.dtype), v, input_precision=DOT_PREC) / l[:, None]

        o += dwconv3x3_rows(q_ptr + 2 * s_qc, tv, j, d, w_h, T, J, s_qt, s_qj, 3 * s_qc,
                            DH, False)
        o += extra
        tl.store(o_ptr + t * s_ot + j[:, None] * s_oj + d[None, :] * s_oc,
                 o.to(out_ptr.dtype.element_ty), mask=m2)
        tl.store(lse_row + t * J + j, mx + tl.log(l), mask=row_ok)


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
    rows 0..8 are this program's sums for the 3x3 taps of w (rows 9..15 zero); pj float32
    (n_programs, BLOCK_J, DHP): sum over this program's frames of grad_out per joint (the caller
    reduces it to grad b_s and grad spe_s).
    P is recomputed from lse (nothing of size J x J was saved); a frame's rows are all in the
    block, so rowsum(P * dP) is exact here. Constexprs and grid as in ``spatial_fwd_kernel``.
    """
    pid = tl.program_id(0)
    n_groups = tl.cdiv(T, FRAMES)
    g = pid % n_groups
    bh = pid // n_groups
    h = bh % H
    b = bh // H

    j = tl.arange(0, BLOCK_J)
    d = tl.arange(0, DHP)
    jm = j < J
    dm = d < DH

    q_ptr = qkv_ptr + b.to(tl.int64) * s_qb + (3 * h * DH) * s_qc
    g_ptr = do_ptr + b.to(tl.int64) * s_gb + (2 * h * DH) * s_gc
    dq_ptr = dqkv_ptr + b.to(tl.int64) * s_db + (3 * h * DH) * s_dc
    lse_row = lse_ptr + bh.to(tl.int64) * T * J
    w_h = w_ptr + h * DH * 9

    acc_w = tl.zeros([16, DHP], dtype=tl.float32)
    acc_j = tl.zeros([BLOCK_J, DHP], dtype=tl.float32)
    for i in range(FRAMES):
        t = g * FRAMES + i
        tv = tl.zeros([BLOCK_J], dtype=tl.int32) + t
        row_ok = jm & (tv < T)
        m2 = row_ok[:, None] & dm[None, :]
        offs = t * s_qt + j[:, None] * s_qj + d[None, :] * (3 * s_qc)
        q = tl.load(q_ptr + offs, mask=m2, other=0.0)
        k = tl.load(q_ptr + s_qc + offs, mask=m2, other=0.0)
        v = tl.load(q_ptr + 2 * s_qc + offs, mask=m2, other=0.0)
        do = tl.load(g_ptr + t * s_gt + j[:, None] * s_gj + d[None, :] * s_gc, mask=m2, other=0.0)
        lse = tl.load(lse_row + t * J + j, mask=row_ok, other=0.0)

        s = tl.dot(q, tl.trans(k), input_precision=DOT_PREC) * scale
        p = tl.exp(s - lse[:, None])
        p = tl.where(row_ok[:, None] & jm[None, :], p, 0.0)
        dp = tl.dot(do.to(v.dtype), tl.trans(v), input_precision=DOT_PREC)
        delta = tl.sum(p * dp, axis=1)
        ds = p * (dp - delta[:, None])

        dq = tl.dot(ds.to(k.dtype), k, input_precision=DOT_PREC) * scale
        dk = tl.dot(tl.trans(ds).to(q.dtype), q, input_precision=DOT_PREC) * scale
        dv = tl.dot(tl.trans(p).to(v.dtype), do.to(v.dtype), input_precision=DOT_PREC)
        dv += dwconv3x3_rows(g_ptr, tv, j, d, w_h, T, J, s_gt, s_gj, s_gc, DH, True)

        doffs = t * s_dt + j[:, None] * s_dj + d[None, :] * (3 * s_dc)
        ety = dqkv_ptr.dtype.element_ty
        tl.store(dq_ptr + doffs, dq.to(ety), mask=m2)
        tl.store(dq_ptr + s_dc + doffs, dk.to(ety), mask=m2)
        tl.store(dq_ptr + 2 * s_dc + doffs, dv.to(ety), mask=m2)

        dof = do.to(tl.float32)
        acc_w = dwconv3x3_wgrad_rows(acc_w, dof, q_ptr + 2 * s_qc, tv, j, d, T, J,
                                     s_qt, s_qj, 3 * s_qc, DH)
        acc_j += dof

    tap = tl.arange(0, 16)
    tl.store(pw_ptr + pid.to(tl.int64) * 16 * DHP + tap[:, None] * DHP + d[None, :], acc_w)
    tl.store(pj_ptr + pid.to(tl.int64) * BLOCK_J * DHP + j[:, None] * DHP + d[None, :], acc_j)
