// cuda/prefill_indexer.h against a plain reference of MODEL.md §7.7 on fresh random inputs: the
// queries prepared on the CPU (RoPE, then Hadamard and FP4 in official mode), scores
// Σ_h (w_h/sqrt(idh·IH))·max(0, q_h·K_I[c]) in double, the top-k by score with ties to the lower
// index. Geometries: the real one (64 heads of 128, top-k 512 and a short top-k so most tokens of
// a chunk rank) and small ones (4 heads of 64, 7 heads of 32), launch offsets t0, tokens that do
// and do not rank, odd T (a block's second token missing), row counts that end mid-tile. Official
// mode runs on FP4-simulated rows as the model's (the exact-in-f16 path, lo halves all zero) and
// once on raw rows (lo halves nonzero in the rows only).
//
// The device sums in f32 in another order (~1e-6 relative), so rows whose scores are that close
// may swap across the top-k boundary: the selections must agree wherever the reference's k-th and
// (k+1)-th scores are more than 1e-4 apart (relative); elsewhere every row the device picks scores
// within 1e-4 of the reference's k-th score. Tokens that do not rank must leave their row alone.
// The prepared queries (the prep kernel's in-place output) must match indexer.cu's prep bit for bit.
#include "cuda/prefill_indexer.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <vector>

#include "cpu/ops.h"
#include "cpu/rope.h"
#include "cpu/sim.h"
#include "cuda/device_util.h"

