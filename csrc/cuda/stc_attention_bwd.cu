// Backward of stc_attention on CUDA, flash style: P is recomputed from q, k and the saved row
// log-sum-exp (no N x N tensor is kept), and every element is written by exactly one thread
// (no atomics: the gradients are deterministic). Per branch, two kernels on the tiling of the
// forward (common.cuh):
//   query side: a thread owns a query row: delta = rowsum(P * dP) over the whole key row, then
//     dQ = scale * sum_k P (dP - delta) K (two passes over the staged keys; exact, no
//     cancellation between large sums); delta goes to a small (B, H, L, N) buffer.
//   key side: a thread owns a key row: dV = sum_q P dO + the adjoint conv of grad_out,
//     dK = scale * sum_q P (dP - delta) Q, with the line's queries staged in shared memory.
// The conv weight, bias and spe gradients come from one more kernel over the (B*T, J) grid:
// per chunk of frames and joint, each thread sums its output channel's products into fixed
// slots; the host reduces the chunks in a fixed order.
#include "common.cuh"

namespace stcformer {
namespace cuda {
namespace {

struct BwdArgs {
  LineGeom g;
  Tiling t;
  const void* qkv;
  const void* gout;
  const float* w;     // the branch's conv weight (C/2, 9)
  const float* lse;   // (B, H, L, N)
  float* delta;       // (B, H, L, N)
  void* gqkv;
  float scale_log2;   // scale * log2 e
  float scale;
};

template <int DHP, typename scalar_t>
__device__ __forceinline__ void load_out_row(const LineGeom& g, const scalar_t* gout_b, int64_t l,
                                             int64_t n, int h, float (&row)[DHP]) {
  const scalar_t* src = gout_b + g.out_off(l, n, h);
#pragma unroll
  for (int d = 0; d < DHP; ++d) row[d] = d < g.dh ? to_float(src[d]) : 0.f;
}

template <int DHP, typename scalar_t>
__device__ __forceinline__ void store_qkv_row(const LineGeom& g, scalar_t* gqkv_b, int64_t l,
                                              int64_t n, int h, int x, const float (&row)[DHP]) {
  scalar_t* dst = gqkv_b + g.qkv_off(l, n, h);
#pragma unroll
  for (int d = 0; d < DHP; ++d)
    if (d < g.dh) dst[g.chan(d, x)] = from_float<scalar_t>(row[d]);
}

// Query side: dQ and delta. Shared memory per line: K chunk, V chunk (KB x DHP each).
template <typename scalar_t, int DHP>
__global__ void __launch_bounds__(kThreads) line_backward_q_kernel(const BwdArgs a) {
  const LineGeom& g = a.g;
  const Tiling& t = a.t;
  const RowCoord rc(g, t);
  extern __shared__ float4 smem4[];
  float* Ks = reinterpret_cast<float*>(smem4) + (rc.line_ok ? rc.li : 0) * t.line_stride;
  float* Vs = Ks + t.KB * DHP;
  const scalar_t* qkv_b = static_cast<const scalar_t*>(a.qkv) + rc.b * g.batch_qkv();
  const scalar_t* gout_b = static_cast<const scalar_t*>(a.gout) + rc.b * g.batch_out();

  float q[DHP], dout[DHP], dq[DHP];
  float lse2 = 0.f;
#pragma unroll
  for (int d = 0; d < DHP; ++d) dq[d] = 0.f;
  if (rc.row_ok) {
    load_row<DHP>(g, qkv_b, rc.l, rc.n, rc.h, 0, a.scale_log2, q);
    load_out_row<DHP>(g, gout_b, rc.l, rc.n, rc.h, dout);
    lse2 = a.lse[g.lse_off(rc.b, rc.h, rc.l, rc.n)] * static_cast<float>(kLog2e);
  }
  float delta = 0.f;
  const bool one_chunk = g.N <= t.KB;
  // pass 0: delta = sum_k P dP; pass 1: dq = sum_k P (dP - delta) K
  for (int pass = 0; pass < 2; ++pass) {
    for (int64_t n0 = 0; n0 < g.N; n0 += t.KB) {
      const int kn = g.N - n0 < t.KB ? static_cast<int>(g.N - n0) : t.KB;
      if (!(pass == 1 && one_chunk)) {  // a single chunk stays staged for the second pass
        if (pass + n0 > 0) __syncthreads();
        if (rc.line_ok) stage_kv<DHP>(g, t, rc, qkv_b, n0, kn, Ks, Vs);
        __syncthreads();
      }
      if (rc.row_ok) {
        if (pass == 0) {
          for (int k = 0; k < kn; ++k) {
            const float p = exp2f(dot_row<DHP>(q, Ks + k * DHP) - lse2);
            delta = fmaf(p, dot_row<DHP>(dout, Vs + k * DHP), delta);
          }
        } else {
          for (int k = 0; k < kn; ++k) {
            const float p = exp2f(dot_row<DHP>(q, Ks + k * DHP) - lse2);
            const float ds = p * (dot_row<DHP>(dout, Vs + k * DHP) - delta);
            axpy_row<DHP>(dq, ds, Ks + k * DHP);
          }
        }
      }
    }
  }
  if (!rc.row_ok) return;
#pragma unroll
  for (int d = 0; d < DHP; ++d) dq[d] *= a.scale;
  store_qkv_row<DHP>(g, static_cast<scalar_t*>(a.gqkv) + rc.b * g.batch_qkv(), rc.l, rc.n, rc.h, 0,
                     dq);
  a.delta[g.lse_off(rc.b, rc.h, rc.l, rc.n)] = delta;
}

// Key side: dK, dV (+ adjoint conv). Shared memory per line: Q chunk (scaled), dO chunk
// (KB x DHP each), lse (base 2) and delta of the chunk's queries (KB each).
template <typename scalar_t, int DHP>
__global__ void __launch_bounds__(kThreads) line_backward_kv_kernel(const BwdArgs a) {
  const LineGeom& g = a.g;
  const Tiling& t = a.t;
  const RowCoord rc(g, t);
  extern __shared__ float4 smem4[];
  float* Qs = reinterpret_cast<float*>(smem4) + (rc.line_ok ? rc.li : 0) * t.line_stride;
  float* Gs = Qs + t.KB * DHP;
  float* Ls = Gs + t.KB * DHP;
  float* Ds = Ls + t.KB;
  const scalar_t* qkv_b = static_cast<const scalar_t*>(a.qkv) + rc.b * g.batch_qkv();
  const scalar_t* gout_b = static_cast<const scalar_t*>(a.gout) + rc.b * g.batch_out();

  float k[DHP], v[DHP], dk[DHP], dv[DHP];
#pragma unroll
  for (int d = 0; d < DHP; ++d) dk[d] = dv[d] = 0.f;
  if (rc.row_ok) {
    load_row<DHP>(g, qkv_b, rc.l, rc.n, rc.h, 1, 1.f, k);
    load_row<DHP>(g, qkv_b, rc.l, rc.n, rc.h, 2, 1.f, v);
  }
  for (int64_t m0 = 0; m0 < g.N; m0 += t.KB) {
    const int qn = g.N - m0 < t.KB ? static_cast<int>(g.N - m0) : t.KB;
    if (m0 > 0) __syncthreads();
    if (rc.line_ok) {
      for (int e = rc.r; e < t.KB * DHP; e += t.QB) {
        const int i = e / DHP, d = e % DHP;
        float qv = 0.f, gv = 0.f;
        if (i < qn && d < g.dh) {
          qv = to_float(qkv_b[g.qkv_off(rc.l, m0 + i, rc.h) + g.chan(d, 0)]) * a.scale_log2;
          gv = to_float(gout_b[g.out_off(rc.l, m0 + i, rc.h) + d]);
        }
        Qs[e] = qv;
        Gs[e] = gv;
      }
      for (int i = rc.r; i < t.KB; i += t.QB) {
        const bool ok = i < qn;
        const int64_t off = g.lse_off(rc.b, rc.h, rc.l, m0 + i);
        Ls[i] = ok ? a.lse[off] * static_cast<float>(kLog2e) : 0.f;
        Ds[i] = ok ? a.delta[off] : 0.f;
      }
    }
    __syncthreads();
    if (rc.row_ok) {
      for (int i = 0; i < qn; ++i) {
        const float p = exp2f(dot_row<DHP>(k, Qs + i * DHP) - Ls[i]);
        const float ds = p * (dot_row<DHP>(v, Gs + i * DHP) - Ds[i]);
        axpy_row<DHP>(dv, p, Gs + i * DHP);
        axpy_row<DHP>(dk, ds, Qs + i * DHP);
      }
    }
  }
  if (!rc.row_ok) return;
  // Qs holds q * scale * log2 e: dK = scale * sum ds q = ln 2 * sum ds Qs
#pragma unroll
  for (int d = 0; d < DHP; ++d) dk[d] *= static_cast<float>(kLn2);
  conv_add<DHP>(g, a.w + rc.h * g.dh * 9, gout_b,
                [&](int64_t l, int64_t n) { return g.out_off(l, n, rc.h); }, 1, rc.l, rc.n, true,
                dv);
  scalar_t* gqkv_b = static_cast<scalar_t*>(a.gqkv) + rc.b * g.batch_qkv();
  store_qkv_row<DHP>(g, gqkv_b, rc.l, rc.n, rc.h, 1, dk);
  store_qkv_row<DHP>(g, gqkv_b, rc.l, rc.n, rc.h, 2, dv);
}

// Conv parameter gradient partials over the (B*T, J) grid: block (chunk of kParamFrames frames,
// joint j), thread per output channel c (strided by blockDim). See launch.h for the layout.
template <typename scalar_t>
__global__ void __launch_bounds__(256) param_grad_kernel(const LineGeom g, const void* qkv_,
                                                         const void* gout_, float* part_w,
                                                         float* part_col) {
  const scalar_t* qkv = static_cast<const scalar_t*>(qkv_);
  const scalar_t* gout = static_cast<const scalar_t*>(gout_);
  const int64_t chunk = blockIdx.x, j = blockIdx.y;
  const int64_t T = g.T, J = g.J, C = g.C, BT = g.B * g.T;
  const int64_t bt0 = chunk * kParamFrames;
  const int64_t bt1 = bt0 + kParamFrames < BT ? bt0 + kParamFrames : BT;
  const QkvLayout lay{g.sd, g.sw};
  for (int64_t c = threadIdx.x; c < C; c += blockDim.x) {
    const OutChannel oc = OutChannel::of(c, g.dh);
    const int64_t vch = oc.qkv_chan(g.half, g.dh, lay, 2);
    float taps[9] = {0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f};
    float col = 0.f;
    for (int64_t bt = bt0; bt < bt1; ++bt) {
      const int64_t t = bt % T;
      const float go = to_float(gout[(bt * J + j) * C + c]);
      col += go;
#pragma unroll
      for (int u = 0; u < 3; ++u) {
        const int64_t tt = t + u - 1;
        if (tt < 0 || tt >= T) continue;
#pragma unroll
        for (int v = 0; v < 3; ++v) {
          const int64_t jj = j + v - 1;
          if (jj < 0 || jj >= J) continue;
          const float x = to_float(qkv[((bt + u - 1) * J + jj) * 3 * C + vch]);
          taps[u * 3 + v] = fmaf(go, x, taps[u * 3 + v]);
        }
      }
    }
    const int64_t slot = (chunk * J + j) * C + c;
#pragma unroll
    for (int k = 0; k < 9; ++k) part_w[slot * 9 + k] = taps[k];
    part_col[slot] = col;
  }
}

template <typename scalar_t, int DHP>
cudaError_t backward_branch(const Problem& p, bool temporal, const void* gout, const float* lse,
                            void* gqkv, float* delta, cudaStream_t stream) {
  BwdArgs a;
  a.g = LineGeom(p.B, p.T, p.J, p.C, p.H, temporal, p.head_major);
  a.qkv = p.qkv;
  a.gout = gout;
  a.w = temporal ? p.w_t : p.w_s;
  a.lse = lse;
  a.delta = delta;
  a.gqkv = gqkv;
  a.scale_log2 = p.scale * static_cast<float>(kLog2e);
  a.scale = p.scale;

  a.t = Tiling::make(a.g, DHP, 2 * DHP);
  size_t smem = a.t.smem_bytes();
  cudaError_t e = allow_smem(line_backward_q_kernel<scalar_t, DHP>, smem);
  if (e != cudaSuccess) return e;
  line_backward_q_kernel<scalar_t, DHP><<<a.t.blocks(a.g), kThreads, smem, stream>>>(a);
  if ((e = cudaGetLastError()) != cudaSuccess) return e;

  a.t = Tiling::make(a.g, DHP, 2 * DHP + 2);
  smem = a.t.smem_bytes();
  if ((e = allow_smem(line_backward_kv_kernel<scalar_t, DHP>, smem)) != cudaSuccess) return e;
  line_backward_kv_kernel<scalar_t, DHP><<<a.t.blocks(a.g), kThreads, smem, stream>>>(a);
  return cudaGetLastError();
}

}  // namespace

const char* launch_backward(const Problem& p, const void* grad_out, const float* lse_s,
                            const float* lse_t, void* grad_qkv, float* delta_s, float* delta_t,
                            float* part_w, float* part_col, void* stream_) {
  if (p.B * p.T * p.J == 0 || p.C == 0) return nullptr;
  const auto stream = static_cast<cudaStream_t>(stream_);
  const int64_t dh = p.C / 2 / p.H;
  const cudaError_t e = STC_CUDA_DISPATCH_DTYPE(p.dtype, [&] {
    cudaError_t r = STC_CUDA_DISPATCH_DHP(dh, [&] {
      cudaError_t r2 = backward_branch<scalar_t, DHP>(p, false, grad_out, lse_s, grad_qkv, delta_s,
                                                      stream);
      if (r2 == cudaSuccess)
        r2 = backward_branch<scalar_t, DHP>(p, true, grad_out, lse_t, grad_qkv, delta_t, stream);
      return r2;
    });
    if (r != cudaSuccess) return r;
    const LineGeom g(p.B, p.T, p.J, p.C, p.H, false, p.head_major);
    const dim3 grid(static_cast<unsigned>(param_chunks(p.B, p.T)), static_cast<unsigned>(p.J));
    const int threads = p.C < 256 ? static_cast<int>((p.C + 31) / 32 * 32) : 256;
    param_grad_kernel<scalar_t><<<grid, threads, 0, stream>>>(g, p.qkv, grad_out, part_w, part_col);
    return cudaGetLastError();
  });
  return error_string(e);
}

}  // namespace cuda
}  // namespace stcformer
