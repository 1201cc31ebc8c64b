// Host-side input checks of stcformer::stc_attention_fwd / _bwd shared by the CPU and CUDA
// kernels: done on the calling thread before anything is allocated, any parallel region starts
// or any kernel is launched.
#pragma once

#include <ATen/ATen.h>

#include <initializer_list>
#include <optional>

namespace stcformer {

// Checks every input of both ops against one device type and the dtypes its kernels have.
// Returns dh.
inline int64_t check_inputs(const char* op, c10::DeviceType device_type,
                            std::initializer_list<at::ScalarType> dtypes, const char* dtype_names,
                            const at::Tensor& qkv, const at::Tensor& w_s, const at::Tensor& b_s,
                            const at::Tensor& w_t, const at::Tensor& b_t,
                            const std::optional<at::Tensor>& spe_s,
                            const std::optional<at::Tensor>& spe_t, int64_t num_heads) {
  TORCH_CHECK(qkv.device().type() == device_type, op, ": qkv must be a ",
              c10::DeviceTypeName(device_type), " tensor, got ", qkv.device());
  TORCH_CHECK(qkv.layout() == at::kStrided, op, ": qkv must be a dense (strided) tensor");
  TORCH_CHECK(qkv.dim() == 4 && qkv.size(3) % 6 == 0, op,
              ": qkv must be (B, T, J, 3C) with C even, got ", qkv.sizes());
  const auto st = qkv.scalar_type();
  bool dtype_ok = false;
  for (auto d : dtypes) dtype_ok = dtype_ok || d == st;
  TORCH_CHECK(dtype_ok, op, ": qkv dtype ", st, " is not supported (", dtype_names, ")");
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

// The backward's extra inputs: grad_out (B, T, J, C), lse_s (B, H, T, J), lse_t (B, H, J, T).
inline void check_backward_inputs(const char* op, const at::Tensor& qkv,
                                  const at::Tensor& grad_out, const at::Tensor& lse_s,
                                  const at::Tensor& lse_t, int64_t H) {
  const int64_t B = qkv.size(0), T = qkv.size(1), J = qkv.size(2), C = qkv.size(3) / 3;
  TORCH_CHECK(grad_out.sizes() == at::IntArrayRef({B, T, J, C}), op, ": grad_out must be ",
              at::IntArrayRef({B, T, J, C}), ", got ", grad_out.sizes());
  TORCH_CHECK(lse_s.sizes() == at::IntArrayRef({B, H, T, J}) &&
                  lse_t.sizes() == at::IntArrayRef({B, H, J, T}),
              op, ": lse_s must be (B, H, T, J) and lse_t (B, H, J, T), got ", lse_s.sizes(),
              " and ", lse_t.sizes());
  for (const at::Tensor* t : {&grad_out, &lse_s, &lse_t}) {
    TORCH_CHECK(t->device() == qkv.device(), op, ": grad_out and lse must be on ", qkv.device(),
                ", got ", t->device());
    TORCH_CHECK(t->layout() == at::kStrided && at::isFloatingType(t->scalar_type()), op,
                ": grad_out and lse must be dense floating-point tensors, got ", t->scalar_type());
  }
}

}  // namespace stcformer