namespace dsv4::cuda::testing {
namespace {

struct Case {
  int IH, idh, top_k, pos0, T, t0;
  bool sim;
  bool rows_sim = true;  // official mode: rows FP4-simulated (Hadamard then FP4) as the compressor emits them
};

void run(const Case& c, uint64_t seed) {
  SCOPED_TRACE(::testing::Message() << "IH " << c.IH << " idh " << c.idh << " top_k " << c.top_k << " pos0 "
                                    << c.pos0 << " T " << c.T << " t0 " << c.t0 << " sim " << c.sim << " rows_sim " << c.rows_sim << " seed " << seed);
  std::mt19937_64 rng(seed);
  const int IH = c.IH, idh = c.idh, k = c.top_k, n_rot = std::min(64, c.idh);
  const int64_t cap = (c.pos0 + c.t0 + c.T) / 4 + 3;  // slack: the kernel must not write past n_vis
  const std::vector<float> q = normal_vector(static_cast<size_t>(c.T) * IH * idh, rng);
  const std::vector<float> w = normal_vector(static_cast<size_t>(c.T) * IH, rng);
  std::vector<float> rows = normal_vector(static_cast<size_t>(cap) * idh, rng);
  if (c.sim && c.rows_sim) {
    for (int64_t r = 0; r < cap; ++r) {
      cpu::hadamard(rows.data() + r * idh, idh);
      cpu::fp4_sim(rows.data() + r * idh, idh);
    }
  }
  const cpu::YarnParams yarn{16.0f, 65536, 32.0f, 1.0f};
  const std::vector<float> omega = cpu::rope_frequencies(n_rot, 160000.0f, &yarn);
  const int32_t poison = -7;

  TestStream stream;
  DeviceBuffer dq = upload(q), dw = upload(w), drows = upload(rows), dom = upload(omega);
  DeviceBuffer dpos = upload(std::vector<int>{c.pos0});
  DeviceBuffer scores(static_cast<size_t>(c.T * cap) * 4), n_rows(static_cast<size_t>(c.T) * 4);
  DeviceBuffer sel = upload(std::vector<int32_t>(static_cast<size_t>(c.T) * k, poison));
  IndexerArgs a;
  a.q = dq.get<float>();
  a.w = dw.get<float>();
  a.rows = drows.get<float>();
  a.scores = scores.get<float>();
  a.selected = sel.get<int32_t>();
  a.omega = dom.get<float>();
  a.pos0 = dpos.get<int>();
  a.t0 = c.t0;
  a.T = c.T;
  a.IH = IH;
  a.idh = idh;
  a.n_rot = n_rot;
  a.top_k = k;
  a.score_cap = cap;
  a.sim = c.sim;
  // The rows' split scratch starts as NaN halves and scales (DeviceBuffer's 0xFF bytes): a tile
  // the kernels read without having split it shows up in the scores.
  const int64_t row_cap = prefill_indexer_row_capacity(cap);
  DeviceBuffer split_rows(static_cast<size_t>(prefill_indexer_row_halves(row_cap, idh)) * 2);
  DeviceBuffer split_inv(static_cast<size_t>(row_cap) * 4);
  DeviceBuffer split_tiles(static_cast<size_t>(row_cap / 64) * 4);
  ASSERT_TRUE(split_rows.ok() && split_inv.ok() && split_tiles.ok());
  PrefillIndexRows split;
  split.rows = split_rows.get<__half>();
  split.inv = split_inv.get<float>();
  split.tile_lo = split_tiles.get<int32_t>();
  split.capacity = row_cap;
  STATUS_ASSERT(prefill_indexer_rows(a, split, stream.get()));
  STATUS_ASSERT(prefill_indexer_select(a, n_rows.get<int32_t>(), split, stream.get()));
  CUDA_ASSERT(cudaStreamSynchronize(stream.get()));
  const std::vector<int32_t> got = download<int32_t>(sel, static_cast<size_t>(c.T) * k);

  // The prepared queries (written in place) bit for bit as indexer.cu's prep (the decode path's,
  // rope_apply_shared + hadamard_fp4_shared) leaves them on the same inputs: a prep bug that only
  // moves scores a little cannot hide behind the selection's tolerance. Tokens that do not rank
  // keep their raw queries in both.
  {
    DeviceBuffer dq_ref = upload(q), scores_ref(static_cast<size_t>(c.T * cap) * 4);
    DeviceBuffer sel_ref(static_cast<size_t>(c.T) * k * 4);
    IndexerArgs r = a;
    r.q = dq_ref.get<float>();
    r.scores = scores_ref.get<float>();
    r.selected = sel_ref.get<int32_t>();
    STATUS_ASSERT(indexer_select(r, stream.get()));
    CUDA_ASSERT(cudaStreamSynchronize(stream.get()));
    const std::vector<float> got_q = download<float>(dq, q.size()), want_q = download<float>(dq_ref, q.size());
    int64_t differ = 0, first = -1;
    for (size_t i = 0; i < q.size(); ++i) {
      if (std::memcmp(&got_q[i], &want_q[i], sizeof(float)) != 0) {
        if (first < 0) first = static_cast<int64_t>(i);
        ++differ;
      }
    }
    EXPECT_EQ(differ, 0) << "prepared queries differ from indexer.cu's prep; first at token "
                         << (first < 0 ? -1 : first / (IH * idh)) << " head " << (first < 0 ? -1 : first / idh % IH)
                         << " dim " << (first < 0 ? -1 : first % idh);
    int64_t changed = 0;
    for (size_t i = 0; i < q.size(); ++i) changed += std::memcmp(&got_q[i], &q[i], sizeof(float)) != 0;
    EXPECT_GT(changed, 0) << "no query was prepared";
  }

  const float w_scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(idh * IH)));
  int scored = 0, decisive = 0;
  for (int t = 0; t < c.T; ++t) {
    const int64_t p = c.pos0 + c.t0 + t, n_vis = (p + 1) / 4;
    const std::vector<int32_t> row(got.begin() + static_cast<int64_t>(t) * k, got.begin() + static_cast<int64_t>(t + 1) * k);
    if (n_vis <= k) {
      EXPECT_EQ(row, std::vector<int32_t>(static_cast<size_t>(k), poison)) << "token " << t << " needs no selection";
      continue;
    }
    ++scored;
    std::vector<float> qt(q.begin() + static_cast<int64_t>(t) * IH * idh, q.begin() + static_cast<int64_t>(t + 1) * IH * idh);
    const cpu::RopeAngles ang = cpu::rope_angles(omega, p);
    for (int h = 0; h < IH; ++h) {
      float* qh = qt.data() + static_cast<int64_t>(h) * idh;
      cpu::rope_rotate(qh, idh, ang);
      if (c.sim) {
        cpu::hadamard(qh, idh);
        cpu::fp4_sim(qh, idh);
      }
    }
    std::vector<float> s(static_cast<size_t>(n_vis));
    for (int64_t r = 0; r < n_vis; ++r) {
      double acc = 0;
      for (int h = 0; h < IH; ++h) {
        double d = 0;
        for (int j = 0; j < idh; ++j) d += double(qt[static_cast<size_t>(h * idh + j)]) * rows[static_cast<size_t>(r * idh + j)];
        acc += double(w[static_cast<size_t>(t * IH + h)] * w_scale) * std::max(0.0, d);
      }
      s[static_cast<size_t>(r)] = static_cast<float>(acc);
    }
    std::vector<int32_t> want = cpu::top_k_desc(s, k);
    std::sort(want.begin(), want.end());
    std::vector<float> sorted = s;
    std::sort(sorted.begin(), sorted.end(), std::greater<float>());
    const float kth = sorted[static_cast<size_t>(k - 1)], next = sorted[static_cast<size_t>(k)];
    const float tol = 1e-4f * (std::fabs(kth) + 1e-6f);
    if (kth - next > tol) {
      ++decisive;
      EXPECT_EQ(row, want) << "token " << t;
    } else {
      EXPECT_TRUE(std::is_sorted(row.begin(), row.end()) && std::adjacent_find(row.begin(), row.end()) == row.end());
      for (int32_t r : row) {
        ASSERT_TRUE(r >= 0 && r < n_vis) << "token " << t << " row " << r;
        EXPECT_GE(s[static_cast<size_t>(r)], kth - tol) << "token " << t << " row " << r;
      }
    }
  }
  EXPECT_GT(scored, 0);
  EXPECT_GT(decisive, scored / 2);
}

