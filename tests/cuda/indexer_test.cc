// cuda/indexer.h: the top-k kernel against cpu::top_k_desc (exact: same order, same tie rule), the
// whole indexer against cpu::indexer_select on the tiny model's ratio-4 layer with more eligible
// rows than top_k, and against indexer_reference.h's plain reference at the real geometry (the
// decode step's single token at long contexts, chunks) and small ones, on fresh random inputs.
//
// The scores are f32 sums in another order than the CPU's (~1e-6 relative), so two rows whose
// scores are that close may swap across the top-k boundary. The check: the selections agree
// wherever the CPU's k-th and (k+1)-th scores are more than 1e-4 apart (relative); elsewhere every
// row the device picks scores within 1e-4 of the CPU's k-th score.
#include "cuda/indexer.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <utility>
#include <vector>

#include "cpu/blocks.h"
#include "cpu/linear.h"
#include "cpu/ops.h"
#include "cpu/rope.h"
#include "cpu/sim.h"
#include "cpu/test_models.h"
#include "cuda/device_model.h"
#include "cuda/device_util.h"
#include "cuda/forward.h"
#include "cuda/indexer_reference.h"

namespace dsv4::cuda::testing {
namespace {

// The histogram's top-k leaves the bins and counters of every token it ranked zero for the next
// launch (indexer_topk.cuh); `ranked(t)` says which tokens it ranked.
template <class Ranked>
void expect_scratch_left_zero(const DeviceBuffer& scratch, int T, Ranked ranked) {
  const std::vector<uint32_t> left = download<uint32_t>(scratch, static_cast<size_t>(T) * kIndexerTopkScratchWords);
  for (int t = 0; t < T; ++t) {
    if (!ranked(t)) continue;
    const auto first = left.begin() + static_cast<int64_t>(t) * kIndexerTopkScratchWords;
    EXPECT_TRUE(std::all_of(first, first + kIndexerScoreBins + 8, [](uint32_t v) { return v == 0u; }))
        << "token " << t << ": bins and counters left non-zero";
  }
}

// top_k_rows on the device against cpu::top_k_desc per token (as sorted index sets): token t's
// candidates are scores[t·stride .. t·stride + n[t]). Both ways: the one-block radix select, and
// from the scores' histogram in a zeroed scratch (`stale`: with counts a lost launch left in its
// bins, which the kernel must notice and clear), which it must leave zero; the histogram's way
// for every token, whatever its candidates (bins_from 0).
void expect_top_k_matches_cpu(const std::vector<float>& scores, int64_t stride, const std::vector<int32_t>& n, int k,
                              bool stale = false) {
  const int T = static_cast<int>(n.size());
  std::vector<std::vector<int32_t>> want(static_cast<size_t>(T));
  for (int t = 0; t < T; ++t) {
    want[static_cast<size_t>(t)] = cpu::top_k_desc(std::span<const float>(scores.data() + t * stride, n[t]), k);
    std::sort(want[static_cast<size_t>(t)].begin(), want[static_cast<size_t>(t)].end());
  }
  TestStream stream;
  DeviceBuffer ds = upload(scores), dn = upload(n), dsel(static_cast<size_t>(T * k) * 4);
  const size_t words = static_cast<size_t>(T) * kIndexerTopkScratchWords;
  std::vector<uint32_t> scratch_init(words, 0u);
  if (stale) {
    for (int t = 0; t < T; ++t) scratch_init[static_cast<size_t>(t) * kIndexerTopkScratchWords + 3000 + t] = 5u;
  }
  DeviceBuffer scratch = upload(scratch_init);
  for (const bool from_bins : {false, true}) {
    SCOPED_TRACE(from_bins ? "from the histogram" : "radix select");
    STATUS_ASSERT(top_k_rows(ds.get<float>(), stride, dn.get<int32_t>(), T, k, dsel.get<int32_t>(), stream.get(),
                             from_bins ? scratch.get<uint32_t>() : nullptr, /*bins_from=*/0));
    CUDA_ASSERT(cudaStreamSynchronize(stream.get()));
    const std::vector<int32_t> got = download<int32_t>(dsel, static_cast<size_t>(T * k));
    for (int t = 0; t < T; ++t) {
      const std::vector<int32_t> row(got.begin() + t * k, got.begin() + (t + 1) * k);
      EXPECT_EQ(row, want[static_cast<size_t>(t)]) << "k " << k << " token " << t << " of " << n[t] << " rows";
    }
  }
  expect_scratch_left_zero(scratch, T, [&](int t) { return n[t] > k; });  // others: not read, not cleared
}

TEST(CudaIndexer, TopKMatchesCpuIncludingTiesAndNaN) {
  const uint64_t seed = fresh_seed();
  SCOPED_TRACE(seed);
  std::mt19937_64 rng(seed);
  // A token alone (T = 1, the decode step) keeps up to 49 152 keys in shared memory, T = 6 up to
  // 8192 a token: 20 000 candidates pass the second, 70 000 both. The histogram's way keeps half
  // as many survivors (ties of small integers overflow them and fall back).
  // k of 1024 is the most the histogram's way sorts; 2048 falls back to the radix select.
  for (const auto& [k, stride] : {std::pair<int, int64_t>{1, 5000}, {8, 5000}, {512, 5000}, {512, 20000}, {8, 13},
                                  {512, 70000}, {1024, 30000}, {2048, 9000}}) {
    for (const int T : {1, 6}) {
      SCOPED_TRACE(::testing::Message() << "k " << k << ", " << stride << " candidates, T " << T);
      std::vector<float> scores(static_cast<size_t>(T * stride));
      std::vector<int32_t> n(T);
      std::uniform_int_distribution<int> small(-20, 20);
      for (int t = 0; t < T; ++t) {
        n[t] = static_cast<int32_t>(t == 0 ? stride : k + 1 + static_cast<int64_t>(rng() % (stride - k)));
        // Small integers (many ties) or spread values: tokens alternate; a lone token has ties but for k = 1.
        const bool ties = T == 1 ? k > 1 : t % 2 == 1;
        for (int64_t i = 0; i < stride; ++i) {
          float v = ties ? static_cast<float>(small(rng)) : std::ldexp(static_cast<float>(rng() % 100000), -10);
          if (rng() % 50 == 0) v = -v;
          if (rng() % 200 == 0) v = NAN;
          if (rng() % 300 == 0) v = -INFINITY;
          scores[static_cast<size_t>(t * stride + i)] = v;
        }
      }
      expect_top_k_matches_cpu(scores, stride, n, k);
    }
  }
}

// Scores that share most of their bits (the kernel's digit passes start below the bits all keys
// share and stop once the threshold's bucket is taken whole): one binade with ties, all equal, two
// values, and a spread of one ulp; past the shared-memory key caches too.
TEST(CudaIndexer, TopKOfScoresSharingTheirTopBits) {
  const uint64_t seed = fresh_seed();
  SCOPED_TRACE(seed);
  std::mt19937_64 rng(seed);
  const int k = 512;
  for (const int64_t stride : {int64_t{10250}, int64_t{20000}, int64_t{60000}}) {
    for (int pattern = 0; pattern < 4; ++pattern) {
      for (const int T : {1, 3}) {
        SCOPED_TRACE(::testing::Message() << "pattern " << pattern << ", " << stride << " candidates, T " << T);
        std::vector<float> scores(static_cast<size_t>(T * stride));
        std::vector<int32_t> n(T, static_cast<int32_t>(stride));
        for (float& v : scores) {
          switch (pattern) {
            case 0: v = 1.0f + std::ldexp(static_cast<float>(rng() % 4096), -20); break;  // ties within one binade
            case 1: v = 0.75f; break;                                                      // all equal
            case 2: v = rng() % 30 == 0 ? 2.0f : 1.5f; break;  // the k-th falls among the 1.5s
            default: v = std::nextafter(3.0f, rng() % 2 ? 4.0f : 2.0f); break;  // 3 ± one ulp
          }
        }
        expect_top_k_matches_cpu(scores, stride, n, k);
      }
    }
  }
}

// Scores of exactly zero with either sign straddle the top-k boundary: the CPU compares values, so
// -0 and +0 tie and go by index; a key that ranked -0 below +0 would pick other rows.
TEST(CudaIndexer, TopKTreatsSignedZerosAsEqual) {
  const uint64_t seed = fresh_seed();
  SCOPED_TRACE(seed);
  std::mt19937_64 rng(seed);
  const int T = 4, k = 16;
  const int64_t stride = 200;
  std::vector<float> scores(static_cast<size_t>(T * stride));
  std::vector<int32_t> n(T, static_cast<int32_t>(stride));
  for (int t = 0; t < T; ++t) {
    for (int64_t i = 0; i < stride; ++i) {
      const uint64_t r = rng() % 40;
      // ~5 positive scores per token, ~120 zeros of random sign, negatives: the boundary falls
      // among the zeros.
      const float v = r == 0 ? 1.0f + static_cast<float>(rng() % 100) : r < 25 ? 0.0f : -1.0f;
      scores[static_cast<size_t>(t * stride + i)] = (r != 0 && r < 25 && rng() % 2) ? -v : v;
    }
    scores[static_cast<size_t>(t * stride)] = -0.0f;  // the lowest index: taken by the CPU whatever its sign
  }
  for (int t = 0; t < T; ++t) {
    const std::vector<int32_t> cpu = cpu::top_k_desc(std::span<const float>(scores.data() + t * stride, stride), k);
    ASSERT_NE(std::find(cpu.begin(), cpu.end(), 0), cpu.end()) << "the test's premise: row 0 (-0) is selected";
  }
  expect_top_k_matches_cpu(scores, stride, n, k);
  expect_top_k_matches_cpu(scores, stride, n, k, /*stale=*/true);
  // Token 0 alone (the decode step's launch).
  expect_top_k_matches_cpu(std::vector<float>(scores.begin(), scores.begin() + stride), stride, {n[0]}, k);
}

// The CPU's scores of one token (indexer.cc's formula with cpu ops), for judging near-ties.
std::vector<float> cpu_scores(const model::Model& m, int64_t layer, const cpu::State& st, const float* qr_t,
                              const float* x_t, int64_t p, bool fp4) {
  const model::Config& c = m.config;
  const model::LayerWeights& lw = m.weights.layers[static_cast<size_t>(layer)];
  const int64_t IH = c.n_index_head, idh = c.index_head_dim, n_vis = (p + 1) / 4;
  std::vector<float> q(static_cast<size_t>(IH * idh)), w(static_cast<size_t>(IH));
  cpu::project(lw.indexer_attn_q_b, qr_t, c.q_lora_rank, 1, q.data(), IH * idh);
  cpu::project(lw.indexer_proj, x_t, c.n_embd, 1, w.data(), IH);
  const cpu::RopeAngles ang = cpu::rope_angles(cpu::layer_rope_frequencies(c, layer), p);
  const float w_scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(idh * IH)));
  for (int64_t h = 0; h < IH; ++h) {
    cpu::rope_rotate(q.data() + h * idh, idh, ang);
    if (fp4) {
      cpu::hadamard(q.data() + h * idh, idh);
      cpu::fp4_sim(q.data() + h * idh, idh);
    }
    w[static_cast<size_t>(h)] *= w_scale;
  }
  std::vector<float> s(static_cast<size_t>(n_vis));
  for (int64_t r = 0; r < n_vis; ++r) {
    float acc = 0;
    for (int64_t h = 0; h < IH; ++h) {
      acc += w[static_cast<size_t>(h)] *
             std::max(0.0f, cpu::dot(q.data() + h * idh, st.layer(layer).index.data() + r * idh, idh));
    }
    s[static_cast<size_t>(r)] = acc;
  }
  return s;
}

