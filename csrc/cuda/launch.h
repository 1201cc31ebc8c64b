// Raw-pointer launchers of the CUDA kernels of stc_attention (csrc/cuda/*.cu), called by the
// torch glue (stc_attention_cuda.cpp). Plain C++: neither torch nor CUDA headers, so the .cu
// files build against the CUDA toolkit alone and the glue needs no CUDA headers.
//
// Every launcher returns nullptr on success, else the CUDA error string of the failed launch.
// Streams are cudaStream_t passed as void*.
#pragma once

#include <cstdint>

namespace stcformer {
namespace cuda {

enum class DType : int { kFloat32 = 0, kFloat16 = 1, kBFloat16 = 2 };

// The widest head the register-resident kernels take (dh is padded to a power of 2 <= this).
constexpr int64_t kMaxHeadDim = 64;

// Inputs of both ops. Activations (qkv, out, grad_out, grad_qkv) are contiguous in `dtype`;
// parameters are contiguous float32: w (C/2, 1, 3, 3), b (C/2,), spe (J, dh) or nullptr.
struct Problem {
  int64_t B, T, J, C, H;
  bool head_major;
  float scale;
  DType dtype;
  const void* qkv;
  const float *w_s, *b_s, *w_t, *b_t, *spe_s, *spe_t;
};

// out (B, T, J, C) in dtype; lse_s (B, H, T, J), lse_t (B, H, J, T) float32.
const char* launch_forward(const Problem& p, void* out, float* lse_s, float* lse_t, void* stream);

// Frames per chunk of the conv-parameter gradient partials, and the chunk count.
constexpr int64_t kParamFrames = 128;
inline int64_t param_chunks(int64_t B, int64_t T) { return (B * T + kParamFrames - 1) / kParamFrames; }

// grad_out (B, T, J, C) in dtype (contiguous); lse as from launch_forward.
// Writes grad_qkv (B, T, J, 3C) in dtype and qkv's layout (every element), and the per-chunk
// partials of the conv parameter gradients, in output-channel order c = (h, branch, d):
//   part_w   (param_chunks, J, C, 9) float32: sum of grad_out[b,t,j,c] * v[b,t+u-1,j+v-1,c]
//            over the chunk's frames, tap u*3+v
//   part_col (param_chunks, J, C)    float32: sum of grad_out[b,t,j,c] over the chunk's frames
// delta_s (B, H, T, J) and delta_t (B, H, J, T) float32 are scratch (rowsum(P * dP)).
const char* launch_backward(const Problem& p, const void* grad_out, const float* lse_s,
                            const float* lse_t, void* grad_qkv, float* delta_s, float* delta_t,
                            float* part_w, float* part_col, void* stream);

}  // namespace cuda
}  // namespace stcformer
