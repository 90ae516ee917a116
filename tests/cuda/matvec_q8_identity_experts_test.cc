// Expert launches without an id list (ExpertMatvec::experts == null: slot j is expert j), as the
// decode step's grouped output projection runs: the Q8_0 row-tile launch then fetches its weights
// before the kernel launched just before it has finished (PDL), so it must still read that kernel's
// output as activations. The producer (rms_norm_rows, itself PDL-launched) writes the G groups'
// activations right before the grouped matvec, after they were poisoned with NaN; direct launches
// and a captured graph, several times each. Every round must give the bits of the same launch with
// an explicit identity id list (which waits before its first fetch), and that one must be within
// the matvec bar (1e-5·Σ|w·x|, tests/cuda/matvec_test.cc) of the CPU and of the exact dot. Fresh
// random weights and activations; 8 groups of the model's out_a shape cut down, a partial last tile.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <numeric>
#include <random>
#include <vector>

#include "cuda/check.h"
#include "cuda/device_util.h"
#include "cuda/matvec.h"
#include "cuda/matvec_harness.h"
#include "cuda/norms.h"

namespace dsv4::cuda::testing {
namespace {

TEST(CudaMatvecQ8IdentityExperts, GroupedLaunchWithoutIdsWaitsForItsActivations) {
  STATUS_ASSERT(prepare_matvec());
  const Format& f = format_of(TensorType::Q8_0);
  const uint64_t seed = fresh_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937_64 rng(seed);
  const int G = 8;
  const int64_t n_in = 2048, n_out = 512 + 7;
  const int64_t rb = row_bytes(f, n_in);
  const std::vector<uint8_t> w = random_rows(f, n_in, n_out * G, rng);
  const std::vector<float> raw = normal_vector(static_cast<size_t>(G * n_in), rng, 0.0f, 3.0f);
  std::vector<int32_t> ids(G);
  std::iota(ids.begin(), ids.end(), 0);
  DeviceBuffer dw = upload(w), draw = upload(raw), dids = upload(ids);
  DeviceBuffer dx(G * n_in * 4), dy(G * n_out * 4), dy_ref(G * n_out * 4);
  ASSERT_TRUE(dw.ok() && draw.ok() && dids.ok() && dx.ok() && dy.ok() && dy_ref.ok());
  CUDA_ASSERT(cudaDeviceSynchronize());
  TestStream s;
  ASSERT_TRUE(s.ok());

  const ExpertMatvec m = expert_launch(f.type, dw.get(), n_in, n_out, G, nullptr, G, dx.get<float>(), n_in);
  auto enqueue = [&](const int32_t* experts, float* y) -> Status {
    DSV4_CUDA_TRY(cudaMemsetAsync(dx.get(), 0xFF, G * n_in * 4, s.get()));
    DSV4_CUDA_TRY(cudaMemsetAsync(y, 0xFF, G * n_out * 4, s.get()));
    DSV4_TRY(rms_norm_rows(draw.get<float>(), n_in, nullptr, n_in, 1e-6f, dx.get<float>(), n_in, G, s.get()));
    ExpertMatvec e = m;
    e.experts = experts;
    return matvec_experts(e, y, s.get());
  };

  // The reference: the same launch with ids, waiting before its first fetch.
  STATUS_ASSERT(enqueue(dids.get<int32_t>(), dy_ref.get<float>()));
  CUDA_ASSERT(cudaStreamSynchronize(s.get()));
  const std::vector<float> x = download<float>(dx, static_cast<size_t>(G * n_in));
  const std::vector<float> want = download<float>(dy_ref, static_cast<size_t>(G * n_out));
  for (float v : x) ASSERT_TRUE(std::isfinite(v));
  int bad = 0;
  for (int g = 0; g < G; ++g) {
    for (int64_t o = 0; o < n_out; ++o) {
      const RowRef r = row_reference(f, w.data() + (g * n_out + o) * rb, x.data() + g * n_in, n_in);
      const double got = want[static_cast<size_t>(g * n_out + o)], tol = 1e-5 * r.scale + 1e-30;
      if (!(std::fabs(got - r.cpu) <= tol && std::fabs(got - r.exact) <= tol) && ++bad <= 5) {
        ADD_FAILURE() << "group " << g << ", row " << o << ": " << got << " vs cpu " << r.cpu << ", exact " << r.exact;
      }
    }
  }
  ASSERT_EQ(bad, 0);

  cudaGraph_t graph = nullptr;
  cudaGraphExec_t exec = nullptr;
  CUDA_ASSERT(cudaStreamBeginCapture(s.get(), cudaStreamCaptureModeThreadLocal));
  const Status captured = enqueue(nullptr, dy.get<float>());
  CUDA_ASSERT(cudaStreamEndCapture(s.get(), &graph));
  STATUS_ASSERT(captured);
  CUDA_ASSERT(cudaGraphInstantiate(&exec, graph, 0));
  for (int round = 0; round < 8; ++round) {
    if (round % 2 == 0) {
      STATUS_ASSERT(enqueue(nullptr, dy.get<float>()));
    } else {
      CUDA_ASSERT(cudaGraphLaunch(exec, s.get()));
    }
    CUDA_ASSERT(cudaStreamSynchronize(s.get()));
    const std::vector<float> got = download<float>(dy, static_cast<size_t>(G * n_out));
    int differ = 0;
    for (size_t i = 0; i < got.size(); ++i) differ += same_bits(got[i], want[i]) ? 0 : 1;
    EXPECT_EQ(differ, 0) << "round " << round << (round % 2 ? " (graph)" : " (direct)");
  }
  CUDA_ASSERT(cudaGraphExecDestroy(exec));
  CUDA_ASSERT(cudaGraphDestroy(graph));

  // Without ids, slots may not outnumber the experts.
  ExpertMatvec e = m;
  e.n_slots = G + 1;
  EXPECT_FALSE(matvec_experts(e, dy.get<float>(), s.get()).ok());
}

}  // namespace
}  // namespace dsv4::cuda::testing
