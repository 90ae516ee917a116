// MODEL.md §7.6 (compressors) with the frontier semantics of §12.2.
//
// Per token p (input: the attention input x):
//   a_p = W_ckv·x,  z_p = W_cgate·x + APE[p mod r]            (c·d each; c = 2 iff r == 4)
//   frontier slot (r == 4 ? r : 0) + p mod r  <-  (a_p, z_p)
//   if (p+1) mod r == 0:   window w = (p+1)/r - 1 is complete
//     P[j]  = per-channel softmax pooling of the window's candidates
//             (r == 4: first halves of slots 0..3 = previous window, second halves of slots 4..7)
//     C_w   = RMSNorm_norm(P); RoPE(C_w tail, w·r); simulation; append
//     r == 4: slots 0..3 <- slots 4..7
#include <algorithm>
#include <cmath>
#include <cstring>

#include "cpu/blocks.h"
#include "cpu/linear.h"
#include "cpu/ops.h"
#include "cpu/sim.h"

namespace dsv4::cpu {

namespace {

// Per-channel softmax over the window's candidates (§7.6), candidates in slot order.
void pool_window(const Frontier& f, int64_t r, int64_t d, float* out) {
  const bool overlap = (r == 4);
  const int64_t n_slots = overlap ? 2 * r : r;
  // Candidate s of channel j: slot s, column j for the previous-window slots (overlap, s < r),
  // column d + j for the current-window slots (overlap, s >= r), column j otherwise.
  auto column = [&](int64_t s) { return (overlap && s >= r) ? d : 0; };
  std::vector<float> m(static_cast<size_t>(d), -INFINITY), sum(static_cast<size_t>(d), 0.0f),
      acc(static_cast<size_t>(d), 0.0f);
  for (int64_t s = 0; s < n_slots; ++s) {
    const float* g = f.gate.data() + s * f.width + column(s);
    for (int64_t j = 0; j < d; ++j)
      m[static_cast<size_t>(j)] = std::max(m[static_cast<size_t>(j)], g[j]);
  }
  for (int64_t s = 0; s < n_slots; ++s) {
    const float* g = f.gate.data() + s * f.width + column(s);
    const float* a = f.kv.data() + s * f.width + column(s);
    for (int64_t j = 0; j < d; ++j) {
      // A -inf gate (an unfilled previous window) gives exactly 0 weight.
      const float e = std::exp(g[j] - m[static_cast<size_t>(j)]);
      sum[static_cast<size_t>(j)] += e;
      acc[static_cast<size_t>(j)] += e * a[j];
    }
  }
  for (int64_t j = 0; j < d; ++j)
    out[j] = acc[static_cast<size_t>(j)] / sum[static_cast<size_t>(j)];
}

}  // namespace

void compress(const model::Model& model, int64_t l, State& state, const Chunk& ch,
              CompressorKind kind, const std::vector<float>& omega, const float* x) {
  const model::Config& c = model.config;
  const model::LayerWeights& lw = model.weights.layers[static_cast<size_t>(l)];
  const bool indexer = (kind == CompressorKind::kIndexer);
  const model::Tensor& w_kv = indexer ? lw.indexer_compressor_kv : lw.attn_compressor_kv;
  const model::Tensor& w_gate = indexer ? lw.indexer_compressor_gate : lw.attn_compressor_gate;
  const model::Tensor& w_ape = indexer ? lw.indexer_compressor_ape : lw.attn_compressor_ape;
  const std::vector<float> norm =
      (indexer ? lw.indexer_compressor_norm : lw.attn_compressor_norm).to_f32();
  LayerState& ls = state.layer(l);
  Frontier& f = indexer ? ls.index_front : ls.comp_front;

  const int64_t r = c.ratio(l);
  const int64_t d = indexer ? c.index_head_dim : c.head_dim;
  const int64_t cd = f.width;  // c·d
  const int64_t T = ch.n_tok;
  const int64_t D = c.n_embd;

  // Projections of the whole chunk (each token's values independent of the others).
  std::vector<float> a(static_cast<size_t>(T * cd)), z(static_cast<size_t>(T * cd));
  project(w_kv, x, D, T, a.data(), cd);
  project(w_gate, x, D, T, z.data(), cd);

  std::vector<float> ape(static_cast<size_t>(cd)), pooled(static_cast<size_t>(d));
  for (int64_t t = 0; t < T; ++t) {
    const int64_t p = ch.pos0 + t;
    const int64_t k = p % r;  // position inside its own window: indexes APE and the slot
    // APE goes to the gate logits only, with the token's own in-window position (§7.6).
    dequantize_tensor_row(w_ape, k, ape.data());
    const int64_t slot = (r == 4 ? r : 0) + k;
    std::memcpy(f.kv_slot(slot), a.data() + t * cd, static_cast<size_t>(cd) * sizeof(float));
    float* g = f.gate_slot(slot);
    for (int64_t i = 0; i < cd; ++i)
      g[i] = z[static_cast<size_t>(t * cd + i)] + ape[static_cast<size_t>(i)];

    if ((p + 1) % r != 0) continue;
    // Emission of window w = (p+1)/r - 1, whose first token is at p + 1 - r.
    pool_window(f, r, d, pooled.data());
    rms_norm(pooled.data(), norm.data(), d, c.rms_eps, pooled.data());
    rope_rotate(pooled.data(), d, rope_angles(omega, p + 1 - r));
    if (indexer) {
      if (ch.sim.fp4_indexer) {
        hadamard(pooled.data(), d);
        fp4_sim(pooled.data(), d);
      }
    } else if (ch.sim.fp8_kv) {
      fp8_sim(pooled.data(), c.n_nope());  // the RoPE dims are never quantised
    }
    float* row = indexer ? state.append_index(l) : state.append_comp(l);
    std::memcpy(row, pooled.data(), static_cast<size_t>(d) * sizeof(float));
    if (ch.dumping()) {
      (*ch.dump)(blk_name(l, indexer ? "index_row" : "comp_row"), p,
                 std::span<const float>(row, static_cast<size_t>(d)));
    }
    if (r == 4) {
      // The current window becomes the previous one; slots r..2r-1 keep stale copies that are
      // overwritten before the next emission (§12.2).
      std::memcpy(f.kv_slot(0), f.kv_slot(r), static_cast<size_t>(r * cd) * sizeof(float));
      std::memcpy(f.gate_slot(0), f.gate_slot(r), static_cast<size_t>(r * cd) * sizeof(float));
    }
  }
}

}  // namespace dsv4::cpu
