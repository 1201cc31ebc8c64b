// Device helpers shared by the CUDA kernels of stc_attention.
//
// Work decomposition (forward and both backward kernels): a block of kThreads threads owns LPB
// lines of one (batch, head) and QB consecutive positions of each (one thread per position, a
// "row"). Short lines are packed (spatial J = 17: 7 frames of 17 joints in 119 threads), long
// ones split into query blocks of 128 (temporal T = 243: 2 blocks per joint). The other side of
// the attention (keys in the forward, queries in the key-side backward) is staged in shared
// memory per line, KB positions at a time: the whole line when it fits (KB = N for
// N * dh_padded <= 4096: T <= 256 at dh = 16), otherwise streamed in chunks.
// Softmax and every accumulation run in float32; each thread keeps its row in registers.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "../common/stc_geom.h"
#include "launch.h"

namespace stcformer {
namespace cuda {

constexpr int kThreads = 128;
constexpr int kMaxQueryBlock = 128;
constexpr int kStageFloats = 4096;  // per staged array and line: KB * DHP <= this

__device__ __forceinline__ float to_float(float x) { return x; }
__device__ __forceinline__ float to_float(__half x) { return __half2float(x); }
__device__ __forceinline__ float to_float(__nv_bfloat16 x) { return __bfloat162float(x); }

template <typename T>
__device__ __forceinline__ T from_float(float x);
template <>
__device__ __forceinline__ float from_float<float>(float x) { return x; }
template <>
__device__ __forceinline__ __half from_float<__half>(float x) { return __float2half_rn(x); }
template <>
__device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float x) {
  return __float2bfloat16_rn(x);
}

// Block tiling of one branch (see the file comment); computed on the host.
struct Tiling {
  int QB;    // rows (positions) per line per block
  int LPB;   // lines per block
  int nqb;   // query blocks per line
  int nlg;   // line groups per (batch, head)
  int KB;    // positions staged in shared memory per step
  int line_stride;  // floats of shared memory per line

  static Tiling make(const LineGeom& g, int dhp, int floats_per_position) {
    Tiling t;
    const int N = static_cast<int>(g.N);
    t.QB = N < kMaxQueryBlock ? (N > 0 ? N : 1) : kMaxQueryBlock;
    t.LPB = kThreads / t.QB;
    t.nqb = (N + t.QB - 1) / t.QB;
    t.nlg = static_cast<int>((g.L + t.LPB - 1) / t.LPB);
    const int kb_max = kStageFloats / dhp;
    t.KB = N < kb_max ? (N > 0 ? N : 1) : kb_max;
    // + 4 floats: lines of one warp start in different banks, and stay 16-byte aligned
    t.line_stride = t.KB * floats_per_position + 4;
    t.line_stride = (t.line_stride + 3) / 4 * 4;
    return t;
  }
  int64_t blocks(const LineGeom& g) const { return g.B * g.H * nlg * static_cast<int64_t>(nqb); }
  size_t smem_bytes() const { return sizeof(float) * static_cast<size_t>(LPB) * line_stride; }
};

// Where a thread sits: block -> (b, h, line group, query block), thread -> (line, row).
struct RowCoord {
  int64_t b, l, n;
  int h, li, r;
  bool line_ok, row_ok;

