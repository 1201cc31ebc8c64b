// Fused GELU (exact, erf form) + dropout for the STCFormer MLP on CPU, without a mask tensor:
// element i is kept iff hash(seed, offset + i) < keep * 2^32, so the backward regenerates the
// mask instead of saving it (CPU nn.Dropout saves a float32 mask: 4 bytes per element).
//
//   gelu_dropout_fwd(x, seed, offset, p, gelu)            -> y = drop(gelu(x)) (gelu=False: drop(x))
//   gelu_dropout_bwd(grad_y, x?, seed, offset, p, gelu, recompute) -> (grad_x, y)
//       with recompute (and gelu), y is recomputed in the same pass (the MLP autograd saves x
//       only and needs y for fc2's weight gradient); otherwise y is an empty tensor.
// seed: int64 scalar tensor (drawn from torch's generator by stcformer/fused_mlp.py).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <cmath>
#include <cstdint>

#include "fused_mlp.h"
#include "vec_math.h"

namespace stcformer {
namespace cpu {
namespace {

typedef uint32_t vu32 __attribute__((vector_size(kW * sizeof(uint32_t))));

// per-call key from (seed): splitmix64 spreads neighbouring seeds over the whole key space
inline uint64_t splitmix64(uint64_t z) {
  z += 0x9e3779b97f4a7c15ull;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

// lowbias32 (C. Wellons): a bijective 32-bit mixer with low avalanche bias
template <typename U>
inline U mix32(U x) {
  x ^= x >> 16;
  x *= 0x7feb352du;
  x ^= x >> 15;
  x *= 0x846ca68bu;
  x ^= x >> 16;
  return x;
}

struct DropKey {
  uint32_t k0, k1, threshold;
  float scale;  // 1 / keep
  double keep;
  bool active;  // p > 0
};

DropKey make_key(const at::Tensor& seed, double p) {
  TORCH_CHECK(p >= 0.0 && p < 1.0, "gelu_dropout: p must be in [0, 1), got ", p);
  TORCH_CHECK(seed.numel() == 1 && seed.scalar_type() == at::kLong && seed.device().is_cpu(),
              "gelu_dropout: seed must be a one-element int64 CPU tensor");
  const uint64_t s = splitmix64(static_cast<uint64_t>(seed.item<int64_t>()));
  const double keep = 1.0 - p;
  const double thr = std::ldexp(keep, 32);
  return {static_cast<uint32_t>(s), static_cast<uint32_t>(s >> 32),
          thr >= 4294967295.0 ? 0xffffffffu : static_cast<uint32_t>(thr),
          static_cast<float>(1.0 / keep), keep, p > 0.0};
}

// hash of the 64-bit counter c = offset + i under the key; the element is kept iff < threshold
inline uint32_t hash_scalar(const DropKey& k, uint64_t c) {
  const uint32_t lo = static_cast<uint32_t>(c), hi = static_cast<uint32_t>(c >> 32);
  return mix32<uint32_t>(mix32<uint32_t>(lo ^ k.k0) ^ hi ^ k.k1);
}

// dropout multiplier (0 or 1/keep) of kW consecutive counters starting at c
inline vfloat drop_vec(const DropKey& k, uint64_t c) {
  vu32 lane;
  for (int i = 0; i < kW; ++i) lane[i] = static_cast<uint32_t>(i);
  const uint32_t lo0 = static_cast<uint32_t>(c), hi0 = static_cast<uint32_t>(c >> 32);
  const vu32 lo = lane + lo0;
  const vu32 hi = (vu32{} + hi0) - (vu32)(lo < lo0);  // carry into the high word (mask is -1)
  const vu32 h = mix32<vu32>(mix32<vu32>(lo ^ k.k0) ^ hi ^ k.k1);
  const vint keep = (vint)(h < k.threshold);
  return (vfloat)(keep & (vint)(vfloat{} + k.scale));
}

// erf(x / sqrt 2) and exp(-x^2 / 2) (Abramowitz-Stegun 7.1.26, |error| < 1.5e-7)
inline void erf_sqrt_half(vfloat x, vfloat& erf_v, vfloat& e) {
  const vfloat z = (x < 0.0f ? -x : x) * 0.70710678118654752f;
  const vfloat t = 1.0f / (z * 0.3275911f + 1.0f);
  vfloat poly = t * 1.061405429f - 1.453152027f;
  poly = poly * t + 1.421413741f;
  poly = poly * t - 0.284496736f;
  poly = poly * t + 0.254829592f;
  poly = poly * t;
  e = vexp(-z * z);
  const vfloat r = 1.0f - poly * e;
  erf_v = x < 0.0f ? -r : r;
}

template <typename scalar_t>
inline vfloat load_f(const scalar_t* p) {
  if constexpr (std::is_same<scalar_t, float>::value) {
    return vload(p);
  } else {
    vfloat v;
    for (int i = 0; i < kW; ++i) v[i] = static_cast<float>(p[i]);
    return v;
  }
}
template <typename scalar_t>
inline void store_f(scalar_t* p, vfloat v) {
  if constexpr (std::is_same<scalar_t, float>::value) {
    vstore(p, v);
  } else {
    for (int i = 0; i < kW; ++i) p[i] = static_cast<scalar_t>(v[i]);
  }
}

constexpr float kInvSqrt2Pi = 0.39894228040143268f;

// one block of kW elements: forward y, or backward grad_x (+ y)
template <typename scalar_t>
struct Block {
  const DropKey& key;
  bool gelu;
  void forward(const scalar_t* x, scalar_t* y, uint64_t c) const {
    vfloat v = load_f(x);
    if (gelu) {
      vfloat erf_v, e;
      erf_sqrt_half(v, erf_v, e);
      v = 0.5f * v * (1.0f + erf_v);
    }
    if (key.active) v *= drop_vec(key, c);
    store_f(y, v);
  }
  void backward(const scalar_t* g, const scalar_t* x, scalar_t* gx, scalar_t* y, uint64_t c) const {
    vfloat grad = load_f(g);
    const vfloat m = key.active ? drop_vec(key, c) : vfloat{} + 1.0f;
    grad *= m;
    if (gelu) {
      const vfloat v = load_f(x);
      vfloat erf_v, e;
      erf_sqrt_half(v, erf_v, e);
      const vfloat cdf = 0.5f * (1.0f + erf_v);
      grad *= cdf + v * e * kInvSqrt2Pi;
      if (y) store_f(y, v * cdf * m);
    }
    store_f(gx, grad);
  }
};

// runs f(begin, end, counter) over [0, n) in parallel, whole vectors, tail through a scratch block
template <typename F>
void for_blocks(int64_t n, const F& f) {
  at::parallel_for(0, (n + kW - 1) / kW, 2048, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) f(b * kW, std::min<int64_t>(kW, n - b * kW));
  });
}

template <typename scalar_t>
void run_forward(const at::Tensor& x, at::Tensor& y, const DropKey& key, uint64_t offset, bool gelu) {
  const scalar_t* px = x.data_ptr<scalar_t>();
  scalar_t* py = y.data_ptr<scalar_t>();
  const Block<scalar_t> blk{key, gelu};
  for_blocks(x.numel(), [&](int64_t i, int64_t len) {
    if (len == kW) return blk.forward(px + i, py + i, offset + i);
    scalar_t bx[kW] = {}, by[kW];
    std::copy(px + i, px + i + len, bx);
    blk.forward(bx, by, offset + i);
    std::copy(by, by + len, py + i);
  });
}

template <typename scalar_t>
void run_backward(const at::Tensor& g, const at::Tensor& x, at::Tensor& gx, at::Tensor& y,
                  const DropKey& key, uint64_t offset, bool gelu) {
  const scalar_t* pg = g.data_ptr<scalar_t>();
  const scalar_t* px = x.defined() ? x.data_ptr<scalar_t>() : nullptr;
  scalar_t* pgx = gx.data_ptr<scalar_t>();
  scalar_t* py = y.defined() ? y.data_ptr<scalar_t>() : nullptr;
  const Block<scalar_t> blk{key, gelu};
  for_blocks(g.numel(), [&](int64_t i, int64_t len) {
    if (len == kW)
      return blk.backward(pg + i, px ? px + i : nullptr, pgx + i, py ? py + i : nullptr, offset + i);
    scalar_t bg[kW] = {}, bx[kW] = {}, bgx[kW], by[kW];
    std::copy(pg + i, pg + i + len, bg);
    if (px) std::copy(px + i, px + i + len, bx);
    blk.backward(bg, bx, bgx, py ? by : nullptr, offset + i);
    std::copy(bgx, bgx + len, pgx + i);
    if (py) std::copy(by, by + len, py + i);
  });
}

// float64 (gradcheck): the same mask, exact erf
double drop_scalar(const DropKey& k, uint64_t c) {
  if (!k.active) return 1.0;
  return hash_scalar(k, c) < k.threshold ? 1.0 / k.keep : 0.0;
}

void run_double(const at::Tensor* g, const at::Tensor& x, at::Tensor& out, at::Tensor* y,
                const DropKey& key, uint64_t offset, bool gelu) {
  const double* px = x.data_ptr<double>();
  const double* pg = g ? g->data_ptr<double>() : nullptr;
  double* po = out.data_ptr<double>();
  double* py = y && y->defined() ? y->data_ptr<double>() : nullptr;
  at::parallel_for(0, x.numel(), 16384, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      const double m = drop_scalar(key, offset + i), v = px[i];
      const double cdf = 0.5 * (1.0 + std::erf(v * M_SQRT1_2));
      if (!pg) {
        po[i] = (gelu ? v * cdf : v) * m;
        continue;
      }
      const double d = gelu ? cdf + v * std::exp(-0.5 * v * v) * (0.5 * M_2_SQRTPI * M_SQRT1_2) : 1.0;
      po[i] = pg[i] * m * d;
      if (py) py[i] = v * cdf * m;
    }
  });
}

}  // namespace

