// The routed experts of a decode step in one launch (matvec_experts_step, routed_experts_step.cu)
// against the two launches it replaces: matvec_experts of the gate/up with swiglu_rows (checked
// against matvec then swiglu in matvec_swiglu_rows_test.cc), then matvec_experts of the down
// projection over those values (checked against the CPU in matvec_test.cc). Same bits are required
// for both outputs: each group walks the same units with the same per-output operations, and
// stages the down's activations with the down launch's own staging. Fresh random weights (IQ2_XXS
// gate/up of 4096 → 2·2048, Q2_K down of 2048 → D), activations whose gate/up sums pass the
// clamp, route weights and expert ids (repeats included); the slot counts the launch takes on a
// GPU of 132 SMs (any that divide its groups); each case launched twice on the same counters,
// which must be zero after each launch. Outputs past the slots' rows must stay untouched.
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

constexpr int64_t kIn = 4096, kF = 2048, kExperts = 9;

struct StepCase {
  int slots;
  int64_t D;  // the down projection's rows
  float limit;
  bool weighted;
};

struct StepData {
  DeviceBuffer gu_w, dn_w, x, route, experts;
};

StepData make_data(const StepCase& c, std::mt19937_64& rng) {
  const std::vector<uint8_t> gu_w = random_rows(format_of(TensorType::IQ2_XXS), kIn, 2 * kF * kExperts, rng);
  const std::vector<uint8_t> dn_w = random_rows(format_of(TensorType::Q2_K), kF, c.D * kExperts, rng);
  // Scaled so that many gate/up sums pass the clamp.
  const std::vector<float> x = normal_vector(static_cast<size_t>(kIn), rng, 0.0f, 0.3f);
  const std::vector<float> route = normal_vector(static_cast<size_t>(c.slots), rng);
  std::vector<int32_t> experts(static_cast<size_t>(c.slots));
  for (auto& e : experts) e = static_cast<int32_t>(rng() % kExperts);
  return {upload(gu_w), upload(dn_w), upload(x), upload(route), upload(experts)};
}

ExpertMatvec gate_up_of(const StepCase& c, const StepData& d) {
  ExpertMatvec m = expert_launch(TensorType::IQ2_XXS, d.gu_w.get(), kIn, 2 * kF, kExperts, d.experts.get<int32_t>(),
                                 c.slots, d.x.get<float>());
  m.swiglu_rows = true;
  m.act_weights = c.weighted ? d.route.get<float>() : nullptr;
  m.act_limit = c.limit;
  return m;
}

ExpertMatvec down_of(const StepCase& c, const StepData& d, const float* mid) {
  return expert_launch(TensorType::Q2_K, d.dn_w.get(), kF, c.D, kExperts, d.experts.get<int32_t>(), c.slots, mid, kF);
}

void expect_same_bits_as_two_launches(const StepCase& c, std::mt19937_64& rng) {
  SCOPED_TRACE(::testing::Message() << "slots " << c.slots << " D " << c.D << " limit " << c.limit << " weighted "
                                    << c.weighted);
  const StepData d = make_data(c, rng);
  const size_t n_mid = static_cast<size_t>(c.slots * kF), n_y = static_cast<size_t>(c.slots * c.D);
  TestStream stream;
  DeviceBuffer ref_mid(n_mid * 4), ref_y(n_y * 4), mid((n_mid + kGuard) * 4), y((n_y + kGuard) * 4);
  DeviceBuffer counters((kExpertsStepMaxSlots + 1) * 4);
  ASSERT_TRUE(stream.ok() && d.gu_w.ok() && d.dn_w.ok() && ref_mid.ok() && ref_y.ok() && mid.ok() && y.ok() &&
              counters.ok());
  CUDA_ASSERT(cudaMemsetAsync(counters.get(), 0, counters.size(), stream.get()));

  STATUS_ASSERT(matvec_experts(gate_up_of(c, d), ref_mid.get<float>(), stream.get()));
  STATUS_ASSERT(matvec_experts(down_of(c, d, ref_mid.get<float>()), ref_y.get<float>(), stream.get()));
  CUDA_ASSERT(cudaStreamSynchronize(stream.get()));
  const ExpertMatvec gu = gate_up_of(c, d), dn = down_of(c, d, mid.get<float>());
  ASSERT_TRUE(can_run_experts_step(gu, dn, mid.get<float>()));
  const std::vector<float> want_mid = download<float>(ref_mid, n_mid), want_y = download<float>(ref_y, n_y);
  for (int launch = 0; launch < 2; ++launch) {
    SCOPED_TRACE(launch);
    CUDA_ASSERT(cudaMemsetAsync(mid.get(), 0xFF, mid.size(), stream.get()));
    CUDA_ASSERT(cudaMemsetAsync(y.get(), 0xFF, y.size(), stream.get()));
    STATUS_ASSERT(matvec_experts_step(gu, dn, mid.get<float>(), y.get<float>(), counters.get<unsigned>(), stream.get()));
    CUDA_ASSERT(cudaStreamSynchronize(stream.get()));
    expect_same_bits_and_guard(download<float>(mid, n_mid + kGuard), want_mid, n_mid, kF, "one launch", "two launches");
    expect_same_bits_and_guard(download<float>(y, n_y + kGuard), want_y, n_y, c.D, "one launch", "two launches");
    for (unsigned v : download<unsigned>(counters, kExpertsStepMaxSlots + 1)) ASSERT_EQ(v, 0u) << "counters left set";
  }
}

