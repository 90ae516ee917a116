// A full-size synthetic preset generated on the device (cuda/device_model.h), a few layers of it:
// the real geometry and published type mix end to end. Checks what can be checked without a
// reference: finite logits, determinism of the generator (same seed, same logits), and the decode
// graph agreeing with the chunked path, and the long prefill chunk. Named *Large*: the memory checker
// skips it (GBs of weights).
#include <gtest/gtest.h>

#include <cuda_runtime_api.h>

#include <cmath>
#include <cstdint>
#include <vector>

#include "cuda/device_util.h"
#include "cuda/session.h"

namespace dsv4::cuda::testing {
namespace {

std::vector<float> run(int64_t layers, uint64_t seed, const std::vector<int32_t>& tokens, int decode) {
  auto dev = generate_synthetic_model("flash-q2", layers, seed);
  EXPECT_TRUE(dev.ok()) << dev.error().message;
  if (!dev.ok()) return {};
  std::shared_ptr<const DeviceModel> m = std::move(dev).value();
  EXPECT_EQ(m->config.n_layer, layers);
  auto s = DeviceSession::create(m, 4096, cpu::SimOptions::official());
  EXPECT_TRUE(s.ok()) << s.error().message;
  EXPECT_TRUE((*s)->forward(std::span(tokens).first(tokens.size() - decode), nullptr).ok());
  for (size_t p = tokens.size() - decode; p < tokens.size(); ++p) {
    EXPECT_TRUE((*s)->forward(std::span(tokens).subspan(p, 1), nullptr).ok());
  }
  const std::span<const float> l = (*s)->logits();
  return std::vector<float>(l.begin(), l.end());
}

TEST(CudaSyntheticLarge, FlashQ2LayersRunDeterministically) {
  std::vector<int32_t> tokens;
  for (int i = 0; i < 300; ++i) tokens.push_back((i * 7919 + 13) % 129280);
  const std::vector<float> a = run(4, 7, tokens, 20);
  const std::vector<float> b = run(4, 7, tokens, 20);
  const std::vector<float> c = run(4, 8, tokens, 20);
  const std::vector<float> prefill = run(4, 7, tokens, 0);
  ASSERT_EQ(a.size(), 129280u);
  for (float v : a) ASSERT_TRUE(std::isfinite(v));
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);
  EXPECT_LE(rel_l2(a.data(), prefill.data(), a.size()), 1e-3);
}

// The long prefill chunk: chosen only where the device holds it beside a standard session, the
// footprint the choice counts is what a session allocates, and chunks of either length give the
// same bits (the same kernels run each token's rows).
TEST(CudaSyntheticLarge, LongChunkWhereTheMemoryHoldsItSameBits) {
  auto dev = generate_synthetic_model("flash-q2", 2, 7);
  ASSERT_TRUE(dev.ok()) << dev.error().message;
  std::shared_ptr<const DeviceModel> m = std::move(dev).value();
  const PrefillMath split = PrefillMath::kTensorCoreSplit;
  const int64_t n_ctx = 20000;
  EXPECT_EQ(*DeviceSession::max_chunk_for(*m, n_ctx, PrefillMath::kMatvecF32), DeviceSession::kDefaultMaxChunk);
  EXPECT_EQ(*DeviceSession::max_chunk_for(*m, 4096, split), DeviceSession::kTensorCoreMaxChunk);
  auto chosen = DeviceSession::max_chunk_for(*m, n_ctx, split);
  ASSERT_TRUE(chosen.ok()) << chosen.error().message;
  ASSERT_EQ(*chosen, DeviceSession::kTensorCoreLongChunk) << "a 2-layer model leaves room on any Hopper card";

  std::vector<int32_t> tokens;
  for (int i = 0; i < 19000; ++i) tokens.push_back((i * 7919 + 13) % 129280);
  std::vector<float> logits[2];
  for (int k = 0; k < 2; ++k) {
    const int chunk = k ? DeviceSession::kTensorCoreLongChunk : DeviceSession::kTensorCoreMaxChunk;
    auto s = DeviceSession::create(m, n_ctx, cpu::SimOptions::official(), chunk, split);
    ASSERT_TRUE(s.ok()) << s.error().message;
    const DeviceState::Footprint f = DeviceState::footprint(*m, n_ctx, chunk, true);
    EXPECT_EQ(f.bytes, (*s)->state_bytes());
    EXPECT_EQ(f.checkpoint_bytes, (*s)->checkpoint_bytes());
    EXPECT_GT(DeviceSession::device_bytes(*m, n_ctx, chunk, split), f.bytes + f.checkpoint_bytes);
    ASSERT_TRUE((*s)->forward(tokens, nullptr).ok());
    const std::span<const float> l = (*s)->logits();
    logits[k].assign(l.begin(), l.end());
  }
  EXPECT_EQ(logits[0], logits[1]);

  // Memory taken until the long session and a standard one no longer fit: the standard chunk.
  size_t free = 0, total = 0;
  ASSERT_EQ(cudaMemGetInfo(&free, &total), cudaSuccess);
  const uint64_t want = DeviceSession::device_bytes(*m, n_ctx, DeviceSession::kTensorCoreLongChunk, split) +
                        DeviceSession::device_bytes(*m, n_ctx, DeviceSession::kTensorCoreMaxChunk, split) +
                        DeviceSession::kLongChunkSpareBytes;
  ASSERT_GT(free, want);
  void* taken = nullptr;
  ASSERT_EQ(cudaMalloc(&taken, free - want + (uint64_t{256} << 20)), cudaSuccess);
  chosen = DeviceSession::max_chunk_for(*m, n_ctx, split);
  cudaFree(taken);
  ASSERT_TRUE(chosen.ok()) << chosen.error().message;
  EXPECT_EQ(*chosen, DeviceSession::kTensorCoreMaxChunk);
}

}  // namespace
}  // namespace dsv4::cuda::testing
