// CPU kernels of stcformer::gelu_dropout_fwd / _bwd (see fused_mlp.cpp).
#pragma once

#include <ATen/ATen.h>

#include <optional>
#include <tuple>

namespace stcformer {
namespace cpu {

at::Tensor gelu_dropout_fwd(const at::Tensor& x, const at::Tensor& seed, int64_t offset, double p,
                            bool gelu);

std::tuple<at::Tensor, at::Tensor> gelu_dropout_bwd(const at::Tensor& grad,
                                                    const std::optional<at::Tensor>& x,
                                                    const at::Tensor& seed, int64_t offset, double p,
                                                    bool gelu, bool recompute);

}  // namespace cpu
}  // namespace stcformer