// every check runs here, on the calling thread, before any parallel region
static void check_dtype(const at::Tensor& t) {
  TORCH_CHECK(t.device().is_cpu() && t.layout() == at::kStrided,
              "gelu_dropout: expected a dense CPU tensor, got ", t.device(), " ", t.layout());
  const auto st = t.scalar_type();
  TORCH_CHECK(st == at::kFloat || st == at::kBFloat16 || st == at::kDouble,
              "gelu_dropout: dtype ", st, " is not supported (float32, bfloat16, float64)");
}

at::Tensor gelu_dropout_fwd(const at::Tensor& x_in, const at::Tensor& seed, int64_t offset,
                            double p, bool gelu) {
  check_dtype(x_in);
  const DropKey key = make_key(seed, p);
  const at::Tensor x = x_in.contiguous();
  at::Tensor y = at::empty_like(x);
  switch (x.scalar_type()) {
    case at::kFloat: run_forward<float>(x, y, key, offset, gelu); break;
    case at::kBFloat16: run_forward<at::BFloat16>(x, y, key, offset, gelu); break;
    default: run_double(nullptr, x, y, nullptr, key, offset, gelu);
  }
  return y;
}

std::tuple<at::Tensor, at::Tensor> gelu_dropout_bwd(const at::Tensor& grad_in,
                                                    const std::optional<at::Tensor>& x_opt,
                                                    const at::Tensor& seed, int64_t offset, double p,
                                                    bool gelu, bool recompute) {
  check_dtype(grad_in);
  const bool has_x = x_opt.has_value() && x_opt->defined();
  TORCH_CHECK(!gelu || has_x, "gelu_dropout_bwd: gelu needs the forward input x");
  if (has_x) {
    TORCH_CHECK(x_opt->device().is_cpu() && x_opt->layout() == at::kStrided &&
                    at::isFloatingType(x_opt->scalar_type()),
                "gelu_dropout_bwd: x must be a dense floating-point CPU tensor");
    TORCH_CHECK(x_opt->sizes() == grad_in.sizes(), "gelu_dropout_bwd: x ", x_opt->sizes(),
                " and grad ", grad_in.sizes(), " differ");
  }
  const DropKey key = make_key(seed, p);
  const at::Tensor g = grad_in.contiguous();
  at::Tensor x, y;
  if (has_x) x = x_opt->to(g.scalar_type()).contiguous();
  if (gelu && recompute) y = at::empty_like(g);  // forward output, for fc2's weight gradient
  at::Tensor gx = at::empty_like(g);
  switch (g.scalar_type()) {
    case at::kFloat: run_backward<float>(g, x, gx, y, key, offset, gelu); break;
    case at::kBFloat16: run_backward<at::BFloat16>(g, x, gx, y, key, offset, gelu); break;
    default: run_double(&g, x.defined() ? x : g, gx, &y, key, offset, gelu);
  }
  return {gx, y.defined() ? y : at::empty({0}, g.options())};
}

}  // namespace cpu
}  // namespace stcformer
