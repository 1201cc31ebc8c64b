// CPU helpers on lines of the (T, J) grid; LineGeom (csrc/common/stc_geom.h, shared with the
// CUDA kernels) maps (batch, line, position, head, d) to qkv / out offsets and the conv taps to
// weight indices, so one forward and one backward kernel serve both branches and both layouts.
#pragma once

#include <ATen/ATen.h>

#include <limits>
#include <vector>

#include "../common/stc_geom.h"
#include "vec_math.h"

namespace stcformer {
namespace cpu {


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

// Channel x (0 q, 1 k, 2 v; -1: a plain run of dh, for grad_out) of lines l0-1 .. l1 (the task's
// lines plus one halo line each side) into slab[l1 - l0 + 2][P][dh], P = nr + 2 positions
// (-1 .. nr): zero outside the grid and past N, so conv taps need no bounds checks and a line's
// rows 0 .. nr-1 double as a zero-padded row block. src points at batch element b.
template <int DH, typename scalar_t, typename acc_t>
inline void gather_slab(const LineGeom& g, const scalar_t* src, int64_t l0, int64_t l1, int64_t P,
                        int x, int64_t stride_pos, int64_t stride_line, int64_t chan0,
                        acc_t* slab) {
  const int64_t N = g.N, dh = DH > 0 ? DH : g.dh;
  std::fill(slab, slab + (l1 - l0 + 2) * P * dh, acc_t(0));
  for (int64_t line = std::max<int64_t>(l0 - 1, 0); line < std::min(l1 + 1, g.L); ++line) {
    acc_t* row = slab + ((line - l0 + 1) * P + 1) * dh;
    for (int64_t n = 0; n < N; ++n) {
      const scalar_t* p = src + line * stride_line + n * stride_pos + chan0;
      if (x >= 0) {
        for (int64_t d = 0; d < dh; ++d) row[n * dh + d] = to_acc<acc_t>(p[g.chan(d, x)]);
      } else {
        for (int64_t d = 0; d < dh; ++d) row[n * dh + d] = to_acc<acc_t>(p[d]);
      }
    }
  }
}

// Q (scaled) as rows [nr][dh], K^T [dh][nk]; the backward also wants K rows and V^T (else
// nullptr). Padding is zero.
template <int DH, typename scalar_t, typename acc_t>
inline void gather_qk(const LineGeom& g, const scalar_t* qkv_b, int64_t l, int64_t h, acc_t scale,
                      int64_t nr, int64_t nk, acc_t* Q, acc_t* Kt, acc_t* K, acc_t* Vt) {
  const int64_t N = g.N, dh = DH > 0 ? DH : g.dh;
  std::fill(Q + N * dh, Q + nr * dh, acc_t(0));
  if (K) std::fill(K + N * dh, K + nr * dh, acc_t(0));
  for (acc_t* cols : {Kt, Vt})
    if (cols)
      for (int64_t d = 0; d < dh; ++d) std::fill(cols + d * nk + N, cols + (d + 1) * nk, acc_t(0));
  for (int64_t n = 0; n < N; ++n) {
    const scalar_t* p = qkv_b + g.qkv_off(l, n, h);
    for (int64_t d = 0; d < dh; ++d) {
      Q[n * dh + d] = scale * to_acc<acc_t>(p[g.chan(d, 0)]);
      Kt[d * nk + n] = to_acc<acc_t>(p[g.chan(d, 1)]);
    }
    if (K)
      for (int64_t d = 0; d < dh; ++d) {
        K[n * dh + d] = to_acc<acc_t>(p[g.chan(d, 1)]);
        Vt[d * nk + n] = to_acc<acc_t>(p[g.chan(d, 2)]);
      }
  }
}

// y[d] += sum over the 9 taps of taps[k][d] * x[position + offset(k)][d], x a slab line at
// position n (slab rows of dh, P per line); `flip` mirrors the offsets (the conv's transpose)
template <int DH, typename acc_t>
inline void conv_at(const LineGeom& g, const acc_t* taps, const acc_t* x, int64_t P, bool flip,
                    acc_t* y) {
  const int sgn = flip ? -1 : 1;
  if constexpr (vec_rows<acc_t>(DH)) {
    constexpr int NV = DH / kW;
    vfloat acc[NV];
    for (int v = 0; v < NV; ++v) acc[v] = vload(y + v * kW);
    for (int dl = -1; dl <= 1; ++dl)
      for (int dn = -1; dn <= 1; ++dn) {
        const acc_t* wk = taps + g.tap(dl, dn) * DH;
        const acc_t* xs = x + sgn * (dl * P + dn) * DH;
        for (int v = 0; v < NV; ++v) acc[v] += vload(wk + v * kW) * vload(xs + v * kW);
      }
    for (int v = 0; v < NV; ++v) vstore(y + v * kW, acc[v]);
  } else {
    const int64_t dh = DH > 0 ? DH : g.dh;
    for (int dl = -1; dl <= 1; ++dl)
      for (int dn = -1; dn <= 1; ++dn) {
        const acc_t* wk = taps + g.tap(dl, dn) * dh;
        const acc_t* xs = x + sgn * (dl * P + dn) * dh;
        for (int64_t d = 0; d < dh; ++d) y[d] += wk[d] * xs[d];
      }
  }
}

// gw[k][d] += sum_{n < N} go[n][d] * v[n + offset(k)][d]: the conv weight gradient of one line
template <int DH, typename acc_t>
inline void conv_weight_grad(const LineGeom& g, const acc_t* go, const acc_t* v, int64_t P,
                             acc_t* gw) {
  const int64_t N = g.N;
  for (int dl = -1; dl <= 1; ++dl)
    for (int dn = -1; dn <= 1; ++dn) {
      acc_t* gk = gw + g.tap(dl, dn) * (DH > 0 ? DH : g.dh);
      const acc_t* vs = v + (dl * P + dn) * (DH > 0 ? DH : g.dh);
      if constexpr (vec_rows<acc_t>(DH)) {
        constexpr int NV = DH / kW;
        vfloat acc[NV];
        for (int w = 0; w < NV; ++w) acc[w] = vload(gk + w * kW);
        for (int64_t n = 0; n < N; ++n)
          for (int w = 0; w < NV; ++w) acc[w] += vload(go + n * DH + w * kW) * vload(vs + n * DH + w * kW);
        for (int w = 0; w < NV; ++w) vstore(gk + w * kW, acc[w]);
      } else {
        const int64_t dh = DH > 0 ? DH : g.dh;
        for (int64_t n = 0; n < N; ++n)
          for (int64_t d = 0; d < dh; ++d) gk[d] += go[n * dh + d] * vs[n * dh + d];
      }
    }
}

// 0 for real keys, -inf for the padding, added to scores before the softmax
template <typename acc_t>
inline void key_mask(int64_t N, int64_t nk, acc_t* mask) {
  for (int64_t k = 0; k < nk; ++k) mask[k] = k < N ? acc_t(0) : -std::numeric_limits<acc_t>::infinity();
}

// Lines are handed out in fixed groups (not per thread) so that per-group partial sums, and
// hence the weight gradients, do not depend on the number of threads.
constexpr int64_t kLinesPerTask = 4;

// at::parallel_for grain: at least ~2^18 multiply-adds per chunk, so small calls (gradcheck,
// T = 1) run inline instead of paying for waking the thread pool
inline int64_t grain_for(int64_t work_per_task) {
  return std::max<int64_t>(1, (int64_t(1) << 18) / std::max<int64_t>(work_per_task, 1));
}
inline int64_t task_groups(const LineGeom& g) { return (g.L + kLinesPerTask - 1) / kLinesPerTask; }

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
