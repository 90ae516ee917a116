// The 2-bit row tiles of a few tokens' routed experts (matvec.h ExpertMatvec::slots_per_x: the K
// slots of token t read token t's row) against one launch a token, its K slots reading its row as a
// decode step's launch does (checked against the lane code in matvec_2bit_test.cc and against the
// CPU in matvec_test.cc). Same bits are required: a row's sum is the same sequence of operations
// whatever tile and launch hold it, and both launches stage the same activations. Fresh random
// weights, activations, expert ids and route weights; both kernels (8 items per row: the
// compile-time row stride; 9: the run-time one); plain and swiglu_rows; with the model's gate/up
// shape of a two-token step. And the down projection of a two-token step (12 slots of 2 048
// activations each, 24 576 floats, on the row tile since the staging limit went to 32 768) against
// one launch per slot. Outputs past the last slot must stay untouched.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "cuda/device_util.h"
#include "cuda/matvec.h"
#include "cuda/matvec_harness.h"
#include "cuda/matvec_launch.h"

namespace dsv4::cuda::testing {
namespace {

struct SharedCase {
  TensorType type;
  int items;  // of rt2_item_elems per row: n_in
  int64_t n_out;
  int tokens;
  int slots_per_x;
  bool swiglu_rows;
};

void expect_same_bits_as_one_launch_a_token(const SharedCase& c, std::mt19937_64& rng) {
  SCOPED_TRACE(::testing::Message() << gguf::type_name(c.type) << " items " << c.items << " n_out " << c.n_out
                                    << " tokens " << c.tokens << " slots per x " << c.slots_per_x << " swiglu_rows "
                                    << c.swiglu_rows);
  const Format& f = format_of(c.type);
  const int64_t n_in = c.items * detail::rt2_item_elems(c.type), n_expert = 11;
  const int spx = c.slots_per_x, slots = c.tokens * spx;
  std::vector<int32_t> experts(static_cast<size_t>(slots));
  std::uniform_int_distribution<int32_t> pick(0, static_cast<int32_t>(n_expert - 1));
  for (int32_t& e : experts) e = pick(rng);
  const std::vector<uint8_t> w = random_rows(f, n_in, c.n_out * n_expert, rng);
  const std::vector<float> x = normal_vector(static_cast<size_t>(c.tokens * n_in), rng, 0.0f, 0.3f);
  const std::vector<float> route = normal_vector(static_cast<size_t>(slots), rng);
  const int64_t per_slot = c.swiglu_rows ? c.n_out / 2 : c.n_out;
  const size_t n_y = static_cast<size_t>(slots * per_slot);
  TestStream stream;
  DeviceBuffer dw = upload(w), dx = upload(x), droute = upload(route), dexp = upload(experts),
               dref(n_y * 4), dgot((n_y + kGuard) * 4);
  ASSERT_TRUE(stream.ok() && dw.ok() && dx.ok() && dref.ok() && dgot.ok());

  ExpertMatvec shared = expert_launch(c.type, dw.get(), n_in, c.n_out, n_expert, dexp.get<int32_t>(), slots,
                                      dx.get<float>(), n_in);
  shared.slots_per_x = spx;
  shared.swiglu_rows = c.swiglu_rows;
  shared.act_weights = c.swiglu_rows ? droute.get<float>() : nullptr;
  shared.act_limit = 7.0f;
  EXPECT_TRUE(can_share_x(shared));
  CUDA_ASSERT(cudaMemsetAsync(dgot.get(), 0xFF, dgot.size(), stream.get()));
  STATUS_ASSERT(matvec_experts(shared, dgot.get<float>(), stream.get()));
  // Token t alone: its spx slots reading its row, as a decode step's launch does (stride 0).
  for (int t = 0; t < c.tokens; ++t) {
    ExpertMatvec one = shared;
    one.experts = dexp.get<int32_t>() + t * spx;
    one.n_slots = spx;
    one.x = dx.get<float>() + t * n_in;
    one.x_stride = 0;
    one.slots_per_x = 1;
    if (c.swiglu_rows) one.act_weights = droute.get<float>() + t * spx;
    STATUS_ASSERT(matvec_experts(one, dref.get<float>() + t * spx * per_slot, stream.get()));
  }
  CUDA_ASSERT(cudaStreamSynchronize(stream.get()));

  expect_same_bits_and_guard(download<float>(dgot, n_y + kGuard), download<float>(dref, n_y), n_y, per_slot,
                             "shared x", "one launch a token");
}

TEST(CudaMatvecSharedX, SameBitsAsOneLaunchAToken) {
  const uint64_t seed = fresh_seed();
  SCOPED_TRACE(seed);
  std::mt19937_64 rng(seed);
  for (TensorType t : {TensorType::Q2_K, TensorType::IQ2_XXS, TensorType::Q4_K}) {
    for (int items : {8, 9}) {
      for (bool rows : {false, true}) {
        expect_same_bits_as_one_launch_a_token({t, items, 96, 2, 6, rows}, rng);
        expect_same_bits_as_one_launch_a_token({t, items, 64, 3, 2, rows}, rng);
        if (HasFatalFailure()) return;
      }
    }
  }
  // A two-token step's gate/up: 2 × 6 slots of 4096 -> 2·2048, IQ2_XXS (q2 mix) or Q4_K (q4 mix).
  expect_same_bits_as_one_launch_a_token({TensorType::IQ2_XXS, 8, 4096, 2, 6, true}, rng);
  expect_same_bits_as_one_launch_a_token({TensorType::Q4_K, 16, 4096, 2, 6, true}, rng);
}

// The down projection of a two-token step, 12 slots of their own 2 048 activations (24 576 floats
// staged): on the row tile, and each slot's rows the bits of a one-slot launch of that slot.
TEST(CudaMatvecSharedX, TwoTokenDownOnTheRowTileAsOneSlotLaunches) {
  const uint64_t seed = fresh_seed();
  SCOPED_TRACE(seed);
  std::mt19937_64 rng(seed);
  for (TensorType t : {TensorType::Q2_K, TensorType::Q4_K}) {
    SCOPED_TRACE(gguf::type_name(t));
    const Format& f = format_of(t);
    const int64_t n_in = 2048, n_out = 4096, n_expert = 13;
    const int slots = 12;
    std::vector<int32_t> experts(static_cast<size_t>(slots));
    std::uniform_int_distribution<int32_t> pick(0, static_cast<int32_t>(n_expert - 1));
    for (int32_t& e : experts) e = pick(rng);
    const std::vector<uint8_t> w = random_rows(f, n_in, n_out * n_expert, rng);
    const std::vector<float> x = normal_vector(static_cast<size_t>(slots * n_in), rng);
    const size_t n_y = static_cast<size_t>(slots * n_out);
    TestStream stream;
    DeviceBuffer dw = upload(w), dx = upload(x), dexp = upload(experts), dall((n_y + kGuard) * 4), done(n_y * 4);
    ASSERT_TRUE(stream.ok() && dw.ok() && dx.ok() && dall.ok() && done.ok());
    const MatvecTuning row_tile{32, 0};
    ExpertMatvec all = expert_launch(t, dw.get(), n_in, n_out, n_expert, dexp.get<int32_t>(), slots, dx.get<float>(),
                                     n_in);
    CUDA_ASSERT(cudaMemsetAsync(dall.get(), 0xFF, dall.size(), stream.get()));
    // rows_per_warp 32 is refused where the row tile cannot take the launch; the default launch
    // must take it too (another kernel would give other bits).
    STATUS_ASSERT(matvec_experts(all, dall.get<float>(), stream.get(), MatvecImpl::kAuto, row_tile));
    DeviceBuffer ddefault((n_y + kGuard) * 4);
    CUDA_ASSERT(cudaMemsetAsync(ddefault.get(), 0xFF, ddefault.size(), stream.get()));
    STATUS_ASSERT(matvec_experts(all, ddefault.get<float>(), stream.get()));
    for (int j = 0; j < slots; ++j) {
      ExpertMatvec one = expert_launch(t, dw.get(), n_in, n_out, n_expert, dexp.get<int32_t>() + j, 1,
                                       dx.get<float>() + j * n_in, n_in);
      STATUS_ASSERT(matvec_experts(one, done.get<float>() + j * n_out, stream.get(), MatvecImpl::kAuto, row_tile));
    }
    CUDA_ASSERT(cudaStreamSynchronize(stream.get()));
    const std::vector<float> want = download<float>(done, n_y);
    expect_same_bits_and_guard(download<float>(dall, n_y + kGuard), want, n_y, n_out, "12 slots", "one slot");
    expect_same_bits_and_guard(download<float>(ddefault, n_y + kGuard), want, n_y, n_out, "12 slots (default)",
                               "one slot");
  }
}

// What a shared-x launch refuses rather than compute something else: a count that does not divide
// the slots, sums over slots, a fused `up`, and kernels other than the 2-bit row tile.
TEST(CudaMatvecSharedX, RefusesWhatItCannotShare) {
  std::mt19937_64 rng(fresh_seed());
  const int64_t n_in = 512, n_out = 64;
  const std::vector<float> x = normal_vector(static_cast<size_t>(2 * n_in), rng);
  const std::vector<int32_t> experts = {0, 0, 0, 0};
  TestStream stream;
  DeviceBuffer dx = upload(x), dup = upload(x), dexp = upload(experts), dy(static_cast<size_t>(4 * n_out) * 4);
  for (TensorType t : {TensorType::Q2_K, TensorType::Q8_0}) {
    SCOPED_TRACE(gguf::type_name(t));
    const std::vector<uint8_t> w = random_rows(format_of(t), n_in, n_out, rng);
    DeviceBuffer dw = upload(w);
    ASSERT_TRUE(stream.ok() && dw.ok() && dx.ok() && dy.ok());
    ExpertMatvec m = expert_launch(t, dw.get(), n_in, n_out, 1, dexp.get<int32_t>(), 4, dx.get<float>(), n_in);
    m.slots_per_x = 2;
    if (t == TensorType::Q8_0) {
      EXPECT_FALSE(can_share_x(m));
      EXPECT_FALSE(matvec_experts(m, dy.get<float>(), stream.get()).ok());
      continue;
    }
    EXPECT_TRUE(can_share_x(m));
    STATUS_ASSERT(matvec_experts(m, dy.get<float>(), stream.get()));
    ExpertMatvec odd = m;
    odd.slots_per_x = 3;
    EXPECT_FALSE(can_share_x(odd));
    EXPECT_FALSE(matvec_experts(odd, dy.get<float>(), stream.get()).ok());
    EXPECT_FALSE(matvec_experts_sum(m, dy.get<float>(), stream.get()).ok());
    ExpertMatvec with_up = m;
    with_up.up = dup.get<float>();
    EXPECT_FALSE(can_share_x(with_up));
    EXPECT_FALSE(matvec_experts(with_up, dy.get<float>(), stream.get()).ok());
  }
  CUDA_ASSERT(cudaStreamSynchronize(stream.get()));
}

}  // namespace
}  // namespace dsv4::cuda::testing
