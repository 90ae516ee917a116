// MODEL.md §7.7: the lightning indexer and the per-token top-k of ratio-4 layers.
//
//   qI_h  = (W_Iq·qr)_h; RoPE(qI_h tail, p); FP4_SIM(Hadamard(qI_h))      per indexer head
//   wI    = (W_Iw·x) / sqrt(D_I·H_I)
//   score(c) = Σ_h wI[h]·max(0, qI_h·K_I[c])                              c < floor((p+1)/4)
//   selection: every eligible row while there are at most top_k, else the top_k scores
//              (descending, ties to the lower index).
#include <algorithm>
#include <cmath>

#include "cpu/blocks.h"
#include "cpu/linear.h"
#include "cpu/ops.h"
#include "cpu/sim.h"

namespace dsv4::cpu {

std::vector<std::vector<int32_t>> indexer_select(const model::Model& model, int64_t l,
                                                 const State& state, const Chunk& ch,
                                                 const std::vector<float>& omega, const float* qr,
                                                 const float* x) {
  const model::Config& c = model.config;
  const model::LayerWeights& lw = model.weights.layers[static_cast<size_t>(l)];
  const int64_t T = ch.n_tok;
  const int64_t top_k = c.index_top_k;
  const int64_t n_ih = c.n_index_head;
  const int64_t dih = c.index_head_dim;
  const int64_t R = c.q_lora_rank;
  const int64_t D = c.n_embd;
  const float* rows = state.layer(l).index.data();

  std::vector<std::vector<int32_t>> selected(static_cast<size_t>(T));
  // Tokens whose eligible prefix exceeds top_k need scores; the rest see every eligible row
  // (the indexer would select them all, so it is skipped: identical result).
  std::vector<int64_t> scored;
  for (int64_t t = 0; t < T; ++t) {
    const int64_t n_vis = (ch.pos0 + t + 1) / 4;
    if (n_vis > top_k) {
      scored.push_back(t);
    } else {
      auto& sel = selected[static_cast<size_t>(t)];
      sel.resize(static_cast<size_t>(n_vis));
      for (int64_t i = 0; i < n_vis; ++i) sel[static_cast<size_t>(i)] = static_cast<int32_t>(i);
    }
  }
  if (scored.empty()) return selected;

  // Projections for the scored tokens only (gathered; per-token results do not depend on it).
  const int64_t S = static_cast<int64_t>(scored.size());
  std::vector<float> qr_s(static_cast<size_t>(S * R)), x_s(static_cast<size_t>(S * D));
  for (int64_t i = 0; i < S; ++i) {
    const int64_t t = scored[static_cast<size_t>(i)];
    std::copy_n(qr + t * R, R, qr_s.begin() + i * R);
    std::copy_n(x + t * D, D, x_s.begin() + i * D);
  }
  std::vector<float> q(static_cast<size_t>(S * n_ih * dih)), wts(static_cast<size_t>(S * n_ih));
  project(lw.indexer_attn_q_b, qr_s.data(), R, S, q.data(), n_ih * dih);
  project(lw.indexer_proj, x_s.data(), D, S, wts.data(), n_ih);
  const float w_scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(dih * n_ih)));

  std::vector<float> score;
  for (int64_t i = 0; i < S; ++i) {
    const int64_t t = scored[static_cast<size_t>(i)];
    const int64_t p = ch.pos0 + t;
    const int64_t n_vis = (p + 1) / 4;
    const RopeAngles ang = rope_angles(omega, p);
    float* qt = q.data() + i * n_ih * dih;
    float* wt = wts.data() + i * n_ih;
    for (int64_t h = 0; h < n_ih; ++h) {
      float* qh = qt + h * dih;
      rope_rotate(qh, dih, ang);
      if (ch.sim.fp4_indexer) {
        hadamard(qh, dih);
        fp4_sim(qh, dih);
      }
      wt[h] *= w_scale;
    }
    score.assign(static_cast<size_t>(n_vis), 0.0f);
    parallel_for(n_vis, n_vis * n_ih * dih, [&](int64_t begin, int64_t end) {
      for (int64_t r = begin; r < end; ++r) {
        const float* k = rows + r * dih;
        float s = 0.0f;
        for (int64_t h = 0; h < n_ih; ++h) {
          // ReLU per head before the (possibly negative) head weight.
          s += wt[h] * std::max(0.0f, dot(qt + h * dih, k, dih));
        }
        score[static_cast<size_t>(r)] = s;
      }
    });
    std::vector<int32_t> sel = top_k_desc(score, top_k);
    std::sort(sel.begin(), sel.end());  // attention visits rows in index order
    selected[static_cast<size_t>(t)] = std::move(sel);
  }
  return selected;
}

}  // namespace dsv4::cpu
