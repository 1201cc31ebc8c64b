// Backward of stc_attention on CPU, flash style: per line, P is recomputed row block by row block
// from q, k and the saved log-sum-exp (no T x T tensor kept), D = rowsum(P * dP) comes from the
// same rows (so `out` is not needed), and dK, dV accumulate in per-task scratch.
// Weight gradients are summed per fixed group of lines, then reduced in a fixed order:
// deterministic whatever the thread count. Bias and spe gradients are a separate column sum.
#include <ATen/Parallel.h>

#include "stc_attention.h"
#include "stc_line.h"

namespace stcformer {
namespace cpu {
namespace {

// grad_qkv for the branch's channels and per-task partial weight gradients [task][9][dh]
template <typename scalar_t, typename acc_t, int DH>
void backward_branch(const LineGeom& g, const scalar_t* gout, const scalar_t* qkv, const acc_t* w,
                     const acc_t* lse, acc_t scale, scalar_t* gqkv, acc_t* gw_part) {
  const int64_t N = g.N, dh = DH > 0 ? DH : g.dh, H = g.H, L = g.L;
  const int64_t nr = round_up(N, kRows), nk = round_up(N, kKeyPad), P = nr + 2;
  const int64_t groups = task_groups(g);
  const int64_t row_qkv = g.T * g.J * 3 * g.C, row_out = g.T * g.J * g.C;

  const int64_t grain = grain_for(kLinesPerTask * nr * nk * dh * 5);  // ~5 products per score
  at::parallel_for(0, g.B * H * groups, grain, [&](int64_t begin, int64_t end) {
    const int64_t slab = (kLinesPerTask + 2) * P * dh;
    std::vector<acc_t> Q(nr * dh), K(nr * dh), Kt(dh * nk), Vt(dh * nk), Vs(slab), dOs(slab),
        rowlse(nr), P_(kRows * nk), dS(kRows * nk), dQ(nr * dh), dK(nr * dh), dV(nr * dh),
        taps(9 * dh), mask(nk);
    key_mask(N, nk, mask.data());
    const acc_t scales[kRows] = {scale, scale, scale, scale};
    for (int64_t task = begin; task < end; ++task) {
      const int64_t b = task / (H * groups), h = (task / groups) % H, grp = task % groups;
      const int64_t l0 = grp * kLinesPerTask, l1 = std::min(L, l0 + kLinesPerTask);
      const scalar_t* qkv_b = qkv + b * row_qkv;
      scalar_t* gqkv_b = gqkv + b * row_qkv;
      acc_t* gw = gw_part + task * 9 * dh;
      std::fill(gw, gw + 9 * dh, acc_t(0));
      head_taps(w, h, dh, taps.data());
      gather_slab<DH>(g, qkv_b, l0, l1, P, 2, g.qkv_pos, g.qkv_line, g.qkv_chan0 + 3 * h * dh,
                      Vs.data());
      gather_slab<DH>(g, gout + b * row_out, l0, l1, P, -1, g.out_pos, g.out_line,
                      2 * dh * h + g.out_chan0, dOs.data());
      for (int64_t l = l0; l < l1; ++l) {
        const int64_t line = (l - l0 + 1) * P * dh;  // position -1 of line l in the slabs
        const acc_t* dO = dOs.data() + line + dh;      // rows 0 .. nr-1, zero past N
        gather_qk<DH, scalar_t, acc_t>(g, qkv_b, l, h, scale, nr, nk, Q.data(), Kt.data(), K.data(),
                                       Vt.data());
        const acc_t* lse_line = lse + ((b * H + h) * L + l) * N;
        std::copy(lse_line, lse_line + N, rowlse.begin());
        std::fill(rowlse.begin() + N, rowlse.end(), acc_t(0));  // padded rows: dO = 0, so ds = 0
        std::fill(dK.begin(), dK.end(), acc_t(0));
        std::fill(dV.begin(), dV.end(), acc_t(0));

        for (int64_t i0 = 0; i0 < nr; i0 += kRows) {
          acc_t unused[kRows];
          scores<DH>(Q.data() + i0 * dh, Kt.data(), nk, dh, P_.data());
          exp_rows<acc_t>(P_.data(), mask.data(), nk, rowlse.data() + i0, false, nullptr, unused);
          scores<DH>(dO + i0 * dh, Vt.data(), nk, dh, dS.data());
          softmax_grad_rows(P_.data(), dS.data(), nk);
          rows_x_mat<DH>(dS.data(), K.data(), N, nk, dh, scales, dQ.data() + i0 * dh);
          add_outer<DH>(dS.data(), Q.data() + i0 * dh, N, nk, dh, dK.data());
          add_outer<DH>(P_.data(), dO + i0 * dh, N, nk, dh, dV.data());
        }

        // epilogue: conv backward (dv gathers dO through the mirrored taps), weight partials
        conv_weight_grad<DH>(g, dO, Vs.data() + line + dh, P, gw);
        for (int64_t n = 0; n < N; ++n) {
          acc_t* dv = dV.data() + n * dh;
          conv_at<DH>(g, taps.data(), dOs.data() + line + (n + 1) * dh, P, true, dv);
          scalar_t* o = gqkv_b + g.qkv_off(l, n, h);
          const acc_t* dq = dQ.data() + n * dh;
          const acc_t* dk = dK.data() + n * dh;
          for (int64_t d = 0; d < dh; ++d) {
            o[g.chan(d, 0)] = static_cast<scalar_t>(dq[d]);
            o[g.chan(d, 1)] = static_cast<scalar_t>(dk[d]);
            o[g.chan(d, 2)] = static_cast<scalar_t>(dv[d]);
          }
        }
      }
    }
  });
}

// grad_w[c][k] = sum over tasks of head c / dh, in task order (double accumulation)
template <typename acc_t>
at::Tensor reduce_weight_grad(const LineGeom& g, const at::Tensor& part, const at::Tensor& like) {
  const int64_t dh = g.dh, H = g.H, groups = task_groups(g);
  at::Tensor gw = at::empty({g.half, 1, 3, 3}, part.options().dtype(at::kDouble));
  const acc_t* p = part.data_ptr<acc_t>();
  double* o = gw.data_ptr<double>();
  at::parallel_for(0, H, grain_for(g.B * groups * 9 * dh), [&](int64_t hb, int64_t he) {
    for (int64_t h = hb; h < he; ++h)
      for (int64_t i = 0; i < 9 * dh; ++i) {
        double s = 0;
        for (int64_t b = 0; b < g.B; ++b)
          for (int64_t grp = 0; grp < groups; ++grp)
            s += p[((b * H + h) * groups + grp) * 9 * dh + i];
        const int64_t k = i / dh, d = i % dh;
        o[(h * dh + d) * 9 + k] = s;
      }
  });
  return gw.to(like.scalar_type());
}

// colsum[j][c] = sum_{b,t} grad_out[b,t,j,c]: gives grad_b_* and grad_spe_*
template <typename scalar_t>
at::Tensor column_sums(const scalar_t* gout, int64_t B, int64_t T, int64_t J, int64_t C) {
  at::Tensor sums = at::empty({J, C}, at::TensorOptions().dtype(at::kDouble));
  double* s = sums.data_ptr<double>();
  at::parallel_for(0, J, grain_for(B * T * C), [&](int64_t jb, int64_t je) {
    for (int64_t j = jb; j < je; ++j) {
      double* acc = s + j * C;
      std::fill(acc, acc + C, 0.0);
      for (int64_t bt = 0; bt < B * T; ++bt) {
        const scalar_t* row = gout + (bt * J + j) * C;
#pragma omp simd
        for (int64_t c = 0; c < C; ++c) acc[c] += static_cast<double>(row[c]);
      }
    }
  });
  return sums;
}

}  // namespace

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>
stc_attention_bwd(const at::Tensor& grad_out_in, const at::Tensor& qkv_in, const at::Tensor& w_s,
                  const at::Tensor& b_s, const at::Tensor& w_t, const at::Tensor& b_t,
                  const std::optional<at::Tensor>& spe_s, const std::optional<at::Tensor>& spe_t,
                  const at::Tensor& /*out: D comes from the recomputed rows*/,
                  const at::Tensor& lse_s_in, const at::Tensor& lse_t_in, int64_t H,
                  double scale, bool head_major) {
  // every check first, on this thread, before any conversion, allocation or parallel region
  const int64_t dh = check_inputs("stc_attention_bwd", qkv_in, w_s, b_s, w_t, b_t, spe_s, spe_t, H);
  const int64_t B = qkv_in.size(0), T = qkv_in.size(1), J = qkv_in.size(2), C = qkv_in.size(3) / 3;
  check_backward_inputs("stc_attention_bwd", qkv_in, grad_out_in, lse_s_in, lse_t_in, H);
  const at::Tensor qkv = qkv_in.contiguous();
  const auto acc = qkv.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  const at::Tensor gout = grad_out_in.to(qkv.scalar_type()).contiguous();
  const at::Tensor lse_s = lse_s_in.to(acc).contiguous(), lse_t = lse_t_in.to(acc).contiguous();

  at::Tensor gqkv = at::empty_like(qkv);
  const LineGeom gs(B, T, J, C, H, false, head_major), gt(B, T, J, C, H, true, head_major);
  // the kernels write every task's partials; with no positions (T or J = 0) there are lines but
  // no kernel runs, so the partials must start at zero
  auto alloc_part = [&](const LineGeom& g) {
    const auto opts = qkv.options().dtype(acc);
    const std::vector<int64_t> shape{B * H * task_groups(g), 9 * dh};
    return gqkv.numel() > 0 ? at::empty(shape, opts) : at::zeros(shape, opts);
  };
  at::Tensor part_s = alloc_part(gs), part_t = alloc_part(gt);
  at::Tensor gw_s, gw_t, sums;

  auto run = [&](auto scalar_tag, auto acc_tag) {
    using scalar_t = decltype(scalar_tag);
    using acc_t = decltype(acc_tag);
    const at::Tensor ws = w_s.to(acc).contiguous(), wt = w_t.to(acc).contiguous();
    if (gqkv.numel() > 0) {
      for (int branch = 0; branch < 2; ++branch) {
        const LineGeom& g = branch ? gt : gs;
        const at::Tensor& w = branch ? wt : ws;
        const at::Tensor& lse = branch ? lse_t : lse_s;
        at::Tensor& part = branch ? part_t : part_s;
        STC_DISPATCH_DH(dh, [&] {
          backward_branch<scalar_t, acc_t, std::is_same<acc_t, double>::value ? 0 : DH>(
              g, gout.data_ptr<scalar_t>(), qkv.data_ptr<scalar_t>(), w.data_ptr<acc_t>(),
              lse.data_ptr<acc_t>(), static_cast<acc_t>(scale), gqkv.data_ptr<scalar_t>(),
              part.data_ptr<acc_t>());
        });
      }
    }
    gw_s = reduce_weight_grad<acc_t>(gs, part_s, w_s);
    gw_t = reduce_weight_grad<acc_t>(gt, part_t, w_t);
    sums = column_sums<scalar_t>(gout.data_ptr<scalar_t>(), B, T, J, C);
  };
  switch (qkv.scalar_type()) {
    case at::kFloat: run(float(), float()); break;
    case at::kBFloat16: run(at::BFloat16(), float()); break;
    default: run(double(), double());
  }

  // sums (J, C) with C = [H][2][dh]: bias sums over joints, spe sums over heads
  const at::Tensor by_head = sums.view({J, H, 2, dh});
  at::Tensor gb_s = by_head.select(2, 0).sum(0).reshape({H * dh}).to(b_s.scalar_type());
  at::Tensor gb_t = by_head.select(2, 1).sum(0).reshape({H * dh}).to(b_t.scalar_type());
  at::Tensor ge_s = by_head.select(2, 0).sum(1).to(qkv.scalar_type());
  at::Tensor ge_t = by_head.select(2, 1).sum(1).to(qkv.scalar_type());
  return {gqkv, gw_s, gb_s, gw_t, gb_t, ge_s, ge_t};
}

}  // namespace cpu
}  // namespace stcformer
