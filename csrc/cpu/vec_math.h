// Small loops the compiler vectorises (-O3 + `omp simd`): the building blocks of the
// attention kernels. Rows come in blocks of kRows so that each key/value load feeds kRows FMAs.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

namespace stcformer {
namespace cpu {

constexpr int kRows = 4;     // query rows per block
constexpr int kKeyPad = 16;  // key axis padded to whole vectors (no scalar tails)

inline int64_t round_up(int64_t n, int64_t m) { return (n + m - 1) / m * m; }

// Cephes-style expf: ~1 ulp, and unlike std::exp it vectorises without -ffast-math.
// Clamped to the normal range; softmax only feeds it x <= ~0.
inline float fast_exp(float x) {
  x = std::min(std::max(x, -87.0f), 88.0f);
  const float fx = std::floor(x * 1.44269504088896341f + 0.5f);
  const float r = x - fx * 0.693359375f + fx * 2.12194440e-4f;
  float y = 1.9875691500e-4f;
  y = y * r + 1.3981999507e-3f;
  y = y * r + 8.3334519073e-3f;
  y = y * r + 4.1665795894e-2f;
  y = y * r + 1.6666665459e-1f;
  y = y * r + 5.0000001201e-1f;
  y = y * r * r + r + 1.0f;
  const int32_t bits = (static_cast<int32_t>(fx) + 127) << 23;
  float p2;
  std::memcpy(&p2, &bits, sizeof p2);
  return y * p2;
}
inline double fast_exp(double x) { return std::exp(x); }  // float64 is the gradcheck path

// s[r*nk + w] = sum_d a[r*dh + d] * bt[d*nk + w]   (kRows rows of a, w < nk)
template <int DH, typename T>
inline void rows_x_cols(const T* a, const T* bt, int64_t nk, int dh_rt, T* s) {
  const int dh = DH > 0 ? DH : dh_rt;
#pragma omp simd
  for (int64_t w = 0; w < nk; ++w) {
    T a0 = 0, a1 = 0, a2 = 0, a3 = 0;
    for (int d = 0; d < dh; ++d) {
      const T b = bt[d * nk + w];
      a0 += a[d] * b;
      a1 += a[dh + d] * b;
      a2 += a[2 * dh + d] * b;
      a3 += a[3 * dh + d] * b;
    }
    s[w] = a0;
    s[nk + w] = a1;
    s[2 * nk + w] = a2;
    s[3 * nk + w] = a3;
  }
}

// y[r*dh + d] = mul * sum_w p[r*nk + w] * bt[d*nk + w]
template <int DH, typename T>
inline void rows_x_rows(const T* p, const T* bt, int64_t nk, int dh_rt, T mul, T* y) {
  const int dh = DH > 0 ? DH : dh_rt;
  for (int d = 0; d < dh; ++d) {
    const T* b = bt + d * nk;
    T a0 = 0, a1 = 0, a2 = 0, a3 = 0;
#pragma omp simd reduction(+ : a0, a1, a2, a3)
    for (int64_t w = 0; w < nk; ++w) {
      a0 += p[w] * b[w];
      a1 += p[nk + w] * b[w];
      a2 += p[2 * nk + w] * b[w];
      a3 += p[3 * nk + w] * b[w];
    }
    y[d] = a0 * mul;
    y[dh + d] = a1 * mul;
    y[2 * dh + d] = a2 * mul;
    y[3 * dh + d] = a3 * mul;
  }
}

// bt[d*nk + w] += sum_r p[r*nk + w] * a[r*dh + d]
template <int DH, typename T>
inline void add_outer(const T* p, const T* a, int64_t nk, int dh_rt, T* bt) {
  const int dh = DH > 0 ? DH : dh_rt;
  for (int d = 0; d < dh; ++d) {
    const T a0 = a[d], a1 = a[dh + d], a2 = a[2 * dh + d], a3 = a[3 * dh + d];
    T* b = bt + d * nk;
#pragma omp simd
    for (int64_t w = 0; w < nk; ++w)
      b[w] += p[w] * a0 + p[nk + w] * a1 + p[2 * nk + w] * a2 + p[3 * nk + w] * a3;
  }
}

}  // namespace cpu
}  // namespace stcformer
