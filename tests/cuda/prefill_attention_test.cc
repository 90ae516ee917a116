// cuda/prefill_attention.h against a plain double-precision reference of MODEL.md §7.5-7.10 (sink
// softmax over the raw window and the visible or selected compressed rows, inverse RoPE of the
// output) on fresh random inputs: the real head geometry (64 heads of 512, window 128, top-k 512)
// and small ones (4 heads of 96, 16 of 128), ratio 0, ratio 4 before and after the selection
// becomes active, ratio 128, chunks that straddle the ring, launch offsets t0 and token counts
// whose row lists end inside a split, long row lists (many splits), splits whose scores jump far
// above or fall far below the first one's (the combine's rescale), and inputs of mixed
// magnitudes (per-vector power-of-two factors from 2^-40 to 2^40 and tiny elements beside large
// ones: no scale factor may be assumed; all-zero heads and rows: the kernel's power-of-two scaling
// must take them). Tolerance: 1e-5 relative L2 per head against double (the decode kernel's bar):
// the kernel's products are split f16 pairs (≈ 2^-22 relative each, f16_split.cuh) summed in
// short zero-started MMA chains and rounded f32 adds, so it should land at f32 accumulation's
// ≈ 1e-6, and a lost lo half, a mis-scaled vector or a biased (truncated) long chain would not
// (3e-5 where a case scales the scores up 2^5: their own f32 rounding grows with them, below).
// Rows FP8-simulated on their leading dims (official mode's KV nope dims, cpu::fp8_sim) take the
// kernel's two-MMA path for the slabs whose lo halves are all zero; the same bar holds there, and
// a slab wrongly taken as exact (any random f32 slab) would miss it by ≈ 2^-11. Every case runs
// through the layer's row conversion (prefill_attention_rows), which has its own contract test.
// The f16 output for out_a's GEMM (AttentionArgs::out16) must be, bit for bit, gemm.h's split
// conversion of the f32 output with a row factor per token and group of heads. Every case runs in
// both launch forms (a block per split with the combine, and AttentionArgs::whole_tokens), and a
// token of one split must come out of both with the same bits.
#include "cuda/prefill_attention.h"

#include <gtest/gtest.h>

#include <cuda_fp16.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "cpu/rope.h"
#include "cpu/sim.h"
#include "cuda/device_util.h"

