"""Triton helpers shared by the spatial and temporal stc_attention kernels.

Both halves of the op add ``conv(V; w, b)``, a 3x3 depthwise convolution of v over the
(time, joint index) grid. A program holds a tile of output rows ``(t[r], j[r])`` and the dh
channels of one head; the helpers below read the 3x3 neighbourhood of each row straight from
global memory (zero outside the grid), so no padded copy of v or of grad_out is ever made.
"""
import triton
import triton.language as tl

LOG2E = tl.constexpr(1.4426950408889634)  # softmax runs in base 2: exp(x) = exp2(x * log2 e)
LN2 = tl.constexpr(0.6931471805599453)


@triton.jit
def dwconv3x3_rows(x_ptr, t, j, d, w_ptr, T, J, s_t, s_j, s_d,
                   DH: tl.constexpr, TRANSPOSED: tl.constexpr):
    """sum_{u,v in -1..1} w[d, u+1, v+1] * x[t + u, j + v, d] for every row r of the tile.

    x_ptr: scalar pointer to element (t=0, j=0, d=0) of one head's channels of x; element
        (t, j, d) sits at x_ptr + t*s_t + j*s_j + d*s_d.
    t, j: int32 (R,) row coordinates (rows outside the grid produce finite junk; mask stores).
    d: int32 (DHP,) channel index, DHP >= DH (padding channels read 0).
    w_ptr: pointer to w[c0, 0, 0, 0] of a contiguous (C/2, 1, 3, 3) weight, c0 = first channel.
    TRANSPOSED: read x[t - u, j - v] instead: the adjoint, used for grad of v from grad_out.
    Returns float32 (R, DHP).
    """
    dm = d < DH
    acc = tl.zeros([t.shape[0], d.shape[0]], dtype=tl.float32)
    for u in tl.static_range(3):
        for v in tl.static_range(3):
            if TRANSPOSED:
                tt = t - (u - 1)
                jj = j - (v - 1)
            else:
                tt = t + (u - 1)
                jj = j + (v - 1)
            rm = (tt >= 0) & (tt < T) & (jj >= 0) & (jj < J)
            x = tl.load(x_ptr + tt[:, None] * s_t + jj[:, None] * s_j + d[None, :] * s_d,
                        mask=rm[:, None] & dm[None, :], other=0.0).to(tl.float32)
            w = tl.load(w_ptr + d * 9 + (u * 3 + v), mask=dm, other=0.0).to(tl.float32)
            acc += w[None, :] * x
    return acc


@triton.jit
def dwconv3x3_wgrad_rows(acc, g, x_ptr, t, j, d, T, J, s_t, s_j, s_d, DH: tl.constexpr):
    """acc[u*3+v, :] += sum_r g[r, :] * x[t[r] + u - 1, j[r] + v - 1, :] (grad of the 3x3 weights).

    acc: float32 (16, DHP) running partial sums, rows 0..8 are the taps (row u*3+v), rows 9..15
        are left as they are. g: float32 (R, DHP) grad_out of the rows (0 on invalid rows).
    x_ptr, t, j, d, s_*: as in ``dwconv3x3_rows``. Returns the updated acc.
    """
    dm = d < DH
    tap = tl.arange(0, 16)
    for u in tl.static_range(3):
        for v in tl.static_range(3):
            tt = t + (u - 1)
            jj = j + (v - 1)
            rm = (tt >= 0) & (tt < T) & (jj >= 0) & (jj < J)
            x = tl.load(x_ptr + tt[:, None] * s_t + jj[:, None] * s_j + d[None, :] * s_d,
                        mask=rm[:, None] & dm[None, :], other=0.0).to(tl.float32)
            contrib = tl.sum(g * x, axis=0)
            acc += tl.where(tap[:, None] == (u * 3 + v), contrib[None, :], 0.0)
    return acc

