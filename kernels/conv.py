"""Parameter gradients of the op's two depthwise 3x3 convolutions, biases and spe terms.

Both halves add ``conv(V; w, b) + spe[j]`` to their attention output, so

  grad w[c, 0, u, v] = sum_{b,t,j} g[b, t, j, c] * V[b, t + u - 1, j + v - 1, c]
  grad b[c]          = sum_{b,t,j} g[b, t, j, c]
  grad spe[j, d]     = sum_{b,t,h} g[b, t, j, h*DH + d]

with g the half's channels of grad_out. These are reductions over every row, which the
attention kernels cannot afford inside their tiles (one cross-thread reduction per tap per
tile), so one memory-bound pass does them for both halves at once: ``conv_grad_kernel`` keeps
element-wise sums in registers over a program's frames and reduces them once at its end;
``conv_grad_reduce_kernel`` adds the per-program partials in a fixed order (deterministic, no
atomics) and writes the final gradients. No torch reduction is left in the backward.
"""
import triton
import triton.language as tl


@triton.jit
def _tap(row_ptr, t, tok, jok, u: tl.constexpr, v: tl.constexpr, T, s_t, s_j):
    """V at (t + u - 1, j + v - 1) of each row as float32, 0 outside the grid.

    row_ptr: pointers to V[t, j, d] of the tile; tok: rows in use; jok: (j + v - 1) in range."""
    tt = t + (u - 1)
    ok = tok & jok & (tt >= 0) & (tt < T)
    return tl.load(row_ptr + ((u - 1) * s_t + (v - 1) * s_j), mask=ok, other=0.0).to(tl.float32)


