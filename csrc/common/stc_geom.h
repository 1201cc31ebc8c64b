// Index arithmetic of stc_attention shared by the CPU kernels (csrc/cpu) and the CUDA kernels
// (csrc/cuda): plain C++ with STC_HD (__host__ __device__ under nvcc), no torch headers, so the
// CUDA sources need only the CUDA toolkit and the CPU tests exercise every formula here.
//
// Both branches of stc_attention are the same problem on "lines" of the (T, J) grid: spatial
// attention runs along a frame (positions = joints, lines = frames), temporal attention along a
// joint's trajectory (positions = frames, lines = joints). LineGeom maps (batch, line, position,
// head, d) to qkv / out / lse offsets and the conv taps to weight indices, so one kernel serves
// both branches.
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#define STC_HD __host__ __device__ __forceinline__
#else
#define STC_HD inline
#endif

namespace stcformer {

constexpr double kLog2e = 1.4426950408889634;  // softmax runs in base 2: exp(x) = exp2(x log2 e)
constexpr double kLn2 = 0.6931471805599453;

// qkv layouts (the op's head_major flag): channel d of q, k, v (x = 0, 1, 2) of a head sits at
// d * sd + x * sw from the start of the head's run of 3*dh values
//   interleaved (official): sd = 3, sw = 1;   head_major: sd = 1, sw = dh
struct QkvLayout {
  int64_t sd, sw;
  STC_HD static QkvLayout make(bool head_major, int64_t dh) {
    return head_major ? QkvLayout{1, dh} : QkvLayout{3, 1};
  }
};

struct LineGeom {
  int64_t B, T, J, C, half, H, dh;
  bool temporal;
  int64_t N, L;               // positions per line, lines per batch element
  int64_t qkv_pos, qkv_line;  // qkv element strides between positions / lines
  int64_t out_pos, out_line;  // out element strides between positions / lines
  int64_t qkv_chan0;          // offset of the branch's head 0 in a qkv row
  int64_t out_chan0;          // offset of the branch inside a head's [spatial | temporal] slot
  int64_t sd, sw;             // layout of a head's run (QkvLayout)

  LineGeom() = default;
  STC_HD LineGeom(int64_t B_, int64_t T_, int64_t J_, int64_t C_, int64_t H_, bool temporal_,
                  bool head_major = false)
      : B(B_), T(T_), J(J_), C(C_), half(C_ / 2), H(H_), dh(C_ / 2 / H_), temporal(temporal_) {
    N = temporal ? T : J;
    L = temporal ? J : T;
    qkv_pos = temporal ? J * 3 * C : 3 * C;
    qkv_line = temporal ? 3 * C : J * 3 * C;
    out_pos = temporal ? J * C : C;
    out_line = temporal ? C : J * C;
    qkv_chan0 = temporal ? 3 * half : 0;
    out_chan0 = temporal ? dh : 0;
    const QkvLayout lay = QkvLayout::make(head_major, dh);
    sd = lay.sd;
    sw = lay.sw;
  }
  // weight tap (kernel row = time offset, column = joint offset) of a (line, position) offset
  STC_HD int tap(int dl, int dn) const {
    return temporal ? (dn + 1) * 3 + (dl + 1) : (dl + 1) * 3 + (dn + 1);
  }
  // start of head h's run of 3*dh values at position n of line l (batch element 0)
  STC_HD int64_t qkv_off(int64_t l, int64_t n, int64_t h) const {
    return l * qkv_line + n * qkv_pos + qkv_chan0 + 3 * h * dh;
  }
  // element of channel d of x (0 q, 1 k, 2 v) inside a head's run
  STC_HD int64_t chan(int64_t d, int x) const { return d * sd + x * sw; }
  STC_HD int64_t out_off(int64_t l, int64_t n, int64_t h) const {
    return l * out_line + n * out_pos + 2 * dh * h + out_chan0;
  }
  STC_HD int64_t spe_row(int64_t l, int64_t n) const { return temporal ? l : n; }
  // row log-sum-exp of (b, h, l, n): lse_s is (B, H, T, J), lse_t (B, H, J, T)
  STC_HD int64_t lse_off(int64_t b, int64_t h, int64_t l, int64_t n) const {
    return ((b * H + h) * L + l) * N + n;
  }
  STC_HD int64_t batch_qkv() const { return T * J * 3 * C; }
  STC_HD int64_t batch_out() const { return T * J * C; }
  // does (line l + dl, position n + dn) lie on the grid?
  STC_HD bool inside(int64_t l, int64_t n) const { return l >= 0 && l < L && n >= 0 && n < N; }
};

// Output channel c (0 .. C-1) of out / grad_out: head, branch (0 spatial, 1 temporal), d.
struct OutChannel {
  int64_t h, branch, d;
  STC_HD static OutChannel of(int64_t c, int64_t dh) {
    return OutChannel{c / (2 * dh), (c / dh) % 2, c % dh};
  }
  // channel index inside its half (the conv weight / bias row)
  STC_HD int64_t conv_row(int64_t dh) const { return h * dh + d; }
  // qkv element of its v (x = 2) or q / k inside a (b, t, j) row of 3C values
  STC_HD int64_t qkv_chan(int64_t half, int64_t dh, const QkvLayout& lay, int x) const {
    return 3 * (branch * half + h * dh) + d * lay.sd + x * lay.sw;
  }
};

}  // namespace stcformer
