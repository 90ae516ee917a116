// cuda/moe.h against MODEL.md §8.2-8.5 computed with the CPU's ops (cpu::softplus,
// cpu::top_k_desc, cpu::silu) on fresh random inputs. Routing is exact (the same f32 operations,
// the same tie rule); the SwiGLU activation agrees to 1e-6 relative.
#include "cuda/moe.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "cpu/ops.h"
#include "cuda/device_util.h"

namespace dsv4::cuda::testing {
namespace {

TEST(CudaMoe, RoutingMatchesCpuRule) {
  const uint64_t seed = fresh_seed();
  SCOPED_TRACE(seed);
  std::mt19937_64 rng(seed);
  const int T = 7, K = 6, V = 100;
  // The model's 256 experts, and the other register widths of the selecting warp (16, 32 a lane).
  const std::vector<std::pair<int, bool>> cases = {{256, false}, {256, true}, {300, false}, {700, false}};
  for (const auto& [E, hash] : cases) {
    SCOPED_TRACE(::testing::Message() << E << " experts" << (hash ? ", hash" : ""));
    std::vector<float> logits = normal_vector(static_cast<size_t>(T * E), rng, 0.0f, 3.0f);
    logits[3] = 30.0f;   // softplus passthrough
    logits[9] = -30.0f;  // softplus exp branch
    // Ties in the biased scores: identical logits and biases for a few experts.
    for (int e = 100; e < 110; ++e) logits[static_cast<size_t>(E + e)] = 0.25f;
    std::vector<float> bias = normal_vector(E, rng, 0.0f, 0.1f);
    for (int e = 100; e < 110; ++e) bias[static_cast<size_t>(e)] = 0.0f;
    std::vector<int32_t> tid2eid(static_cast<size_t>(V * K));
    for (int t = 0; t < V; ++t) {
      for (int i = 0; i < K; ++i) tid2eid[static_cast<size_t>(t * K + i)] = static_cast<int32_t>((t * 7 + i * 31) % E);
    }
    std::vector<int32_t> tokens(T);
    for (int t = 0; t < T; ++t) tokens[static_cast<size_t>(t)] = static_cast<int32_t>(rng() % V);
    TestStream stream;
    DeviceBuffer dl = upload(logits), db = upload(bias), dtid = upload(tid2eid), dtok = upload(tokens);
    DeviceBuffer de(static_cast<size_t>(T * K) * 4), dw(static_cast<size_t>(T * K) * 4);
    RouteArgs a;
    a.logits = dl.get<float>();
    a.bias = hash ? nullptr : db.get<float>();
    a.tid2eid = dtid.get<int32_t>();
    a.tokens = dtok.get<int32_t>();
    a.experts = de.get<int32_t>();
    a.weights = dw.get<float>();
    a.T = T;
    a.E = E;
    a.K = K;
    a.normalize = true;
    a.scale = 1.5f;
    STATUS_ASSERT(moe_route(a, stream.get()));
    CUDA_ASSERT(cudaStreamSynchronize(stream.get()));
    const std::vector<int32_t> got_e = download<int32_t>(de, static_cast<size_t>(T * K));
    const std::vector<float> got_w = download<float>(dw, static_cast<size_t>(T * K));
    for (int t = 0; t < T; ++t) {
      std::vector<float> s(E), biased(E);
      for (int e = 0; e < E; ++e) {
        s[static_cast<size_t>(e)] = std::sqrt(cpu::softplus(logits[static_cast<size_t>(t * E + e)]));
        biased[static_cast<size_t>(e)] = s[static_cast<size_t>(e)] + bias[static_cast<size_t>(e)];
      }
      std::vector<int32_t> sel;
      if (hash) {
        sel.assign(tid2eid.begin() + tokens[static_cast<size_t>(t)] * K, tid2eid.begin() + (tokens[static_cast<size_t>(t)] + 1) * K);
      } else {
        sel = cpu::top_k_desc(biased, K);
      }
      float sum = 0;
      for (int32_t e : sel) sum += s[static_cast<size_t>(e)];
      const float den = std::max(sum, 0x1p-14f);
      for (int i = 0; i < K; ++i) {
        EXPECT_EQ(got_e[static_cast<size_t>(t * K + i)], sel[static_cast<size_t>(i)]) << "token " << t << " slot " << i;
        const float w = s[static_cast<size_t>(sel[static_cast<size_t>(i)])] / den * 1.5f;
        EXPECT_NEAR(got_w[static_cast<size_t>(t * K + i)], w, 1e-6f * std::fabs(w)) << "token " << t << " slot " << i;
      }
    }
  }
}

TEST(CudaMoe, SwigluClampsGateFromAboveAndUpSymmetrically) {
  const uint64_t seed = fresh_seed();
  SCOPED_TRACE(seed);
  std::mt19937_64 rng(seed);
  const int slots = 6;
  const int64_t F = 1000, stride = 2 * F;
  const std::vector<float> gu = normal_vector(static_cast<size_t>(slots * stride), rng, 0.0f, 8.0f);
  const std::vector<float> w = normal_vector(slots, rng);
  for (float limit : {10.0f, 0.0f}) {
    for (bool weighted : {true, false}) {
      TestStream stream;
      DeviceBuffer dgu = upload(gu), dw = upload(w), dout(static_cast<size_t>(slots * F) * 4);
      SwigluArgs a;
      a.gate = dgu.get<float>();
      a.up = dgu.get<float>() + F;
      a.stride = stride;
      a.weights = weighted ? dw.get<float>() : nullptr;
      a.out = dout.get<float>();
      a.n_slots = slots;
      a.F = F;
      a.limit = limit;
      STATUS_ASSERT(swiglu(a, stream.get()));
      CUDA_ASSERT(cudaStreamSynchronize(stream.get()));
      const std::vector<float> got = download<float>(dout, static_cast<size_t>(slots * F));
      for (int j = 0; j < slots; ++j) {
        for (int64_t f = 0; f < F; ++f) {
          float g = gu[static_cast<size_t>(j * stride + f)], u = gu[static_cast<size_t>(j * stride + F + f)];
          if (limit > 1e-6f) {
            g = std::min(g, limit);
            u = std::clamp(u, -limit, limit);
          }
          float want = cpu::silu(g) * u;
          if (weighted) want *= w[static_cast<size_t>(j)];
          ASSERT_NEAR(got[static_cast<size_t>(j * F + f)], want, 1e-6f * (std::fabs(want) + 1e-3f)) << j << " " << f;
        }
      }
    }
  }
}

// A prefill chunk's slots: 16 384 tokens × 6 experts are more than a grid's y dimension holds.
TEST(CudaMoe, SwigluTakesMoreSlotsThanAGridRow) {
  const uint64_t seed = fresh_seed();
  SCOPED_TRACE(seed);
  std::mt19937_64 rng(seed);
  const int slots = 16384 * 6;
  const int64_t F = 24;
  const std::vector<float> gate = normal_vector(static_cast<size_t>(slots * F), rng);
  const std::vector<float> up = normal_vector(static_cast<size_t>(slots * F), rng);
  const std::vector<float> w = normal_vector(slots, rng);
  TestStream stream;
  DeviceBuffer dg = upload(gate), du = upload(up), dw = upload(w), dout(static_cast<size_t>(slots * F) * 4);
  SwigluArgs a;
  a.gate = dg.get<float>();
  a.up = du.get<float>();
  a.stride = F;
  a.weights = dw.get<float>();
  a.out = dout.get<float>();
  a.n_slots = slots;
  a.F = F;
  a.limit = 10.0f;
  STATUS_ASSERT(swiglu(a, stream.get()));
  CUDA_ASSERT(cudaStreamSynchronize(stream.get()));
  const std::vector<float> got = download<float>(dout, static_cast<size_t>(slots * F));
  for (int j = 0; j < slots; ++j) {
    for (int64_t f = 0; f < F; ++f) {
      const size_t i = static_cast<size_t>(j * F + f);
      const float want =
          cpu::silu(std::min(gate[i], 10.0f)) * std::clamp(up[i], -10.0f, 10.0f) * w[static_cast<size_t>(j)];
      ASSERT_NEAR(got[i], want, 1e-6f * (std::fabs(want) + 1e-3f)) << j << " " << f;
    }
  }
}

}  // namespace
}  // namespace dsv4::cuda::testing