// Single tokens at long contexts (17 500 and 50 002 rows: past the top-k's 49 152 cached keys),
// official mode on FP4 rows and on raw ones (lo halves in the rows only), plain mode (both), chunks,
// and the small geometries, each with row counts that end mid-tile.
TEST(CudaIndexer, SelectionMatchesPlainReference) {
  const std::vector<IndexerCase> cases = {
      {64, 128, 512, 69999, 1, 0, true},  {64, 128, 512, 70001, 1, 0, false},  // the decode step
      {64, 128, 512, 200007, 1, 0, true}, {64, 128, 512, 9001, 1, 0, true, false},
      {64, 128, 512, 2100, 6, 0, true},   {64, 128, 32, 300, 40, 7, false},     // chunks
      {4, 64, 8, 500, 9, 2, false},       {7, 32, 16, 333, 5, 4, true},  {1, 32, 4, 50, 3, 0, false},
  };
  for (const IndexerCase& c : cases) {
    const uint64_t seed = fresh_seed();
    SCOPED_TRACE(describe(c, seed));
    IndexerInputs in(c, seed);
    TestStream stream;
    // The one-block radix select, then from the score kernel's histogram (the forward's way) on the
    // same inputs: the same scores, so the same rows.
    STATUS_ASSERT(indexer_select(in.args, stream.get()));
    CUDA_ASSERT(cudaStreamSynchronize(stream.get()));
    const size_t n_sel = static_cast<size_t>(c.T) * c.top_k;
    const std::vector<int32_t> radix = download<int32_t>(in.sel, n_sel);
    in.restore();
    in.args.topk_scratch = in.topk_scratch.get<uint32_t>();
    in.args.topk_bins_from = 0;  // every ranking token, whatever its rows
    STATUS_ASSERT(indexer_select(in.args, stream.get()));
    CUDA_ASSERT(cudaStreamSynchronize(stream.get()));
    EXPECT_EQ(download<int32_t>(in.sel, n_sel), radix) << "the two ways of the top-k";
    expect_scratch_left_zero(in.topk_scratch, c.T, [](int) { return true; });
    in.expect_selection_matches_reference();
  }
}