namespace dsv4::cuda::testing {
namespace {

struct Geometry {
  int H, hd, n_rot, W, top_k;
};

struct Case {
  int ratio;
  int pos0;
  int T;   // tokens of this launch
  int t0;  // launch's first chunk token
};

// Each query head and each row is multiplied by 2^e, e uniform in its [lo, hi]; each element by
// 2^-f, f uniform in [0, element_spread]. All zero: the plain normal inputs.
struct Magnitudes {
  int q_lo = 0, q_hi = 0, row_lo = 0, row_hi = 0, element_spread = 0;
  int zero_every = 0;  // > 0: every zero_every-th query head and row vector is all zeros
  int fp8_dims = 0;    // > 0: FP8_SIM (block 64) on each row's first fp8_dims dims, after the above
  int comp_exp = 0;    // the compressed rows × 2^comp_exp, last: their splits' scores far above or below the window's
};

void zero_vectors(std::vector<float>& v, size_t n, int every) {
  if (every <= 0) return;
  for (size_t i = 0; i < v.size(); i += n * static_cast<size_t>(every)) std::fill_n(v.begin() + i, n, 0.0f);
}

void scale_vectors(std::vector<float>& v, size_t n, int lo, int hi, int element_spread, std::mt19937_64& rng) {
  std::uniform_int_distribution<int> vec(lo, hi), elem(0, element_spread);
  for (size_t i = 0; i < v.size(); i += n) {
    const int e = vec(rng);
    for (size_t j = i; j < i + n; ++j) v[j] = std::ldexp(v[j], e - elem(rng));
  }
}

// gemm.h's row factor of a row whose largest magnitude is m (2^s with m·2^s in [2^14, 2^15)).
int row_shift(float m) { return m > 0.0f && std::isfinite(m) ? std::clamp(14 - std::ilogb(m), -126, 126) : 0; }

// The f16 output (AttentionArgs::out16, split, a factor per token and group of `group` heads)
// against the f32 output of the same inputs put through gemm.h's split conversion per group: the
// same bits.
void check_f16_output(const std::vector<float>& got, AttentionArgs a, const PrefillAttnRows& rows, int group,
                      cudaStream_t stream) {
  SCOPED_TRACE(::testing::Message() << "f16 output, groups of " << group << " heads"
                                    << (a.whole_tokens ? ", whole tokens" : ""));
  const size_t n = static_cast<size_t>(a.T) * a.H * a.hd, width = static_cast<size_t>(group) * a.hd;
  const int G = a.H / group;
  DeviceBuffer hi(n * 2), lo(n * 2), scale(static_cast<size_t>(G) * a.T * 4), sums(n * 4);
  a.out = a.whole_tokens ? sums.get<float>() : nullptr;  // whole tokens keep their sums there
  a.out16 = hi.get<__half>();
  a.out16_lo = lo.get<__half>();
  a.out16_scale = scale.get<float>();
  a.out16_group = group;
  STATUS_ASSERT(prefill_attention(a, rows, stream));
  CUDA_ASSERT(cudaStreamSynchronize(stream));
  const std::vector<__half> h = download<__half>(hi, n), l = download<__half>(lo, n);
  const std::vector<float> f = download<float>(scale, static_cast<size_t>(G) * a.T);
  for (int t = 0; t < a.T; ++t) {
    for (int g = 0; g < G; ++g) {
      const size_t at = static_cast<size_t>(t) * a.H * a.hd + g * width;
      float m = 0.0f;
      for (size_t i = 0; i < width; ++i) m = std::max(m, std::fabs(got[at + i]));
      const int s = row_shift(m);
      ASSERT_EQ(f[static_cast<size_t>(t) * G + g], std::ldexp(1.0f, -s)) << "token " << t << " group " << g;
      for (size_t i = 0; i < width; ++i) {
        const float v = got[at + i] * std::ldexp(1.0f, s);
        const __half want_hi = __float2half_rn(std::clamp(v, -65504.0f, 65504.0f));
        const __half want_lo = __float2half_rn(v - __half2float(want_hi));
        ASSERT_EQ(__half_as_ushort(h[at + i]), __half_as_ushort(want_hi)) << "token " << t << " element " << at + i;
        ASSERT_EQ(__half_as_ushort(l[at + i]), __half_as_ushort(want_lo)) << "token " << t << " element " << at + i;
      }
    }
  }
}

void run(const Geometry& g, const Case& c, uint64_t seed, const Magnitudes& mag = {}, int out16_group = 0,
         double tolerance = 1e-5) {
  SCOPED_TRACE(::testing::Message() << "H " << g.H << " hd " << g.hd << " ratio " << c.ratio << " pos0 " << c.pos0
                                    << " T " << c.T << " t0 " << c.t0 << " seed " << seed << " q 2^[" << mag.q_lo
                                    << "," << mag.q_hi << "] rows 2^[" << mag.row_lo << "," << mag.row_hi << "] fp8 dims " << mag.fp8_dims);
  std::mt19937_64 rng(seed);
  const int H = g.H, hd = g.hd, W = g.W, top_k = g.top_k;
  const int chunk = c.t0 + c.T;
  const int last = c.pos0 + chunk;
  const int n_comp = c.ratio ? last / c.ratio : 0;
  std::vector<float> q = normal_vector(static_cast<size_t>(c.T) * H * hd, rng, 0.0f, 0.5f);
  std::vector<float> kv = normal_vector(static_cast<size_t>(chunk) * hd, rng);
  std::vector<float> ring = normal_vector(static_cast<size_t>(W) * hd, rng);
  std::vector<float> comp = normal_vector(static_cast<size_t>(std::max(1, n_comp)) * hd, rng);
  scale_vectors(q, static_cast<size_t>(hd), mag.q_lo, mag.q_hi, mag.element_spread, rng);
  zero_vectors(q, static_cast<size_t>(hd), mag.zero_every);
  for (std::vector<float>* rows : {&kv, &ring, &comp}) {
    scale_vectors(*rows, static_cast<size_t>(hd), mag.row_lo, mag.row_hi, mag.element_spread, rng);
    zero_vectors(*rows, static_cast<size_t>(hd), mag.zero_every);
    for (size_t i = 0; mag.fp8_dims > 0 && i < rows->size(); i += static_cast<size_t>(hd)) {
      cpu::fp8_sim(rows->data() + i, mag.fp8_dims);
    }
  }
  for (float& x : comp) x = std::ldexp(x, mag.comp_exp);
  const std::vector<float> sinks = normal_vector(H, rng, 1.0f, 1.0f);
  std::vector<int32_t> selected(static_cast<size_t>(chunk) * top_k, 0);
  for (int t = 0; t < chunk; ++t) {
    const int n_vis = (c.pos0 + t + 1) / 4;
    if (n_vis <= top_k) continue;
    std::vector<int32_t> all(static_cast<size_t>(n_vis));
    for (size_t i = 0; i < all.size(); ++i) all[i] = static_cast<int32_t>(i);
    std::shuffle(all.begin(), all.end(), rng);
    std::sort(all.begin(), all.begin() + top_k);
    std::copy_n(all.begin(), top_k, selected.begin() + static_cast<size_t>(t) * top_k);
  }
  const cpu::YarnParams yarn{16.0f, 65536, 32.0f, 1.0f};
  const std::vector<float> omega = cpu::rope_frequencies(g.n_rot, 160000.0f, &yarn);

  const int64_t max_rows = W + (c.ratio == 4 ? std::min(top_k, n_comp) : (c.ratio ? n_comp : 0));
  const int splits = prefill_attention_splits(max_rows);
  TestStream stream;
  DeviceBuffer dq = upload(q), dkv = upload(kv), dring = upload(ring), dcomp = upload(comp), dsinks = upload(sinks);
  DeviceBuffer q_exp(static_cast<size_t>(c.T) * H * sizeof(int));
  STATUS_ASSERT(prefill_attention_split_queries(dq.get<float>(), q_exp.get<int>(), c.T, H, hd, stream.get()));
  DeviceBuffer dsel = upload(selected), dom = upload(omega), dpos = upload(std::vector<int>{c.pos0});
  const size_t parts = static_cast<size_t>(c.T) * H * splits;
  DeviceBuffer part_o(parts * hd * 4), part_ml(parts * 2 * 4), out(static_cast<size_t>(c.T) * H * hd * 4);
  AttentionArgs a;
  a.q = dq.get<float>();
  a.q_exp = q_exp.get<int>();
  a.kv_chunk = dkv.get<float>();
  a.ring = dring.get<float>();
  a.comp = dcomp.get<float>();
  a.selected = dsel.get<int32_t>();
  a.sinks = dsinks.get<float>();
  a.omega = dom.get<float>();
  a.pos0 = dpos.get<int>();
  a.t0 = c.t0;
  a.part_o = part_o.get<float>();
  a.part_ml = part_ml.get<float>();
  a.out = out.get<float>();
  a.T = c.T;
  a.H = H;
  a.hd = hd;
  a.n_rot = g.n_rot;
  a.window = W;
  a.ratio = c.ratio;
  a.top_k = top_k;
  a.splits = splits;
  DeviceBuffer rows16(static_cast<size_t>(prefill_attention_row_capacity(W, chunk, n_comp)) * 2 * hd * 2);
  DeviceBuffer meta(static_cast<size_t>(prefill_attention_row_capacity(W, chunk, n_comp)) * sizeof(int2));
  PrefillAttnRows converted;
  converted.rows = rows16.get<__half>();
  converted.meta = meta.get<int2>();
  STATUS_ASSERT(prefill_attention_rows(a, chunk, converted, stream.get()));
  // Both launch forms: a block per split with the combine, and whole tokens (a block per token).
  std::vector<float> got[2];
  for (const bool whole : {false, true}) {
    a.whole_tokens = whole;
    STATUS_ASSERT(prefill_attention(a, converted, stream.get()));
    CUDA_ASSERT(cudaStreamSynchronize(stream.get()));
    got[whole] = download<float>(out, static_cast<size_t>(c.T) * H * hd);
  }

  const double scale = 1.0 / std::sqrt(static_cast<double>(hd));
  double worst[2] = {0.0, 0.0};
  for (int t = 0; t < c.T; ++t) {
    const int ct = c.t0 + t, p = c.pos0 + ct;
    std::vector<const float*> rows;
    for (int pos = std::max(0, p - W + 1); pos <= p; ++pos) {
      rows.push_back(pos < c.pos0 ? ring.data() + static_cast<size_t>(pos % W) * hd
                                  : kv.data() + static_cast<size_t>(pos - c.pos0) * hd);
    }
    if (c.ratio == 4 && (p + 1) / 4 > top_k) {
      for (int i = 0; i < top_k; ++i) {
        rows.push_back(comp.data() + static_cast<size_t>(selected[static_cast<size_t>(ct) * top_k + i]) * hd);
      }
    } else if (c.ratio) {
      for (int i = 0; i < (p + 1) / c.ratio; ++i) rows.push_back(comp.data() + static_cast<size_t>(i) * hd);
    }
    const cpu::RopeAngles ang = cpu::rope_angles(omega, p);
    for (int h = 0; h < H; ++h) {
      const float* qh = q.data() + (static_cast<size_t>(t) * H + h) * hd;
      std::vector<double> s(rows.size());
      double m = sinks[static_cast<size_t>(h)];
      for (size_t i = 0; i < rows.size(); ++i) {
        double d = 0;
        for (int j = 0; j < hd; ++j) d += double(qh[j]) * rows[i][j];
        s[i] = d * scale;
        m = std::max(m, s[i]);
      }
      double den = std::exp(sinks[static_cast<size_t>(h)] - m);
      std::vector<double> o(static_cast<size_t>(hd), 0.0);
      for (size_t i = 0; i < rows.size(); ++i) {
        const double e = std::exp(s[i] - m);
        den += e;
        for (int j = 0; j < hd; ++j) o[static_cast<size_t>(j)] += e * rows[i][j];
      }
      std::vector<float> want(static_cast<size_t>(hd));
      for (int j = 0; j < hd; ++j) want[static_cast<size_t>(j)] = static_cast<float>(o[static_cast<size_t>(j)] / den);
      cpu::rope_rotate_inverse(want.data(), hd, ang);
      const size_t at = (static_cast<size_t>(t) * H + h) * hd;
      for (const bool whole : {false, true}) {
        const double err = rel_l2(got[whole].data() + at, want.data(), static_cast<size_t>(hd));
        worst[whole] = std::max(worst[whole], err);
        EXPECT_LE(err, tolerance) << "token " << t << " head " << h << (whole ? " (whole tokens)" : "");
      }
      // A token of one split: whole tokens take the combine's very operations.
      if (rows.size() <= static_cast<size_t>(kPrefillAttnRows)) {
        EXPECT_EQ(std::memcmp(got[0].data() + at, got[1].data() + at, static_cast<size_t>(hd) * sizeof(float)), 0)
            << "token " << t << " head " << h << ": one split, whole tokens differ from the combine";
      }
    }
  }
  std::printf("prefill attention H %d hd %d ratio %d pos0 %d T %d: worst rel L2 %.3g (whole tokens %.3g)\n", H, hd,
              c.ratio, c.pos0, c.T, worst[0], worst[1]);
  if (out16_group > 0) {
    for (const bool whole : {false, true}) {
      a.whole_tokens = whole;
      check_f16_output(got[whole], a, converted, out16_group, stream.get());
    }
  }
}

TEST(CudaPrefillAttention, SmallGeometriesMatchPlainReference) {
  const std::vector<Case> cases = {
      {0, 0, 5, 0},     {0, 100, 3, 0},   {0, 40, 9, 16},  // window only; a chunk straddling the ring
      {4, 0, 40, 0},    {4, 30, 20, 0},   {4, 60, 4, 16},  // compressed rows, then the selection
      {128, 200, 6, 0}, {128, 500, 2, 3},                  // all compressed rows
      {2, 100, 10, 0},  {2, 300, 7, 1},                    // several splits, lists ending mid-split
  };
  for (const Geometry& g : {Geometry{4, 96, 32, 32, 8}, Geometry{16, 128, 64, 32, 8}, Geometry{64, 64, 32, 16, 24}}) {
    for (const Case& c : cases) run(g, c, fresh_seed());
  }
}

TEST(CudaPrefillAttention, FlashGeometryMatchesPlainReference) {
  const Geometry flash{64, 512, 64, 128, 512};
  // A CSA layer past the selection (window + 512 selected rows), an HCA layer, a window-only layer.
  for (const Case& c : {Case{4, 2300, 3, 5}, Case{128, 6000, 2, 0}, Case{0, 50, 3, 0}, Case{4, 100, 3, 0}}) {
    run(flash, c, fresh_seed());
  }
}

TEST(CudaPrefillAttention, LongRowListsMatchPlainReference) {
  // Ratio 2 at position ≈ 3000: ≈ 1 600 rows per token, many splits, the last one partial.
  run(Geometry{64, 512, 64, 128, 512}, Case{2, 3000, 2, 1}, fresh_seed());
  run(Geometry{16, 128, 64, 32, 8}, Case{2, 5000, 3, 0}, fresh_seed());
}

TEST(CudaPrefillAttention, MixedMagnitudesMatchPlainReference) {
  const Geometry flash{64, 512, 64, 128, 512};
  // Large and tiny heads and rows in one tile, tiny elements beside large ones; scores stay O(10).
  run(flash, Case{4, 2300, 3, 5}, fresh_seed(), Magnitudes{-12, 2, -30, 3, 12});
  run(flash, Case{128, 6000, 2, 0}, fresh_seed(), Magnitudes{-12, 2, -30, 3, 12});
  // Whole operands far outside f16's range, either way round.
  run(flash, Case{4, 2300, 2, 0}, fresh_seed(), Magnitudes{40, 40, -40, -40, 0});
  run(flash, Case{0, 50, 2, 0}, fresh_seed(), Magnitudes{-24, -24, 24, 24, 0});
  // All-zero query heads and rows among ordinary ones (their power of two is the zero case).
  run(flash, Case{4, 2300, 3, 5}, fresh_seed(), Magnitudes{0, 0, 0, 0, 0, 5});
  run(Geometry{4, 96, 32, 32, 8}, Case{4, 60, 4, 16}, fresh_seed(), Magnitudes{0, 0, 0, 0, 0, 3});
}

TEST(CudaPrefillAttention, F16OutputIsTheSplitConversionOfTheF32Output) {
  // out_a's groups of 8 heads (flash), a CSA and an HCA layer; 4 groups of 4 heads of 128.
  const Geometry flash{64, 512, 64, 128, 512};
  run(flash, Case{4, 2300, 3, 5}, fresh_seed(), {}, 8);
  run(flash, Case{128, 6000, 2, 0}, fresh_seed(), Magnitudes{-12, 2, -30, 3, 12}, 8);
  run(Geometry{16, 128, 64, 32, 8}, Case{2, 300, 7, 1}, fresh_seed(), {}, 4);
}

TEST(CudaPrefillAttention, SplitsOfFarApartScoresMatchPlainReference) {
  // The window fills the first split, the compressed rows the next ones. Scaled by 2^5 their
  // scores dwarf the window's (the first split's weight in the combine goes towards zero); scaled
  // by 2^-5 they are far below it (later splits add almost nothing). Scaled up, the scores are
  // 2^5 times larger and so is the f32 rounding of each (≈ 2^-24·Σ|q·k| per score, an absolute
  // error in the exponent): the output's error floor rises with them, to ≈ 1e-5 at this shape
  // (worst 9.7e-6 over 144 seeds, before and after session 17's kernel change), so that case has
  // 3e-5 — still far below a lost lo half (≈ 2e-4 here) or a mis-scaled split.
  const Geometry flash{64, 512, 64, 128, 512};
  for (const int e : {5, -5}) {
    Magnitudes m;
    m.comp_exp = e;
    const double tolerance = e > 0 ? 3e-5 : 1e-5;
    run(flash, Case{4, 2300, 3, 5}, fresh_seed(), m, 0, tolerance);
    run(flash, Case{2, 3000, 2, 1}, fresh_seed(), m, 0, tolerance);
  }
}

TEST(CudaPrefillAttention, Fp8SimulatedRowsMatchPlainReference) {
  const Geometry flash{64, 512, 64, 128, 512};
  Magnitudes official;
  official.fp8_dims = 448;  // the 7 nope slabs exact in f16, the RoPE slab not
  for (const Case& c : {Case{4, 2300, 3, 5}, Case{128, 6000, 2, 0}, Case{0, 50, 3, 0}}) run(flash, c, fresh_seed(), official);
  // Wide row magnitudes with FP8 rows (the P·V split uses the row's whole-length power of two).
  run(flash, Case{4, 2300, 2, 0}, fresh_seed(), Magnitudes{-12, 2, -30, 3, 12, 0, 448});
  // Every slab exact (a half slab included), and one exact slab beside an inexact one.
  run(Geometry{4, 96, 32, 32, 8}, Case{4, 60, 4, 16}, fresh_seed(), Magnitudes{0, 0, 0, 0, 0, 0, 96});
  run(Geometry{16, 128, 64, 32, 8}, Case{2, 300, 7, 1}, fresh_seed(), Magnitudes{0, 0, 0, 0, 0, 0, 64});
}

// prefill_attention_rows against its contract on fresh random rows: every row a chunk's tokens can
// see (ring slots of earlier positions, the chunk's rows, the compressed rows up to its last
// position) gets b with max |row·2^b| in [2^14, 2^15) (f16_split.cuh's split_exponent, 2^126 for
// a zero row), hi + lo within 2^-21 of each scaled element (the split's 22 bits, a factor 2 of
// slack) or 2^-24 (the f16 subnormals' half step), and slab bit s set exactly where a lo half
// of slab s is nonzero: FP8-simulated slabs must come out exact, random f32 slabs must not. Rows
// with mixed magnitudes (2^-30..2^3 per row, elements down to 2^-12 of it) and all-zero rows.
void check_row_conversion(int hd, int W, int pos0, int chunk, int ratio, int fp8_dims, uint64_t seed) {
  SCOPED_TRACE(::testing::Message() << "hd " << hd << " W " << W << " pos0 " << pos0 << " chunk " << chunk
                                    << " ratio " << ratio << " fp8 dims " << fp8_dims << " seed " << seed);
  std::mt19937_64 rng(seed);
  const int n_comp = ratio ? (pos0 + chunk) / ratio : 0;
  std::vector<float> ring = normal_vector(static_cast<size_t>(W) * hd, rng);
  std::vector<float> kv = normal_vector(static_cast<size_t>(chunk) * hd, rng);
  std::vector<float> comp = normal_vector(static_cast<size_t>(std::max(1, n_comp)) * hd, rng);
  for (std::vector<float>* rows : {&ring, &kv, &comp}) {
    scale_vectors(*rows, static_cast<size_t>(hd), -30, 3, 12, rng);
    zero_vectors(*rows, static_cast<size_t>(hd), 7);
    for (size_t i = 0; fp8_dims > 0 && i < rows->size(); i += static_cast<size_t>(hd)) {
      cpu::fp8_sim(rows->data() + i, fp8_dims);
    }
  }
  TestStream stream;
  DeviceBuffer dring = upload(ring), dkv = upload(kv), dcomp = upload(comp), dpos = upload(std::vector<int>{pos0});
  const int64_t cap = prefill_attention_row_capacity(W, chunk, n_comp);
  DeviceBuffer rows16(static_cast<size_t>(cap) * 2 * hd * 2), meta(static_cast<size_t>(cap) * sizeof(int2));
  AttentionArgs a;
  a.kv_chunk = dkv.get<float>();
  a.ring = dring.get<float>();
  a.comp = dcomp.get<float>();
  a.pos0 = dpos.get<int>();
  a.H = 64;
  a.hd = hd;
  a.window = W;
  a.ratio = ratio;
  PrefillAttnRows converted;
  converted.rows = rows16.get<__half>();
  converted.meta = meta.get<int2>();
  STATUS_ASSERT(prefill_attention_rows(a, chunk, converted, stream.get()));
  CUDA_ASSERT(cudaStreamSynchronize(stream.get()));
  EXPECT_EQ(converted.chunk, chunk);
  const std::vector<__half> got = download<__half>(rows16, static_cast<size_t>(cap) * 2 * hd);
  const std::vector<int2> got_meta = download<int2>(meta, static_cast<size_t>(cap));
  int exact_slabs = 0, inexact_slabs = 0;
  const auto check = [&](int64_t i, const float* row) {
    SCOPED_TRACE(::testing::Message() << "converted row " << i);
    float m = 0.0f;
    for (int d = 0; d < hd; ++d) m = std::max(m, std::fabs(row[d]));
    const int b = got_meta[static_cast<size_t>(i)].x;
    if (m < std::ldexp(1.0f, -112)) {
      EXPECT_EQ(b, 126);
    } else {
      EXPECT_GE(std::ldexp(m, b), 16384.0f);
      EXPECT_LT(std::ldexp(m, b), 32768.0f);
    }
    unsigned want_mask = 0;
    for (int d = 0; d < hd; ++d) {
      const double x = std::ldexp(static_cast<double>(row[d]), b);
      const double hi = __half2float(got[static_cast<size_t>(i * 2 * hd + d)]);
      const double lo = __half2float(got[static_cast<size_t>(i * 2 * hd + hd + d)]);
      ASSERT_LE(std::fabs(hi + lo - x), std::max(std::fabs(x) * std::ldexp(1.0, -21), std::ldexp(1.0, -24)))
          << "dim " << d;
      if (lo != 0.0) want_mask |= 1u << (d / 64);
    }
    EXPECT_EQ(static_cast<unsigned>(got_meta[static_cast<size_t>(i)].y), want_mask);
    for (int s = 0; s < (hd + 63) / 64; ++s) ((want_mask >> s) & 1u ? inexact_slabs : exact_slabs) += m > 0.0f;
  };
  for (int slot = 0; slot < std::min(W, pos0); ++slot) check(slot, ring.data() + static_cast<size_t>(slot) * hd);
  for (int j = 0; j < chunk; ++j) check(W + j, kv.data() + static_cast<size_t>(j) * hd);
  for (int k = 0; k < n_comp; ++k) check(W + chunk + k, comp.data() + static_cast<size_t>(k) * hd);
  EXPECT_GT(inexact_slabs, 0);
  if (fp8_dims > 0) {
    EXPECT_GT(exact_slabs, 0);
  }
}

TEST(CudaPrefillAttention, RowConversionCoversRingChunkAndCompressedRows) {
  // Official shape: FP8-simulated nope dims, an f32 RoPE slab; the ring full, then part full.
  check_row_conversion(512, 128, 300, 40, 4, 448, fresh_seed());
  check_row_conversion(512, 128, 60, 9, 128, 448, fresh_seed());
  // Plain f32 rows (no exact slab), a half last slab, no compressed rows.
  check_row_conversion(96, 32, 100, 7, 0, 0, fresh_seed());
  check_row_conversion(96, 32, 10, 25, 2, 64, fresh_seed());
}

// prefill_attention_split_queries against prefill_attention.h's form, bit for bit: per head e with
// max |q·2^e| in [2^14, 2^15) (126 for an all-zero head), hi = f16(q·2^e), lo = f16(q·2^e − hi),
// over heads 2^-30..2^3 with elements down to 2^-12 of them and all-zero heads.
TEST(CudaPrefillAttention, SplitQueriesAreTheHeadsHiAndLoHalves) {
  const uint64_t seed = fresh_seed();
  SCOPED_TRACE(seed);
  std::mt19937_64 rng(seed);
  for (const int hd : {96, 512, 1024}) {
    const int T = 3, H = 5;
    std::vector<float> q = normal_vector(static_cast<size_t>(T) * H * hd, rng);
    scale_vectors(q, static_cast<size_t>(hd), -30, 3, 12, rng);
    zero_vectors(q, static_cast<size_t>(hd), 4);
    TestStream stream;
    DeviceBuffer dq = upload(q), q_exp(static_cast<size_t>(T) * H * sizeof(int));
    STATUS_ASSERT(prefill_attention_split_queries(dq.get<float>(), q_exp.get<int>(), T, H, hd, stream.get()));
    CUDA_ASSERT(cudaStreamSynchronize(stream.get()));
    const std::vector<__half> halves = download<__half>(dq, q.size() * 2);
    const std::vector<int> e = download<int>(q_exp, static_cast<size_t>(T) * H);
    for (int row = 0; row < T * H; ++row) {
      SCOPED_TRACE(::testing::Message() << "hd " << hd << " head row " << row);
      const float* x = q.data() + static_cast<size_t>(row) * hd;
      float m = 0.0f;
      for (int d = 0; d < hd; ++d) m = std::max(m, std::fabs(x[d]));
      const int er = e[static_cast<size_t>(row)];
      if (m == 0.0f) {
        EXPECT_EQ(er, 126);
      } else {
        EXPECT_GE(std::ldexp(m, er), 16384.0f);
        EXPECT_LT(std::ldexp(m, er), 32768.0f);
      }
      for (int d = 0; d < hd; ++d) {
        const float v = std::ldexp(x[d], er);
        const __half hi = __float2half_rn(v), lo = __float2half_rn(v - __half2float(hi));
        const size_t at = static_cast<size_t>(row) * 2 * hd + d;
        ASSERT_EQ(__half_as_ushort(halves[at]), __half_as_ushort(hi)) << "dim " << d;
        ASSERT_EQ(__half_as_ushort(halves[at + hd]), __half_as_ushort(lo)) << "dim " << d;
      }
    }
  }
}

TEST(CudaPrefillAttention, RejectsGeometriesItDoesNotTake) {
  EXPECT_FALSE(prefill_attention_supported(65, 512));
  EXPECT_FALSE(prefill_attention_supported(64, 100));
  EXPECT_FALSE(prefill_attention_supported(64, 2048));
  EXPECT_TRUE(prefill_attention_supported(64, 512));
  EXPECT_TRUE(prefill_attention_supported(64, 1024));
  EXPECT_TRUE(prefill_attention_f16_output_supported(8, 512));
  EXPECT_FALSE(prefill_attention_f16_output_supported(16, 128));  // more heads than a combine block's warps
  AttentionArgs a;
  a.T = 1;
  a.H = 128;
  a.hd = 512;
  a.splits = 1;
  EXPECT_FALSE(prefill_attention(a, PrefillAttnRows{}, nullptr).ok());
  a.H = 64;  // a supported geometry, but no converted rows
  EXPECT_FALSE(prefill_attention(a, PrefillAttnRows{}, nullptr).ok());
  // Whole tokens without out, where they keep their sums (nothing is launched: the pointers are
  // never read).
  PrefillAttnRows rows;
  rows.rows = reinterpret_cast<__half*>(uintptr_t{256});
  rows.meta = reinterpret_cast<int2*>(uintptr_t{256});
  rows.chunk = 1;
  a.q = reinterpret_cast<const float*>(uintptr_t{256});
  a.q_exp = reinterpret_cast<const int*>(uintptr_t{256});
  a.whole_tokens = true;
  const Status no_out = prefill_attention(a, rows, nullptr);
  ASSERT_FALSE(no_out.ok());
  EXPECT_NE(no_out.error().message.find("whole tokens"), std::string::npos) << no_out.error().message;
}

}  // namespace
}  // namespace dsv4::cuda::testing
