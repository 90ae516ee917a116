// cuda/matvec.h against the CPU reference (quant::dot_row) on fresh random inputs, for every
// weight format, every kernel (f32, tensor-core, row-tile, reference), odd shapes, every launch shape,
// the expert forms, persistent grids, wide-range activations, unaligned pointers, graph capture
// and bad arguments.
//
// Tolerance: f32 sums in a different order differ by rounding only, bounded by a multiple of
// ε·Σ_i |w_i·x_i| (for Q2_K/Q4_K, whose dots are factored as step·Σqx − offset·Σx, by
// ε·Σ_i (|step·q_i| + |offset|)·|x_i|). Each output must be within kTol of that scale from both the
// CPU's dot_row and the exact (double) dot of the dequantised row, plus, for the 2-bit formats, the
// bound of the row-tile kernel's fixed-point activations (fixed_point_bound). Outputs are poisoned with NaN
// before every launch, guard elements on both sides must stay poisoned, and a second launch must
// give the same bits (the harness: matvec_harness.h).
#include "cuda/matvec.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "cuda/check.h"
#include "cuda/cuda_test_util.h"
#include "cuda/matvec_harness.h"
#include "cuda/matvec_launch.h"
#include "cuda/norms.h"

namespace dsv4::cuda::testing {
namespace {

// Row lengths that exercise one block, several, partial stages and partial steps.
std::vector<int64_t> row_lengths(const Format& f) {
  switch (f.block_elems) {
    case 32: return {32, 96, 416, 1056, 4096};
    case 256: return {256, 768, 3328, 4096};
    default:
      if (f.type == TensorType::F32) return {1, 3, 4, 132, 1000, 4096};
      return {1, 3, 8, 100, 136, 1000, 4096};  // 1, 3, 100: rows not a multiple of 16 bytes
  }
}

// Stage length of the fast kernel, for shapes with a partial last stage.
int64_t stage_elems(TensorType t) { return detail::fast_stage_elems(t); }

TEST(CudaMatvec, EveryFormatOddShapesBothKernels) {
  for (const Format& f : all_formats()) {
    for (int64_t n_in : row_lengths(f)) {
      for (int64_t n_out : {1, 37, 515}) {
        for (MatvecImpl impl : {MatvecImpl::kAuto, MatvecImpl::kReference}) {
          run_dense({f.type, n_in, n_out, impl});
          if (HasFatalFailure()) return;
        }
      }
    }
  }
}

TEST(CudaMatvec, EveryLaunchShapeOfTheFastKernel) {
  for (const Format& f : all_formats()) {
    // Five stages, the last one short by a block (or by 4/8 elements for the plain types).
    const int64_t short_by = f.block_elems > 1 ? f.block_elems : (f.type == TensorType::F32 ? 4 : 8);
    const int64_t n_in = 5 * stage_elems(f.type) - short_by;
    for (int rows : {1, 2, 4}) {
      for (int warps : {1, 2, 4, 8}) {
        run_dense({f.type, n_in, 77, MatvecImpl::kFast, {rows, warps}});
        if (HasFatalFailure()) return;
      }
    }
  }
}

// The tensor-core kernel (rows_per_warp 16) for every split of a row over 1–16 warps, with a
// short last stage, a partial last unit of rows, and the expert forms.
TEST(CudaMatvec, TensorCoreKernelEveryWarpSplit) {
  for (TensorType t : {TensorType::Q8_0, TensorType::Q4_K, TensorType::Q2_K, TensorType::IQ2_XXS}) {
    const int64_t blk = format_of(t).block_elems;
    const int64_t n_in = 16 * blk * (blk == 32 ? 4 : 2) - blk;  // 16 stages, the last one short
    for (int warps : {1, 2, 4, 8, 16}) {
      run_dense({t, n_in, 77, MatvecImpl::kFast, {16, warps}});
      run_experts({t, 3 * blk, 45, 7, {6, 2, 2, 0, 5}, true, true, true, MatvecImpl::kFast, {16, warps}});
      if (HasFatalFailure()) return;
    }
    run_experts({t, 5 * blk, 33, 4, {3, 1, 0}, false, false, false, MatvecImpl::kFast, {16, 2}});
    run_experts({t, 5 * blk, 33, 4, {3, 1, 0}, true, true, false, MatvecImpl::kFast, {16, 0}});
    run_dense({t, 4 * blk * (blk == 32 ? 8 : 1), 50, MatvecImpl::kFast, {16, 0}, 0, 0, /*wide_x=*/true});
    if (HasFatalFailure()) return;
  }
}

// The Q8_0 row-tile kernel (rows_per_warp 32) for every split of a row over 1–8 warps: odd numbers
// of superblocks (warps take different counts), partial last tiles, the expert forms, wide-range
// activations and grids smaller than the work (blocks walk several tiles).
TEST(CudaMatvec, Q8RowTileKernelEveryWarpSplit) {
  const TensorType t = TensorType::Q8_0;
  for (int warps : {1, 2, 4, 8}) {
    run_dense({t, 256 * 13, 77, MatvecImpl::kFast, {32, warps}});
    run_dense({t, 256 * 8, 64, MatvecImpl::kFast, {32, warps}, 0, 0, /*wide_x=*/true});
    run_experts({t, 256 * 9, 45, 7, {6, 2, 2, 0, 5}, true, true, false, MatvecImpl::kFast, {32, warps}});
    run_experts({t, 256 * 9, 45, 7, {6, 2, 2, 0, 5}, true, true, true, MatvecImpl::kFast, {32, warps}});
    run_experts({t, 256 * 8, 33, 4, {3, 1, 0}, false, false, false, MatvecImpl::kFast, {32, warps}});
    if (HasFatalFailure()) return;
  }
  run_dense({t, 256, 32 * 1100 + 7, MatvecImpl::kFast, {32, 1}});
  run_dense({t, 512, 32 * 1100 + 7, MatvecImpl::kFast, {32, 2}});
  run_experts({t, 1024, 1024, 8, {0, 1, 2, 3, 4, 5, 6, 7}, true, false, false, MatvecImpl::kFast, {32, 0}});
  if (HasFatalFailure()) return;
  // The model's Q8_0 shapes pick it by default; shapes it cannot take are refused when asked for.
  for (auto [n_in, n_out] : {std::pair<int64_t, int64_t>{1024, 32768}, {4096, 1024}, {8192, 4096}, {4096, 129280}}) {
    auto plan = plan_matvec(t, n_in, n_out, 1);
    ASSERT_TRUE(plan.ok()) << plan.error().message;
    EXPECT_EQ(plan->rows_per_warp, 32) << n_in << " -> " << n_out;
  }
  EXPECT_FALSE(plan_matvec(t, 416, 64, 1, {32, 0}).ok());
  EXPECT_FALSE(plan_matvec(t, 1024, 64, 1, {32, 8}).ok());  // 4 superblocks: at most 4 warps
  EXPECT_FALSE(plan_matvec(t, 4096, 64, 1, {32, 16}).ok());
  EXPECT_FALSE(plan_matvec(TensorType::BF16, 4096, 64, 1, {32, 0}).ok());
  run_dense({t, 4096, 300, MatvecImpl::kAuto});
}

// The 2-bit row-tile kernel (rows_per_warp 32 for Q2_K, IQ2_XXS and Q4_K) for every split of a row over
// 1–8 warps: odd numbers of items (warps take different counts), partial last tiles, all three
// forms (dense, per slot, summed with route weights), wide-range activations, grids smaller than
// the work (blocks walk several tiles), and launches whose activations do not fit its staging.
TEST(CudaMatvec, TwoBitRowTileKernelEveryWarpSplit) {
  for (TensorType t : {TensorType::Q2_K, TensorType::IQ2_XXS, TensorType::Q4_K}) {
    const int64_t item = detail::rt2_item_elems(t);
    ASSERT_GT(item, 0);
    for (int warps : {1, 2, 4, 8}) {
      run_dense({t, item * 13, 77, MatvecImpl::kFast, {32, warps}});
      run_dense({t, item * 8, 64, MatvecImpl::kFast, {32, warps}, 0, 0, /*wide_x=*/true});
      run_experts({t, item * 9, 45, 7, {6, 2, 2}, true, true, false, MatvecImpl::kFast, {32, warps}});
      run_experts({t, item * 9, 45, 7, {6, 2, 2}, true, true, true, MatvecImpl::kFast, {32, warps}});
      run_experts({t, item * 8, 33, 4, {3, 1, 0}, false, false, false, MatvecImpl::kFast, {32, warps}});
      if (HasFatalFailure()) return;
    }
    run_dense({t, item, 32 * 1100 + 7, MatvecImpl::kFast, {32, 1}});
    run_experts({t, item * 2, 1024, 8, {0, 1, 2, 3, 4, 5, 6, 7}, true, false, false, MatvecImpl::kFast, {32, 0}});
    if (HasFatalFailure()) return;
  }
  // The experts' shapes pick it by default; shapes it cannot take are refused when asked for.
  EXPECT_EQ(plan_matvec(TensorType::IQ2_XXS, 4096, 2048, 6)->rows_per_warp, 32);
  EXPECT_EQ(plan_matvec(TensorType::Q2_K, 2048, 4096, 1)->rows_per_warp, 32);
  EXPECT_EQ(plan_matvec(TensorType::Q4_K, 4096, 4096, 6)->rows_per_warp, 32);
  EXPECT_EQ(plan_matvec(TensorType::Q4_K, 2048, 4096, 6)->rows_per_warp, 32);
  EXPECT_FALSE(plan_matvec(TensorType::IQ2_XXS, 768, 64, 1, {32, 0}).ok());   // not a multiple of 512
  EXPECT_FALSE(plan_matvec(TensorType::Q2_K, 1024, 64, 1, {32, 8}).ok());     // 4 items: at most 4 warps
  EXPECT_FALSE(plan_matvec(TensorType::IQ2_XXS, 4096, 64, 1, {32, 16}).ok());
  run_dense({TensorType::IQ2_XXS, 768, 300, MatvecImpl::kAuto});  // the tensor-core kernel instead
  // More activations than the kernel stages in shared memory (6 · 4096 > 16384): another kernel.
  run_experts({TensorType::IQ2_XXS, 4096, 64, 8, {1, 2, 3, 4, 5, 6}, true, true, true, MatvecImpl::kAuto});
}

TEST(CudaMatvec, ExpertSumEveryLaunchShape) {
  for (TensorType t : {TensorType::Q8_0, TensorType::IQ2_XXS, TensorType::Q2_K}) {
    for (int rows : {1, 2, 4}) {
      for (int warps : {1, 2, 4, 8}) {
        run_experts({t, 3 * stage_elems(t) - format_of(t).block_elems, 45, 7, {6, 2, 2, 0, 5},
                     true, true, true, MatvecImpl::kFast, {rows, warps}});
        if (HasFatalFailure()) return;
      }
    }
  }
}

TEST(CudaMatvec, Experts) {
  for (const Format& f : all_formats()) {
    const int64_t n_in = f.block_elems == 256 ? 768 : (f.block_elems == 32 ? 416 : 264);
    const std::vector<int32_t> experts = {3, 0, 8, 3, 5, 1};  // expert 3 twice
    for (MatvecImpl impl : {MatvecImpl::kAuto, MatvecImpl::kReference}) {
      // gate/up: one x for every slot; down: one x per slot, summed with route weights.
      run_experts({f.type, n_in, 130, 9, experts, false, false, false, impl});
      run_experts({f.type, n_in, 130, 9, experts, true, true, false, impl});
      run_experts({f.type, n_in, 130, 9, experts, true, true, true, impl});
      run_experts({f.type, n_in, 130, 9, experts, false, false, true, impl});
      run_experts({f.type, n_in, 1, 2, {1}, true, true, true, impl});
      if (HasFatalFailure()) return;
    }
  }
}

TEST(CudaMatvec, UnalignedPointersFallBackToTheReference) {
  for (TensorType t : {TensorType::Q8_0, TensorType::IQ2_XXS, TensorType::F16}) {
    run_dense({t, 512, 33, MatvecImpl::kAuto, {}, 2, 0});
    run_dense({t, 512, 33, MatvecImpl::kAuto, {}, 0, 1});
    if (HasFatalFailure()) return;
  }
  // The fast kernel refuses them, before launching anything.
  DeviceBuffer w(4096), x(4096), y(4096);
  ASSERT_TRUE(w.ok() && x.ok() && y.ok());
  EXPECT_FALSE(matvec(TensorType::Q8_0, w.bytes() + 2, 64, 4, x.get<float>(), y.get<float>(), nullptr,
                      MatvecImpl::kFast)
                   .ok());
  EXPECT_FALSE(matvec(TensorType::Q8_0, w.bytes(), 64, 4, x.get<float>() + 1, y.get<float>(), nullptr,
                      MatvecImpl::kFast)
                   .ok());
  EXPECT_FALSE(matvec(TensorType::F16, w.bytes(), 100, 4, x.get<float>(), y.get<float>(), nullptr,
                      MatvecImpl::kFast)
                   .ok());
  CUDA_ASSERT(cudaGetLastError());
  CUDA_ASSERT(cudaDeviceSynchronize());
}

TEST(CudaMatvec, BadArgumentsAreErrorsNotLaunches) {
  DeviceBuffer w(1 << 16), x(1 << 16), y(1 << 16), e(64);
  ASSERT_TRUE(w.ok() && x.ok() && y.ok() && e.ok());
  const float* xp = x.get<float>();
  float* yp = y.get<float>();
  EXPECT_FALSE(matvec(TensorType::Q8_K, w.get(), 256, 4, xp, yp, nullptr).ok());
  EXPECT_FALSE(matvec(TensorType::I32, w.get(), 256, 4, xp, yp, nullptr).ok());
  EXPECT_FALSE(matvec(TensorType::Q8_0, w.get(), 48, 4, xp, yp, nullptr).ok());
  EXPECT_FALSE(matvec(TensorType::Q2_K, w.get(), 128, 4, xp, yp, nullptr).ok());
  EXPECT_FALSE(matvec(TensorType::Q8_0, w.get(), 0, 4, xp, yp, nullptr).ok());
  EXPECT_FALSE(matvec(TensorType::Q8_0, w.get(), 64, 0, xp, yp, nullptr).ok());
  EXPECT_FALSE(matvec(TensorType::Q8_0, nullptr, 64, 4, xp, yp, nullptr).ok());
  EXPECT_FALSE(matvec(TensorType::Q8_0, w.get(), 64, 4, xp, yp, nullptr, MatvecImpl::kFast, {3, 0}).ok());
  EXPECT_FALSE(matvec(TensorType::Q8_0, w.get(), 64, 4, xp, yp, nullptr, MatvecImpl::kFast, {0, 32}).ok());
  EXPECT_FALSE(matvec(TensorType::Q8_0, w.get(), 64, 4, xp, yp, nullptr, MatvecImpl::kFast, {2, 16}).ok());
  EXPECT_FALSE(matvec(TensorType::F16, w.get(), 64, 4, xp, yp, nullptr, MatvecImpl::kFast, {16, 0}).ok());
  ExpertMatvec m;
  m.type = TensorType::Q8_0;
  m.w = w.get();
  m.n_in = 64;
  m.n_out = 4;
  m.n_expert = 2;
  m.experts = e.get<int32_t>();
  m.n_slots = 0;
  m.x = xp;
  EXPECT_FALSE(matvec_experts(m, yp, nullptr).ok());
  m.n_slots = 3;
  m.experts = nullptr;  // slot j is expert j: more slots than experts is an error
  EXPECT_FALSE(matvec_experts_sum(m, yp, nullptr).ok());
  const Status s = matvec(TensorType::Q8_0, w.get(), 48, 4, xp, yp, nullptr);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("Q8_0"), std::string::npos) << s.message();
  CUDA_ASSERT(cudaGetLastError());
  CUDA_ASSERT(cudaDeviceSynchronize());
}

// The MoE launch of a decode step is captured once into a graph and replayed: same bits as a
// direct launch, and the graph reads the expert list from device memory at replay time.
// Programmatic dependent launch (pdl.cuh): a dense matvec starts fetching weights while the kernel
// before it runs, so it must still read that kernel's output. Here the producer (rms_norm_rows,
// itself PDL-launched) writes the activations right before the matvec, after they were poisoned
// with NaN; direct launches and a captured graph, each replayed several times.
TEST(CudaMatvec, DenseLaunchWaitsForTheKernelBeforeIt) {
  STATUS_ASSERT(prepare_matvec());
  const Format& f = format_of(TensorType::Q8_0);
  std::mt19937_64 rng(fresh_seed());
  const int64_t n_in = 4096, n_out = 1024;
  const std::vector<uint8_t> w = random_rows(f, n_in, n_out, rng);
  const std::vector<float> raw = gaussian(n_in, rng);
  DeviceBuffer dw(w.size()), draw(n_in * 4), dx(n_in * 4), dy(n_out * 4);
  ASSERT_TRUE(dw.ok() && draw.ok() && dx.ok() && dy.ok());
  CUDA_ASSERT(cudaMemcpy(dw.get(), w.data(), w.size(), cudaMemcpyHostToDevice));
  CUDA_ASSERT(cudaMemcpy(draw.get(), raw.data(), raw.size() * 4, cudaMemcpyHostToDevice));
  CUDA_ASSERT(cudaDeviceSynchronize());
  Stream s;
  ASSERT_TRUE(s.ok());
  auto enqueue = [&]() -> Status {
    DSV4_CUDA_TRY(cudaMemsetAsync(dx.get(), 0xFF, n_in * 4, s.get()));
    DSV4_CUDA_TRY(cudaMemsetAsync(dy.get(), 0xFF, n_out * 4, s.get()));
    DSV4_TRY(rms_norm_rows(draw.get<float>(), n_in, nullptr, n_in, 1e-6f, dx.get<float>(), n_in, 1, s.get()));
    return matvec(f.type, dw.get(), n_in, n_out, dx.get<float>(), dy.get<float>(), s.get());
  };
  cudaGraph_t graph = nullptr;
  cudaGraphExec_t exec = nullptr;
  CUDA_ASSERT(cudaStreamBeginCapture(s.get(), cudaStreamCaptureModeThreadLocal));
  const Status captured = enqueue();
  CUDA_ASSERT(cudaStreamEndCapture(s.get(), &graph));
  STATUS_ASSERT(captured);
  CUDA_ASSERT(cudaGraphInstantiate(&exec, graph, 0));
  for (int round = 0; round < 8; ++round) {
    if (round % 2 == 0) {
      STATUS_ASSERT(enqueue());
    } else {
      CUDA_ASSERT(cudaGraphLaunch(exec, s.get()));
    }
    CUDA_ASSERT(cudaStreamSynchronize(s.get()));
    std::vector<float> x(static_cast<size_t>(n_in)), y(static_cast<size_t>(n_out));
    CUDA_ASSERT(cudaMemcpy(x.data(), dx.get(), x.size() * 4, cudaMemcpyDeviceToHost));
    CUDA_ASSERT(cudaMemcpy(y.data(), dy.get(), y.size() * 4, cudaMemcpyDeviceToHost));
    for (float v : x) ASSERT_TRUE(std::isfinite(v)) << "round " << round;
    int bad = 0;
    for (int64_t o = 0; o < n_out; ++o) {
      const RowRef r = row_reference(f, w.data() + o * row_bytes(f, n_in), x.data(), n_in);
      if (!(std::fabs(y[static_cast<size_t>(o)] - r.exact) <= kTol * r.scale + 1e-30)) ++bad;
    }
    EXPECT_EQ(bad, 0) << "round " << round << (round % 2 ? " (graph)" : " (direct)");
  }
  CUDA_ASSERT(cudaGraphExecDestroy(exec));
  CUDA_ASSERT(cudaGraphDestroy(graph));
}

TEST(CudaMatvec, GraphCaptureAndReplay) {
  STATUS_ASSERT(prepare_matvec());
  const Format& f = format_of(TensorType::IQ2_XXS);
  std::mt19937_64 rng(fresh_seed());
  const int64_t n_in = 1024, n_out = 96, n_expert = 8;
  const std::vector<uint8_t> w = random_rows(f, n_in, n_out * n_expert, rng);
  const std::vector<float> x = gaussian(4 * n_in, rng), scale = gaussian(4, rng);
  const std::vector<int32_t> ids_a = {1, 7, 2, 4}, ids_b = {0, 3, 3, 6};
  DeviceBuffer dw(w.size()), dx(x.size() * 4), de(16), ds(16), y1(n_out * 4), y2(n_out * 4);
  ASSERT_TRUE(dw.ok() && dx.ok() && de.ok() && ds.ok() && y1.ok() && y2.ok());
  CUDA_ASSERT(cudaMemcpy(dw.get(), w.data(), w.size(), cudaMemcpyHostToDevice));
  CUDA_ASSERT(cudaMemcpy(dx.get(), x.data(), x.size() * 4, cudaMemcpyHostToDevice));
  CUDA_ASSERT(cudaMemcpy(ds.get(), scale.data(), 16, cudaMemcpyHostToDevice));
  CUDA_ASSERT(cudaDeviceSynchronize());
  ExpertMatvec m = expert_launch(f.type, dw.get(), n_in, n_out, n_expert, de.get<int32_t>(), 4, dx.get<float>(), n_in);
  m.slot_scale = ds.get<float>();
  Stream s;
  ASSERT_TRUE(s.ok());
  cudaGraph_t graph = nullptr;
  cudaGraphExec_t exec = nullptr;
  CUDA_ASSERT(cudaStreamBeginCapture(s.get(), cudaStreamCaptureModeThreadLocal));
  const Status captured = matvec_experts_sum(m, y1.get<float>(), s.get());
  CUDA_ASSERT(cudaStreamEndCapture(s.get(), &graph));
  STATUS_ASSERT(captured);
  CUDA_ASSERT(cudaGraphInstantiate(&exec, graph, 0));
  for (const auto* ids : {&ids_a, &ids_b}) {
    CUDA_ASSERT(cudaMemcpy(de.get(), ids->data(), 16, cudaMemcpyHostToDevice));
    CUDA_ASSERT(cudaMemset(y1.get(), 0xFF, n_out * 4));
    CUDA_ASSERT(cudaMemset(y2.get(), 0xFF, n_out * 4));
    CUDA_ASSERT(cudaDeviceSynchronize());
    CUDA_ASSERT(cudaGraphLaunch(exec, s.get()));
    STATUS_ASSERT(matvec_experts_sum(m, y2.get<float>(), s.get()));
    CUDA_ASSERT(cudaStreamSynchronize(s.get()));
    std::vector<float> a(static_cast<size_t>(n_out)), b(static_cast<size_t>(n_out));
    CUDA_ASSERT(cudaMemcpy(a.data(), y1.get(), n_out * 4, cudaMemcpyDeviceToHost));
    CUDA_ASSERT(cudaMemcpy(b.data(), y2.get(), n_out * 4, cudaMemcpyDeviceToHost));
    for (int64_t o = 0; o < n_out; ++o) {
      ASSERT_TRUE(std::isfinite(a[static_cast<size_t>(o)])) << o;
      ASSERT_TRUE(same_bits(a[static_cast<size_t>(o)], b[static_cast<size_t>(o)])) << o;
    }
    // And the value is right: slot sums against the CPU.
    for (int64_t o = 0; o < n_out; ++o) {
      Expected e;
      for (int j = 0; j < 4; ++j) {
        const RowRef r = row_reference(f, w.data() + ((*ids)[static_cast<size_t>(j)] * n_out + o) * row_bytes(f, n_in),
                                       x.data() + j * n_in, n_in);
        e.cpu += scale[static_cast<size_t>(j)] * r.cpu;
        e.scale += std::fabs(scale[static_cast<size_t>(j)]) * r.scale;
        e.fixed += std::fabs(scale[static_cast<size_t>(j)]) * fixed_point_bound(f, r);
      }
      EXPECT_NEAR(a[static_cast<size_t>(o)], e.cpu, kTol * e.scale + e.fixed + 1e-30) << o;
    }
  }
  cudaGraphExecDestroy(exec);
  cudaGraphDestroy(graph);
}

TEST(CudaMatvec, DefaultPlans) {
  // Many rows: two warps share a row; the grid is at most what fits the GPU at once.
  int sms = 0;
  CUDA_ASSERT(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0));
  auto p = plan_matvec(TensorType::Q8_0, 4096, 129280, 1);
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->warps_per_row, 2);
  EXPECT_GE(p->blocks, sms);
  EXPECT_LE(p->blocks, 16 * sms);
  // Short rows: never more warps per row than stages (f32 kernel: F16 stages are 256 columns).
  ASSERT_EQ(stage_elems(TensorType::F16), 256);
  p = plan_matvec(TensorType::F16, 512, 32768, 1);
  ASSERT_TRUE(p.ok());
  EXPECT_LE(p->warps_per_row, 2);
  // Few rows: a row split over all 8 warps of a block.
  p = plan_matvec(TensorType::Q8_0, 4096, 512, 1);
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->warps_per_row, 8);
  // The row-tile kernels for Q8_0 rows of a multiple of 256 and for the experts' formats (Q2_K,
  // IQ2_XXS, Q4_K), the f32 kernel for the plain types (docs/PERF.md).
  EXPECT_EQ(p->rows_per_warp, 32);
  EXPECT_EQ(plan_matvec(TensorType::Q8_0, 4096, 129280, 1)->rows_per_warp, 32);
  EXPECT_EQ(plan_matvec(TensorType::Q4_K, 4096, 2048, 6)->rows_per_warp, 32);
  EXPECT_EQ(plan_matvec(TensorType::Q2_K, 2048, 4096, 1)->rows_per_warp, 32);
  EXPECT_EQ(plan_matvec(TensorType::IQ2_XXS, 4096, 2048, 6)->rows_per_warp, 32);
  EXPECT_LE(plan_matvec(TensorType::F16, 4096, 512, 1)->rows_per_warp, 4);
  EXPECT_LE(plan_matvec(TensorType::F16, 4096, 2048, 1)->rows_per_warp, 4);
  // The F16 row tiles from 4096 rows (one slot): the indexer's q_b.
  p = plan_matvec(TensorType::F16, 1024, 8192, 1);
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->rows_per_warp, 32);
  EXPECT_EQ(p->warps_per_row, 8);
  EXPECT_LE(p->blocks, sms);
  EXPECT_LE(plan_matvec(TensorType::F16, 1024, 8192, 2)->rows_per_warp, 4);
  // 24 rows: one row per unit, so that 24 groups stream them.
  p = plan_matvec(TensorType::F16, 16384, 24, 1);
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->rows_per_warp, 1);
  EXPECT_EQ(p->blocks, 24);
  // The split of a row depends on the shape, not on the number of expert slots.
  auto one = plan_matvec(TensorType::IQ2_XXS, 4096, 2048, 1), six = plan_matvec(TensorType::IQ2_XXS, 4096, 2048, 6);
  ASSERT_TRUE(one.ok() && six.ok());
  EXPECT_EQ(one->warps_per_row, six->warps_per_row);
  EXPECT_GE(six->blocks, one->blocks);
  EXPECT_FALSE(plan_matvec(TensorType::I32, 4096, 512, 1).ok());
}

