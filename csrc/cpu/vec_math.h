// Inner loops of the attention kernels. float uses GCC/Clang vector extensions (kW lanes: the
// widest the build targets), so the code is explicit about vectorisation without intrinsics;
// double (the gradcheck path) and head dims that are not whole vectors use plain loops.
//
// Layouts (per line of N positions, nr = N rounded up to kRows, nk = N rounded up to kKeyPad):
//   rows   [nr][dh]  Q (pre-scaled), dO, K, V, dK, dV, O
//   cols   [dh][nk]  K^T, V^T          (zero beyond N)
//   scores [kRows][nk]                 (one block of query rows)
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>

namespace stcformer {
namespace cpu {

constexpr int kRows = 4;  // query rows per block: each key/value load feeds kRows FMAs (code assumes 4)
constexpr int kKeyPad = 16;  // key axis padded to whole vectors
#if defined(__AVX512F__)
constexpr int kW = 16;
#else
constexpr int kW = 8;
#endif
static_assert(kKeyPad % kW == 0, "key padding must be whole vectors");

typedef float vfloat __attribute__((vector_size(kW * sizeof(float))));
typedef int32_t vint __attribute__((vector_size(kW * sizeof(int32_t))));
typedef float vfloat_u __attribute__((vector_size(kW * sizeof(float)), aligned(4), may_alias));

inline vfloat vload(const float* p) { return *reinterpret_cast<const vfloat_u*>(p); }
inline void vstore(float* p, vfloat v) { *reinterpret_cast<vfloat_u*>(p) = v; }
inline float hsum(vfloat v) {
  float s = 0;
  for (int i = 0; i < kW; ++i) s += v[i];
  return s;
}
inline float hmax(vfloat v) {
  float m = v[0];
  for (int i = 1; i < kW; ++i) m = std::max(m, v[i]);
  return m;
}

inline int64_t round_up(int64_t n, int64_t m) { return (n + m - 1) / m * m; }

// Cephes-style exp, ~1 ulp on [-87, 88]; 0 below (so exp(-inf) = 0 for masked keys), NaN stays
// NaN (the clamps below would turn it into a finite number: a NaN input must reach the output).
// Round-to-nearest by the 1.5 * 2^23 trick: no float<->int conversions needed.
inline vfloat vexp(vfloat x) {
  const vfloat magic = vfloat{} + 12582912.0f;
  const vint is_nan = x != x;
  const vfloat x_in = x;
  const vint zero_below = x >= -87.0f;
  x = x < 88.0f ? x : vfloat{} + 88.0f;
  x = x > -87.0f ? x : vfloat{} - 87.0f;
  const vfloat big = x * 1.44269504088896341f + magic;
  const vfloat n = big - magic;
  const vint ni = (vint)big - (vint)magic;
  const vfloat r = x - n * 0.693359375f + n * 2.12194440e-4f;
  vfloat y = vfloat{} + 1.9875691500e-4f;
  y = y * r + 1.3981999507e-3f;
  y = y * r + 8.3334519073e-3f;
  y = y * r + 4.1665795894e-2f;
  y = y * r + 1.6666665459e-1f;
  y = y * r + 5.0000001201e-1f;
  y = y * r * r + r + 1.0f;
  const vint p2 = (ni + 127) << 23;
  const vint res = (vint)(y * (vfloat)p2) & zero_below;
  return (vfloat)((res & ~is_nan) | ((vint)x_in & is_nan));
}

template <typename T>
constexpr bool vec_rows(int DH) {  // the dh axis is whole float vectors
  return std::is_same<T, float>::value && DH > 0 && DH % kW == 0;
}

// s[r][w] = sum_d a[r][d] * bt[d][w] for the kRows rows of a, w < nk
template <int DH, typename T>
inline void scores(const T* a, const T* bt, int64_t nk, int dh_rt, T* s) {
  const int dh = DH > 0 ? DH : dh_rt;
  if constexpr (std::is_same<T, float>::value) {
    for (int64_t w = 0; w < nk; w += kW) {
      vfloat a0{}, a1{}, a2{}, a3{};
      for (int d = 0; d < dh; ++d) {
        const vfloat b = vload(bt + d * nk + w);
        a0 += a[d] * b;
        a1 += a[dh + d] * b;
        a2 += a[2 * dh + d] * b;
        a3 += a[3 * dh + d] * b;
      }
      vstore(s + w, a0);
      vstore(s + nk + w, a1);
      vstore(s + 2 * nk + w, a2);
      vstore(s + 3 * nk + w, a3);
    }
  } else {
    for (int r = 0; r < kRows; ++r)
      for (int64_t w = 0; w < nk; ++w) {
        T acc = 0;
        for (int d = 0; d < dh; ++d) acc += a[r * dh + d] * bt[d * nk + w];
        s[r * nk + w] = acc;
      }
  }
}

// In place: s[r][:] <- exp(s[r][:] + mask - shift[r]) (mask: 0 for keys < N, -inf beyond).
// shift = row max (forward, returns sum in sums) or the saved log-sum-exp (backward).
template <typename T>
inline void exp_rows(T* s, const T* mask, int64_t nk, const T* shift, bool find_max, T* maxes,
                     T* sums) {
  for (int r = 0; r < kRows; ++r) {
    T* row = s + r * nk;
    T m;
    if constexpr (std::is_same<T, float>::value) {
      vfloat vm = vfloat{} - std::numeric_limits<float>::infinity();
      if (find_max) {
        for (int64_t w = 0; w < nk; w += kW) {
          const vfloat x = vload(row + w) + vload(mask + w);
          vstore(row + w, x);
          vm = vm > x ? vm : x;
        }
        m = hmax(vm);
      } else {
        m = shift[r];
      }
      vfloat acc{};
      for (int64_t w = 0; w < nk; w += kW) {
        vfloat x = vload(row + w);
        if (!find_max) x += vload(mask + w);
        const vfloat p = vexp(x - m);
        vstore(row + w, p);
        acc += p;
      }
      sums[r] = hsum(acc);
    } else {
      m = shift ? shift[r] : -std::numeric_limits<T>::infinity();
      if (find_max)
        for (int64_t w = 0; w < nk; ++w) m = std::max(m, row[w] += mask[w]);
      else
        for (int64_t w = 0; w < nk; ++w) row[w] += mask[w];
      T acc = 0;
      for (int64_t w = 0; w < nk; ++w) acc += (row[w] = std::exp(row[w] - m));
      sums[r] = acc;
    }
    if (maxes) maxes[r] = m;
  }
}

// y[r][:] = mul[r] * sum_{w < n} p[r][w] * m[w][:]   (m rows of dh)
template <int DH, typename T>
inline void rows_x_mat(const T* p, const T* m, int64_t n, int64_t nk, int dh_rt, const T* mul,
                       T* y) {
  if constexpr (vec_rows<T>(DH)) {
    constexpr int NV = DH / kW;
    vfloat acc[kRows][NV] = {};
    for (int64_t w = 0; w < n; ++w)
      for (int v = 0; v < NV; ++v) {
        const vfloat x = vload(m + w * DH + v * kW);
        for (int r = 0; r < kRows; ++r) acc[r][v] += p[r * nk + w] * x;
      }
    for (int r = 0; r < kRows; ++r)
      for (int v = 0; v < NV; ++v) vstore(y + r * DH + v * kW, acc[r][v] * mul[r]);
  } else {
    const int dh = DH > 0 ? DH : dh_rt;
    for (int r = 0; r < kRows; ++r) {
      T* yr = y + r * dh;
      std::fill(yr, yr + dh, T(0));
      for (int64_t w = 0; w < n; ++w) {
        const T pw = p[r * nk + w];
        for (int d = 0; d < dh; ++d) yr[d] += pw * m[w * dh + d];
      }
      for (int d = 0; d < dh; ++d) yr[d] *= mul[r];
    }
  }
}

// m[w][:] += sum_r p[r][w] * a[r][:]   for w < n
template <int DH, typename T>
inline void add_outer(const T* p, const T* a, int64_t n, int64_t nk, int dh_rt, T* m) {
  if constexpr (vec_rows<T>(DH)) {
    constexpr int NV = DH / kW;
    vfloat ar[kRows][NV];
    for (int r = 0; r < kRows; ++r)
      for (int v = 0; v < NV; ++v) ar[r][v] = vload(a + r * DH + v * kW);
    for (int64_t w = 0; w < n; ++w)
      for (int v = 0; v < NV; ++v) {
        vfloat x = vload(m + w * DH + v * kW);
        for (int r = 0; r < kRows; ++r) x += p[r * nk + w] * ar[r][v];
        vstore(m + w * DH + v * kW, x);
      }
  } else {
    const int dh = DH > 0 ? DH : dh_rt;
    for (int64_t w = 0; w < n; ++w)
      for (int r = 0; r < kRows; ++r) {
        const T pw = p[r * nk + w];
        for (int d = 0; d < dh; ++d) m[w * dh + d] += pw * a[r * dh + d];
      }
  }
}

// softmax backward of kRows rows in place: ds <- p * (ds - rowsum(p * ds)), ds holding dP = dO V^T
template <typename T>
inline void softmax_grad_rows(const T* p, T* ds, int64_t nk) {
  for (int r = 0; r < kRows; ++r) {
    const T* pr = p + r * nk;
    T* dr = ds + r * nk;
    T D;
    if constexpr (std::is_same<T, float>::value) {
      vfloat acc{};
      for (int64_t w = 0; w < nk; w += kW) acc += vload(pr + w) * vload(dr + w);
      D = hsum(acc);
      for (int64_t w = 0; w < nk; w += kW) vstore(dr + w, vload(pr + w) * (vload(dr + w) - D));
    } else {
      D = 0;
      for (int64_t w = 0; w < nk; ++w) D += pr[w] * dr[w];
      for (int64_t w = 0; w < nk; ++w) dr[w] = pr[w] * (dr[w] - D);
    }
  }
}

}  // namespace cpu
}  // namespace stcformer