TEST(CudaIndexer, RejectsGeometriesWithoutTiles) {
  IndexerArgs a;
  a.T = 1;
  a.IH = 64;
  a.top_k = 512;
  a.score_cap = 1000;
  for (const int idh : {16, 96, 256}) {
    a.idh = idh;
    EXPECT_FALSE(indexer_select(a, nullptr).ok()) << idh;
  }
  a.idh = 128;
  a.IH = 65;
  EXPECT_FALSE(indexer_select(a, nullptr).ok());
}

TEST(CudaIndexer, SelectionMatchesCpu) {
  const model::Model& host = cpu::testing::synthetic_model("tiny");
  const model::Config& c = host.config;
  Result<std::unique_ptr<DeviceModel>> dev = upload_model(host);
  ASSERT_TRUE(dev.ok()) << dev.error().message;
  int64_t layer = -1;
  for (int64_t l = 0; l < c.n_layer && layer < 0; ++l) layer = c.ratio(l) == 4 ? l : -1;
  ASSERT_GE(layer, 0);
  const int k = static_cast<int>(c.index_top_k);
  for (bool official : {false, true}) {
    const uint64_t seed = fresh_seed();
    SCOPED_TRACE(::testing::Message() << (official ? "official" : "plain") << " seed " << seed);
    std::mt19937_64 rng(seed);
    const int64_t N = 120, D = c.n_embd, R = c.q_lora_rank, IH = c.n_index_head, idh = c.index_head_dim;
    const std::vector<float> x = normal_vector(static_cast<size_t>(N * D), rng);
    const std::vector<float> qr = normal_vector(static_cast<size_t>(N * R), rng);
    const cpu::SimOptions sim = official ? cpu::SimOptions::official() : cpu::SimOptions::plain();
    const std::vector<float> omega = cpu::layer_rope_frequencies(c, layer);
    cpu::State st = cpu::State::create(c, N).value();
    cpu::Chunk ch;
    ch.pos0 = 0;
    ch.n_tok = N;
    ch.sim = sim;
    cpu::compress(host, layer, st, ch, cpu::CompressorKind::kIndexer, omega, x.data());
    const std::vector<std::vector<int32_t>> want = cpu::indexer_select(host, layer, st, ch, omega, qr.data(), x.data());

    // The device gets the CPU's indexer rows: this tests the selection alone.
    const DeviceLayer& L = (*dev)->layers[static_cast<size_t>(layer)];
    TestStream stream;
    DeviceBuffer dx = upload(x), dqr = upload(qr), dom = upload(omega), rows = upload(st.layer(layer).index);
    DeviceBuffer zeros = upload(std::vector<int32_t>(static_cast<size_t>(N), 0));
    DeviceBuffer iq(static_cast<size_t>(N * IH * idh) * 4), iw(static_cast<size_t>(N * IH) * 4);
    const int64_t cap = N / 4;
    DeviceBuffer scores(static_cast<size_t>(N * cap) * 4), sel(static_cast<size_t>(N * k) * 4);
    DeviceBuffer dpos = upload(std::vector<int>{0});
    STATUS_ASSERT(project(L.index_q_b, dqr.get<float>(), static_cast<int>(N), iq.get<float>(), zeros.get<int32_t>(), stream.get()));
    STATUS_ASSERT(project(L.index_proj, dx.get<float>(), static_cast<int>(N), iw.get<float>(), zeros.get<int32_t>(), stream.get()));
    IndexerArgs a;
    a.q = iq.get<float>();
    a.w = iw.get<float>();
    a.rows = rows.get<float>();
    a.scores = scores.get<float>();
    a.selected = sel.get<int32_t>();
    a.omega = dom.get<float>();
    a.pos0 = dpos.get<int>();
    a.T = static_cast<int>(N);
    a.IH = static_cast<int>(IH);
    a.idh = static_cast<int>(idh);
    a.n_rot = static_cast<int>(c.n_rot);
    a.top_k = k;
    a.score_cap = cap;
    a.sim = sim.fp4_indexer;
    STATUS_ASSERT(indexer_select(a, stream.get()));
    CUDA_ASSERT(cudaStreamSynchronize(stream.get()));
    const std::vector<int32_t> got = download<int32_t>(sel, static_cast<size_t>(N * k));
    int scored = 0, decisive = 0;
    for (int64_t t = 0; t < N; ++t) {
      if ((t + 1) / 4 <= k) continue;
      ++scored;
      const std::vector<int32_t> row(got.begin() + t * k, got.begin() + (t + 1) * k);
      const std::vector<float> s = cpu_scores(host, layer, st, qr.data() + t * R, x.data() + t * D, t, official);
      std::vector<float> sorted = s;
      std::sort(sorted.begin(), sorted.end(), std::greater<float>());
      const float kth = sorted[static_cast<size_t>(k - 1)], next = sorted[static_cast<size_t>(k)];
      const float tol = 1e-4f * (std::fabs(kth) + 1e-6f);
      if (kth - next > tol) {
        ++decisive;
        EXPECT_EQ(row, want[static_cast<size_t>(t)]) << "token " << t;
      } else {
        for (int32_t r : row) EXPECT_GE(s[static_cast<size_t>(r)], kth - tol) << "token " << t << " row " << r;
      }
    }
    EXPECT_GT(scored, 50);
    EXPECT_GT(decisive, scored / 2);
  }
}

}  // namespace
}  // namespace dsv4::cuda::testing