// More units than the grid has groups: every group walks several units, its ring of weight
// buffers running on from one unit into the next (and, with W = 8 over one-stage rows, warps
// without stages still meet their group at every unit's barrier).
TEST(CudaMatvec, ManyRowsWalkAPersistentGrid) {
  run_dense({TensorType::F16, 8, 40000, MatvecImpl::kFast, {1, 1}});
  run_dense({TensorType::Q8_0, 32, 20000, MatvecImpl::kFast, {1, 8}});
  run_dense({TensorType::Q2_K, 256, 9000, MatvecImpl::kFast, {2, 2}});
  run_dense({TensorType::IQ2_XXS, 512, 9000, MatvecImpl::kFast, {4, 4}});
  const std::vector<int32_t> experts = {5, 1, 7, 1, 0, 6};
  run_experts({TensorType::IQ2_XXS, 256, 3000, 8, experts, false, false, false, MatvecImpl::kFast, {1, 1}});
  run_experts({TensorType::Q4_K, 256, 3000, 8, experts, true, true, true, MatvecImpl::kFast, {2, 1}});
  run_experts({TensorType::Q2_K, 512, 2500, 8, experts, true, true, false, MatvecImpl::kFast, {4, 2}});
  // The tensor-core kernel: one block per SM, so a few thousand rows already make every group walk.
  run_dense({TensorType::Q8_0, 32, 20000, MatvecImpl::kFast, {16, 16}});
  run_dense({TensorType::IQ2_XXS, 512, 9000, MatvecImpl::kFast, {16, 1}});
  run_experts({TensorType::Q2_K, 512, 2500, 8, experts, true, true, true, MatvecImpl::kFast, {16, 2}});
  run_experts({TensorType::Q4_K, 256, 3000, 8, experts, false, false, false, MatvecImpl::kFast, {16, 4}});
}

