// The speculative step's write-set checkpoint (cuda/region_copy.h, DeviceState::step_write_set):
// packing scattered spans and unpacking them restores exactly those bytes, and the decode step at
// any position changes no byte of the rollback region outside the list for that position: the
// list is the contract between session.cc and the kernels, checked here across the small
// preset's ring wrap, ratio-4 emissions (where slots 0..3 take 4..7) and the ratio-128 emission.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <random>
#include <vector>

#include "cpu/test_models.h"
#include "cuda/cuda_test_util.h"
#include "cuda/device_state.h"
#include "cuda/forward.h"
#include "cuda/region_copy.h"

namespace dsv4::cuda::testing {
namespace {

// Random spans over an 8 MB region: aligned and unaligned, a few longer than a piece, more pieces
// than one launch carries; then pack, scribble over the region, unpack.
TEST(CudaRegionCopy, PackThenUnpackRestoresExactlyTheSpans) {
  const uint64_t seed = fresh_seed();
  SCOPED_TRACE(seed);
  std::mt19937_64 rng(seed);
  const uint64_t region_bytes = 8 << 20;
  std::vector<RegionSpan> spans;
  for (uint64_t at = 0; at < region_bytes;) {
    const bool aligned = rng() % 4 != 0;
    const uint64_t start = at + (aligned ? 16 * (rng() % 64) : rng() % 1000);
    const uint64_t len = rng() % 8 == 0 ? 40000 + rng() % 90000 : (aligned ? 16 * (1 + rng() % 128) : 1 + rng() % 3000);
    if (start + len > region_bytes) break;
    spans.push_back({start, len});
    at = start + len;
  }
  ASSERT_GT(spans.size(), 400u);  // more than one launch's pieces (240)
  std::vector<uint8_t> original(region_bytes), scribble(region_bytes);
  for (auto& b : original) b = static_cast<uint8_t>(rng());
  for (auto& b : scribble) b = static_cast<uint8_t>(rng());
  uint8_t *region = nullptr, *packed = nullptr;
  ASSERT_EQ(cudaMalloc(reinterpret_cast<void**>(&region), region_bytes), cudaSuccess);
  ASSERT_EQ(cudaMalloc(reinterpret_cast<void**>(&packed), packed_bytes(spans)), cudaSuccess);
  ASSERT_EQ(cudaMemcpy(region, original.data(), region_bytes, cudaMemcpyHostToDevice), cudaSuccess);
  ASSERT_TRUE(pack_region_spans(region, spans, packed, nullptr).ok());
  std::vector<uint8_t> got_packed(packed_bytes(spans));
  ASSERT_EQ(cudaMemcpy(got_packed.data(), packed, got_packed.size(), cudaMemcpyDeviceToHost), cudaSuccess);
  std::vector<uint8_t> want_packed;
  for (const RegionSpan& s : spans) {
    want_packed.insert(want_packed.end(), original.begin() + s.offset, original.begin() + s.offset + s.bytes);
  }
  EXPECT_TRUE(got_packed == want_packed);
  ASSERT_EQ(cudaMemcpy(region, scribble.data(), region_bytes, cudaMemcpyHostToDevice), cudaSuccess);
  ASSERT_TRUE(unpack_region_spans(packed, spans, region, nullptr).ok());
  std::vector<uint8_t> got(region_bytes), want = scribble;
  for (const RegionSpan& s : spans) std::memcpy(want.data() + s.offset, original.data() + s.offset, s.bytes);
  ASSERT_EQ(cudaMemcpy(got.data(), region, region_bytes, cudaMemcpyDeviceToHost), cudaSuccess);
  EXPECT_TRUE(got == want);
  cudaFree(region);
  cudaFree(packed);
}

TEST(CudaDeviceState, StepWriteSetCoversEveryChangedByte) {
  const uint64_t seed = fresh_seed();
  SCOPED_TRACE(seed);
  Result<std::unique_ptr<DeviceModel>> dm = upload_model(cpu::testing::synthetic_model("small"));
  ASSERT_TRUE(dm.ok()) << dm.error().message;
  const DeviceModel& m = **dm;
  const model::Config& c = m.config;
  cudaStream_t stream = nullptr;
  ASSERT_EQ(cudaStreamCreate(&stream), cudaSuccess);
  constexpr int kPrompt = 116;
  Result<std::unique_ptr<DeviceState>> ds = DeviceState::create(m, 256, kPrompt, false, stream);
  ASSERT_TRUE(ds.ok()) << ds.error().message;
  DeviceState& state = **ds;
  const std::vector<int32_t> tokens = cpu::testing::test_tokens(kPrompt + 24, c.n_vocab, seed);
  auto run = [&](int64_t pos0, int T) {
    ChunkShape shape;
    shape.T = T;
    shape.index_scoring = chunk_needs_index_scoring(c, pos0, T);
    ASSERT_EQ(cudaMemcpyAsync(state.tokens, tokens.data() + pos0, sizeof(int32_t) * T, cudaMemcpyHostToDevice, stream),
              cudaSuccess);
    ASSERT_TRUE(forward_chunk(m, state, shape, SimModes{}, stream).ok());
  };
  ASSERT_NO_FATAL_FAILURE(run(0, kPrompt));
  const uint64_t bytes = state.checkpoint_bytes();
  std::vector<uint8_t> before(bytes), after(bytes);
  ASSERT_EQ(cudaMemcpyAsync(before.data(), state.checkpoint_region(), bytes, cudaMemcpyDeviceToHost, stream),
            cudaSuccess);
  // Positions 116..139: ratio-4 emissions at 119, 123, ...; the ratio-128 one at 127; the raw
  // ring (window 128) wraps at 128.
  for (int64_t pos = kPrompt; pos < kPrompt + 24; ++pos) {
    SCOPED_TRACE(pos);
    ASSERT_NO_FATAL_FAILURE(run(pos, 1));
    ASSERT_EQ(cudaMemcpyAsync(after.data(), state.checkpoint_region(), bytes, cudaMemcpyDeviceToHost, stream),
              cudaSuccess);
    ASSERT_EQ(cudaStreamSynchronize(stream), cudaSuccess);
    std::vector<bool> listed(bytes, false);
    uint64_t listed_bytes = 0;
    for (const RegionSpan& s : state.step_write_set(pos)) {
      ASSERT_LE(s.offset + s.bytes, bytes);
      std::fill(listed.begin() + s.offset, listed.begin() + s.offset + s.bytes, true);
      listed_bytes += s.bytes;
    }
    uint64_t changed = 0, unlisted = 0;
    for (uint64_t i = 0; i < bytes; ++i) {
      if (before[i] == after[i]) continue;
      ++changed;
      if (!listed[i]) ++unlisted;
    }
    EXPECT_EQ(unlisted, 0u) << "bytes the step changed outside its write set";
    EXPECT_GT(changed, 0u);
    EXPECT_LT(listed_bytes * 4, bytes) << "the write set is most of the region";
    std::swap(before, after);
  }
  cudaStreamDestroy(stream);
}

}  // namespace
}  // namespace dsv4::cuda::testing
