// The routed experts' down projection with the SwiGLU fused into the 2-bit kernel's activation
// staging (ExpertMatvec::up, matvec.h) against the two launches it replaces: swiglu (moe.h, itself
// checked against the CPU in moe_test.cc) into a buffer, then matvec_experts on that buffer
// (checked against the CPU in matvec_test.cc). Same bits are required: the fused staging computes
// each activation with the very function the swiglu kernel uses, and the matvec's order of
// operations does not change. Fresh random weights, gate and up rows (some beyond the clamp),
// route weights; both layouts the forward pass has (gate and up interleaved per slot, or two
// arrays), with and without clamp and weights, per slot and summed, every split of a row over warps.
#include <gtest/gtest.h>

#include <cstdint>
#include <random>
#include <vector>

#include "cuda/device_util.h"
#include "cuda/matvec.h"
#include "cuda/matvec_harness.h"
#include "cuda/matvec_launch.h"
#include "cuda/moe.h"

namespace dsv4::cuda::testing {
namespace {

struct FusedCase {
  TensorType type;
  int64_t n_in, n_out;
  bool interleaved;  // slot j's gate at j·2F, its up at j·2F + F; else gate j·F, up slots·F + j·F
  float limit;
  bool weighted;
  bool sum;
  int warps;  // MatvecTuning::warps_per_row (0: the default)
};

void run_fused(const FusedCase& c, std::mt19937_64& rng) {
  SCOPED_TRACE(::testing::Message() << gguf::type_name(c.type) << " interleaved " << c.interleaved << " limit "
                                    << c.limit << " weighted " << c.weighted << " sum " << c.sum << " warps "
                                    << c.warps);
  const Format& f = format_of(c.type);
  const int64_t F = c.n_in, n_out = c.n_out, n_expert = 7;
  const std::vector<int32_t> experts = {4, 1, 1, 0, 6, 2};
  const int slots = static_cast<int>(experts.size());
  const std::vector<uint8_t> w = random_rows(f, F, n_out * n_expert, rng);
  const std::vector<float> gu = normal_vector(static_cast<size_t>(2 * slots * F), rng, 0.0f, 6.0f);
  const std::vector<float> route = normal_vector(static_cast<size_t>(slots), rng);
  TestStream stream;
  DeviceBuffer dw = upload(w), dgu = upload(gu), droute = upload(route), dexp = upload(experts);
  DeviceBuffer dmid(static_cast<size_t>(slots * F) * 4);
  const int64_t n_y = c.sum ? n_out : slots * n_out;
  DeviceBuffer dref(static_cast<size_t>(n_y) * 4), dgot(static_cast<size_t>(n_y) * 4);
  ASSERT_TRUE(stream.ok() && dw.ok() && dgu.ok() && dmid.ok() && dref.ok() && dgot.ok());

  const float* gate = dgu.get<float>();
  const float* up = c.interleaved ? gate + F : gate + slots * F;
  const int64_t stride = c.interleaved ? 2 * F : F;
  const MatvecTuning tuning{c.warps ? 32 : 0, c.warps};
  auto expert_matvec = [&](const float* x, int64_t x_stride, float* y, const ExpertMatvec* fused) {
    ExpertMatvec m = fused ? *fused : ExpertMatvec{};
    m.type = c.type;
    m.w = dw.get();
    m.n_in = F;
    m.n_out = n_out;
    m.n_expert = n_expert;
    m.experts = dexp.get<int32_t>();
    m.n_slots = slots;
    m.x = x;
    m.x_stride = x_stride;
    return c.sum ? matvec_experts_sum(m, y, stream.get(), MatvecImpl::kAuto, tuning)
                 : matvec_experts(m, y, stream.get(), MatvecImpl::kAuto, tuning);
  };

  SwigluArgs sw;
  sw.gate = gate;
  sw.up = up;
  sw.stride = stride;
  sw.weights = c.weighted ? droute.get<float>() : nullptr;
  sw.out = dmid.get<float>();
  sw.n_slots = slots;
  sw.F = F;
  sw.limit = c.limit;
  STATUS_ASSERT(swiglu(sw, stream.get()));
  STATUS_ASSERT(expert_matvec(dmid.get<float>(), F, dref.get<float>(), nullptr));

  ExpertMatvec fused;
  fused.up = up;
  fused.act_weights = sw.weights;
  fused.act_limit = c.limit;
  CUDA_ASSERT(cudaMemsetAsync(dgot.get(), 0xFF, dgot.size(), stream.get()));
  STATUS_ASSERT(expert_matvec(gate, stride, dgot.get<float>(), &fused));
  CUDA_ASSERT(cudaStreamSynchronize(stream.get()));

  const std::vector<float> want = download<float>(dref, static_cast<size_t>(n_y));
  const std::vector<float> got = download<float>(dgot, static_cast<size_t>(n_y));
  int bad = 0;
  for (int64_t i = 0; i < n_y; ++i) {
    if (!same_bits(got[static_cast<size_t>(i)], want[static_cast<size_t>(i)]) && ++bad <= 5) {
      ADD_FAILURE() << "output " << i << ": fused " << got[static_cast<size_t>(i)] << ", swiglu then matvec "
                    << want[static_cast<size_t>(i)];
    }
  }
  EXPECT_EQ(bad, 0) << "of " << n_y;
}

TEST(CudaMoeFusedDown, SameBitsAsSwigluThenMatvec) {
  const uint64_t seed = fresh_seed();
  SCOPED_TRACE(seed);
  std::mt19937_64 rng(seed);
  for (TensorType t : {TensorType::Q2_K, TensorType::IQ2_XXS, TensorType::Q4_K}) {
    const int64_t n_in = 4 * detail::rt2_item_elems(t);
    for (bool interleaved : {true, false}) {
      for (bool sum : {false, true}) {
        run_fused({t, n_in, 70, interleaved, 7.0f, true, sum, 0}, rng);
        run_fused({t, n_in, 70, interleaved, 0.0f, false, sum, 0}, rng);
        if (HasFatalFailure()) return;
      }
    }
    for (int warps : {1, 2, 4}) run_fused({t, n_in, 70, true, 7.0f, true, false, warps}, rng);
    if (HasFatalFailure()) return;
  }
  // The model's decode shapes: 6 slots of 2048 -> 4096 Q2_K (q2 mix) or Q4_K (q4 mix), many units
  // per group.
  run_fused({TensorType::Q2_K, 2048, 4096, true, 10.0f, true, false, 0}, rng);
  run_fused({TensorType::Q4_K, 2048, 4096, true, 10.0f, true, false, 0}, rng);
}

// The decode shape of the model (6 slots of 2048 -> 4096 Q2_K, gate/up interleaved): what the
// forward pass fuses.
TEST(CudaMoeFusedDown, DecodeShapeIsFusable) {
  ExpertMatvec m;
  m.type = TensorType::Q2_K;
  m.w = reinterpret_cast<const void*>(uintptr_t{256});
  m.n_in = 2048;
  m.n_out = 4096;
  m.n_expert = 256;
  m.n_slots = 6;
  m.x = reinterpret_cast<const float*>(uintptr_t{4096});
  m.x_stride = 4096;
  m.up = m.x + 2048;
  EXPECT_TRUE(can_fuse_swiglu(m));
  m.type = TensorType::BF16;  // the f32 kernel: not fused
  EXPECT_FALSE(can_fuse_swiglu(m));
}

// Launches that cannot fuse are refused, not run without the activation.
TEST(CudaMoeFusedDown, OtherKernelsRefuseTheFusedForm) {
  std::mt19937_64 rng(fresh_seed());
  const Format& f = format_of(TensorType::BF16);
  const int64_t F = 512, n_out = 40;
  const std::vector<uint8_t> w = random_rows(f, F, n_out, rng);
  const std::vector<float> gu = normal_vector(static_cast<size_t>(2 * F), rng);
  const std::vector<int32_t> experts = {0};
  TestStream stream;
  DeviceBuffer dw = upload(w), dgu = upload(gu), dexp = upload(experts), dy(static_cast<size_t>(n_out) * 4);
  ExpertMatvec m = expert_launch(TensorType::BF16, dw.get(), F, n_out, 1, dexp.get<int32_t>(), 1, dgu.get<float>(), 2 * F);
  m.up = dgu.get<float>() + F;
  EXPECT_FALSE(can_fuse_swiglu(m));
  EXPECT_FALSE(matvec_experts(m, dy.get<float>(), stream.get()).ok());
  EXPECT_FALSE(matvec_experts(m, dy.get<float>(), stream.get(), MatvecImpl::kReference).ok());
  m.type = TensorType::Q2_K;  // the 2-bit kernel takes it, but not through the reference kernel
  m.w = dw.get();
  EXPECT_FALSE(matvec_experts(m, dy.get<float>(), stream.get(), MatvecImpl::kReference).ok());
}

}  // namespace
}  // namespace dsv4::cuda::testing