TEST(CudaRoutedExpertsStep, SameBitsAsTwoLaunches) {
  const uint64_t seed = fresh_seed();
  SCOPED_TRACE(seed);
  std::mt19937_64 rng(seed);
  // The model's decode step (6 slots, D = 4096), fewer and more slots, other down widths.
  expect_same_bits_as_two_launches({6, 4096, 10.0f, true}, rng);
  expect_same_bits_as_two_launches({6, 4096, 0.0f, false}, rng);
  expect_same_bits_as_two_launches({1, 1024, 7.0f, true}, rng);
  expect_same_bits_as_two_launches({4, 2080, 7.0f, true}, rng);
  expect_same_bits_as_two_launches({12, 512, 10.0f, true}, rng);
}

// What it refuses rather than compute something else: other types or shapes, an x per slot, the
// down not reading the gate/up's outputs, different expert ids, fused up or slot factors, too many
// slots, a slot count that does not divide the groups, null counters.
TEST(CudaRoutedExpertsStep, RefusesWhatItCannotRun) {
  std::mt19937_64 rng(fresh_seed());
  const StepCase c{6, 1024, 7.0f, true};
  const StepData d = make_data(c, rng);
  TestStream stream;
  DeviceBuffer mid(static_cast<size_t>(64 * kF) * 4), other(static_cast<size_t>(64 * kF) * 4);
  DeviceBuffer y(static_cast<size_t>(64 * c.D) * 4), counters((kExpertsStepMaxSlots + 1) * 4);
  DeviceBuffer experts2 = upload(std::vector<int32_t>(64, 1));
  ASSERT_TRUE(stream.ok() && mid.ok() && other.ok() && y.ok() && counters.ok() && experts2.ok());
  CUDA_ASSERT(cudaMemsetAsync(counters.get(), 0, counters.size(), stream.get()));
  const ExpertMatvec gu = gate_up_of(c, d), dn = down_of(c, d, mid.get<float>());
  float* m = mid.get<float>();
  ASSERT_TRUE(can_run_experts_step(gu, dn, m));
  auto refused = [&](const ExpertMatvec& a, const ExpertMatvec& b, const char* what) {
    EXPECT_FALSE(can_run_experts_step(a, b, m)) << what;
    EXPECT_FALSE(matvec_experts_step(a, b, m, y.get<float>(), counters.get<unsigned>(), stream.get()).ok()) << what;
  };
  ExpertMatvec a = gu, b = dn;
  a.swiglu_rows = false;
  refused(a, b, "gate/up without swiglu_rows");
  a = gu;
  a.x_stride = kIn;
  refused(a, b, "an x per slot");
  a = gu;
  b.x = other.get<float>();
  refused(a, b, "the down not reading the gate/up's outputs");
  b = dn;
  b.experts = experts2.get<int32_t>();
  refused(a, b, "other expert ids");
  b = dn;
  b.slot_scale = d.route.get<float>();
  refused(a, b, "slot factors");
  b = dn;
  b.up = other.get<float>();
  refused(a, b, "a fused up");
  b = dn;
  b.type = TensorType::Q4_K;
  refused(a, b, "another down type");
  b = dn;
  b.n_in = kF / 2;
  b.x_stride = kF / 2;
  refused(a, b, "another shape");
  b = dn;
  a.n_slots = b.n_slots = kExpertsStepMaxSlots + 1;
  refused(a, b, "too many slots");
  a.n_slots = b.n_slots = 7;  // 132 SMs × 2 groups is no multiple of 7
  refused(a, b, "slots that do not divide the groups");
  EXPECT_FALSE(matvec_experts_step(gu, dn, m, y.get<float>(), nullptr, stream.get()).ok()) << "null counters";
  CUDA_ASSERT(cudaStreamSynchronize(stream.get()));
  for (unsigned v : download<unsigned>(counters, kExpertsStepMaxSlots + 1)) EXPECT_EQ(v, 0u);
}

}  // namespace
}  // namespace dsv4::cuda::testing
