// MODEL.md semantics checked stage by stage: each named dump of the forward is recomputed in
// double precision, straight from the specification's equations, from the dumps of the stage
// before it (tiny F32 model, plain mode so that no rounding boundary of a simulation can flip).
// These catch what the chunking tests cannot: a consistently wrong rule (wrong halves, APE
// index, visibility off by one, comb transpose, routing rule).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <numeric>
#include <string>

#include "cpu/rope.h"
#include "cpu/sim.h"
#include "test_models.h"

namespace dsv4::cpu {
namespace {

using testing::synthetic_model;
using testing::test_tokens;
using Vec = std::vector<double>;

struct Recorded {
  std::map<std::string, std::map<int64_t, std::vector<float>>> d;
  const std::vector<float>& at(const std::string& name, int64_t pos) const {
    auto it = d.find(name);
    EXPECT_TRUE(it != d.end()) << name;
    auto jt = it->second.find(pos);
    EXPECT_TRUE(jt != it->second.end()) << name << " @" << pos;
    return jt->second;
  }
  Vec vec(const std::string& name, int64_t pos) const {
    const auto& v = at(name, pos);
    return Vec(v.begin(), v.end());
  }
};

// The tiny model run once over 64 tokens, every dump recorded (plain mode unless asked).
Recorded record(SimOptions sim) {
  Recorded rec;
  const model::Model& m = synthetic_model("tiny");
  State s = State::create(m.config, 128).value();
  const std::vector<int32_t> tokens = test_tokens(64, m.config.n_vocab, 21);
  DumpFn dump = [&](std::string_view name, int64_t pos, std::span<const float> v) {
    rec.d[std::string(name)][pos] = std::vector<float>(v.begin(), v.end());
  };
  EXPECT_TRUE(forward(m, s, tokens, sim, nullptr, dump).ok());
  return rec;
}
const Recorded& recorded() {
  static const Recorded r = record(SimOptions::plain());
  return r;
}
const Recorded& recorded_official() {
  static const Recorded r = record(SimOptions::official());
  return r;
}

const model::Config& cfg() { return synthetic_model("tiny").config; }
const model::LayerWeights& layer(int64_t l) {
  return synthetic_model("tiny").weights.layers[static_cast<size_t>(l)];
}
std::string blk(int64_t l, const char* what) { return "blk." + std::to_string(l) + "." + what; }

Vec f64(const std::vector<float>& v) { return Vec(v.begin(), v.end()); }

// y = W·x for a row-major [n_out][n_in] matrix (rows offset by `row0`).
Vec matvec(const std::vector<float>& w, int64_t n_in, const Vec& x, int64_t n_out,
           int64_t row0 = 0) {
  Vec y(static_cast<size_t>(n_out), 0.0);
  for (int64_t o = 0; o < n_out; ++o) {
    for (int64_t i = 0; i < n_in; ++i)
      y[static_cast<size_t>(o)] +=
          w[static_cast<size_t>((row0 + o) * n_in + i)] * x[static_cast<size_t>(i)];
  }
  return y;
}

Vec rms(const Vec& x, const std::vector<float>* w, double eps = 1e-6) {
  double ss = 0;
  for (double v : x) ss += v * v;
  const double r = 1.0 / std::sqrt(ss / static_cast<double>(x.size()) + eps);
  Vec y(x.size());
  for (size_t i = 0; i < x.size(); ++i) y[i] = x[i] * r * (w ? (*w)[i] : 1.0);
  return y;
}

double sigm(double z) { return 1.0 / (1.0 + std::exp(-z)); }

// RoPE of the last dims of a head in double, with this layer's frequencies (sign -1: inverse).
void rope(Vec& head, int64_t layer_id, int64_t pos, double sign = 1.0) {
  const std::vector<float> omega = layer_rope_frequencies(cfg(), layer_id);
  const int64_t n = static_cast<int64_t>(omega.size());
  double* x = head.data() + head.size() - static_cast<size_t>(2 * n);
  for (int64_t j = 0; j < n; ++j) {
    const double phi = static_cast<double>(static_cast<float>(pos) * omega[static_cast<size_t>(j)]);
    const double c = std::cos(phi), s = sign * std::sin(phi);
    const double x0 = x[2 * j], x1 = x[2 * j + 1];
    x[2 * j] = x0 * c - x1 * s;
    x[2 * j + 1] = x0 * s + x1 * c;
  }
}

void expect_close(const std::vector<float>& got, const Vec& want, double rel,
                  const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  double scale = 1e-30;
  for (double v : want) scale = std::max(scale, std::fabs(v));
  double worst = 0;
  for (size_t i = 0; i < want.size(); ++i) worst = std::max(worst, std::fabs(got[i] - want[i]));
  EXPECT_LE(worst / scale, rel) << what << " (max |diff| " << worst << ", scale " << scale << ")";
}

// §5.3 in double.
Vec sinkhorn(Vec c, int n, double eps, int iters) {
  for (int j = 0; j < n; ++j) {
    double m = -INFINITY, s = 0;
    for (int k = 0; k < n; ++k) m = std::max(m, c[static_cast<size_t>(j * n + k)]);
    for (int k = 0; k < n; ++k) s += std::exp(c[static_cast<size_t>(j * n + k)] - m);
    for (int k = 0; k < n; ++k)
      c[static_cast<size_t>(j * n + k)] = std::exp(c[static_cast<size_t>(j * n + k)] - m) / s + eps;
  }
  auto norm = [&](bool rows) {
    for (int a = 0; a < n; ++a) {
      double s = 0;
      for (int b = 0; b < n; ++b) s += c[static_cast<size_t>(rows ? a * n + b : b * n + a)];
      for (int b = 0; b < n; ++b) c[static_cast<size_t>(rows ? a * n + b : b * n + a)] /= s + eps;
    }
  };
  norm(false);
  for (int i = 1; i < iters; ++i) {
    norm(true);
    norm(false);
  }
  return c;
}

struct Mix {
  Vec pre, post, comb;
  Vec u;
};

// §5.2 from the flat state X (n_hc·D).
Mix hc_pre(const Vec& X, const model::Tensor& fn, const model::Tensor& scale,
           const model::Tensor& base) {
  const int64_t n = cfg().n_hc, D = cfg().n_embd, HD = n * D, M = (2 + n) * n;
  double ss = 0;
  for (double v : X) ss += v * v;
  const double r = 1.0 / std::sqrt(ss / static_cast<double>(HD) + cfg().rms_eps);
  Vec m = matvec(fn.to_f32(), HD, X, M);
  const std::vector<float> s = scale.to_f32(), b = base.to_f32();
  Mix mx;
  Vec z(static_cast<size_t>(n * n));
  for (int64_t i = 0; i < M; ++i) m[static_cast<size_t>(i)] *= r;
  for (int64_t h = 0; h < n; ++h) {
    mx.pre.push_back(sigm(m[static_cast<size_t>(h)] * s[0] + b[static_cast<size_t>(h)]) +
                     cfg().hc_eps);
    mx.post.push_back(2.0 *
                      sigm(m[static_cast<size_t>(n + h)] * s[1] + b[static_cast<size_t>(n + h)]));
  }
  for (int64_t i = 0; i < n * n; ++i)
    z[static_cast<size_t>(i)] =
        m[static_cast<size_t>(2 * n + i)] * s[2] + b[static_cast<size_t>(2 * n + i)];
  mx.comb = sinkhorn(z, static_cast<int>(n), cfg().hc_eps, static_cast<int>(cfg().sinkhorn_iters));
  mx.u.assign(static_cast<size_t>(D), 0.0);
  for (int64_t h = 0; h < n; ++h) {
    for (int64_t d = 0; d < D; ++d)
      mx.u[static_cast<size_t>(d)] +=
          mx.pre[static_cast<size_t>(h)] * X[static_cast<size_t>(h * D + d)];
  }
  return mx;
}

TEST(Semantics, EmbeddingHcPreNormAndHcPost) {
  const Recorded& r = recorded();
  const int64_t n = cfg().n_hc, D = cfg().n_embd;
  for (int64_t p : {0, 9, 40}) {
    // §4: four exact copies of the embedding row.
    const Vec e = r.vec("token_embd", p);
    Vec X;
    for (int64_t h = 0; h < n; ++h) X.insert(X.end(), e.begin(), e.end());
    const model::LayerWeights& lw = layer(0);
    const Mix mx = hc_pre(X, lw.hc_attn_fn, lw.hc_attn_scale, lw.hc_attn_base);
    const std::vector<float> w = lw.attn_norm.to_f32();
    expect_close(r.at("blk.0.attn_norm", p), rms(mx.u, &w), 2e-5, "attn_norm");
    // §5.4: X'[k] = post_k·f + Σ_j C[j][k]·X[j].
    const Vec f = r.vec("blk.0.attn_out", p);
    Vec want(static_cast<size_t>(n * D));
    for (int64_t k = 0; k < n; ++k) {
      for (int64_t d = 0; d < D; ++d) {
        double acc = mx.post[static_cast<size_t>(k)] * f[static_cast<size_t>(d)];
        for (int64_t j = 0; j < n; ++j)
          acc += mx.comb[static_cast<size_t>(j * n + k)] * X[static_cast<size_t>(j * D + d)];
        want[static_cast<size_t>(k * D + d)] = acc;
      }
    }
    expect_close(r.at("blk.0.hc_attn", p), want, 2e-5, "hc_attn");
  }
}

// §7.6 compressed row of window w of layer l (d = head_dim for the attention compressor, the
// indexer head dim for the indexer compressor), from the attention inputs of its tokens.
Vec compressed_row(int64_t l, int64_t w, bool indexer, const Recorded& r = recorded()) {
  const model::LayerWeights& lw = layer(l);
  const int64_t ratio = cfg().ratio(l), D = cfg().n_embd;
  const int64_t d = indexer ? cfg().index_head_dim : cfg().head_dim;
  const bool overlap = ratio == 4;
  const int64_t cd = overlap ? 2 * d : d;
  const std::vector<float> wkv =
      (indexer ? lw.indexer_compressor_kv : lw.attn_compressor_kv).to_f32();
  const std::vector<float> wg =
      (indexer ? lw.indexer_compressor_gate : lw.attn_compressor_gate).to_f32();
  const std::vector<float> ape =
      (indexer ? lw.indexer_compressor_ape : lw.attn_compressor_ape).to_f32();
  const std::vector<float> norm =
      (indexer ? lw.indexer_compressor_norm : lw.attn_compressor_norm).to_f32();
  // Candidates per channel: (value, gate) pairs.
  std::vector<std::vector<std::pair<double, double>>> cand(static_cast<size_t>(d));
  auto add_token = [&](int64_t t, int64_t half) {
    const Vec x = r.vec(blk(l, "attn_norm"), t);
    const Vec a = matvec(wkv, D, x, cd);
    Vec z = matvec(wg, D, x, cd);
    for (int64_t i = 0; i < cd; ++i)
      z[static_cast<size_t>(i)] += ape[static_cast<size_t>((t % ratio) * cd + i)];
    for (int64_t j = 0; j < d; ++j)
      cand[static_cast<size_t>(j)].push_back(
          {a[static_cast<size_t>(half * d + j)], z[static_cast<size_t>(half * d + j)]});
  };
  if (overlap && w > 0) {
    for (int64_t t = (w - 1) * ratio; t < w * ratio; ++t) add_token(t, 0);  // first halves
  }
  for (int64_t t = w * ratio; t < (w + 1) * ratio; ++t) add_token(t, overlap ? 1 : 0);
  Vec pooled(static_cast<size_t>(d));
  for (int64_t j = 0; j < d; ++j) {
    double m = -INFINITY, s = 0, acc = 0;
    for (auto& c : cand[static_cast<size_t>(j)]) m = std::max(m, c.second);
    for (auto& c : cand[static_cast<size_t>(j)]) {
      s += std::exp(c.second - m);
      acc += std::exp(c.second - m) * c.first;
    }
    pooled[static_cast<size_t>(j)] = acc / s;
  }
  Vec row = rms(pooled, &norm);
  rope(row, l, w * ratio);  // the position of the window's first token
  return row;
}

TEST(Semantics, CompressorsOverlapAndPlainWindows) {
  const Recorded& r = recorded();
  // Layer 1 (ratio 4, overlapping): window 0 pools only its own 4 tokens, later windows 8.
  for (int64_t w : {0, 1, 5}) {
    expect_close(r.at("blk.1.comp_row", 4 * w + 3), compressed_row(1, w, false), 2e-5,
                 "ratio-4 row " + std::to_string(w));
    expect_close(r.at("blk.1.index_row", 4 * w + 3), compressed_row(1, w, true), 2e-5,
                 "indexer row " + std::to_string(w));
  }
  // Layer 2 (ratio 16: not 4, so non-overlapping like 128).
  for (int64_t w : {0, 2}) {
    expect_close(r.at("blk.2.comp_row", 16 * w + 15), compressed_row(2, w, false), 2e-5,
                 "ratio-16 row " + std::to_string(w));
  }
}

// Official mode: the same rows after the simulations of §11.5, applied (by the unit-tested
// functions) to the double-precision recomputation rounded to f32.
Vec simulated(const Vec& row, bool indexer) {
  std::vector<float> f(row.begin(), row.end());
  if (indexer) {
    hadamard(f.data(), static_cast<int64_t>(f.size()));
    fp4_sim(f.data(), static_cast<int64_t>(f.size()));
  } else {
    fp8_sim(f.data(), cfg().n_nope());  // never the RoPE dims
  }
  return f64(f);
}

TEST(Semantics, OfficialModeSimulatesKvAndIndexerRows) {
  const Recorded& r = recorded_official();
  for (int64_t w : {0, 3}) {
    expect_close(r.at("blk.1.comp_row", 4 * w + 3),
                 simulated(compressed_row(1, w, false, r), false), 2e-5,
                 "official ratio-4 row " + std::to_string(w));
    expect_close(r.at("blk.1.index_row", 4 * w + 3), simulated(compressed_row(1, w, true, r), true),
                 2e-5, "official indexer row " + std::to_string(w));
  }
  expect_close(r.at("blk.2.comp_row", 31), simulated(compressed_row(2, 1, false, r), false), 2e-5,
               "official ratio-16 row");
  // Raw KV rows (§7.3): norm, RoPE at p, FP8 on the nope dims.
  const model::LayerWeights& lw = layer(2);
  const std::vector<float> wkv = lw.attn_kv.to_f32(), norm = lw.attn_kv_a_norm.to_f32();
  for (int64_t p : {0, 21}) {
    Vec kv = rms(matvec(wkv, cfg().n_embd, r.vec("blk.2.attn_norm", p), cfg().head_dim), &norm);
    rope(kv, 2, p);
    expect_close(r.at("blk.2.kv", p), simulated(kv, false), 2e-5, "official raw row");
  }
}

// §7.9-7.10 for one token: heads attend the given key rows, then the inverse RoPE.
Vec attend(int64_t l, int64_t p, const std::vector<Vec>& keys) {
  const Recorded& r = recorded();
  const int64_t H = cfg().n_head, hd = cfg().head_dim;
  const Vec q = r.vec(blk(l, "q"), p);
  const std::vector<float> sinks = layer(l).attn_sinks.to_f32();
  Vec out;
  for (int64_t h = 0; h < H; ++h) {
    std::vector<double> s;
    double m = sinks[static_cast<size_t>(h)];
    for (const Vec& k : keys) {
      double dot = 0;
      for (int64_t i = 0; i < hd; ++i)
        dot += q[static_cast<size_t>(h * hd + i)] * k[static_cast<size_t>(i)];
      s.push_back(dot / std::sqrt(static_cast<double>(hd)));
      m = std::max(m, s.back());
    }
    double den = std::exp(sinks[static_cast<size_t>(h)] - m);
    Vec o(static_cast<size_t>(hd), 0.0);
    for (size_t i = 0; i < keys.size(); ++i) {
      const double e = std::exp(s[i] - m);
      den += e;
      for (int64_t j = 0; j < hd; ++j)
        o[static_cast<size_t>(j)] += e * keys[i][static_cast<size_t>(j)];
    }
    for (double& v : o) v /= den;
    rope(o, l, p, -1.0);
    out.insert(out.end(), o.begin(), o.end());
  }
  return out;
}

std::vector<Vec> raw_rows(int64_t l, int64_t p) {
  std::vector<Vec> k;
  for (int64_t t = std::max<int64_t>(0, p - cfg().window + 1); t <= p; ++t)
    k.push_back(recorded().vec(blk(l, "kv"), t));
  return k;
}

TEST(Semantics, AttentionVisibilityOnSlidingAndPlainCompressedLayers) {
  const Recorded& r = recorded();
  // Layer 0 (ratio 0): raw window only, including the token itself.
  for (int64_t p : {0, 5, 40}) {
    expect_close(r.at("blk.0.attn_heads", p), attend(0, p, raw_rows(0, p)), 2e-5,
                 "layer 0 @" + std::to_string(p));
  }
  // Layer 2 (ratio 16): all rows c < floor((p+1)/16); p = 47 sees the row it just completed.
  for (int64_t p : {14, 15, 46, 47}) {
    std::vector<Vec> k = raw_rows(2, p);
    for (int64_t c = 0; c < (p + 1) / 16; ++c) k.push_back(r.vec("blk.2.comp_row", 16 * c + 15));
    expect_close(r.at("blk.2.attn_heads", p), attend(2, p, k), 2e-5,
                 "layer 2 @" + std::to_string(p));
  }
}

TEST(Semantics, IndexerSelectsTopKOnRatio4Layers) {
  const Recorded& r = recorded();
  const model::LayerWeights& lw = layer(1);
  const int64_t IH = cfg().n_index_head, ID = cfg().index_head_dim, R = cfg().q_lora_rank,
                D = cfg().n_embd;
  const std::vector<float> wq = lw.indexer_attn_q_b.to_f32(), ww = lw.indexer_proj.to_f32();
  for (int64_t p : {36, 50, 63}) {
    const int64_t n_vis = (p + 1) / 4;
    ASSERT_GT(n_vis, cfg().index_top_k);
    Vec q = matvec(wq, R, r.vec("blk.1.q_lora_norm", p), IH * ID);   // from qr, not x
    const Vec wts = matvec(ww, D, r.vec("blk.1.attn_norm", p), IH);  // from x
    std::vector<double> score(static_cast<size_t>(n_vis), 0.0);
    for (int64_t h = 0; h < IH; ++h) {
      Vec qh(q.begin() + h * ID, q.begin() + (h + 1) * ID);
      rope(qh, 1, p);
      for (int64_t c = 0; c < n_vis; ++c) {
        const Vec k = r.vec("blk.1.index_row", 4 * c + 3);
        double dot = 0;
        for (int64_t i = 0; i < ID; ++i)
          dot += qh[static_cast<size_t>(i)] * k[static_cast<size_t>(i)];
        score[static_cast<size_t>(c)] += wts[static_cast<size_t>(h)] /
                                         std::sqrt(static_cast<double>(ID * IH)) *
                                         std::max(0.0, dot);
      }
    }
    std::vector<int64_t> idx(static_cast<size_t>(n_vis));
    std::iota(idx.begin(), idx.end(), 0);
    std::stable_sort(idx.begin(), idx.end(), [&](int64_t a, int64_t b) {
      return score[static_cast<size_t>(a)] > score[static_cast<size_t>(b)];
    });
    idx.resize(static_cast<size_t>(cfg().index_top_k));
    std::sort(idx.begin(), idx.end());
    std::vector<Vec> k = raw_rows(1, p);
    for (int64_t c : idx) k.push_back(r.vec("blk.1.comp_row", 4 * c + 3));
    expect_close(r.at("blk.1.attn_heads", p), attend(1, p, k), 2e-5,
                 "layer 1 @" + std::to_string(p));
  }
}

TEST(Semantics, GroupedOutputProjection) {
  const Recorded& r = recorded();
  const int64_t G = cfg().n_out_group, H = cfg().n_head, hd = cfg().head_dim,
                orank = cfg().o_lora_rank;
  const int64_t gw = H / G * hd;
  const std::vector<float> a = layer(2).attn_output_a.to_f32(), b = layer(2).attn_output_b.to_f32();
  for (int64_t p : {3, 30}) {
    const Vec o = r.vec("blk.2.attn_heads", p);
    Vec low;
    for (int64_t g = 0; g < G; ++g) {
      const Vec og(o.begin() + g * gw, o.begin() + (g + 1) * gw);
      const Vec lg = matvec(a, gw, og, orank, g * orank);  // row block g on the heads of group g
      low.insert(low.end(), lg.begin(), lg.end());
    }
    expect_close(r.at("blk.2.attn_low", p), low, 2e-5, "attn_low");
    expect_close(r.at("blk.2.attn_out", p),
                 matvec(b, G * orank, f64(r.at("blk.2.attn_low", p)), cfg().n_embd), 2e-5,
                 "attn_out");
  }
}

Vec swiglu_expert(const std::vector<float>& w1, const std::vector<float>& w3,
                  const std::vector<float>& w2, int64_t slab, const Vec& z, double route_w,
                  double limit) {
  const int64_t D = cfg().n_embd, F = cfg().n_ff_expert;
  Vec g = matvec(w1, D, z, F, slab * F), u = matvec(w3, D, z, F, slab * F);
  Vec h(static_cast<size_t>(F));
  for (int64_t i = 0; i < F; ++i) {
    const double gi = std::min(g[static_cast<size_t>(i)], limit);  // gate: from above, before silu
    const double ui = std::clamp(u[static_cast<size_t>(i)], -limit, limit);
    h[static_cast<size_t>(i)] = gi * sigm(gi) * ui * route_w;
  }
  return matvec(w2, F, h, D, slab * D);
}

TEST(Semantics, MoeHashAndBiasedTopKRouting) {
  const Recorded& r = recorded();
  const model::Model& m = synthetic_model("tiny");
  const std::vector<int32_t> tokens = test_tokens(64, cfg().n_vocab, 21);
  const int64_t E = cfg().n_expert, K = cfg().n_expert_used, D = cfg().n_embd;
  for (int64_t l : {0, 3}) {  // layer 0 hash-routed, layer 3 biased top-k
    const model::LayerWeights& lw = layer(l);
    const std::vector<float> router = lw.ffn_gate_inp.to_f32();
    const std::vector<float> w1 = lw.ffn_gate_exps.to_f32(), w3 = lw.ffn_up_exps.to_f32(),
                             w2 = lw.ffn_down_exps.to_f32();
    const std::vector<float> s1 = lw.ffn_gate_shexp.to_f32(), s3 = lw.ffn_up_shexp.to_f32(),
                             s2 = lw.ffn_down_shexp.to_f32();
    const double limit = cfg().swiglu_clamp[static_cast<size_t>(l)];
    for (int64_t p : {0, 17, 63}) {
      const Vec z = r.vec(blk(l, "ffn_norm"), p);
      const Vec logit = matvec(router, D, z, E);
      Vec s(static_cast<size_t>(E));
      for (int64_t e = 0; e < E; ++e) {
        const double x = logit[static_cast<size_t>(e)];
        s[static_cast<size_t>(e)] = std::sqrt(x > 20 ? x : std::log1p(std::exp(x)));
      }
      std::vector<int64_t> sel;
      if (cfg().is_hash_layer(l)) {
        const int32_t* ids = reinterpret_cast<const int32_t*>(
            lw.ffn_gate_tid2eid.row(tokens[static_cast<size_t>(p)]));
        sel.assign(ids, ids + K);
      } else {
        const std::vector<float> bias = lw.exp_probs_b.to_f32();
        std::vector<int64_t> idx(static_cast<size_t>(E));
        std::iota(idx.begin(), idx.end(), 0);
        std::stable_sort(idx.begin(), idx.end(), [&](int64_t a, int64_t b) {
          return s[static_cast<size_t>(a)] + bias[static_cast<size_t>(a)] >
                 s[static_cast<size_t>(b)] + bias[static_cast<size_t>(b)];
        });
        sel.assign(idx.begin(), idx.begin() + K);
      }
      double sum = 0;
      for (int64_t e : sel) sum += s[static_cast<size_t>(e)];
      Vec routed(static_cast<size_t>(D), 0.0);
      for (int64_t e : sel) {
        const double w = s[static_cast<size_t>(e)] / std::max(sum, std::ldexp(1.0, -14)) *
                         cfg().expert_weights_scale;
        const Vec y = swiglu_expert(w1, w3, w2, e, z, w, limit);
        for (int64_t d = 0; d < D; ++d) routed[static_cast<size_t>(d)] += y[static_cast<size_t>(d)];
      }
      expect_close(r.at(blk(l, "ffn_moe"), p), routed, 2e-5, "routed l" + std::to_string(l));
      const Vec shared = swiglu_expert(s1, s3, s2, 0, z, 1.0, limit);
      expect_close(r.at(blk(l, "ffn_shexp"), p), shared, 2e-5, "shared l" + std::to_string(l));
    }
  }
  (void)m;
}

TEST(Semantics, OutputHead) {
  const Recorded& r = recorded();
  const model::Weights& w = synthetic_model("tiny").weights;
  const int64_t n = cfg().n_hc, D = cfg().n_embd, HD = n * D;
  // The head runs only for the last position when no logits are requested.
  const int64_t p = 63;
  const Vec X = r.vec(blk(cfg().n_layer - 1, "hc_ffn"), p);
  double ss = 0;
  for (double v : X) ss += v * v;
  const double rr = 1.0 / std::sqrt(ss / static_cast<double>(HD) + cfg().rms_eps);
  const Vec m = matvec(w.output_hc_fn.to_f32(), HD, X, n);
  const std::vector<float> scale = w.output_hc_scale.to_f32(), base = w.output_hc_base.to_f32();
  Vec y(static_cast<size_t>(D), 0.0);
  for (int64_t h = 0; h < n; ++h) {
    const double g =
        sigm(m[static_cast<size_t>(h)] * rr * scale[0] + base[static_cast<size_t>(h)]) +
        cfg().hc_eps;
    for (int64_t d = 0; d < D; ++d)
      y[static_cast<size_t>(d)] += g * X[static_cast<size_t>(h * D + d)];
  }
  const std::vector<float> norm = w.output_norm.to_f32();
  const Vec yn = rms(y, &norm);
  expect_close(r.at("output_norm", p), yn, 2e-5, "output_norm");
  expect_close(r.at("logits", p), matvec(w.output.to_f32(), D, yn, cfg().n_vocab), 2e-5, "logits");
}

}  // namespace
}  // namespace dsv4::cpu
