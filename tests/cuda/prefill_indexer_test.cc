// cuda/prefill_indexer.h against indexer_reference.h's plain reference on fresh random inputs.
// Geometries: the real one (64 heads of 128, top-k 512 and a short top-k so most tokens of a chunk
// rank) and small ones (4 heads of 64, 7 heads of 32), launch offsets t0, tokens that do and do not
// rank, odd T (a block's second token missing), row counts that end mid-tile. Official mode runs on
// FP4-simulated rows as the model's (the exact-in-f16 path, lo halves all zero) and once on raw rows
// (lo halves nonzero in the rows only). The prepared queries (the prep kernel's in-place output)
// must match indexer.cu's prep bit for bit.
#include "cuda/prefill_indexer.h"

#include <gtest/gtest.h>

#include <cstring>
#include <vector>

#include "cuda/device_util.h"
#include "cuda/indexer_reference.h"

namespace dsv4::cuda::testing {
namespace {

void run(const IndexerCase& c, uint64_t seed) {
  SCOPED_TRACE(describe(c, seed));
  IndexerInputs in(c, seed);
  const IndexerArgs& a = in.args;
  TestStream stream;
  DeviceBuffer n_rows(static_cast<size_t>(c.T) * 4);
  // The rows' split scratch starts as NaN halves and scales (DeviceBuffer's 0xFF bytes): a tile
  // the kernels read without having split it shows up in the scores.
  const int64_t row_cap = prefill_indexer_row_capacity(in.cap);
  DeviceBuffer split_rows(static_cast<size_t>(prefill_indexer_row_halves(row_cap, c.idh)) * 2);
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

  // The prepared queries (written in place) bit for bit as indexer.cu's prep (the decode path's,
  // rope_apply_shared + hadamard_fp4_shared) leaves them on the same inputs: a prep bug that only
  // moves scores a little cannot hide behind the selection's tolerance. Tokens that do not rank
  // keep their raw queries in both.
  {
    const std::vector<float>& q = in.q;
    DeviceBuffer dq_ref = upload(q), scores_ref(static_cast<size_t>(c.T * in.cap) * 4);
    DeviceBuffer sel_ref(static_cast<size_t>(c.T) * c.top_k * 4);
    IndexerArgs r = a;
    r.q = dq_ref.get<float>();
    r.scores = scores_ref.get<float>();
    r.selected = sel_ref.get<int32_t>();
    STATUS_ASSERT(indexer_select(r, stream.get()));
    CUDA_ASSERT(cudaStreamSynchronize(stream.get()));
    const std::vector<float> got_q = download<float>(in.dq, q.size()), want_q = download<float>(dq_ref, q.size());
    const int IH = c.IH, idh = c.idh;
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
  in.expect_selection_matches_reference();
}

TEST(CudaPrefillIndexer, SelectionMatchesPlainReference) {
  const std::vector<IndexerCase> cases = {
      {64, 128, 512, 2100, 6, 0, true},   {64, 128, 512, 2044, 8, 3, false},  // real top-k, some tokens below it
      {64, 128, 32, 100, 48, 0, true},    {64, 128, 32, 300, 40, 7, false},   // most tokens of a chunk rank
      {4, 64, 8, 20, 30, 0, true},        {4, 64, 8, 500, 9, 2, false},       // the tiny model's shape
      {64, 128, 512, 6000, 7, 5, true},   {64, 128, 64, 900, 13, 1, true, false},  // long rows; raw rows
      {7, 32, 16, 200, 11, 0, true},      {7, 32, 16, 333, 5, 4, false},      // 32-dim heads, one slab
  };
  for (const IndexerCase& c : cases) run(c, fresh_seed());
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
