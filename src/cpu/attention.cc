// MODEL.md §7: the attention sub-layer, in the order of §7.12.
//
//   qr  = RMSNorm_qa(W_qa·x);  q = W_qb·qr;  q_h = RoPE(RMSNorm(q_h), p)          §7.2
//   kv  = RMSNorm_kv(W_kv·x);  RoPE(kv tail, p);  FP8_SIM(kv nope)                §7.3
//   compressors (ratio != 0), indexer compressor + top-k (ratio 4)                 §7.6-7.7
//   S(p) = raw rows max(0, p-W+1) .. p  ∪  visible / selected compressed rows      §7.5, §7.8
//   o_h = Σ_i e^{s_i-m} k_i / (e^{sink_h-m} + Σ_i e^{s_i-m}),  s_i = q_h·k_i/sqrt(Dh)   §7.9
//   o_h tail = RoPE^-1(o_h tail, p)                                                 §7.10
//   y = W_ob · concat_g(A_g · o_g)                                                  §7.11
#include <algorithm>
#include <cmath>
#include <cstring>

#include "cpu/blocks.h"
#include "cpu/linear.h"
#include "cpu/ops.h"
#include "cpu/sim.h"

namespace dsv4::cpu {

namespace {

// §7.9 for one head of one token over the rows `keys` (raw rows first, oldest first, then
// compressed rows in index order: a fixed order whatever the chunking).
void sink_softmax_head(const float* q, const std::vector<const float*>& keys, float sink,
                       float scale, int64_t hd, float* o, std::vector<float>& s) {
  const size_t n = keys.size();
  s.resize(n);
  float m = sink;  // the sink is a raw logit: not scaled, no value
  for (size_t i = 0; i < n; ++i) {
    s[i] = dot(q, keys[i], hd) * scale;
    m = std::max(m, s[i]);
  }
  float den = std::exp(sink - m);
  std::fill(o, o + hd, 0.0f);
  for (size_t i = 0; i < n; ++i) {
    const float e = std::exp(s[i] - m);
    den += e;
    const float* k = keys[i];  // K = V: the same row, all dims including the RoPE tail
    axpy(e, k, o, hd);
  }
  for (int64_t d = 0; d < hd; ++d) o[d] /= den;
}

}  // namespace

void attention(const model::Model& model, int64_t l, State& state, const Chunk& ch, const float* x,
               float* y) {
  const model::Config& c = model.config;
  const model::LayerWeights& lw = model.weights.layers[static_cast<size_t>(l)];
  const int64_t T = ch.n_tok;
  const int64_t D = c.n_embd;
  const int64_t H = c.n_head;
  const int64_t hd = c.head_dim;
  const int64_t R = c.q_lora_rank;
  const int64_t W = c.window;
  const int64_t ratio = c.ratio(l);
  const float eps = c.rms_eps;

  // §7.4: one regime and one angle table per layer, shared by every RoPE use below.
  const std::vector<float> omega = layer_rope_frequencies(c, l);
  std::vector<RopeAngles> angles;
  angles.reserve(static_cast<size_t>(T));
  for (int64_t t = 0; t < T; ++t) angles.push_back(rope_angles(omega, ch.pos0 + t));

  // §7.2 query path.
  const std::vector<float> q_a_norm = lw.attn_q_a_norm.to_f32();
  std::vector<float> qr(static_cast<size_t>(T * R));
  project(lw.attn_q_a, x, D, T, qr.data(), R);
  for (int64_t t = 0; t < T; ++t)
    rms_norm(qr.data() + t * R, q_a_norm.data(), R, eps, qr.data() + t * R);
  ch.dump_rows(blk_name(l, "q_lora_norm"), qr.data(), R, R);
  std::vector<float> q(static_cast<size_t>(T * H * hd));
  project(lw.attn_q_b, qr.data(), R, T, q.data(), H * hd);
  for (int64_t t = 0; t < T; ++t) {
    for (int64_t h = 0; h < H; ++h) {
      float* qh = q.data() + (t * H + h) * hd;
      rms_norm(qh, nullptr, hd, eps, qh);  // per head, unweighted
      rope_rotate(qh, hd, angles[static_cast<size_t>(t)]);
    }
  }
  ch.dump_rows(blk_name(l, "q"), q.data(), H * hd, H * hd);

  // §7.3 KV path: the raw row of each position, key and value at once.
  const std::vector<float> kv_norm = lw.attn_kv_a_norm.to_f32();
  std::vector<float> kv(static_cast<size_t>(T * hd));
  project(lw.attn_kv, x, D, T, kv.data(), hd);
  for (int64_t t = 0; t < T; ++t) {
    float* row = kv.data() + t * hd;
    rms_norm(row, kv_norm.data(), hd, eps, row);
    rope_rotate(row, hd, angles[static_cast<size_t>(t)]);
    if (ch.sim.fp8_kv) fp8_sim(row, c.n_nope());
  }
  ch.dump_rows(blk_name(l, "kv"), kv.data(), hd, hd);

  // §7.6-7.7: compressors run before any attention of the chunk; token p only ever reads rows
  // c < floor((p+1)/r), which exist once its own position has been compressed.
  std::vector<std::vector<int32_t>> selected;
  if (ratio != 0) compress(model, l, state, ch, CompressorKind::kAttention, omega, x);
  if (ratio == 4) {
    compress(model, l, state, ch, CompressorKind::kIndexer, omega, x);
    selected = indexer_select(model, l, state, ch, omega, qr.data(), x);
  }

  // §7.5 / §7.8: the rows each token attends. Positions before the chunk come from the ring
  // (which still holds the W positions before pos0), the chunk's own rows from `kv`.
  const LayerState& ls = state.layer(l);
  std::vector<std::vector<const float*>> keys(static_cast<size_t>(T));
  for (int64_t t = 0; t < T; ++t) {
    const int64_t p = ch.pos0 + t;
    auto& k = keys[static_cast<size_t>(t)];
    for (int64_t pos = std::max<int64_t>(ch.window_start, p - W + 1); pos <= p; ++pos) {
      k.push_back(pos < ch.pos0 ? state.raw_slot(l, pos) : kv.data() + (pos - ch.pos0) * hd);
    }
    if (ratio == 4) {
      for (int32_t r : selected[static_cast<size_t>(t)]) k.push_back(ls.comp.data() + r * hd);
    } else if (ratio != 0) {
      const int64_t n_vis = (p + 1) / ratio;  // every row of a window completed by now
      for (int64_t r = 0; r < n_vis; ++r) k.push_back(ls.comp.data() + r * hd);
    }
  }

  // §7.9 sink softmax and §7.10 inverse RoPE, every (token, head) independently.
  const std::vector<float> sinks = lw.attn_sinks.to_f32();
  const float scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(hd)));
  std::vector<float> o(static_cast<size_t>(T * H * hd));
  parallel_for(T * H, T * H * static_cast<int64_t>(keys.back().size()) * hd * 2,
               [&](int64_t begin, int64_t end) {
                 std::vector<float> s;
                 for (int64_t i = begin; i < end; ++i) {
                   const int64_t t = i / H, h = i % H;
                   float* oh = o.data() + i * hd;
                   sink_softmax_head(q.data() + i * hd, keys[static_cast<size_t>(t)],
                                     sinks[static_cast<size_t>(h)], scale, hd, oh, s);
                   rope_rotate_inverse(oh, hd, angles[static_cast<size_t>(t)]);
                 }
               });
  ch.dump_rows(blk_name(l, "attn_heads"), o.data(), H * hd, H * hd);

  // §7.11 grouped output projection: wo_a row block g reads only the heads of group g.
  const int64_t G = c.n_out_group;
  const int64_t low_w = lw.attn_output_a.ne(1);  // G · o_lora_rank
  std::vector<float> low(static_cast<size_t>(T * low_w));
  project_grouped(lw.attn_output_a, G, o.data(), H * hd, T, low.data(), low_w);
  ch.dump_rows(blk_name(l, "attn_low"), low.data(), low_w, low_w);
  project(lw.attn_output_b, low.data(), low_w, T, y, D);

  // The chunk's raw rows enter the ring last, so that no token above saw a ring slot overwritten
  // by a later position of the same chunk. Only the last W positions survive.
  for (int64_t t = std::max<int64_t>(0, T - W); t < T; ++t) {
    std::memcpy(state.raw_slot(l, ch.pos0 + t), kv.data() + t * hd,
                static_cast<size_t>(hd) * sizeof(float));
  }
}

}  // namespace dsv4::cpu
