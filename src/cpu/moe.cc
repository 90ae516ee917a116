// MODEL.md §8: the mixture-of-experts FFN.
//
//   l    = W_gate_inp·z  (f32);  s_e = sqrt(softplus(l_e))                         §8.2
//   sel  = hash layer: tid2eid[token];  else top-k of s_e + bias_e (ties -> lower e)  §8.3
//   w_i  = s_sel_i / max(Σ s_sel, 2^-14) · expert_weights_scale                      §8.4
//   y_i  = W2[e]·( silu(min(W1[e]·z, L)) · clamp(W3[e]·z, ±L) · w_i )                §8.5
//   f    = Σ_i y_i  +  W2s·( silu(min(W1s·z, L)) · clamp(W3s·z, ±L) )                §8.6-8.7
// The clamp (limit L = swiglu_clamp[l]) applies iff L > 1e-6.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "cpu/blocks.h"
#include "cpu/linear.h"
#include "cpu/ops.h"
#include "quant/quant.h"

namespace dsv4::cpu {

namespace {

// §8.5's activation: gate clamped from above only, before silu; up clamped symmetrically.
float swiglu(float g, float u, float limit) {
  if (limit > 1e-6f) {
    g = std::min(g, limit);
    u = std::clamp(u, -limit, limit);
  }
  return silu(g) * u;
}

struct Route {
  std::vector<int32_t> expert;  // n_tok × k, selection order
  std::vector<float> weight;    // n_tok × k
};

Route route(const model::Model& model, int64_t l, const Chunk& ch, const float* z) {
  const model::Config& c = model.config;
  const model::LayerWeights& lw = model.weights.layers[static_cast<size_t>(l)];
  const int64_t T = ch.n_tok, E = c.n_expert, K = c.n_expert_used, D = c.n_embd;
  std::vector<float> logit(static_cast<size_t>(T * E));
  project(lw.ffn_gate_inp, z, D, T, logit.data(), E);  // evaluated on hash layers too (weights)
  const bool hash = c.is_hash_layer(l);
  const std::vector<float> bias = hash ? std::vector<float>() : lw.exp_probs_b.to_f32();

  Route rt;
  rt.expert.resize(static_cast<size_t>(T * K));
  rt.weight.resize(static_cast<size_t>(T * K));
  std::vector<float> s(static_cast<size_t>(E)), biased(static_cast<size_t>(E));
  for (int64_t t = 0; t < T; ++t) {
    for (int64_t e = 0; e < E; ++e)
      s[static_cast<size_t>(e)] = std::sqrt(softplus(logit[static_cast<size_t>(t * E + e)]));
    int32_t* sel = rt.expert.data() + t * K;
    if (hash) {
      // The current input token's row of tid2eid (validated by forward).
      std::memcpy(sel, lw.ffn_gate_tid2eid.row(ch.tokens[static_cast<size_t>(t)]),
                  static_cast<size_t>(K) * sizeof(int32_t));
    } else {
      // The bias decides which experts, never their weights.
      for (int64_t e = 0; e < E; ++e)
        biased[static_cast<size_t>(e)] = s[static_cast<size_t>(e)] + bias[static_cast<size_t>(e)];
      const std::vector<int32_t> top = top_k_desc(biased, K);
      std::copy(top.begin(), top.end(), sel);
    }
    float* w = rt.weight.data() + t * K;
    float sum = 0.0f;
    for (int64_t i = 0; i < K; ++i) sum += s[static_cast<size_t>(sel[i])];
    const float den = std::max(sum, 0x1p-14f);
    for (int64_t i = 0; i < K; ++i) {
      const float si = s[static_cast<size_t>(sel[i])];
      w[i] = (c.expert_weights_norm ? si / den : si) * c.expert_weights_scale;
    }
  }
  return rt;
}

}  // namespace

void moe(const model::Model& model, int64_t l, const Chunk& ch, const float* z, float* f) {
  const model::Config& c = model.config;
  const model::LayerWeights& lw = model.weights.layers[static_cast<size_t>(l)];
  const int64_t T = ch.n_tok, E = c.n_expert, K = c.n_expert_used, D = c.n_embd;
  const int64_t F = c.n_ff_expert;
  const float limit = c.swiglu_clamp[static_cast<size_t>(l)];

  const Route rt = route(model, l, ch, z);
  if (ch.dumping()) {
    for (int64_t t = 0; t < T; ++t) {
      (*ch.dump)(blk_name(l, "ffn_route_w"), ch.pos0 + t,
                 std::span<const float>(rt.weight.data() + t * K, static_cast<size_t>(K)));
    }
  }

  // Group the (token, slot) assignments by expert so that each expert's rows are read once per
  // chunk. Assignment a = t·K + i.
  std::vector<std::vector<int64_t>> users(static_cast<size_t>(E));
  for (int64_t a = 0; a < T * K; ++a)
    users[static_cast<size_t>(rt.expert[static_cast<size_t>(a)])].push_back(a);
  std::vector<int32_t> active;
  for (int64_t e = 0; e < E; ++e) {
    if (!users[static_cast<size_t>(e)].empty()) active.push_back(static_cast<int32_t>(e));
  }
  const int64_t n_active = static_cast<int64_t>(active.size());

  // Gate and up rows of every active expert against its users' z; then the weighted activation.
  std::vector<float> gate(static_cast<size_t>(T * K * F)), up(static_cast<size_t>(T * K * F));
  const quant::TensorType t_gate = lw.ffn_gate_exps.type(), t_up = lw.ffn_up_exps.type();
  const quant::TensorType t_down = lw.ffn_down_exps.type();
  parallel_for(n_active * F, T * K * F * D * 2, [&](int64_t begin, int64_t end) {
    for (int64_t j = begin; j < end; ++j) {
      const int32_t e = active[static_cast<size_t>(j / F)];
      const int64_t r = j % F;
      const uint8_t* rg = lw.ffn_gate_exps.row(r, e);
      const uint8_t* ru = lw.ffn_up_exps.row(r, e);
      for (int64_t a : users[static_cast<size_t>(e)]) {
        const float* za = z + (a / K) * D;
        gate[static_cast<size_t>(a * F + r)] = quant::dot_row(t_gate, rg, za, D);
        up[static_cast<size_t>(a * F + r)] = quant::dot_row(t_up, ru, za, D);
      }
    }
  });
  // The route weight multiplies the activation before W2 (§8.5, trap 31).
  for (int64_t a = 0; a < T * K; ++a) {
    const float w = rt.weight[static_cast<size_t>(a)];
    float* g = gate.data() + a * F;
    const float* u = up.data() + a * F;
    for (int64_t r = 0; r < F; ++r) g[r] = swiglu(g[r], u[r], limit) * w;
  }
  std::vector<float> y(static_cast<size_t>(T * K * D));
  parallel_for(n_active * D, T * K * F * D, [&](int64_t begin, int64_t end) {
    for (int64_t j = begin; j < end; ++j) {
      const int32_t e = active[static_cast<size_t>(j / D)];
      const int64_t r = j % D;
      const uint8_t* rd = lw.ffn_down_exps.row(r, e);
      for (int64_t a : users[static_cast<size_t>(e)]) {
        y[static_cast<size_t>(a * D + r)] = quant::dot_row(t_down, rd, gate.data() + a * F, F);
      }
    }
  });
  // routed = Σ_i y_i in selection order.
  std::vector<float> routed(static_cast<size_t>(T * D));
  for (int64_t t = 0; t < T; ++t) {
    float* out = routed.data() + t * D;
    std::copy_n(y.data() + (t * K) * D, D, out);
    for (int64_t i = 1; i < K; ++i) {
      const float* yi = y.data() + (t * K + i) * D;
      for (int64_t d = 0; d < D; ++d) out[d] += yi[d];
    }
  }
  ch.dump_rows(blk_name(l, "ffn_moe"), routed.data(), D, D);

  // §8.6 shared expert: the same clamped SwiGLU, no route weight, no scale.
  const int64_t Fs = lw.ffn_gate_shexp.ne(1);
  std::vector<float> sg(static_cast<size_t>(T * Fs)), su(static_cast<size_t>(T * Fs));
  project(lw.ffn_gate_shexp, z, D, T, sg.data(), Fs);
  project(lw.ffn_up_shexp, z, D, T, su.data(), Fs);
  for (size_t i = 0; i < sg.size(); ++i) sg[i] = swiglu(sg[i], su[i], limit);
  std::vector<float> shared(static_cast<size_t>(T * D));
  project(lw.ffn_down_shexp, sg.data(), Fs, T, shared.data(), D);
  ch.dump_rows(blk_name(l, "ffn_shexp"), shared.data(), D, D);

  // §8.7
  for (int64_t i = 0; i < T * D; ++i)
    f[i] = routed[static_cast<size_t>(i)] + shared[static_cast<size_t>(i)];
}

}  // namespace dsv4::cpu
