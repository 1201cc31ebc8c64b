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
            TRANSPOSED: tl.constexpr):
    """sum_{u,v in -1..1} w[d, u+1, v+1] * x[t + u, j + v, d], for any broadcastable t, j, d.

    x_ptr: scalar pointer to element (t=0, j=0, d=0) of one head's channels of x; element
        (t, j, d) sits at x_ptr + t*s_t + j*s_j + d*s_d.
    t, j, d: int32 index tensors (or scalars) that broadcast to the result's shape; rows
        outside the grid give finite junk (mask the store); channels d >= DH read 0.
    w_ptr: pointer to the head's first channel of tap 0 in the tap-major float32 weights that
        ``conv.conv_weight_kernel`` prepares: tap k of channel d at w_ptr + k * WS + d, so a
        tap's weights are one contiguous vector. TRANSPOSED: read x[t - u, j - v] instead (the
        adjoint: grad of v from grad_out).
    Returns float32 of the broadcast shape of (t, j, d).
    """
    dm = d < DH
    acc = tl.zeros((t + j + d).shape, dtype=tl.float32)
    for u in tl.static_range(3):
        for v in tl.static_range(3):
            if TRANSPOSED:
                tt = t - (u - 1)
                jj = j - (v - 1)
            else:
                tt = t + (u - 1)
                jj = j + (v - 1)
            ok = (tt >= 0) & (tt < T) & (jj >= 0) & (jj < J) & dm
            x = tl.load(x_ptr + tt * s_t + jj * s_j + d * s_d, mask=ok, other=0.0).to(tl.float32)
            w = tl.load(w_ptr + (u * 3 + v) * WS + d, mask=dm, other=0.0)
            acc += w * x
    return acc
