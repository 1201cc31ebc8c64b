"""Triton helpers shared by the spatial and temporal stc_attention kernels.

Layout of qkv inside one head's run of 3*DH values (the op's ``layout`` argument), passed to
every kernel as constexpr strides in elements: channel d of q, k, v sits at
``d * SD + {0, 1, 2} * SW`` from the start of the run.
  interleaved (official): SD = 3, SW = 1 (q, k, v of a channel side by side: stride-3 loads)
  head_major:             SD = 1, SW = DH (q(DH), k(DH), v(DH): contiguous vector loads)
The last dimension of qkv, out, grad_out and grad_qkv always has unit stride (the launcher
makes it so), so a head's DH values are one contiguous vector in head-major and in out.

Both halves of the op add ``conv(V; w, b)``, a 3x3 depthwise convolution of v over the
(time, joint index) grid. The helpers read the 3x3 neighbourhood of each row straight from
global memory (zero outside the grid; the neighbours are mostly L1/L2 hits), so no padded copy
of v or of grad_out is ever made.
"""
import triton
import triton.language as tl

LOG2E = tl.constexpr(1.4426950408889634)  # softmax runs in base 2: exp(x) = exp2(x * log2 e)
LN2 = tl.constexpr(0.6931471805599453)


@triton.jit
def conv3x3(x_ptr, t, j, d, w_ptr, T, J, s_t, s_j, s_d, DH: tl.constexpr, WS: tl.constexpr,
            TRANSPOSED: tl.constexpr, IN_ORDER: tl.constexpr = True):
    """sum_{u,v in -1..1} w[d, u+1, v+1] * x[t + u, j + v, d], for any broadcastable t, j, d.

    x_ptr: scalar pointer to element (t=0, j=0, d=0) of one head's channels of x; element
        (t, j, d) sits at x_ptr + t*s_t + j*s_j + d*s_d.
    t, j, d: int32 index tensors (or scalars) that broadcast to the result's shape; rows
        outside the grid give finite junk (mask the store); channels d >= DH read 0.
    w_ptr: pointer to the head's first channel of tap 0 in the tap-major float32 weights that
        ``conv.conv_weight_kernel`` prepares: tap k of channel d at w_ptr + k * WS + d, so a
        tap's weights are one contiguous vector. TRANSPOSED: read x[t - u, j - v] instead (the
        adjoint: grad of v from grad_out).
    IN_ORDER: the taps as a loop that is not software-pipelined; unrolled up front, the nine
        neighbour loads are all issued first and held at once (the spatial kernels then need
        80-100 more registers). The compiler still unrolls the loop where that pays.
    Returns float32 of the broadcast shape of (t, j, d).
    """
    dm = d < DH
    acc = tl.zeros((t + j + d).shape, dtype=tl.float32)
    if IN_ORDER:
        for tap in tl.range(0, 9, num_stages=1):
            acc += _conv_tap(x_ptr, t, j, d, dm, w_ptr, tap // 3 - 1, tap % 3 - 1, tap, T, J,
                             s_t, s_j, s_d, WS, TRANSPOSED)
    else:
        for tap in tl.static_range(9):
            acc += _conv_tap(x_ptr, t, j, d, dm, w_ptr, tap // 3 - 1, tap % 3 - 1, tap, T, J,
                             s_t, s_j, s_d, WS, TRANSPOSED)
    return acc


@triton.jit
def _conv_tap(x_ptr, t, j, d, dm, w_ptr, u, v, tap, T, J, s_t, s_j, s_d, WS: tl.constexpr,
              TRANSPOSED: tl.constexpr):
    """w[d, tap] * x[t + u, j + v, d] (x[t - u, j - v] when TRANSPOSED), 0 outside the grid."""
    if TRANSPOSED:
        tt = t - u
        jj = j - v
    else:
        tt = t + u
        jj = j + v
    ok = (tt >= 0) & (tt < T) & (jj >= 0) & (jj < J) & dm
    x = tl.load(x_ptr + tt * s_t + jj * s_j + d * s_d, mask=ok, other=0.0).to(tl.float32)
    return tl.load(w_ptr + tap * WS + d, mask=dm, other=0.0) * x
