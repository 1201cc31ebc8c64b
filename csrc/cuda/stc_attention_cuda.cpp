// CUDA kernels of stcformer::stc_attention_fwd / _bwd (schemas in csrc/register.cpp, contract in
// stcformer/ops/backends/autograd.py): host checks, allocation and the launch on torch's current
// stream. Built only with CUDA (setup.py). Uses only device-generic c10 headers (the current
// stream comes through c10's DeviceGuardImplInterface), so it compiles against any torch.
#include <ATen/ATen.h>
#include <c10/core/DeviceGuard.h>
#include <c10/core/impl/DeviceGuardImplInterface.h>
#include <torch/library.h>

#include <optional>
#include <tuple>

#include "../common/checks.h"
#include "launch.h"

namespace stcformer {
namespace cuda {
namespace {

constexpr const char* kDtypes = "float32, float16, bfloat16";

int64_t check(const char* op, const at::Tensor& qkv, const at::Tensor& w_s, const at::Tensor& b_s,
              const at::Tensor& w_t, const at::Tensor& b_t, const std::optional<at::Tensor>& spe_s,
              const std::optional<at::Tensor>& spe_t, int64_t num_heads) {
  const int64_t dh =
      check_inputs(op, c10::DeviceType::CUDA, {at::kFloat, at::kHalf, at::kBFloat16}, kDtypes, qkv,
                   w_s, b_s, w_t, b_t, spe_s, spe_t, num_heads);
  TORCH_CHECK(dh <= kMaxHeadDim, op, ": head dim C/(2*num_heads) = ", dh,
              " is larger than the CUDA kernels take (", kMaxHeadDim, ")");
  return dh;
}

DType dtype_of(const at::Tensor& t) {
  switch (t.scalar_type()) {
    case at::kHalf: return DType::kFloat16;
    case at::kBFloat16: return DType::kBFloat16;
    default: return DType::kFloat32;
  }
}

void* current_stream(const at::Device& device) {
  const auto* impl = c10::impl::getDeviceGuardImpl(c10::DeviceType::CUDA);
  return impl->getStreamNativeHandle(impl->getStream(device));
}

at::Tensor f32(const at::Tensor& t) { return t.to(at::kFloat).contiguous(); }
at::Tensor f32_opt(const std::optional<at::Tensor>& t) {
  return t.has_value() && t->defined() ? f32(*t) : at::Tensor();
}
const float* ptr_or_null(const at::Tensor& t) { return t.defined() ? t.data_ptr<float>() : nullptr; }

// keeps the float32 parameter copies alive while the Problem points at them
struct Params {
  at::Tensor w_s, b_s, w_t, b_t, spe_s, spe_t;
};

Problem problem(const at::Tensor& qkv, const Params& prm, int64_t H, double scale,
                bool head_major) {
  Problem p;
  p.B = qkv.size(0);
  p.T = qkv.size(1);
  p.J = qkv.size(2);
  p.C = qkv.size(3) / 3;
  p.H = H;
  p.head_major = head_major;
  p.scale = static_cast<float>(scale);
  p.dtype = dtype_of(qkv);
  p.qkv = qkv.data_ptr();
  p.w_s = prm.w_s.data_ptr<float>();
  p.b_s = prm.b_s.data_ptr<float>();
  p.w_t = prm.w_t.data_ptr<float>();
  p.b_t = prm.b_t.data_ptr<float>();
  p.spe_s = ptr_or_null(prm.spe_s);
  p.spe_t = ptr_or_null(prm.spe_t);
  return p;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> forward(
    const at::Tensor& qkv_in, const at::Tensor& w_s, const at::Tensor& b_s, const at::Tensor& w_t,
    const at::Tensor& b_t, const std::optional<at::Tensor>& spe_s,
    const std::optional<at::Tensor>& spe_t, int64_t num_heads, double scale, bool head_major) {
  check("stc_attention_fwd", qkv_in, w_s, b_s, w_t, b_t, spe_s, spe_t, num_heads);  // first
  const c10::DeviceGuard guard(qkv_in.device());
  const at::Tensor qkv = qkv_in.contiguous();
  const int64_t B = qkv.size(0), T = qkv.size(1), J = qkv.size(2), C = qkv.size(3) / 3;
  at::Tensor out = at::empty({B, T, J, C}, qkv.options());
  at::Tensor lse_s = at::empty({B, num_heads, T, J}, qkv.options().dtype(at::kFloat));
  at::Tensor lse_t = at::empty({B, num_heads, J, T}, qkv.options().dtype(at::kFloat));
  if (out.numel() == 0) return {out, lse_s, lse_t};
  const Params prm{f32(w_s), f32(b_s), f32(w_t), f32(b_t), f32_opt(spe_s), f32_opt(spe_t)};
  const Problem p = problem(qkv, prm, num_heads, scale, head_major);
  const char* err = launch_forward(p, out.data_ptr(), lse_s.data_ptr<float>(),
                                   lse_t.data_ptr<float>(), current_stream(qkv.device()));
  TORCH_CHECK(err == nullptr, "stc_attention_fwd (cuda): kernel launch failed: ", err);
  return {out, lse_s, lse_t};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>
backward(const at::Tensor& grad_out_in, const at::Tensor& qkv_in, const at::Tensor& w_s,
         const at::Tensor& b_s, const at::Tensor& w_t, const at::Tensor& b_t,
         const std::optional<at::Tensor>& spe_s, const std::optional<at::Tensor>& spe_t,
         const at::Tensor& /*out: delta comes from the recomputed rows*/, const at::Tensor& lse_s_in,
         const at::Tensor& lse_t_in, int64_t H, double scale, bool head_major) {
  // every check first, before any conversion, allocation or launch
  const int64_t dh = check("stc_attention_bwd", qkv_in, w_s, b_s, w_t, b_t, spe_s, spe_t, H);
  check_backward_inputs("stc_attention_bwd", qkv_in, grad_out_in, lse_s_in, lse_t_in, H);
  const c10::DeviceGuard guard(qkv_in.device());
  const at::Tensor qkv = qkv_in.contiguous();
  const int64_t B = qkv.size(0), T = qkv.size(1), J = qkv.size(2), C = qkv.size(3) / 3;
  const at::Tensor gout = grad_out_in.to(qkv.scalar_type()).contiguous();
  const at::Tensor lse_s = f32(lse_s_in), lse_t = f32(lse_t_in);

  at::Tensor gqkv = at::empty_like(qkv);
  if (gqkv.numel() == 0) {
    auto z = [&](at::IntArrayRef shape, at::ScalarType st) {
      return at::zeros(shape, qkv.options().dtype(st));
    };
    return {gqkv, z(w_s.sizes(), w_s.scalar_type()), z(b_s.sizes(), b_s.scalar_type()),
            z(w_t.sizes(), w_t.scalar_type()), z(b_t.sizes(), b_t.scalar_type()),
            z({J, dh}, qkv.scalar_type()), z({J, dh}, qkv.scalar_type())};
  }
  const auto f32_opts = qkv.options().dtype(at::kFloat);
  at::Tensor delta_s = at::empty({B, H, T, J}, f32_opts), delta_t = at::empty({B, H, J, T}, f32_opts);
  const int64_t chunks = param_chunks(B, T);
  at::Tensor part_w = at::empty({chunks, J, C, 9}, f32_opts);
  at::Tensor part_col = at::empty({chunks, J, C}, f32_opts);

  const Params prm{f32(w_s), f32(b_s), f32(w_t), f32(b_t), f32_opt(spe_s), f32_opt(spe_t)};
  const Problem p = problem(qkv, prm, H, scale, head_major);
  const char* err = launch_backward(p, gout.data_ptr(), lse_s.data_ptr<float>(),
                                    lse_t.data_ptr<float>(), gqkv.data_ptr(),
                                    delta_s.data_ptr<float>(), delta_t.data_ptr<float>(),
                                    part_w.data_ptr<float>(), part_col.data_ptr<float>(),
                                    current_stream(qkv.device()));
  TORCH_CHECK(err == nullptr, "stc_attention_bwd (cuda): kernel launch failed: ", err);

  // fixed-order reductions of the partials (float64), channels c = (h, branch, dh)
  const at::Tensor taps = part_w.sum(at::IntArrayRef{0, 1}, false, at::kDouble).view({H, 2, dh, 9});
  const at::Tensor sums = part_col.sum(at::IntArrayRef{0}, false, at::kDouble).view({J, H, 2, dh});
  const int64_t half = C / 2;
  at::Tensor gw_s = taps.select(1, 0).reshape({half, 1, 3, 3}).to(w_s.scalar_type());
  at::Tensor gw_t = taps.select(1, 1).reshape({half, 1, 3, 3}).to(w_t.scalar_type());
  at::Tensor gb_s = sums.select(2, 0).sum(0).reshape({half}).to(b_s.scalar_type());
  at::Tensor gb_t = sums.select(2, 1).sum(0).reshape({half}).to(b_t.scalar_type());
  // grad spe in qkv's dtype, like the CPU kernels and the fake kernel
  at::Tensor ge_s = sums.select(2, 0).sum(1).to(qkv.scalar_type());
  at::Tensor ge_t = sums.select(2, 1).sum(1).to(qkv.scalar_type());
  return {gqkv, gw_s, gb_s, gw_t, gb_t, ge_s, ge_t};
}

}  // namespace
}  // namespace cuda
}  // namespace stcformer

TORCH_LIBRARY_IMPL(stcformer, CUDA, m) {
  m.impl("stc_attention_fwd", &stcformer::cuda::forward);
  m.impl("stc_attention_bwd", &stcformer::cuda::backward);
}
