// Forward of stc_attention on CUDA: one kernel serves both branches (LineGeom) and both qkv
// layouts. Each thread owns one query row: q in registers (pre-scaled by scale * log2 e), the
// line's k and v staged in shared memory (the whole line when it fits, else in chunks with an
// online softmax), then the epilogue adds the 3x3 depthwise conv of v, the bias and spe, and
// writes the head's slot of out and the row log-sum-exp.
#include "common.cuh"

namespace stcformer {
namespace cuda {
namespace {

struct FwdArgs {
  LineGeom g;
  Tiling t;
  const void* qkv;
  const float* w;     // the branch's conv weight (C/2, 9)
  const float* bias;  // (C/2,)
  const float* spe;   // (J, dh) or nullptr
  void* out;
  float* lse;
  float scale_log2;   // scale * log2 e
};

template <typename scalar_t, int DHP>
__global__ void __launch_bounds__(kThreads) line_forward_kernel(const FwdArgs a) {
  const LineGeom& g = a.g;
  const Tiling& t = a.t;
  const RowCoord rc(g, t);
  extern __shared__ float4 smem4[];
  float* Ks = reinterpret_cast<float*>(smem4) + (rc.line_ok ? rc.li : 0) * t.line_stride;
  float* Vs = Ks + t.KB * DHP;
  const scalar_t* qkv_b = static_cast<const scalar_t*>(a.qkv) + rc.b * g.batch_qkv();

  float q[DHP], acc[DHP];
#pragma unroll
  for (int d = 0; d < DHP; ++d) acc[d] = 0.f;
  if (rc.row_ok) load_row<DHP>(g, qkv_b, rc.l, rc.n, rc.h, 0, a.scale_log2, q);
  float m = -INFINITY, lsum = 0.f;

  for (int64_t n0 = 0; n0 < g.N; n0 += t.KB) {
    const int kn = g.N - n0 < t.KB ? static_cast<int>(g.N - n0) : t.KB;
    if (n0 > 0) __syncthreads();  // the previous chunk is consumed
    if (rc.line_ok) stage_kv<DHP>(g, t, rc, qkv_b, n0, kn, Ks, Vs);
    __syncthreads();
    if (rc.row_ok) {
      for (int k = 0; k < kn; ++k) {
        const float s = dot_row<DHP>(q, Ks + k * DHP);
        if (s > m) {  // new running max: rescale (m = -inf at the first key gives 0)
          const float alpha = exp2f(m - s);
          lsum *= alpha;
#pragma unroll
          for (int d = 0; d < DHP; ++d) acc[d] *= alpha;
          m = s;
        }
        const float p = exp2f(s - m);  // NaN scores propagate
        lsum += p;
        axpy_row<DHP>(acc, p, Vs + k * DHP);
      }
    }
  }
  if (!rc.row_ok) return;

  const float inv = 1.f / lsum;
  const float* bias = a.bias + rc.h * g.dh;
  const float* spe = a.spe ? a.spe + g.spe_row(rc.l, rc.n) * g.dh : nullptr;
#pragma unroll
  for (int d = 0; d < DHP; ++d)
    if (d < g.dh) acc[d] = acc[d] * inv + __ldg(bias + d) + (spe ? __ldg(spe + d) : 0.f);
  const int64_t v_chan = g.chan(0, 2);
  conv_add<DHP>(g, a.w + rc.h * g.dh * 9, qkv_b,
                [&](int64_t l, int64_t n) { return g.qkv_off(l, n, rc.h) + v_chan; }, g.sd, rc.l,
                rc.n, false, acc);
  scalar_t* o = static_cast<scalar_t*>(a.out) + rc.b * g.batch_out() + g.out_off(rc.l, rc.n, rc.h);
#pragma unroll
  for (int d = 0; d < DHP; ++d)
    if (d < g.dh) o[d] = from_float<scalar_t>(acc[d]);
  a.lse[g.lse_off(rc.b, rc.h, rc.l, rc.n)] = (m + log2f(lsum)) * static_cast<float>(kLn2);
}

template <typename scalar_t, int DHP>
cudaError_t forward_branch(const Problem& p, bool temporal, void* out, float* lse,
                           cudaStream_t stream) {
  FwdArgs a;
  a.g = LineGeom(p.B, p.T, p.J, p.C, p.H, temporal, p.head_major);
  a.t = Tiling::make(a.g, DHP, 2 * DHP);
  a.qkv = p.qkv;
  a.w = temporal ? p.w_t : p.w_s;
  a.bias = temporal ? p.b_t : p.b_s;
  a.spe = temporal ? p.spe_t : p.spe_s;
  a.out = out;
  a.lse = lse;
  a.scale_log2 = p.scale * static_cast<float>(kLog2e);
  const size_t smem = a.t.smem_bytes();
  cudaError_t e = allow_smem(line_forward_kernel<scalar_t, DHP>, smem);
  if (e != cudaSuccess) return e;
  line_forward_kernel<scalar_t, DHP><<<a.t.blocks(a.g), kThreads, smem, stream>>>(a);
  return cudaGetLastError();
}

}  // namespace

const char* launch_forward(const Problem& p, void* out, float* lse_s, float* lse_t,
                           void* stream_) {
  if (p.B * p.T * p.J == 0 || p.C == 0) return nullptr;
  const auto stream = static_cast<cudaStream_t>(stream_);
  const int64_t dh = p.C / 2 / p.H;
  const cudaError_t e = STC_CUDA_DISPATCH_DTYPE(p.dtype, [&] {
    return STC_CUDA_DISPATCH_DHP(dh, [&] {
      cudaError_t r = forward_branch<scalar_t, DHP>(p, false, out, lse_s, stream);
      if (r == cudaSuccess) r = forward_branch<scalar_t, DHP>(p, true, out, lse_t, stream);
      return r;
    });
  });
  return error_string(e);
}

}  // namespace cuda
}  // namespace stcformer
