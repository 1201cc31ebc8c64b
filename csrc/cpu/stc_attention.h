// CPU kernels of stcformer::stc_attention_fwd / _bwd (contract: stcformer/ops/backends/autograd.py).
#pragma once

#include <ATen/ATen.h>

#include "../common/checks.h"

#include <optional>
#include <tuple>

namespace stcformer {
namespace cpu {

std::tuple<at::Tensor, at::Tensor, at::Tensor> stc_attention_fwd(
    const at::Tensor& qkv, const at::Tensor& w_s, const at::Tensor& b_s, const at::Tensor& w_t,
    const at::Tensor& b_t, const std::optional<at::Tensor>& spe_s,
    const std::optional<at::Tensor>& spe_t, int64_t num_heads, double scale, bool head_major);

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>
stc_attention_bwd(const at::Tensor& grad_out, const at::Tensor& qkv, const at::Tensor& w_s,
                  const at::Tensor& b_s, const at::Tensor& w_t, const at::Tensor& b_t,
                  const std::optional<at::Tensor>& spe_s, const std::optional<at::Tensor>& spe_t,
                  const at::Tensor& out, const at::Tensor& lse_s, const at::Tensor& lse_t,
                  int64_t num_heads, double scale, bool head_major);

// Input checks of both ops (csrc/common/checks.h) for the CPU kernels. Returns dh.
inline int64_t check_inputs(const char* op, const at::Tensor& qkv, const at::Tensor& w_s,
                            const at::Tensor& b_s, const at::Tensor& w_t, const at::Tensor& b_t,
                            const std::optional<at::Tensor>& spe_s,
                            const std::optional<at::Tensor>& spe_t, int64_t num_heads) {
  return stcformer::check_inputs(op, c10::DeviceType::CPU, {at::kFloat, at::kBFloat16, at::kDouble},
                                 "float32, bfloat16, float64", qkv, w_s, b_s, w_t, b_t, spe_s,
                                 spe_t, num_heads);
}

}  // namespace cpu
}  // namespace stcformer