@triton.jit
def conv_grad_kernel(
    qkv_ptr, do_ptr, pw_ptr, pj_ptr,
    T, J, NCHUNK,
    s_qb, s_qt, s_qj,
    s_gb, s_gt, s_gj,
    H: tl.constexpr, DH: tl.constexpr, DHP: tl.constexpr, R: tl.constexpr,
    SD: tl.constexpr, SW: tl.constexpr,
):
    """Per-program partial sums of grad w (9 taps), grad b and grad spe, both halves.

    A tile is R rows x DHP channels holding F = R // J whole frames (row r: frame r // J,
    joint r % J; rows from F * J on idle), so a row keeps its joint from step to step and its
    sums can stay element-wise in registers; no joint padding is loaded.
    Pointers: qkv (B, T, J, 3C) strides (s_q*, 1), layout SD / SW (see ``common``); grad_out
    (B, T, J, C) strides (s_g*, 1); pw float32 (n_programs, 16, DHP): rows 0..8 the taps
    (row u*3+v), rows 9..15 not written; pj float32 (n_programs, R, DHP): sum of g per tile
    row (joint r % J; rows >= F * J are 0).
    Constexprs: H heads, DH, DHP = max(16, next_pow2(DH)), R tile rows (power of 2, >= J),
    SD / SW.
    Grid: (B * 2H * NCHUNK,), program = (b * 2H + half * H + h) * NCHUNK + chunk; a program
    walks the chunk-th of NCHUNK equal runs of frames of one (b, half, head).
    """
    pid = tl.program_id(0)
    chunk = pid % NCHUNK
    hh = (pid // NCHUNK) % (2 * H)
    b = pid // (NCHUNK * 2 * H)
    half = hh // H
    h = hh % H
    HALF: tl.constexpr = H * DH
    F = R // J
    per_chunk = tl.cdiv(tl.cdiv(T, F), NCHUNK) * F
    t_lo = chunk * per_chunk
    t_hi = tl.minimum(T, t_lo + per_chunk)

    r = tl.arange(0, R)[:, None]
    d = tl.arange(0, DHP)[None, :]
    dt = r // J                       # frame of the row inside the step
    j = r % J
    live = (r < F * J) & (d < DH)
    jok0 = j >= 1
    jok2 = j + 1 < J
    v_row = (qkv_ptr + b.to(tl.int64) * s_qb + 3 * (half * HALF + h * DH) + 2 * SW
             + dt * s_qt + j * s_qj + d * SD)
    g_row = do_ptr + b.to(tl.int64) * s_gb + 2 * h * DH + half * DH + dt * s_gt + j * s_gj + d
    zero = tl.zeros([R, DHP], dtype=tl.float32)
    a0, a1, a2, a3, a4, a5, a6, a7, a8 = zero, zero, zero, zero, zero, zero, zero, zero, zero
    rows = zero
    tl.assume(T > 0)
    for t0 in range(t_lo, t_hi, F):
        t = t0 + dt
        tok = live & (t < t_hi)
        g = tl.load(g_row + t0 * s_gt, mask=tok, other=0.0).to(tl.float32)
        vp = v_row + t0 * s_qt
        rows += g
        a0 += g * _tap(vp, t, tok, jok0, 0, 0, T, s_qt, s_qj)
        a1 += g * _tap(vp, t, tok, tok, 0, 1, T, s_qt, s_qj)
        a2 += g * _tap(vp, t, tok, jok2, 0, 2, T, s_qt, s_qj)
        a3 += g * _tap(vp, t, tok, jok0, 1, 0, T, s_qt, s_qj)
        a4 += g * _tap(vp, t, tok, tok, 1, 1, T, s_qt, s_qj)
        a5 += g * _tap(vp, t, tok, jok2, 1, 2, T, s_qt, s_qj)
        a6 += g * _tap(vp, t, tok, jok0, 2, 0, T, s_qt, s_qj)
        a7 += g * _tap(vp, t, tok, tok, 2, 1, T, s_qt, s_qj)
        a8 += g * _tap(vp, t, tok, jok2, 2, 2, T, s_qt, s_qj)

    dd = tl.arange(0, DHP)
    pw = pw_ptr + pid.to(tl.int64) * 16 * DHP + dd
    tl.store(pw + 0 * DHP, tl.sum(a0, axis=0))
    tl.store(pw + 1 * DHP, tl.sum(a1, axis=0))
    tl.store(pw + 2 * DHP, tl.sum(a2, axis=0))
    tl.store(pw + 3 * DHP, tl.sum(a3, axis=0))
    tl.store(pw + 4 * DHP, tl.sum(a4, axis=0))
    tl.store(pw + 5 * DHP, tl.sum(a5, axis=0))
    tl.store(pw + 6 * DHP, tl.sum(a6, axis=0))
    tl.store(pw + 7 * DHP, tl.sum(a7, axis=0))
    tl.store(pw + 8 * DHP, tl.sum(a8, axis=0))
    tl.store(pj_ptr + pid.to(tl.int64) * R * DHP + r * DHP + d, rows)


@triton.jit
def conv_grad_reduce_kernel(
    pw_ptr, pj_ptr, gws_ptr, gbs_ptr, gspes_ptr, gwt_ptr, gbt_ptr, gspet_ptr,
    B, J, NCHUNK,
    H: tl.constexpr, DH: tl.constexpr, DHP: tl.constexpr, R: tl.constexpr,
    PB: tl.constexpr, QB: tl.constexpr,
):
    """Adds the partials of ``conv_grad_kernel`` in a fixed order and writes the gradients.

    Pointers: pw, pj as written by ``conv_grad_kernel``; per half (s: spatial, t: temporal)
    gw (C/2, 1, 3, 3), gb (C/2,), gspe (J, DH), contiguous, any float dtype (stored rounded).
    Constexprs: R the tile rows of ``conv_grad_kernel``, PB / QB partials loaded per step
    (powers of 2).
    Grid: (2H + 2J,): program hh < 2H (= half * H + h) sums its head's B * NCHUNK partials into
    gw and gb; program 2H + half * J + j sums row j of every head of that half into gspe.
    """
    pid = tl.program_id(0)
    d = tl.arange(0, DHP)
    if pid < 2 * H:
        half = pid // H
        h = pid % H
        tap = tl.arange(0, 16)[None, :, None]
        jr = tl.arange(0, R)[None, :, None]
        d3 = d[None, None, :]
        taps = tl.zeros([16, DHP], dtype=tl.float32)
        rows = tl.zeros([R, DHP], dtype=tl.float32)
        n = B * NCHUNK
        for p0 in range(0, n, PB):
            p = p0 + tl.arange(0, PB)[:, None, None]       # partial p = b * NCHUNK + chunk
            prog = ((p // NCHUNK) * 2 * H + pid) * NCHUNK + p % NCHUNK
            taps += tl.sum(tl.load(pw_ptr + prog.to(tl.int64) * 16 * DHP + tap * DHP + d3,
                                   mask=(p < n) & (tap < 9), other=0.0), axis=0)
            rows += tl.sum(tl.load(pj_ptr + prog.to(tl.int64) * R * DHP + jr * DHP + d3,
                                   mask=p < n, other=0.0), axis=0)
        t2 = tl.arange(0, 16)[:, None]
        w_off = (h * DH + d[None, :]) * 9 + t2          # the (C/2, 1, 3, 3) layout of w
        w_ok = (t2 < 9) & (d[None, :] < DH)
        bias = tl.sum(rows, axis=0)
        if half == 0:
            tl.store(gws_ptr + w_off, taps, mask=w_ok)
            tl.store(gbs_ptr + h * DH + d, bias, mask=d < DH)
        else:
            tl.store(gwt_ptr + w_off, taps, mask=w_ok)
            tl.store(gbt_ptr + h * DH + d, bias, mask=d < DH)
    else:
        half = (pid - 2 * H) // J
        j = (pid - 2 * H) % J
        acc = tl.zeros([QB, DHP], dtype=tl.float32)
        n = B * H * NCHUNK
        for q0 in range(0, n, QB):
            q = q0 + tl.arange(0, QB)[:, None]            # q = (b * H + h) * NCHUNK + chunk
            prog = ((q // (H * NCHUNK)) * 2 * H + half * H + (q // NCHUNK) % H) * NCHUNK + q % NCHUNK
            for row in range(j, R, J):                    # the tile rows of joint j
                acc += tl.load(pj_ptr + prog.to(tl.int64) * R * DHP + row * DHP + d[None, :],
                               mask=q < n, other=0.0)
        spe = tl.sum(acc, axis=0)
        if half == 0:
            tl.store(gspes_ptr + j * DH + d, spe, mask=d < DH)
        else:
            tl.store(gspet_ptr + j * DH + d, spe, mask=d < DH)


@triton.jit
def conv_weight_kernel(ws_ptr, wt_ptr, out_ptr, HALF: tl.constexpr, BLOCK: tl.constexpr):
    """The two (C/2, 1, 3, 3) conv weights, tap-major in float32: out[half, tap, c].

    The attention kernels read a tap's weights for a head's DH channels as one vector load
    (instead of DH scalar loads at stride 9), once per call for every kernel of the op.
    Pointers: ws, wt contiguous (C/2, 1, 3, 3), any float dtype; out float32 (2, 9, HALF)
    contiguous, HALF = C/2. Grid: (2 * cdiv(HALF, BLOCK),), program = half * n + block.
    """
    n = tl.cdiv(HALF, BLOCK)
    half = tl.program_id(0) // n
    c = (tl.program_id(0) % n) * BLOCK + tl.arange(0, BLOCK)[:, None]
    tap = tl.arange(0, 16)[None, :]
    ok = (c < HALF) & (tap < 9)
    if half == 0:
        w = tl.load(ws_ptr + c * 9 + tap, mask=ok, other=0.0)
    else:
        w = tl.load(wt_ptr + c * 9 + tap, mask=ok, other=0.0)
    tl.store(out_ptr + (half * 9 + tap) * HALF + c, w.to(tl.float32), mask=ok)
