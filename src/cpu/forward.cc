// MODEL.md §3, the whole forward pass, in the document's order:
//
//   e = Embed[t];  X = [e, e, e, e]                                         §4
//   for each layer l:
//     (u, post, C) = hc_pre(X; hc_attn_*)                                    §5.2-5.3
//     a = Attention_l(RMSNorm_attn_norm(u), p)                               §7 (attention.cc)
//     X = hc_post(X, a, post, C)                                             §5.4
//     (u, post, C) = hc_pre(X; hc_ffn_*)
//     z = RMSNorm_ffn_norm(u);  f = RoutedMoE_l(z, t) + SharedExpert_l(z)    §8 (moe.cc)
//     X = hc_post(X, f, post, C)
//   y = hc_head(X);  logits = W_out · RMSNorm_output_norm(y)                 §5.5, §9
//
// Tokens are processed in chunks of consecutive positions; within a chunk every projection reads
// each weight row once for all tokens, and every per-token value is computed exactly as it
// would be for that token alone (see linear.h), so chunking never changes a bit.
#include "cpu/forward.h"

#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "cpu/blocks.h"
#include "cpu/hc.h"
#include "cpu/linear.h"
#include "cpu/ops.h"
#include "cpu/sim.h"

namespace dsv4::cpu {

namespace {

// Largest chunk evaluated at once: bounds scratch memory (the full model needs ~8 MB of queries
// per 64 tokens) while keeping each weight row read once per 64 tokens.
constexpr int64_t kMaxChunk = 64;

// §5.2 for every token of the chunk: the mixing coefficients (pre | post | comb, see hc.h) and the
// collapsed sub-layer input u = Σ_h pre_h·X[h].
void hc_pre(const model::Config& c, const model::Tensor& fn, const model::Tensor& scale,
            const model::Tensor& base, const float* X, int64_t T, float* mix, float* u) {
  const int64_t n = c.n_hc, D = c.n_embd, HD = c.hc_dim(), M = c.hc_mix();
  const int64_t mix_w = hc_mix_size(n);
  std::vector<float> m(static_cast<size_t>(T * M));
  project(fn, X, HD, T, m.data(), M);  // W_fn · v on the unnormalised flat state
  const std::vector<float> s = scale.to_f32(), b = base.to_f32();
  for (int64_t t = 0; t < T; ++t) {
    const float* xt = X + t * HD;
    float* mt = m.data() + t * M;
    // One RMS over all n_hc·D values jointly, with the RMSNorm epsilon (trap 8).
    const float r = hc_flat_rms_scale(xt, HD, c.rms_eps);
    for (int64_t i = 0; i < M; ++i) mt[i] *= r;
    float* mixt = mix + t * mix_w;
    hc_mix(mt, s.data(), b.data(), n, c.hc_eps, c.sinkhorn_iters, mixt);
    hc_weighted_sum(xt, mixt, n, D, u + t * D);
  }
}

// §5.4 for every token: X <- post ⊗ f + Cᵀ·X.
void hc_post_all(const model::Config& c, std::vector<float>& X, const float* f, const float* mix,
                 int64_t T) {
  const int64_t n = c.n_hc, D = c.n_embd, HD = c.hc_dim();
  std::vector<float> out(X.size());
  for (int64_t t = 0; t < T; ++t) {
    hc_post(X.data() + t * HD, f + t * D, mix + t * hc_mix_size(n), n, D, out.data() + t * HD);
  }
  X.swap(out);
}

// §5.5 + §9 for the rows X[rows[i]]: logits [rows.size()][n_vocab].
void output_head(const model::Model& model, const Chunk& ch, const float* X,
                 const std::vector<int64_t>& rows, float* logits) {
  const model::Config& c = model.config;
  const model::Weights& w = model.weights;
  const int64_t n = c.n_hc, D = c.n_embd, HD = c.hc_dim(), V = c.n_vocab;
  const int64_t S = static_cast<int64_t>(rows.size());
  std::vector<float> xs(static_cast<size_t>(S * HD));
  for (int64_t i = 0; i < S; ++i)
    std::copy_n(X + rows[static_cast<size_t>(i)] * HD, HD, xs.begin() + i * HD);
  std::vector<float> m(static_cast<size_t>(S * n));
  project(w.output_hc_fn, xs.data(), HD, S, m.data(), n);
  const std::vector<float> scale = w.output_hc_scale.to_f32();  // one scalar for every gate
  const std::vector<float> base = w.output_hc_base.to_f32();
  const std::vector<float> norm = w.output_norm.to_f32();
  std::vector<float> y(static_cast<size_t>(S * D)), gates(static_cast<size_t>(n));
  for (int64_t i = 0; i < S; ++i) {
    const float* xi = xs.data() + i * HD;
    const float r = hc_flat_rms_scale(xi, HD, c.rms_eps);
    for (int64_t h = 0; h < n; ++h) m[static_cast<size_t>(i * n + h)] *= r;
    hc_head_gates(m.data() + i * n, scale[0], base.data(), n, c.hc_eps, gates.data());
    float* yi = y.data() + i * D;
    hc_weighted_sum(xi, gates.data(), n, D, yi);
    rms_norm(yi, norm.data(), D, c.rms_eps, yi);
    if (ch.dumping()) {
      (*ch.dump)("output_norm", ch.pos0 + rows[static_cast<size_t>(i)],
                 std::span<const float>(yi, static_cast<size_t>(D)));
    }
  }
  project(w.output, y.data(), D, S, logits, V);
  if (ch.dumping()) {
    for (int64_t i = 0; i < S; ++i) {
      (*ch.dump)("logits", ch.pos0 + rows[static_cast<size_t>(i)],
                 std::span<const float>(logits + i * V, static_cast<size_t>(V)));
    }
  }
}

}  // namespace

void forward_streams(const model::Model& model, State& state, const Chunk& ch, std::vector<float>& X,
                     float* logits) {
  const model::Config& c = model.config;
  const model::Weights& wt = model.weights;
  const int64_t T = ch.n_tok, D = c.n_embd, n = c.n_hc, HD = c.hc_dim();
  const int64_t mix_w = hc_mix_size(n);
  std::vector<float> mix(static_cast<size_t>(T * mix_w)), u(static_cast<size_t>(T * D)),
      out(static_cast<size_t>(T * D));
  for (int64_t l = 0; l < c.n_layer; ++l) {
    const model::LayerWeights& lw = wt.layers[static_cast<size_t>(l)];

    // Attention sub-layer.
    hc_pre(c, lw.hc_attn_fn, lw.hc_attn_scale, lw.hc_attn_base, X.data(), T, mix.data(), u.data());
    const std::vector<float> attn_norm = lw.attn_norm.to_f32();
    for (int64_t t = 0; t < T; ++t)
      rms_norm(u.data() + t * D, attn_norm.data(), D, c.rms_eps, u.data() + t * D);
    ch.dump_rows(blk_name(l, "attn_norm"), u.data(), D, D);
    attention(model, l, state, ch, u.data(), out.data());
    ch.dump_rows(blk_name(l, "attn_out"), out.data(), D, D);
    hc_post_all(c, X, out.data(), mix.data(), T);
    ch.dump_rows(blk_name(l, "hc_attn"), X.data(), HD, HD);

    // FFN sub-layer.
    hc_pre(c, lw.hc_ffn_fn, lw.hc_ffn_scale, lw.hc_ffn_base, X.data(), T, mix.data(), u.data());
    const std::vector<float> ffn_norm = lw.ffn_norm.to_f32();
    for (int64_t t = 0; t < T; ++t)
      rms_norm(u.data() + t * D, ffn_norm.data(), D, c.rms_eps, u.data() + t * D);
    ch.dump_rows(blk_name(l, "ffn_norm"), u.data(), D, D);
    moe(model, l, ch, u.data(), out.data());
    ch.dump_rows(blk_name(l, "ffn_out"), out.data(), D, D);
    hc_post_all(c, X, out.data(), mix.data(), T);
    ch.dump_rows(blk_name(l, "hc_ffn"), X.data(), HD, HD);
  }

  // §9: every token's logits when asked for, otherwise only the last token's (kept in the state).
  std::vector<int64_t> rows;
  if (logits) {
    for (int64_t t = 0; t < T; ++t) rows.push_back(t);
    output_head(model, ch, X.data(), rows, logits);
    std::copy_n(logits + (T - 1) * c.n_vocab, c.n_vocab, state.mutable_logits().begin());
  } else {
    rows.push_back(T - 1);
    output_head(model, ch, X.data(), rows, state.mutable_logits().data());
  }
}

namespace {

// One chunk from its tokens' embeddings (§4) through every layer and the head.
void forward_chunk(const model::Model& model, State& state, const Chunk& ch, float* logits, float* hidden) {
  const model::Config& c = model.config;
  const int64_t T = ch.n_tok, D = c.n_embd, n = c.n_hc, HD = c.hc_dim();
  // §4: the embedding row widened to f32, copied unchanged into every stream.
  std::vector<float> X(static_cast<size_t>(T * HD));
  for (int64_t t = 0; t < T; ++t) {
    float* xt = X.data() + t * HD;
    dequantize_tensor_row(model.weights.token_embd, ch.tokens[static_cast<size_t>(t)], xt);
    for (int64_t h = 1; h < n; ++h) std::copy_n(xt, D, xt + h * D);
  }
  ch.dump_rows("token_embd", X.data(), HD, D);
  forward_streams(model, state, ch, X, logits);
  if (hidden) std::copy(X.begin(), X.end(), hidden);
}

// Everything that could fail, checked before the state changes.
Status validate(const model::Model& model, const State& state, std::span<const int32_t> tokens,
                const SimOptions& sim) {
  const model::Config& c = model.config;
  const model::Weights& w = model.weights;
  if (state.n_layer() != c.n_layer || state.head_dim() != c.head_dim ||
      state.window() != c.window || state.index_head_dim() != c.index_head_dim ||
      state.n_vocab() != c.n_vocab) {
    return make_error("cpu forward: state was created for a different configuration");
  }
  for (int64_t l = 0; l < c.n_layer; ++l) {
    if (state.layer(l).ratio != c.ratio(l)) {
      return make_error("cpu forward: state layer " + std::to_string(l) +
                        " has another compress ratio");
    }
  }
  if (state.mode() && !(*state.mode() == sim)) {
    return make_error(
        "cpu forward: the state was built in another simulation mode (official/plain)");
  }
  const int64_t len = static_cast<int64_t>(tokens.size());
  if (state.n() + len > state.max_ctx()) {
    return make_error("cpu forward: " + std::to_string(state.n() + len) +
                      " positions exceed the state's capacity of " +
                      std::to_string(state.max_ctx()));
  }
  if (c.n_rot % 2 != 0 || c.n_rot > c.head_dim || c.n_hc < 1 || c.n_out_group < 1 ||
      static_cast<int64_t>(c.swiglu_clamp.size()) < c.n_layer) {
    return make_error("cpu forward: inconsistent configuration");
  }
  bool any_indexer = false;
  for (int64_t l = 0; l < c.n_layer; ++l) any_indexer = any_indexer || c.has_indexer(l);
  if (any_indexer &&
      (c.index_head_dim < c.n_rot || (sim.fp4_indexer && !is_pow2(c.index_head_dim)))) {
    return make_error("cpu forward: indexer head dim " + std::to_string(c.index_head_dim) +
                      " cannot hold the RoPE dims or is not a power of two (Hadamard)");
  }
  for (int32_t tok : tokens) {
    if (tok < 0 || tok >= c.n_vocab) {
      return make_error("cpu forward: token id " + std::to_string(tok) +
                        " outside the vocabulary of " + std::to_string(c.n_vocab));
    }
  }
  for (int64_t l = 0; l < c.n_layer; ++l) {
    const model::LayerWeights& lw = w.layers[static_cast<size_t>(l)];
    if (!c.is_hash_layer(l)) {
      if (!lw.exp_probs_b.present()) {
        return make_error("cpu forward: blk." + std::to_string(l) + ".exp_probs_b.bias missing");
      }
      continue;
    }
    if (!lw.ffn_gate_tid2eid.present()) {
      return make_error("cpu forward: blk." + std::to_string(l) + ".ffn_gate_tid2eid missing");
    }
    if (lw.ffn_gate_tid2eid.ne(0) < c.n_expert_used || lw.ffn_gate_tid2eid.ne(1) < c.n_vocab) {
      return make_error("cpu forward: blk." + std::to_string(l) +
                        ".ffn_gate_tid2eid has the wrong shape");
    }
    for (int32_t tok : tokens) {
      const uint8_t* row = lw.ffn_gate_tid2eid.row(tok);
      for (int64_t i = 0; i < c.n_expert_used; ++i) {
        int32_t e;
        std::memcpy(&e, row + i * 4, 4);
        if (e < 0 || e >= c.n_expert) {
          return make_error("cpu forward: blk." + std::to_string(l) + ".ffn_gate_tid2eid row " +
                            std::to_string(tok) + " names expert " + std::to_string(e));
        }
      }
    }
  }
  return Status();
}

}  // namespace

Status forward(const model::Model& model, State& state, std::span<const int32_t> tokens,
               const SimOptions& sim, float* logits, const DumpFn& dump, float* hidden) {
  DSV4_TRY(validate(model, state, tokens, sim));
  if (tokens.empty()) return Status();
  if (!state.mode()) state.set_mode(sim);
  const int64_t len = static_cast<int64_t>(tokens.size());
  for (int64_t off = 0; off < len; off += kMaxChunk) {
    Chunk ch;
    ch.pos0 = state.n();
    ch.n_tok = std::min(kMaxChunk, len - off);
    ch.tokens = tokens.subspan(static_cast<size_t>(off), static_cast<size_t>(ch.n_tok));
    ch.sim = sim;
    ch.dump = &dump;
    forward_chunk(model, state, ch, logits ? logits + off * model.config.n_vocab : nullptr,
                  hidden ? hidden + off * model.config.hc_dim() : nullptr);
    state.set_n(state.n() + ch.n_tok);
  }
  return Status();
}

}  // namespace dsv4::cpu
