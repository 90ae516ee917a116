// Token pairs of the float formats (matvec.h ExpertMatvec::pair_stride: slots j and j + pair_stride
// read the same slab): on the f32 kernel (matvec_fast.cu, F32 / F16 / BF16: a unit is a pair's rows,
// each stage of weights copied once and dotted with both tokens' activations, FastWarp::decode_pair)
// and, for one dense F16 pair, on the F16 row tile (both tokens' activations staged). Against the
// same launch without pairs (checked against the CPU in matvec_test.cc): same bits are required,
// since each token's rows take the operations of their unpaired unit in the same order. Fresh
// random weights, activations, expert ids and slot scales; every row split over warps, every
// rows-per-warp choice, partial units, several rounds of units per block, dense pairs (no expert
// ids), the pair strides of a grouped launch and odd token counts (the last token alone in its
// pairs). Outputs past the last slot must stay untouched.
#include <gtest/gtest.h>

#include <cstdint>
#include <random>
#include <vector>

#include "cuda/device_util.h"
#include "cuda/forward.h"
#include "cuda/matvec.h"
#include "cuda/matvec_harness.h"

namespace dsv4::cuda::testing {
namespace {

TEST(CudaMatvecFloatPairs, F32KernelSameBitsAsUnpaired) {
  const uint64_t seed = fresh_seed();
  SCOPED_TRACE(seed);
  std::mt19937_64 rng(seed);
  for (TensorType type : {TensorType::F32, TensorType::F16, TensorType::BF16}) {
    // Every rows-per-warp choice and row split; a partial last stage (n_in 320: F16's stage is 256
    // elements, F32's 128), partial units (37 rows).
    for (int rows : {1, 2, 4}) {
      for (int warps : {1, 2, 4, 8}) {
        expect_pairs_same_bits_as_unpaired({type, 1024, 37, 2, 1, false, false, {rows, warps}}, rng);
        expect_pairs_same_bits_as_unpaired({type, 1024, 37, 4, 1, false, true, {rows, warps}}, rng);
        if (HasFatalFailure()) return;
      }
      expect_pairs_same_bits_as_unpaired({type, 320, 37, 2, 3, false, true, {rows, 0}}, rng);
      expect_pairs_same_bits_as_unpaired({type, 320, 37, 3, 2, false, true, {rows, 0}}, rng);  // odd: the last alone
      expect_pairs_same_bits_as_unpaired({type, 1024, 37, 1, 1, false, true, {rows, 2}}, rng);
      expect_pairs_same_bits_as_unpaired({type, 320, 37, 2, 1, true, false, {rows, 0}}, rng);
    }
    // The default plan; a dense pair; the step's shapes (the compressors' projections 4096 -> 2048
    // and 1024, the router 4096 -> 256, the indexer's 4096 -> 64): several rounds of units a block.
    expect_pairs_same_bits_as_unpaired({type, 4096, 2048, 2, 1, true, false, {}}, rng);
    expect_pairs_same_bits_as_unpaired({type, 4096, 1024, 4, 1, false, false, {}}, rng);
    expect_pairs_same_bits_as_unpaired({type, 4096, 1024, 3, 1, false, false, {}}, rng);
    expect_pairs_same_bits_as_unpaired({type, 4096, 256, 2, 1, true, false, {}}, rng);
    expect_pairs_same_bits_as_unpaired({type, 4096, 64, 2, 2, false, true, {}}, rng);
  }
}

TEST(CudaMatvecFloatPairs, F16RowTileSameBitsAsOneSlotLaunches) {
  const uint64_t seed = fresh_seed();
  SCOPED_TRACE(seed);
  std::mt19937_64 rng(seed);
  // The indexer's q_b (1024 -> 8192: the default plan takes the row tile), a partial tile with
  // every row split, with and without expert ids and scales.
  expect_pairs_same_bits_as_unpaired({TensorType::F16, 1024, 8192, 2, 1, true, false, {}}, rng);
  expect_pairs_same_bits_as_unpaired({TensorType::F16, 1024, 8192, 2, 1, false, true, {}}, rng);
  for (int warps : {1, 2, 4, 8}) {
    expect_pairs_same_bits_as_unpaired({TensorType::F16, 512, 80, 2, 1, true, true, {32, warps}}, rng);
    if (HasFatalFailure()) return;
  }
}

// A multi-token step's F16 projections through project (as_steps): 2, 3 and 4 tokens, each token's
// outputs the bits of its one-token launch, for a row-tile shape (the indexer's q_b: a pair a
// launch, the odd token alone) and an f32-kernel shape (a compressor's projection: pairs of slab 0).
TEST(CudaMatvecFloatPairs, StepProjectionsAsSingleTokens) {
  const uint64_t seed = fresh_seed();
  SCOPED_TRACE(seed);
  std::mt19937_64 rng(seed);
  TestStream stream;
  ASSERT_TRUE(stream.ok());
  struct Shape {
    int64_t n_in, n_out;
  };
  for (const Shape sh : {Shape{1024, 8192}, Shape{4096, 1024}}) {
    const std::vector<uint8_t> w = random_rows(format_of(TensorType::F16), sh.n_in, sh.n_out, rng);
    const std::vector<float> x = normal_vector(static_cast<size_t>(4 * sh.n_in), rng);
    const std::vector<int32_t> zeros(4, 0);
    DeviceBuffer dw = upload(w), dx = upload(x), dzeros = upload(zeros), dref(4 * sh.n_out * 4),
                 dgot((4 * sh.n_out + kGuard) * 4);
    ASSERT_TRUE(dw.ok() && dx.ok() && dzeros.ok() && dref.ok() && dgot.ok());
    DeviceTensor t;
    t.type = TensorType::F16;
    t.ne0 = sh.n_in;
    t.ne1 = sh.n_out;
    t.row_bytes = 2 * sh.n_in;
    t.data = static_cast<const uint8_t*>(dw.get());
    for (int k = 0; k < 4; ++k) {
      STATUS_ASSERT(project(t, dx.get<float>() + k * sh.n_in, 1, dref.get<float>() + k * sh.n_out,
                            dzeros.get<int32_t>(), stream.get()));
    }
    for (int tokens : {2, 3, 4}) {
      SCOPED_TRACE(::testing::Message() << sh.n_in << " -> " << sh.n_out << ", " << tokens << " tokens");
      const size_t n_y = static_cast<size_t>(tokens * sh.n_out);
      CUDA_ASSERT(cudaMemsetAsync(dgot.get(), 0xFF, dgot.size(), stream.get()));
      STATUS_ASSERT(project(t, dx.get<float>(), tokens, dgot.get<float>(), dzeros.get<int32_t>(), stream.get(),
                            /*as_steps=*/true));
      CUDA_ASSERT(cudaStreamSynchronize(stream.get()));
      expect_same_bits_and_guard(download<float>(dgot, n_y + kGuard), download<float>(dref, n_y), n_y, sh.n_out,
                                 "a multi-token step", "one token each");
    }
  }
}

// A dense pair (no expert ids) reaches only kernels that pair: elsewhere its second slot would read
// slab 1, so the launch is refused.
TEST(CudaMatvecFloatPairs, DensePairsOnlyWhereTheKernelPairs) {
  std::mt19937_64 rng(fresh_seed());
  const int64_t n_in = 512, n_out = 32;
  const std::vector<uint8_t> w = random_rows(format_of(TensorType::Q2_K), n_in, n_out, rng);
  const std::vector<float> x = normal_vector(static_cast<size_t>(2 * n_in), rng);
  TestStream stream;
  DeviceBuffer dw = upload(w), dx = upload(x), dy(static_cast<size_t>(2 * n_out) * 4);
  ASSERT_TRUE(stream.ok() && dw.ok() && dx.ok() && dy.ok());
  ExpertMatvec m = expert_launch(TensorType::Q2_K, dw.get(), n_in, n_out, 1, nullptr, 2, dx.get<float>(), n_in);
  m.pair_stride = 1;
  EXPECT_FALSE(matvec_experts(m, dy.get<float>(), stream.get()).ok());  // the 2-bit row tile does not pair
  m.type = TensorType::F16;
  EXPECT_FALSE(matvec_experts(m, dy.get<float>(), stream.get(), MatvecImpl::kReference).ok());
  CUDA_ASSERT(cudaStreamSynchronize(stream.get()));
}

}  // namespace
}  // namespace dsv4::cuda::testing
