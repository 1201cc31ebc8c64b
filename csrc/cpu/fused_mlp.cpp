// Fused GELU (exact, erf form) + dropout for the STCFormer MLP on CPU, without a mask tensor:
// element i is kept iff hash(seed, offset + i) < keep * 2^32, so the backward regenerates the
// mask instead of saving it (CPU nn.Dropout saves a float32 mask: 4 bytes per element).
//
//   gelu_dropout_fwd(x, seed, offset, p, gelu)            -> y = drop(gelu(x)) (gelu=False: drop(x))
//   gelu_dropout_bwd(grad_y, x?, seed, offset, p, gelu, recompute) -> (grad_x, y)
//       with recompute (and gelu), y is recomputed in the same pass (the MLP autograd saves x
//       only and needs y for fc2's weight gradient); otherwise y is an empty tensor.
// seed: int64 scalar tensor (drawn from torch's generator by stcformer/ops/mlp/fused.py).
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

// Each step handles kU independent vectors, one operation at a time across all of them: the
// erf/exp polynomials and the hash are long dependency chains, and a single chain per step left
// the core waiting on latencies (1.3-1.5x slower on an AVX2 EPYC, the same bits).
constexpr int kU = 4;
constexpr int kStep = kU * kW;
typedef vfloat vfloats[kU];

// dropout multipliers (0 or 1/keep) of kStep consecutive counters starting at c
inline void drop_vecs(const DropKey& k, uint64_t c, vfloats& m) {
  vu32 lane;
  for (int i = 0; i < kW; ++i) lane[i] = static_cast<uint32_t>(i);
  const uint32_t lo0 = static_cast<uint32_t>(c), hi0 = static_cast<uint32_t>(c >> 32);
  vu32 h[kU], hi[kU];
  for (int u = 0; u < kU; ++u) {
    const vu32 lo = lane + (lo0 + static_cast<uint32_t>(u * kW));
    hi[u] = (vu32{} + hi0) - (vu32)(lo < lo0);  // carry into the high word (mask is -1)
    h[u] = lo ^ k.k0;
  }
  // mix32(mix32(lo ^ k0) ^ hi ^ k1), as hash_scalar
  for (int r = 0; r < 2; ++r) {
    for (int u = 0; u < kU; ++u) h[u] ^= h[u] >> 16;
    for (int u = 0; u < kU; ++u) h[u] *= 0x7feb352du;
    for (int u = 0; u < kU; ++u) h[u] ^= h[u] >> 15;
    for (int u = 0; u < kU; ++u) h[u] *= 0x846ca68bu;
    for (int u = 0; u < kU; ++u) h[u] ^= h[u] >> 16;
    if (r == 0)
      for (int u = 0; u < kU; ++u) h[u] ^= hi[u] ^ k.k1;
  }
  const vint scale = (vint)(vfloat{} + k.scale);
  for (int u = 0; u < kU; ++u) m[u] = (vfloat)((vint)(h[u] < k.threshold) & scale);
}

// erf(x / sqrt 2) and exp(-x^2 / 2) (Abramowitz-Stegun 7.1.26, |error| < 1.5e-7)
inline void erf_sqrt_half(const vfloats& x, vfloats& erf_v, vfloats& e) {
  vfloat t[kU], poly[kU];
  for (int u = 0; u < kU; ++u) {
    const vfloat z = (x[u] < 0.0f ? -x[u] : x[u]) * 0.70710678118654752f;
    t[u] = 1.0f / (z * 0.3275911f + 1.0f);
    e[u] = -z * z;
  }
  for (int u = 0; u < kU; ++u) poly[u] = t[u] * 1.061405429f - 1.453152027f;
  for (int u = 0; u < kU; ++u) poly[u] = poly[u] * t[u] + 1.421413741f;
  for (int u = 0; u < kU; ++u) poly[u] = poly[u] * t[u] - 0.284496736f;
  for (int u = 0; u < kU; ++u) poly[u] = poly[u] * t[u] + 0.254829592f;
  for (int u = 0; u < kU; ++u) poly[u] = poly[u] * t[u];
  for (int u = 0; u < kU; ++u) e[u] = vexp(e[u]);
  for (int u = 0; u < kU; ++u) {
    const vfloat r = 1.0f - poly[u] * e[u];
    erf_v[u] = x[u] < 0.0f ? -r : r;
  }
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

// one step of kStep elements: forward y, or backward grad_x (+ y)
template <typename scalar_t>
struct Block {
  const DropKey& key;
  bool gelu;
  void forward(const scalar_t* x, scalar_t* y, uint64_t c) const {
    vfloats v, m;
    for (int u = 0; u < kU; ++u) v[u] = load_f(x + u * kW);
    if (gelu) {
      vfloats erf_v, e;
      erf_sqrt_half(v, erf_v, e);
      for (int u = 0; u < kU; ++u) v[u] = 0.5f * v[u] * (1.0f + erf_v[u]);
    }
    if (key.active) {
      drop_vecs(key, c, m);
      for (int u = 0; u < kU; ++u) v[u] *= m[u];
    }
    for (int u = 0; u < kU; ++u) store_f(y + u * kW, v[u]);
  }
  void backward(const scalar_t* g, const scalar_t* x, scalar_t* gx, scalar_t* y, uint64_t c) const {
    vfloats grad, m;
    if (key.active) {
      drop_vecs(key, c, m);
    } else {
      for (int u = 0; u < kU; ++u) m[u] = vfloat{} + 1.0f;
    }
    for (int u = 0; u < kU; ++u) grad[u] = load_f(g + u * kW) * m[u];
    if (gelu) {
      vfloats v, erf_v, e;
      for (int u = 0; u < kU; ++u) v[u] = load_f(x + u * kW);
      erf_sqrt_half(v, erf_v, e);
      for (int u = 0; u < kU; ++u) {
        const vfloat cdf = 0.5f * (1.0f + erf_v[u]);
        grad[u] *= cdf + v[u] * e[u] * kInvSqrt2Pi;
        if (y) store_f(y + u * kW, v[u] * cdf * m[u]);
      }
    }
    for (int u = 0; u < kU; ++u) store_f(gx + u * kW, grad[u]);
  }
};

// runs f(begin, len) over [0, n) in parallel, whole steps, the tail through a scratch step
template <typename F>
void for_blocks(int64_t n, const F& f) {
  at::parallel_for(0, (n + kStep - 1) / kStep, 512, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) f(b * kStep, std::min<int64_t>(kStep, n - b * kStep));
  });
}

template <typename scalar_t>
void run_forward(const at::Tensor& x, at::Tensor& y, const DropKey& key, uint64_t offset, bool gelu) {
  const scalar_t* px = x.data_ptr<scalar_t>();
  scalar_t* py = y.data_ptr<scalar_t>();
  const Block<scalar_t> blk{key, gelu};
  for_blocks(x.numel(), [&](int64_t i, int64_t len) {
    if (len == kStep) return blk.forward(px + i, py + i, offset + i);
    scalar_t bx[kStep] = {}, by[kStep];
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
    if (len == kStep)
      return blk.backward(pg + i, px ? px + i : nullptr, pgx + i, py ? py + i : nullptr, offset + i);
    scalar_t bg[kStep] = {}, bx[kStep] = {}, bgx[kStep], by[kStep];
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
