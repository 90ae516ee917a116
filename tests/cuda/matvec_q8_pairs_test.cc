// The Q8_0 row tile's token pairs (matvec.h ExpertMatvec::pair_stride: slots j and j + pair_stride
// read the same slab, each weight item staged and decoded once for both, the second token's limbs in
// the MMAs' columns 4–7) against the same launch without pairs (checked against the CPU in
// matvec_test.cc and the identity-expert tests). Same bits are required: every lane folds the same
// MMA results of its rows and token in the same order with the same item scale, and the rows are
// reduced over warps as before. Fresh random weights, activations, expert ids and slot scales; a
// multi-token step's dense projections (T = 2, 4 slots of slab 0 in pairs of neighbours) and its
// grouped output projection (T = 2 tokens × G = 8 groups, the pair stride G); odd token counts,
// whose last token is alone in its pairs (zeros in columns 4–7, nothing stored for them); every
// split of a row over warps; partial last tiles; several rounds of units per block. Outputs past
// the last slot must stay untouched.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "cuda/device_util.h"
#include "cuda/matvec.h"
#include "cuda/matvec_harness.h"

namespace dsv4::cuda::testing {
namespace {

// A Q8_0 case: tokens · groups slots, pair stride groups, MatvecTuning::warps_per_row (0: the default).
PairCase q8(int64_t n_in, int64_t n_out, int tokens, int groups, bool scaled, int warps) {
  return PairCase{TensorType::Q8_0, n_in, n_out, tokens, groups, false, scaled, {warps ? 32 : 0, warps}};
}

TEST(CudaMatvecQ8Pairs, SameBitsAsUnpaired) {
  const uint64_t seed = fresh_seed();
  SCOPED_TRACE(seed);
  std::mt19937_64 rng(seed);
  // Partial last tiles, one and several items a row, every split of a row over warps.
  for (int64_t n_out : {int64_t{40}, int64_t{96}}) {
    for (int warps : {1, 2, 4, 8}) {
      expect_pairs_same_bits_as_unpaired(q8(2048, n_out, 2, 1, false, warps), rng);
      expect_pairs_same_bits_as_unpaired(q8(2048, n_out, 4, 1, true, warps), rng);
      if (HasFatalFailure()) return;
    }
    expect_pairs_same_bits_as_unpaired(q8(256, n_out, 2, 1, false, 0), rng);
    expect_pairs_same_bits_as_unpaired(q8(768, n_out, 2, 3, true, 0), rng);
    // Odd token counts: the last token alone in its pairs.
    expect_pairs_same_bits_as_unpaired(q8(2048, n_out, 3, 1, true, 2), rng);
    expect_pairs_same_bits_as_unpaired(q8(768, n_out, 5, 3, true, 0), rng);
    expect_pairs_same_bits_as_unpaired(q8(256, n_out, 1, 2, false, 1), rng);
  }
  // A multi-token step's shapes: q_a and kv (4096 -> 1024 + 512), out_b (8192 -> 4096), the grouped
  // output projection (8 groups of 4096 -> 1024), a wide row of many rounds of units (q_b).
  expect_pairs_same_bits_as_unpaired(q8(4096, 1536, 2, 1, false, 0), rng);
  expect_pairs_same_bits_as_unpaired(q8(8192, 4096, 2, 1, false, 0), rng);
  expect_pairs_same_bits_as_unpaired(q8(4096, 1024, 2, 8, false, 0), rng);
  expect_pairs_same_bits_as_unpaired(q8(4096, 1536, 3, 1, false, 0), rng);
  expect_pairs_same_bits_as_unpaired(q8(4096, 1024, 3, 8, true, 0), rng);
  expect_pairs_same_bits_as_unpaired(q8(1024, 32768, 2, 1, true, 0), rng);
}

// q_b's fused RMSNorm for two tokens (matvec_rms_norm with tokens = 2: each token normalised with
// its own scale, the weights decoded once): each token's outputs the bits of its one-token launch,
// at the model's q_b shape (1024 -> 32768) from rows 1536 floats apart (q_a beside kv) and at a
// small one with every warp split. (A multi-token step's F16 projections: matvec_float_pairs_test.cc.)
TEST(CudaMatvecQ8Pairs, TwoTokenNormAsSingleTokens) {
  const uint64_t seed = fresh_seed();
  SCOPED_TRACE(seed);
  std::mt19937_64 rng(seed);
  TestStream stream;
  ASSERT_TRUE(stream.ok());
  struct NormCase {
    int64_t n_in, n_out, x_stride;
    int warps;
  };
  for (const NormCase& c : {NormCase{1024, 32768, 1536, 0}, NormCase{2048, 96, 2048, 1}, NormCase{2048, 96, 2560, 2},
                            NormCase{2048, 96, 2048, 4}, NormCase{2048, 96, 2048, 8}}) {
    SCOPED_TRACE(::testing::Message() << c.n_in << " -> " << c.n_out << " x stride " << c.x_stride << " warps "
                                      << c.warps);
    const std::vector<uint8_t> w = random_rows(format_of(TensorType::Q8_0), c.n_in, c.n_out, rng);
    const std::vector<float> x = normal_vector(static_cast<size_t>(2 * c.x_stride), rng, 0.0f, 3.0f);
    const std::vector<float> norm = normal_vector(static_cast<size_t>(c.n_in), rng);
    const size_t n_y = static_cast<size_t>(2 * c.n_out);
    DeviceBuffer dw = upload(w), dx = upload(x), dnorm = upload(norm), dref(n_y * 4), dgot((n_y + kGuard) * 4);
    ASSERT_TRUE(dw.ok() && dx.ok() && dnorm.ok() && dref.ok() && dgot.ok());
    ASSERT_TRUE(can_fuse_rms_norm(TensorType::Q8_0, dw.get(), c.n_in, c.n_out, dx.get<float>(), dnorm.get<float>()));
    const MatvecTuning tuning{c.warps ? 32 : 0, c.warps};
    for (int t = 0; t < 2; ++t) {
      STATUS_ASSERT(matvec_rms_norm(TensorType::Q8_0, dw.get(), c.n_in, c.n_out, dx.get<float>() + t * c.x_stride,
                                    dnorm.get<float>(), 1e-6f, dref.get<float>() + t * c.n_out, stream.get(), tuning));
    }
    CUDA_ASSERT(cudaMemsetAsync(dgot.get(), 0xFF, dgot.size(), stream.get()));
    STATUS_ASSERT(matvec_rms_norm(TensorType::Q8_0, dw.get(), c.n_in, c.n_out, dx.get<float>(), dnorm.get<float>(),
                                  1e-6f, dgot.get<float>(), stream.get(), tuning, 2, c.x_stride));
    CUDA_ASSERT(cudaStreamSynchronize(stream.get()));
    expect_same_bits_and_guard(download<float>(dgot, n_y + kGuard), download<float>(dref, n_y), n_y, c.n_out,
                               "two tokens", "one token each");
  }
}

// Launches whose slots are not whole tokens of pair_stride, sums over slots and fused inputs are refused.
TEST(CudaMatvecQ8Pairs, RefusesWhatItCannotPair) {
  std::mt19937_64 rng(fresh_seed());
  const int64_t n_in = 256, n_out = 32;
  const std::vector<uint8_t> w = random_rows(format_of(TensorType::Q8_0), n_in, n_out, rng);
  const std::vector<float> x = normal_vector(static_cast<size_t>(4 * n_in), rng);
  const std::vector<int32_t> experts = {0, 0, 0, 0};
  TestStream stream;
  DeviceBuffer dw = upload(w), dx = upload(x), dexp = upload(experts), dy(static_cast<size_t>(4 * n_out) * 4);
  ASSERT_TRUE(stream.ok() && dw.ok() && dx.ok() && dexp.ok() && dy.ok());
  ExpertMatvec m = expert_launch(TensorType::Q8_0, dw.get(), n_in, n_out, 1, dexp.get<int32_t>(), 3, dx.get<float>(),
                                 n_in);
  m.pair_stride = 2;
  EXPECT_FALSE(matvec_experts(m, dy.get<float>(), stream.get()).ok());  // 3 slots are no whole tokens of 2
  m.n_slots = 4;
  m.pair_stride = 3;
  EXPECT_FALSE(matvec_experts(m, dy.get<float>(), stream.get()).ok());  // 4 is not a multiple of 3
  m.pair_stride = 1;
  STATUS_ASSERT(matvec_experts(m, dy.get<float>(), stream.get()));
  EXPECT_FALSE(matvec_experts_sum(m, dy.get<float>(), stream.get()).ok());
  m.up = dx.get<float>();
  EXPECT_FALSE(matvec_experts(m, dy.get<float>(), stream.get()).ok());
  CUDA_ASSERT(cudaStreamSynchronize(stream.get()));
}

}  // namespace
}  // namespace dsv4::cuda::testing
