// The Q8_0 row-tile kernel's fused activation staging. SwiGLU (matvec_swiglu for the shared
// expert's down projection; ExpertMatvec::up for the per-slot and summed forms) against the two
// launches it replaces: swiglu (moe.h, checked against the CPU in moe_test.cc) into a buffer, then
// the same matvec on that buffer (checked against the CPU in matvec_test.cc). Same bits are
// required: the staging computes each activation with the swiglu kernel's own function
// (swiglu.cuh) and the order of the matvec's operations does not change. Fresh random weights and
// gate/up values (some beyond the clamp), with and without clamp and route weights, gate and up
// interleaved (the forward's layout) or apart, every split of a row over warps, partial tiles.
// RMSNorm (matvec_rms_norm, q_b's input): below.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "cuda/device_util.h"
#include "cuda/matvec.h"
#include "cuda/matvec_harness.h"
#include "cuda/moe.h"
#include "cuda/norms.h"

namespace dsv4::cuda::testing {
namespace {

struct Q8FusedCase {
  int64_t F;  // n_in, a multiple of 256
  int64_t n_out;
  std::vector<int32_t> experts;  // empty: the dense form (matvec_swiglu)
  bool sum;
  bool interleaved;  // slot j's gate at j·2F, up at j·2F + F; else gate j·F, up slots·F + j·F
  float limit;
  bool weighted;
  int warps;  // MatvecTuning::warps_per_row (0: the default)
};

void expect_same_bits(const DeviceBuffer& got_d, const DeviceBuffer& want_d, int64_t n) {
  const std::vector<float> got = download<float>(got_d, static_cast<size_t>(n));
  const std::vector<float> want = download<float>(want_d, static_cast<size_t>(n));
  int bad = 0;
  for (int64_t i = 0; i < n; ++i) {
    if (!same_bits(got[static_cast<size_t>(i)], want[static_cast<size_t>(i)]) && ++bad <= 5) {
      ADD_FAILURE() << "output " << i << ": fused " << got[static_cast<size_t>(i)] << ", swiglu then matvec "
                    << want[static_cast<size_t>(i)];
    }
  }
  EXPECT_EQ(bad, 0) << "of " << n;
}

void run_q8_fused(const Q8FusedCase& c, std::mt19937_64& rng) {
  const bool dense = c.experts.empty();
  SCOPED_TRACE(::testing::Message() << c.F << " -> " << c.n_out << (dense ? " dense" : c.sum ? " summed" : " per slot")
                                    << " interleaved " << c.interleaved << " limit " << c.limit << " weighted "
                                    << c.weighted << " warps " << c.warps);
  const Format& f = format_of(TensorType::Q8_0);
  const int64_t n_expert = 5;
  const int slots = dense ? 1 : static_cast<int>(c.experts.size());
  const std::vector<uint8_t> w = random_rows(f, c.F, c.n_out * (dense ? 1 : n_expert), rng);
  const std::vector<float> gu = normal_vector(static_cast<size_t>(2 * slots * c.F), rng, 0.0f, 6.0f);
  const std::vector<float> route = normal_vector(static_cast<size_t>(slots), rng);
  TestStream stream;
  DeviceBuffer dw = upload(w), dgu = upload(gu), droute = upload(route);
  DeviceBuffer dexp = upload(dense ? std::vector<int32_t>{0} : c.experts);
  DeviceBuffer dmid(static_cast<size_t>(slots * c.F) * 4);
  const int64_t n_y = dense || c.sum ? c.n_out : slots * c.n_out;
  DeviceBuffer dref(static_cast<size_t>(n_y) * 4), dgot(static_cast<size_t>(n_y) * 4);
  ASSERT_TRUE(stream.ok() && dw.ok() && dgu.ok() && dexp.ok() && dmid.ok() && dref.ok() && dgot.ok());

  const float* gate = dgu.get<float>();
  const float* up = c.interleaved ? gate + c.F : gate + slots * c.F;
  const int64_t stride = c.interleaved ? 2 * c.F : c.F;
  const MatvecTuning tuning{c.warps ? 32 : 0, c.warps};
  const float* weights = c.weighted ? droute.get<float>() : nullptr;

  SwigluArgs sw;
  sw.gate = gate;
  sw.up = up;
  sw.stride = stride;
  sw.weights = weights;
  sw.out = dmid.get<float>();
  sw.n_slots = slots;
  sw.F = c.F;
  sw.limit = c.limit;
  STATUS_ASSERT(swiglu(sw, stream.get()));
  CUDA_ASSERT(cudaMemsetAsync(dgot.get(), 0xFF, dgot.size(), stream.get()));
  if (dense) {
    STATUS_ASSERT(matvec(TensorType::Q8_0, dw.get(), c.F, c.n_out, dmid.get<float>(), dref.get<float>(), stream.get(),
                         MatvecImpl::kAuto, tuning));
    STATUS_ASSERT(matvec_swiglu(TensorType::Q8_0, dw.get(), c.F, c.n_out, gate, up, c.limit, dgot.get<float>(),
                                stream.get(), tuning));
  } else {
    ExpertMatvec m = expert_launch(TensorType::Q8_0, dw.get(), c.F, c.n_out, n_expert, dexp.get<int32_t>(), slots,
                                   dmid.get<float>(), c.F);
    auto launch = [&](const ExpertMatvec& e, float* y) {
      return c.sum ? matvec_experts_sum(e, y, stream.get(), MatvecImpl::kAuto, tuning)
                   : matvec_experts(e, y, stream.get(), MatvecImpl::kAuto, tuning);
    };
    STATUS_ASSERT(launch(m, dref.get<float>()));
    m.x = gate;
    m.x_stride = stride;
    m.up = up;
    m.act_weights = weights;
    m.act_limit = c.limit;
    ASSERT_TRUE(can_fuse_swiglu(m));
    STATUS_ASSERT(launch(m, dgot.get<float>()));
  }
  CUDA_ASSERT(cudaStreamSynchronize(stream.get()));
  expect_same_bits(dgot, dref, n_y);
}

TEST(CudaMatvecQ8Fused, SwigluSameBitsAsSwigluThenMatvec) {
  const uint64_t seed = fresh_seed();
  SCOPED_TRACE(seed);
  std::mt19937_64 rng(seed);
  for (int warps : {0, 1, 2, 4, 8}) {
    for (bool interleaved : {true, false}) {
      run_q8_fused({256 * 8, 77, {}, false, interleaved, 7.0f, false, warps}, rng);
      run_q8_fused({256 * 8, 64, {}, false, interleaved, 0.0f, false, warps}, rng);
      run_q8_fused({256 * 9, 45, {4, 1, 1, 0, 3, 2}, false, interleaved, 7.0f, true, warps}, rng);
      run_q8_fused({256 * 9, 45, {4, 1, 1, 0, 3, 2}, true, interleaved, 7.0f, true, warps}, rng);
      if (HasFatalFailure()) return;
    }
  }
  // The shared expert's decode shape (2048 -> 4096, gate and up interleaved) with the default plan,
  // and a grid smaller than the work (blocks walk several tiles).
  run_q8_fused({2048, 4096, {}, false, true, 10.0f, false, 0}, rng);
  run_q8_fused({256, 32 * 1100 + 7, {}, false, true, 7.0f, false, 1}, rng);
}

// matvec_rms_norm (q_b's fused input) against rms_norm_rows (norms.h, checked against the CPU in
// norms_test.cc) then matvec, and against quant::dot_row of that normalised row on the CPU: within
// the matvec bar (1e-5·Σ|w·x|; the norm's scale may differ in its last bit, its sum taken in
// another order). Every split of a row over warps, partial tiles, large-magnitude inputs, and q_b's
// decode shape (1024 -> 32768) with the default plan.
void run_q8_rms_norm(int64_t n_in, int64_t n_out, int warps, float x_stddev, std::mt19937_64& rng) {
  SCOPED_TRACE(::testing::Message() << n_in << " -> " << n_out << " warps " << warps << " x stddev " << x_stddev);
  const Format& f = format_of(TensorType::Q8_0);
  const std::vector<uint8_t> w = random_rows(f, n_in, n_out, rng);
  const std::vector<float> x = normal_vector(static_cast<size_t>(n_in), rng, 0.5f, x_stddev);
  const std::vector<float> norm_w = normal_vector(static_cast<size_t>(n_in), rng, 1.0f, 0.3f);
  const float eps = 1e-6f;
  TestStream stream;
  DeviceBuffer dw = upload(w), dx = upload(x), dnw = upload(norm_w), dxn(static_cast<size_t>(n_in) * 4);
  DeviceBuffer dref(static_cast<size_t>(n_out) * 4), dgot(static_cast<size_t>(n_out) * 4);
  ASSERT_TRUE(stream.ok() && dw.ok() && dx.ok() && dnw.ok() && dxn.ok() && dref.ok() && dgot.ok());
  const MatvecTuning tuning{warps ? 32 : 0, warps};
  ASSERT_TRUE(can_fuse_rms_norm(TensorType::Q8_0, dw.get(), n_in, n_out, dx.get<float>(), dnw.get<float>()));
  STATUS_ASSERT(
      rms_norm_rows(dx.get<float>(), n_in, dnw.get<float>(), n_in, eps, dxn.get<float>(), n_in, 1, stream.get()));
  STATUS_ASSERT(matvec(TensorType::Q8_0, dw.get(), n_in, n_out, dxn.get<float>(), dref.get<float>(), stream.get(),
                       MatvecImpl::kAuto, tuning));
  CUDA_ASSERT(cudaMemsetAsync(dgot.get(), 0xFF, dgot.size(), stream.get()));
  STATUS_ASSERT(matvec_rms_norm(TensorType::Q8_0, dw.get(), n_in, n_out, dx.get<float>(), dnw.get<float>(), eps,
                                dgot.get<float>(), stream.get(), tuning));
  CUDA_ASSERT(cudaStreamSynchronize(stream.get()));
  const std::vector<float> xn = download<float>(dxn, static_cast<size_t>(n_in));
  const std::vector<float> want = download<float>(dref, static_cast<size_t>(n_out));
  const std::vector<float> got = download<float>(dgot, static_cast<size_t>(n_out));
  const int64_t rb = row_bytes(f, n_in);
  int bad = 0;
  for (int64_t o = 0; o < n_out && bad < 5; ++o) {
    const RowRef ref = row_reference(f, w.data() + o * rb, xn.data(), n_in);
    const double tol = 1e-5 * ref.scale + 1e-30, g = got[static_cast<size_t>(o)];
    if (!(std::abs(g - ref.cpu) <= tol) || !(std::abs(g - want[static_cast<size_t>(o)]) <= tol)) {
      ++bad;
      ADD_FAILURE() << "row " << o << ": fused " << g << ", norm then matvec " << want[static_cast<size_t>(o)]
                    << ", cpu " << ref.cpu << ", tol " << tol;
    }
  }
}

TEST(CudaMatvecQ8Fused, RmsNormMatchesNormThenMatvec) {
  const uint64_t seed = fresh_seed();
  SCOPED_TRACE(seed);
  std::mt19937_64 rng(seed);
  for (int warps : {0, 1, 2, 4}) {
    run_q8_rms_norm(1024, 77, warps, 1.0f, rng);
    run_q8_rms_norm(1024, 64, warps, 300.0f, rng);
    if (HasFatalFailure()) return;
  }
  run_q8_rms_norm(256 * 9, 45, 8, 1.0f, rng);
  run_q8_rms_norm(256, 32 * 1100 + 7, 1, 1.0f, rng);
  run_q8_rms_norm(1024, 32768, 0, 1.0f, rng);
  // Refused where the fused form cannot run: other types, misaligned norm weights, a null one.
  EXPECT_FALSE(can_fuse_rms_norm(TensorType::Q4_K, reinterpret_cast<const void*>(uintptr_t{256}), 1024, 64,
                                 reinterpret_cast<const float*>(uintptr_t{4096}),
                                 reinterpret_cast<const float*>(uintptr_t{8192})));
  EXPECT_FALSE(can_fuse_rms_norm(TensorType::Q8_0, reinterpret_cast<const void*>(uintptr_t{256}), 1024, 64,
                                 reinterpret_cast<const float*>(uintptr_t{4096}),
                                 reinterpret_cast<const float*>(uintptr_t{8196})));
  EXPECT_FALSE(can_fuse_rms_norm(TensorType::Q8_0, reinterpret_cast<const void*>(uintptr_t{256}), 1024, 64,
                                 reinterpret_cast<const float*>(uintptr_t{4096}), nullptr));
}

// The forward pass fuses the shared expert's down projection where this holds.
TEST(CudaMatvecQ8Fused, SharedExpertDownIsFusable) {
  ExpertMatvec m;
  m.type = TensorType::Q8_0;
  m.w = reinterpret_cast<const void*>(uintptr_t{256});
  m.n_in = 2048;
  m.n_out = 4096;
  m.n_expert = 1;
  m.n_slots = 1;
  m.x = reinterpret_cast<const float*>(uintptr_t{4096});
  m.up = m.x + 2048;
  EXPECT_TRUE(can_fuse_swiglu(m));
  m.n_in = 2048 + 32;  // rows the row-tile kernel does not take
  EXPECT_FALSE(can_fuse_swiglu(m));
  m.n_in = 2048;
  m.up = m.x + 2047;  // misaligned
  EXPECT_FALSE(can_fuse_swiglu(m));
}

}  // namespace
}  // namespace dsv4::cuda::testing
