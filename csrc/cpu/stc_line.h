// Both branches of stc_attention are the same problem on "lines" of the (T, J) grid:
// spatial attention runs along a frame (positions = joints, lines = frames), temporal
// attention along a joint's trajectory (positions = frames, lines = joints). LineGeom maps
// (batch, line, position, head, d) to qkv / out offsets and the conv taps to weight indices,
// so one forward and one backward kernel serve both branches.
#pragma once

#include <ATen/ATen.h>

#include <vector>

#include "vec_math.h"

namespace stcformer {
namespace cpu {

struct LineGeom {
  int64_t B, T, J, C, half, H, dh;
  bool temporal;
  int64_t N, L;               // positions per line, lines per batch element
  int64_t qkv_pos, qkv_line;  // qkv element strides between positions / lines
  int64_t out_pos, out_line;  // out element strides between positions / lines
  int64_t qkv_chan0;          // offset of the branch's head 0 in a qkv row (interleaved q,k,v)
  int64_t out_chan0;          // offset of the branch inside a head's [spatial | temporal] slot

  LineGeom(int64_t B_, int64_t T_, int64_t J_, int64_t C_, int64_t H_, bool temporal_)
      : B(B_), T(T_), J(J_), C(C_), half(C_ / 2), H(H_), dh(C_ / 2 / H_), temporal(temporal_) {
    N = temporal ? T : J;
    L = temporal ? J : T;
    qkv_pos = temporal ? J * 3 * C : 3 * C;
    qkv_line = temporal ? 3 * C : J * 3 * C;
    out_pos = temporal ? J * C : C;
    out_line = temporal ? C : J * C;
    qkv_chan0 = temporal ? 3 * half : 0;
    out_chan0 = temporal ? dh : 0;
  }
  // weight tap (kernel row = time offset, column = joint offset) of a (line, position) offset
  int tap(int dl, int dn) const { return temporal ? (dn + 1) * 3 + (dl + 1) : (dl + 1) * 3 + (dn + 1); }
  // head h's q of position n on line l; k and v follow at +1, +2
  int64_t qkv_off(int64_t l, int64_t n, int64_t h) const {
    return l * qkv_line + n * qkv_pos + qkv_chan0 + 3 * h * dh;
  }
  int64_t out_off(int64_t l, int64_t n, int64_t h) const {
    return l * out_line + n * out_pos + 2 * dh * h + out_chan0;
  }
  int64_t spe_row(int64_t l, int64_t n) const { return temporal ? l : n; }
};

template <typename acc_t, typename scalar_t>
inline acc_t to_acc(scalar_t x) {
  return static_cast<acc_t>(x);
}

// conv weights of head h as taps-major [9][dh], so the conv epilogue reads them contiguously
template <typename acc_t>
inline void head_taps(const acc_t* w, int64_t h, int64_t dh, acc_t* taps) {
  for (int k = 0; k < 9; ++k)
    for (int64_t d = 0; d < dh; ++d) taps[k * dh + d] = w[(h * dh + d) * 9 + k];
}

// Copy channel x (0 q, 1 k, 2 v) of lines l-1, l, l+1 into dst[3][N+2][dh], zero outside the
// grid, so the 3x3 conv taps need no bounds checks. src points at batch element b.
template <typename scalar_t, typename acc_t>
inline void gather_halo(const LineGeom& g, const scalar_t* src, int64_t l, int64_t h, int x,
                        int64_t stride_pos, int64_t stride_line, int64_t chan0, acc_t* dst) {
  const int64_t N = g.N, dh = g.dh;
  std::fill(dst, dst + 3 * (N + 2) * dh, acc_t(0));
  for (int dl = -1; dl <= 1; ++dl) {
    const int64_t line = l + dl;
    if (line < 0 || line >= g.L) continue;
    acc_t* row = dst + (dl + 1) * (N + 2) * dh + dh;
    for (int64_t n = 0; n < N; ++n) {
      const scalar_t* p = src + line * stride_line + n * stride_pos + chan0;
      if (x >= 0) {
        for (int64_t d = 0; d < dh; ++d) row[n * dh + d] = to_acc<acc_t>(p[3 * d + x]);
      } else {
        for (int64_t d = 0; d < dh; ++d) row[n * dh + d] = to_acc<acc_t>(p[d]);
      }
    }
  }
}

// Q (scaled) as rows [nr][dh], K and V transposed [dh][nk]; padding is zero.
template <typename scalar_t, typename acc_t>
inline void gather_qkv(const LineGeom& g, const scalar_t* qkv_b, int64_t l, int64_t h, acc_t scale,
                       int64_t nr, int64_t nk, acc_t* Q, acc_t* Kt, acc_t* Vt) {
  const int64_t N = g.N, dh = g.dh;
  std::fill(Q + N * dh, Q + nr * dh, acc_t(0));
  for (int64_t d = 0; d < dh; ++d) {
    std::fill(Kt + d * nk + N, Kt + (d + 1) * nk, acc_t(0));
    std::fill(Vt + d * nk + N, Vt + (d + 1) * nk, acc_t(0));
  }
  for (int64_t n = 0; n < N; ++n) {
    const scalar_t* p = qkv_b + g.qkv_off(l, n, h);
    for (int64_t d = 0; d < dh; ++d) {
      Q[n * dh + d] = scale * to_acc<acc_t>(p[3 * d]);
      Kt[d * nk + n] = to_acc<acc_t>(p[3 * d + 1]);
      Vt[d * nk + n] = to_acc<acc_t>(p[3 * d + 2]);
    }
  }
}

// Lines are handed out in fixed groups (not per thread) so that per-group partial sums, and
// hence the weight gradients, do not depend on the number of threads.
inline int64_t lines_per_task(const LineGeom& g) { return g.temporal ? 1 : 4; }

// AT_DISPATCH-like switch from a runtime head dim to a compile-time one (0: runtime)
#define STC_DISPATCH_DH(dh, ...)                 \
  [&] {                                          \
    switch (dh) {                                \
      case 16: {                                 \
        constexpr int DH = 16;                   \
        return __VA_ARGS__();                    \
      }                                          \
      case 32: {                                 \
        constexpr int DH = 32;                   \
        return __VA_ARGS__();                    \
      }                                          \
      case 8: {                                  \
        constexpr int DH = 8;                    \
        return __VA_ARGS__();                    \
      }                                          \
      case 4: {                                  \
        constexpr int DH = 4;                    \
        return __VA_ARGS__();                    \
      }                                          \
      default: {                                 \
        constexpr int DH = 0;                    \
        return __VA_ARGS__();                    \
      }                                          \
    }                                            \
  }()

}  // namespace cpu
}  // namespace stcformer