// The F16 row-tile kernel (matvec_f16.cu) with every split of a row over warps: partial tiles,
// one to many items per row, units walked by a persistent grid, and one expert slot with its
// factor.
TEST(CudaMatvec, F16RowTileKernelEveryWarpSplit) {
  for (const auto& [n_in, n_out] : std::vector<std::pair<int64_t, int64_t>>{{64, 33}, {192, 70}, {512, 4100}}) {
    for (int w : {1, 2, 4, 8}) {
      if (w > n_in / 64) continue;
      run_dense({TensorType::F16, n_in, n_out, MatvecImpl::kFast, {32, w}});
      if (HasFatalFailure()) return;
    }
  }
  run_dense({TensorType::F16, 256, 40000, MatvecImpl::kFast, {32, 2}});
  run_dense({TensorType::F16, 128, 4096, MatvecImpl::kAuto, {}, 16, 4});  // weights and x 16 bytes off their allocations
  run_experts({TensorType::F16, 256, 4096, 3, {2}, false, true, false});
  run_experts({TensorType::F16, 256, 4096, 3, {1}, false, false, false, MatvecImpl::kFast, {32, 4}});
}

// Decode-size shapes (tens of MB): what the engine will run. Named "Large" so slow tools (the
// memory checker) can skip them with --gtest_filter=-*Large*.
TEST(CudaMatvecLarge, DenseDecodeShapes) {
  run_dense({TensorType::Q8_0, 4096, 8192});
  run_dense({TensorType::Q8_0, 8192, 4096});
  run_dense({TensorType::Q8_0, 1024, 32768});
  run_dense({TensorType::Q8_0, 4096, 1024});
  run_dense({TensorType::F16, 4096, 2048});
  run_dense({TensorType::F16, 1024, 8192});
  run_dense({TensorType::F16, 16384, 24});
  run_dense({TensorType::Q4_K, 4096, 2048});
  run_dense({TensorType::IQ2_XXS, 4096, 2048});
}

// The LM head: the largest matrix, many rounds of the persistent grid.
TEST(CudaMatvecLarge, LmHead) { run_dense({TensorType::Q8_0, 4096, 129280}); }

TEST(CudaMatvecLarge, ExpertDecodeShapes) {
  const std::vector<int32_t> experts = {11, 3, 15, 0, 7, 9};
  run_experts({TensorType::IQ2_XXS, 4096, 2048, 16, experts, false, false, false});
  run_experts({TensorType::Q2_K, 2048, 4096, 16, experts, true, true, true});
  // The decode's down projection: per slot, one x per slot (each block stages only its slots').
  run_experts({TensorType::Q2_K, 2048, 4096, 16, experts, true, false, false});
  run_experts({TensorType::Q4_K, 2048, 4096, 16, experts, true, true, true});
  run_experts({TensorType::Q4_K, 4096, 2048, 16, experts, false, false, false});
  run_experts({TensorType::IQ2_XXS, 4096, 2048, 16, experts, false, false, false, MatvecImpl::kFast, {4, 4}});
  run_experts({TensorType::Q2_K, 2048, 4096, 16, experts, true, true, true, MatvecImpl::kFast, {2, 2}});
}

}  // namespace
}  // namespace dsv4::cuda::testing