TEST(CudaPrefillIndexer, SelectionMatchesPlainReference) {
  const std::vector<Case> cases = {
      {64, 128, 512, 2100, 6, 0, true},   {64, 128, 512, 2044, 8, 3, false},  // real top-k, some tokens below it
      {64, 128, 32, 100, 48, 0, true},    {64, 128, 32, 300, 40, 7, false},   // most tokens of a chunk rank
      {4, 64, 8, 20, 30, 0, true},        {4, 64, 8, 500, 9, 2, false},       // the tiny model's shape
      {64, 128, 512, 6000, 7, 5, true},   {64, 128, 64, 900, 13, 1, true, false},  // long rows; raw rows
      {7, 32, 16, 200, 11, 0, true},      {7, 32, 16, 333, 5, 4, false},      // 32-dim heads, one slab
  };
  for (const Case& c : cases) run(c, fresh_seed());
}

TEST(CudaPrefillIndexer, RejectsRowScratchBelowTheScoreCapacity) {
  IndexerArgs a;
  a.T = 4;
  a.IH = 64;
  a.idh = 128;
  a.n_rot = 64;
  a.top_k = 512;
  a.score_cap = 1000;
  PrefillIndexRows split;
  split.capacity = prefill_indexer_row_capacity(a.score_cap) - 64;
  EXPECT_EQ(prefill_indexer_row_capacity(a.score_cap), 1024);
  EXPECT_FALSE(prefill_indexer_rows(a, split, nullptr).ok());
  EXPECT_FALSE(prefill_indexer_select(a, nullptr, split, nullptr).ok());
}

TEST(CudaPrefillIndexer, RejectsGeometriesItDoesNotTake) {
  EXPECT_FALSE(prefill_indexer_supported(65, 128));
  EXPECT_FALSE(prefill_indexer_supported(64, 96));
  EXPECT_FALSE(prefill_indexer_supported(64, 256));
  EXPECT_TRUE(prefill_indexer_supported(64, 128));
  EXPECT_TRUE(prefill_indexer_supported(1, 32));
}

}  // namespace
}  // namespace dsv4::cuda::testing
