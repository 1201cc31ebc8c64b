// Forward of stc_attention on CPU: per (batch, head, group of lines) task, gather the line's
// q, k, v into float scratch, run a row-blocked softmax attention over the line, add the 3x3
// depthwise conv of v (+ bias + spe) and write the head's slot of out plus the row log-sum-exp.
#include <ATen/Parallel.h>

#include "stc_attention.h"
#include "stc_line.h"

namespace stcformer {
namespace cpu {
namespace {

template <typename scalar_t, typename acc_t, int DH>
void forward_branch(const LineGeom& g, const scalar_t* qkv, const acc_t* w, const acc_t* bias,
                    const acc_t* spe, acc_t scale, scalar_t* out, acc_t* lse) {
  const int64_t N = g.N, dh = DH > 0 ? DH : g.dh, H = g.H, L = g.L;
  const int64_t nr = round_up(N, kRows), nk = round_up(N, kKeyPad), P = nr + 2;
  const int64_t groups = task_groups(g);
  const int64_t row_qkv = g.T * g.J * 3 * g.C, row_out = g.T * g.J * g.C;

  const int64_t grain = grain_for(kLinesPerTask * nr * nk * dh * 2);  // ~2 products per score
  at::parallel_for(0, g.B * H * groups, grain, [&](int64_t begin, int64_t end) {
    std::vector<acc_t> Q(nr * dh), Kt(dh * nk), Vs((kLinesPerTask + 2) * P * dh), S(kRows * nk),
        O(nr * dh), rowlse(nr), taps(9 * dh), mask(nk);
    key_mask(N, nk, mask.data());
    for (int64_t task = begin; task < end; ++task) {
      const int64_t b = task / (H * groups), h = (task / groups) % H, grp = task % groups;
      const int64_t l0 = grp * kLinesPerTask, l1 = std::min(L, l0 + kLinesPerTask);
      const scalar_t* qkv_b = qkv + b * row_qkv;
      scalar_t* out_b = out + b * row_out;
      head_taps(w, h, dh, taps.data());
      const acc_t* bias_h = bias + h * dh;
      gather_slab<DH>(g, qkv_b, l0, l1, P, 2, g.qkv_pos, g.qkv_line, g.qkv_chan0 + 3 * h * dh,
                      Vs.data());
      for (int64_t l = l0; l < l1; ++l) {
        const acc_t* vline = Vs.data() + (l - l0 + 1) * P * dh;  // position -1 of line l
        gather_qk<DH, scalar_t, acc_t>(g, qkv_b, l, h, scale, nr, nk, Q.data(), Kt.data(), nullptr,
                                       nullptr);
        for (int64_t i0 = 0; i0 < nr; i0 += kRows) {
          scores<DH>(Q.data() + i0 * dh, Kt.data(), nk, dh, S.data());
          acc_t mx[kRows], sum[kRows], inv[kRows];
          exp_rows<acc_t>(S.data(), mask.data(), nk, nullptr, true, mx, sum);
          for (int r = 0; r < kRows; ++r) {
            inv[r] = acc_t(1) / sum[r];
            rowlse[i0 + r] = mx[r] + std::log(sum[r]);
          }
          rows_x_mat<DH>(S.data(), vline + dh, N, nk, dh, inv, O.data() + i0 * dh);
        }

        // epilogue: + conv(v) + bias + spe, one position at a time, vectorised over d
        std::copy(rowlse.begin(), rowlse.begin() + N, lse + ((b * H + h) * L + l) * N);
        for (int64_t n = 0; n < N; ++n) {
          acc_t* y = O.data() + n * dh;
#pragma omp simd
          for (int64_t d = 0; d < dh; ++d) y[d] += bias_h[d];
          if (spe) {
            const acc_t* e = spe + g.spe_row(l, n) * dh;
#pragma omp simd
            for (int64_t d = 0; d < dh; ++d) y[d] += e[d];
          }
          conv_at<DH>(g, taps.data(), vline + (n + 1) * dh, P, false, y);
          scalar_t* o = out_b + g.out_off(l, n, h);
          for (int64_t d = 0; d < dh; ++d) o[d] = static_cast<scalar_t>(y[d]);
        }
      }
    }
  });
}

template <typename scalar_t, typename acc_t>
void forward(const at::Tensor& qkv, const at::Tensor& w_s, const at::Tensor& b_s,
             const at::Tensor& w_t, const at::Tensor& b_t, const at::Tensor& spe_s,
             const at::Tensor& spe_t, int64_t H, double scale, bool head_major, at::Tensor& out,
             at::Tensor& lse_s, at::Tensor& lse_t) {
  const int64_t B = qkv.size(0), T = qkv.size(1), J = qkv.size(2), C = qkv.size(3) / 3;
  const LineGeom gs(B, T, J, C, H, false, head_major), gt(B, T, J, C, H, true, head_major);
  auto run = [&](const LineGeom& g, const at::Tensor& w, const at::Tensor& b, const at::Tensor& e,
                 at::Tensor& lse) {
    STC_DISPATCH_DH(g.dh, [&] {
      forward_branch<scalar_t, acc_t, std::is_same<acc_t, double>::value ? 0 : DH>(
          g, qkv.data_ptr<scalar_t>(), w.data_ptr<acc_t>(), b.data_ptr<acc_t>(),
          e.defined() ? e.data_ptr<acc_t>() : nullptr, static_cast<acc_t>(scale),
          out.data_ptr<scalar_t>(), lse.data_ptr<acc_t>());
    });
  };
  run(gs, w_s, b_s, spe_s, lse_s);
  run(gt, w_t, b_t, spe_t, lse_t);
}

}  // namespace

std::tuple<at::Tensor, at::Tensor, at::Tensor> stc_attention_fwd(
    const at::Tensor& qkv_in, const at::Tensor& w_s, const at::Tensor& b_s, const at::Tensor& w_t,
    const at::Tensor& b_t, const std::optional<at::Tensor>& spe_s,
    const std::optional<at::Tensor>& spe_t, int64_t num_heads, double scale, bool head_major) {
  check_inputs("stc_attention_fwd", qkv_in, w_s, b_s, w_t, b_t, spe_s, spe_t, num_heads);  // first
  const at::Tensor qkv = qkv_in.contiguous();
  const int64_t B = qkv.size(0), T = qkv.size(1), J = qkv.size(2), C = qkv.size(3) / 3;
  const auto acc = qkv.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  // small parameters in the accumulation dtype, contiguous
  auto prep = [&](const at::Tensor& t) { return t.to(acc).contiguous(); };
  auto prep_opt = [&](const std::optional<at::Tensor>& t) {
    return t.has_value() && t->defined() ? prep(*t) : at::Tensor();
  };
  at::Tensor out = at::empty({B, T, J, C}, qkv.options());
  at::Tensor lse_s = at::empty({B, num_heads, T, J}, qkv.options().dtype(acc));
  at::Tensor lse_t = at::empty({B, num_heads, J, T}, qkv.options().dtype(acc));
  if (out.numel() == 0) return {out, lse_s, lse_t};
  const at::Tensor ws = prep(w_s), bs = prep(b_s), wt = prep(w_t), bt = prep(b_t);
  const at::Tensor es = prep_opt(spe_s), et = prep_opt(spe_t);
  switch (qkv.scalar_type()) {
    case at::kFloat:
      forward<float, float>(qkv, ws, bs, wt, bt, es, et, num_heads, scale, head_major, out, lse_s, lse_t);
      break;
    case at::kBFloat16:
      forward<at::BFloat16, float>(qkv, ws, bs, wt, bt, es, et, num_heads, scale, head_major, out, lse_s, lse_t);
      break;
    default:
      forward<double, double>(qkv, ws, bs, wt, bt, es, et, num_heads, scale, head_major, out, lse_s, lse_t);
  }
  return {out, lse_s, lse_t};
}

}  // namespace cpu
}  // namespace stcformer