  __device__ __forceinline__ RowCoord(const LineGeom& g, const Tiling& t) {
    int64_t blk = blockIdx.x;
    const int qb = static_cast<int>(blk % t.nqb);
    blk /= t.nqb;
    const int lg = static_cast<int>(blk % t.nlg);
    blk /= t.nlg;
    h = static_cast<int>(blk % g.H);
    b = blk / g.H;
    li = threadIdx.x / t.QB;
    r = threadIdx.x % t.QB;
    l = static_cast<int64_t>(lg) * t.LPB + li;
    n = static_cast<int64_t>(qb) * t.QB + r;
    line_ok = li < t.LPB && l < g.L;
    row_ok = line_ok && n < g.N;
  }
};

// dot of a register row with a shared-memory row of DHP floats (16-byte aligned)
template <int DHP>
__device__ __forceinline__ float dot_row(const float (&x)[DHP], const float* s) {
  const float4* s4 = reinterpret_cast<const float4*>(s);
  float acc = 0.f;
#pragma unroll
  for (int i = 0; i < DHP / 4; ++i) {
    const float4 v = s4[i];
    acc = fmaf(x[4 * i], v.x, acc);
    acc = fmaf(x[4 * i + 1], v.y, acc);
    acc = fmaf(x[4 * i + 2], v.z, acc);
    acc = fmaf(x[4 * i + 3], v.w, acc);
  }
  return acc;
}

// x += a * s (s a shared-memory row of DHP floats)
template <int DHP>
__device__ __forceinline__ void axpy_row(float (&x)[DHP], float a, const float* s) {
  const float4* s4 = reinterpret_cast<const float4*>(s);
#pragma unroll
  for (int i = 0; i < DHP / 4; ++i) {
    const float4 v = s4[i];
    x[4 * i] = fmaf(a, v.x, x[4 * i]);
    x[4 * i + 1] = fmaf(a, v.y, x[4 * i + 1]);
    x[4 * i + 2] = fmaf(a, v.z, x[4 * i + 2]);
    x[4 * i + 3] = fmaf(a, v.w, x[4 * i + 3]);
  }
}

// channel x (0 q, 1 k, 2 v) of head h at (line l, position n) of batch element qkv_b into a
// register row, times `mul`, zero past dh
template <int DHP, typename scalar_t>
__device__ __forceinline__ void load_row(const LineGeom& g, const scalar_t* qkv_b, int64_t l,
                                         int64_t n, int h, int x, float mul, float (&row)[DHP]) {
  const scalar_t* src = qkv_b + g.qkv_off(l, n, h);
#pragma unroll
  for (int d = 0; d < DHP; ++d) row[d] = d < g.dh ? to_float(src[g.chan(d, x)]) * mul : 0.f;
}

// The line's keys and values n0 .. n0+kn-1 into shared memory (KB x DHP floats each, zero past
// kn and dh); the QB threads of a line share the copy.
template <int DHP, typename scalar_t>
__device__ __forceinline__ void stage_kv(const LineGeom& g, const Tiling& t, const RowCoord& rc,
                                         const scalar_t* qkv_b, int64_t n0, int kn, float* Ks,
                                         float* Vs) {
  for (int e = rc.r; e < t.KB * DHP; e += t.QB) {
    const int k = e / DHP, d = e % DHP;
    float kv = 0.f, vv = 0.f;
    if (k < kn && d < g.dh) {
      const scalar_t* src = qkv_b + g.qkv_off(rc.l, n0 + k, rc.h);
      kv = to_float(src[g.chan(d, 1)]);
      vv = to_float(src[g.chan(d, 2)]);
    }
    Ks[e] = kv;
    Vs[e] = vv;
  }
}

// y[d] += sum over the 3x3 neighbourhood of w[tap][d] * x[neighbour][d], x the head's channel
// of a (B, T, J, *) tensor at x_b + off(l, n) + d * sd; `flip` mirrors the offsets (the
// adjoint conv). w points at the head's first conv row: w[(d) * 9 + tap].
template <int DHP, typename scalar_t, typename Off>
__device__ __forceinline__ void conv_add(const LineGeom& g, const float* __restrict__ w,
                                         const scalar_t* x_b, Off off, int64_t sd, int64_t l,
                                         int64_t n, bool flip, float (&y)[DHP]) {
  const int sgn = flip ? -1 : 1;
#pragma unroll 1
  for (int dl = -1; dl <= 1; ++dl)
#pragma unroll
    for (int dn = -1; dn <= 1; ++dn) {
      const int64_t ll = l + sgn * dl, nn = n + sgn * dn;
      if (!g.inside(ll, nn)) continue;
      const scalar_t* src = x_b + off(ll, nn);
      const int tap = g.tap(dl, dn);
#pragma unroll
      for (int d = 0; d < DHP; ++d)
        if (d < g.dh) y[d] = fmaf(__ldg(w + d * 9 + tap), to_float(src[d * sd]), y[d]);
    }
}

// AT_DISPATCH-like switches from the runtime dtype / padded head dim to template arguments
// (dh = 4 runs padded to 8: small heads only occur in tests)
#define STC_CUDA_DISPATCH_DTYPE(dtype, ...)                   \
  [&] {                                                       \
    switch (dtype) {                                          \
      case DType::kFloat16: {                                 \
        using scalar_t = __half;                              \
        return __VA_ARGS__();                                 \
      }                                                       \
      case DType::kBFloat16: {                                \
        using scalar_t = __nv_bfloat16;                       \
        return __VA_ARGS__();                                 \
      }                                                       \
      default: {                                              \
        using scalar_t = float;                               \
        return __VA_ARGS__();                                 \
      }                                                       \
    }                                                         \
  }()

#define STC_CUDA_DISPATCH_DHP(dh, ...)                        \
  [&] {                                                       \
    if ((dh) <= 8) {                                   \
      constexpr int DHP = 8;                                  \
      return __VA_ARGS__();                                   \
    } else if ((dh) <= 16) {                                  \
      constexpr int DHP = 16;                                 \
      return __VA_ARGS__();                                   \
    } else if ((dh) <= 32) {                                  \
      constexpr int DHP = 32;                                 \
      return __VA_ARGS__();                                   \
    } else {                                                  \
      constexpr int DHP = 64;                                 \
      return __VA_ARGS__();                                   \
    }                                                         \
  }()

// dynamic shared memory above the default 48 KB needs an opt-in per kernel
template <typename Kernel>
inline cudaError_t allow_smem(Kernel kernel, size_t bytes) {
  if (bytes <= 48 * 1024) return cudaSuccess;
  return cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                              static_cast<int>(bytes));
}

inline const char* error_string(cudaError_t e) {
  return e == cudaSuccess ? nullptr : cudaGetErrorString(e);
}

}  // namespace cuda
}  // namespace stcformer
