// The routed experts' gate/up with the SwiGLU computed in the 2-bit kernel (ExpertMatvec::swiglu_rows,
// matvec.h) against the two launches it replaces: matvec_experts of the 2F gate/up rows (checked
// against the kernel's lane code bit for bit in matvec_2bit_test.cc, against the CPU in
// matvec_test.cc), then swiglu (moe.h, checked against the CPU in moe_test.cc). Same bits are
// required: each row's sum is the same sequence of operations whatever tile holds the row, and the
// activation is the swiglu kernel's own function. Fresh random weights, activations (gate/up sums
// beyond the clamp) and route weights; one x for all slots (decode) and one per slot; both
// kernels (8 items per row: the compile-time row stride; 9: the run-time one); every split of a row
// over warps; with and without clamp and weights; many units per group (several rounds of W).
// The outputs past slots·F must stay untouched.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "cuda/device_util.h"
#include "cuda/matvec.h"
#include "cuda/matvec_harness.h"
#include "cuda/matvec_launch.h"
#include "cuda/moe.h"

namespace dsv4::cuda::testing {
namespace {

struct RowsCase {
  TensorType type;
  int items;  // of rt2_item_elems per row: n_in
  int64_t F;  // gate rows (= up rows) per expert
  int slots;
  bool x_per_slot;
  float limit;
  bool weighted;
  int warps;  // MatvecTuning::warps_per_row (0: the default)
};

void expect_same_bits_as_matvec_then_swiglu(const RowsCase& c, std::mt19937_64& rng) {
  SCOPED_TRACE(::testing::Message() << gguf::type_name(c.type) << " items " << c.items << " F " << c.F << " slots "
                                    << c.slots << " x per slot " << c.x_per_slot << " limit " << c.limit
                                    << " weighted " << c.weighted << " warps " << c.warps);
  const Format& f = format_of(c.type);
  const int64_t n_in = c.items * detail::rt2_item_elems(c.type), F = c.F, n_expert = 7;
  std::vector<int32_t> experts(static_cast<size_t>(c.slots));
  for (int j = 0; j < c.slots; ++j) experts[static_cast<size_t>(j)] = static_cast<int32_t>((j * 5 + 3) % n_expert);
  const std::vector<uint8_t> w = random_rows(f, n_in, 2 * F * n_expert, rng);
  // Scaled so that many gate/up sums pass the clamp (|sum| ~ 0.3·√n_in ≫ 7).
  const std::vector<float> x = normal_vector(static_cast<size_t>((c.x_per_slot ? c.slots : 1) * n_in), rng, 0.0f, 0.3f);
  const std::vector<float> route = normal_vector(static_cast<size_t>(c.slots), rng);
  const size_t n_y = static_cast<size_t>(c.slots * F);
  TestStream stream;
  DeviceBuffer dw = upload(w), dx = upload(x), droute = upload(route), dexp = upload(experts);
  DeviceBuffer dgu(static_cast<size_t>(c.slots * 2 * F) * 4), dref(n_y * 4), dgot((n_y + kGuard) * 4);
  ASSERT_TRUE(stream.ok() && dw.ok() && dx.ok() && dgu.ok() && dref.ok() && dgot.ok());

  ExpertMatvec m = expert_launch(c.type, dw.get(), n_in, 2 * F, n_expert, dexp.get<int32_t>(), c.slots, dx.get<float>(),
                                 c.x_per_slot ? n_in : 0);
  const MatvecTuning tuning{c.warps ? 32 : 0, c.warps};
  STATUS_ASSERT(matvec_experts(m, dgu.get<float>(), stream.get(), MatvecImpl::kAuto, tuning));
  SwigluArgs sw;
  sw.gate = dgu.get<float>();
  sw.up = dgu.get<float>() + F;
  sw.stride = 2 * F;
  sw.weights = c.weighted ? droute.get<float>() : nullptr;
  sw.out = dref.get<float>();
  sw.n_slots = c.slots;
  sw.F = F;
  sw.limit = c.limit;
  STATUS_ASSERT(swiglu(sw, stream.get()));

  m.swiglu_rows = true;
  m.act_weights = sw.weights;
  m.act_limit = c.limit;
  if (c.warps == 0) {
    EXPECT_TRUE(can_swiglu_rows(m));
  }
  CUDA_ASSERT(cudaMemsetAsync(dgot.get(), 0xFF, dgot.size(), stream.get()));
  STATUS_ASSERT(matvec_experts(m, dgot.get<float>(), stream.get(), MatvecImpl::kAuto, tuning));
  CUDA_ASSERT(cudaStreamSynchronize(stream.get()));

  int clamped = 0;
  const std::vector<float> gu = download<float>(dgu, static_cast<size_t>(c.slots * 2 * F));
  for (float v : gu) clamped += std::fabs(v) > 7.0f ? 1 : 0;
  EXPECT_GT(clamped, 0) << "no gate/up sum beyond the clamp: the case does not test it";
  expect_same_bits_and_guard(download<float>(dgot, n_y + kGuard), download<float>(dref, n_y), n_y, F, "swiglu_rows",
                             "matvec then swiglu");
}

TEST(CudaMatvecSwigluRows, SameBitsAsMatvecThenSwiglu) {
  const uint64_t seed = fresh_seed();
  SCOPED_TRACE(seed);
  std::mt19937_64 rng(seed);
  for (TensorType t : {TensorType::Q2_K, TensorType::IQ2_XXS, TensorType::Q4_K}) {
    for (int items : {8, 9}) {
      for (bool per_slot : {false, true}) {
        // One x per slot: 3 slots (the 2-bit kernel stages at most 32 768 activations per launch).
        const int slots = per_slot ? 3 : 6;
        expect_same_bits_as_matvec_then_swiglu({t, items, 48, slots, per_slot, 7.0f, true, 0}, rng);
        expect_same_bits_as_matvec_then_swiglu({t, items, 48, slots, per_slot, 0.0f, false, 0}, rng);
        if (HasFatalFailure()) return;
      }
      for (int warps : {1, 2, 4, 8}) expect_same_bits_as_matvec_then_swiglu({t, items, 80, 6, false, 7.0f, true, warps}, rng);
      if (HasFatalFailure()) return;
    }
    // Several rounds of W units per group: ≈ 3 units per group of W = 1 and 2 on a 132-SM GPU.
    for (int warps : {1, 2}) expect_same_bits_as_matvec_then_swiglu({t, 2, 2048, 24, false, 7.0f, true, warps}, rng);
    if (HasFatalFailure()) return;
  }
  // The model's decode shapes: 6 slots of IQ2_XXS (q2 mix) or Q4_K (q4 mix) 4096 -> 2·2048, one x.
  expect_same_bits_as_matvec_then_swiglu({TensorType::IQ2_XXS, 8, 2048, 6, false, 10.0f, true, 0}, rng);
  expect_same_bits_as_matvec_then_swiglu({TensorType::Q4_K, 16, 2048, 6, false, 10.0f, true, 0}, rng);
}

// What the launch refuses rather than compute something else: sums over slots, rows that do not
// pair into whole tiles, a fused `up`, and kernels other than the 2-bit one.
TEST(CudaMatvecSwigluRows, RefusesWhatItCannotPair) {
  std::mt19937_64 rng(fresh_seed());
  const Format& f = format_of(TensorType::Q2_K);
  const int64_t n_in = 512, n_out = 96;
  const std::vector<uint8_t> w = random_rows(f, n_in, n_out, rng);
  const std::vector<float> x = normal_vector(static_cast<size_t>(n_in), rng);
  const std::vector<int32_t> experts = {0};
  TestStream stream;
  DeviceBuffer dw = upload(w), dx = upload(x), dexp = upload(experts), dy(static_cast<size_t>(n_out) * 4);
  ExpertMatvec m = expert_launch(TensorType::Q2_K, dw.get(), n_in, n_out, 1, dexp.get<int32_t>(), 1, dx.get<float>());
  m.swiglu_rows = true;
  ASSERT_TRUE(can_swiglu_rows(m));
  STATUS_ASSERT(matvec_experts(m, dy.get<float>(), stream.get()));
  EXPECT_FALSE(matvec_experts_sum(m, dy.get<float>(), stream.get()).ok());
  EXPECT_FALSE(matvec_experts(m, dy.get<float>(), stream.get(), MatvecImpl::kReference).ok());
  EXPECT_FALSE(matvec_experts(m, dy.get<float>(), stream.get(), MatvecImpl::kAuto, {16, 1}).ok());
  m.n_out = 80;  // 40 row pairs: not whole tiles of 16
  EXPECT_FALSE(can_swiglu_rows(m));
  EXPECT_FALSE(matvec_experts(m, dy.get<float>(), stream.get()).ok());
  m.n_out = n_out;
  m.up = dx.get<float>();
  EXPECT_FALSE(can_swiglu_rows(m));
  EXPECT_FALSE(matvec_experts(m, dy.get<float>(), stream.get()).ok());
  m.up = nullptr;
  m.type = TensorType::BF16;  // the f32 kernel
  EXPECT_FALSE(can_swiglu_rows(m));
  EXPECT_FALSE(matvec_experts(m, dy.get<float>(), stream.get()).ok());
  CUDA_ASSERT(cudaStreamSynchronize(stream.get()));
}

}  // namespace
}  // namespace dsv4::cuda::testing
