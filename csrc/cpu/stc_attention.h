// CPU kernels of stcformer::stc_attention_fwd / _bwd (contract: stcformer/backends/_autograd.py).
#pragma once

#include <ATen/ATen.h>

#include <optional>
#include <tuple>

namespace stcformer {
namespace cpu {

std::tuple<at::Tensor, at::Tensor, at::Tensor> stc_attention_fwd(
    const at::Tensor& qkv, const at::Tensor& w_s, const at::Tensor& b_s, const at::Tensor& w_t,
    const at::Tensor& b_t, const std::optional<at::Tensor>& spe_s,
    const std::optional<at::Tensor>& spe_t, int64_t num_heads, double scale);

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>
stc_attention_bwd(const at::Tensor& grad_out, const at::Tensor& qkv, const at::Tensor& w_s,
                  const at::Tensor& b_s, const at::Tensor& w_t, const at::Tensor& b_t,
                  const std::optional<at::Tensor>& spe_s, const std::optional<at::Tensor>& spe_t,
                  const at::Tensor& out, const at::Tensor& lse_s, const at::Tensor& lse_t,
                  int64_t num_heads, double scale);

// Input checks shared by both ops, done on the calling thread before anything is allocated or
// any parallel region starts (an exception must never have to leave an OpenMP region).
// Returns dh.
inline int64_t check_inputs(const char* op, const at::Tensor& qkv, const at::Tensor& w_s,
                            const at::Tensor& b_s, const at::Tensor& w_t, const at::Tensor& b_t,
                            const std::optional<at::Tensor>& spe_s,
                            const std::optional<at::Tensor>& spe_t, int64_t num_heads) {
  TORCH_CHECK(qkv.device().is_cpu(), op, ": qkv must be a CPU tensor, got ", qkv.device());
  TORCH_CHECK(qkv.layout() == at::kStrided, op, ": qkv must be a dense (strided) tensor");
  TORCH_CHECK(qkv.dim() == 4 && qkv.size(3) % 6 == 0, op,
              ": qkv must be (B, T, J, 3C) with C even, got ", qkv.sizes());
  const auto st = qkv.scalar_type();
  TORCH_CHECK(st == at::kFloat || st == at::kBFloat16 || st == at::kDouble, op,
              ": qkv dtype ", st, " is not supported (float32, bfloat16, float64)");
  const int64_t half = qkv.size(3) / 6;
  TORCH_CHECK(num_heads > 0 && half % num_heads == 0, op, ": C/2 = ", half,
              " is not divisible by num_heads = ", num_heads);
  // parameters: converted to the accumulation dtype, so any real floating dtype, on qkv's device
  auto param = [&](const at::Tensor& t, const char* name) {
    TORCH_CHECK(t.device() == qkv.device(), op, ": ", name, " is on ", t.device(),
                " but qkv is on ", qkv.device());
    TORCH_CHECK(t.layout() == at::kStrided, op, ": ", name, " must be a dense (strided) tensor");
    TORCH_CHECK(at::isFloatingType(t.scalar_type()), op, ": ", name,
                " must be a floating-point tensor, got ", t.scalar_type());
  };
  param(w_s, "w_s");
  param(b_s, "b_s");
  param(w_t, "w_t");
  param(b_t, "b_t");
  for (const at::Tensor* w : {&w_s, &w_t})
    TORCH_CHECK(w->dim() == 4 && w->size(0) == half && w->size(1) == 1 && w->size(2) == 3 &&
                    w->size(3) == 3,
                op, ": conv weight must be (", half, ", 1, 3, 3), got ", w->sizes());
  for (const at::Tensor* b : {&b_s, &b_t})
    TORCH_CHECK(b->dim() == 1 && b->size(0) == half, op, ": conv bias must be (", half,
                ",), got ", b->sizes());
  const int64_t dh = half / num_heads;
  for (const auto* e : {&spe_s, &spe_t})
    if (e->has_value() && (*e)->defined()) {
      param(**e, "spe");
      TORCH_CHECK((*e)->dim() == 2 && (*e)->size(0) == qkv.size(2) && (*e)->size(1) == dh, op,
                  ": spe must be (", qkv.size(2), ", ", dh, "), got ", (*e)->sizes());
    }
  return dh;
}

}  // namespace cpu
}  // namespace stcformer
