// cuda/warp_scatter.cuh's reduce-scatter run on the CPU: the very code the hc kernels use, one host
// thread per lane, the xor-shuffle emulated with a slot per lane between two barriers. Integer
// values (exact in any order) show that every lane ends with the warp's sum of the value
// reduce_scatter_index names; the GPU suite (tests/cuda/hc_test.cc) checks the kernels built on it.
#include <cuda_runtime.h>  // __host__ / __device__, for host compilation
#include <gtest/gtest.h>

#include <array>
#include <barrier>
#include <random>
#include <thread>
#include <vector>

#include "cuda/warp_scatter.cuh"

namespace dsv4::cuda::testing {
namespace {

template <class T, int N>
void check_reduce_scatter(uint64_t seed) {
  SCOPED_TRACE(::testing::Message() << "N=" << N << " seed=" << seed);
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int> value(-1000, 1000);
  std::array<std::array<T, N>, 32> in{};
  for (auto& lane_values : in) {
    for (T& v : lane_values) v = static_cast<T>(value(rng));
  }
  std::array<T, 32> slots{}, got{};
  std::barrier sync(32);
  std::vector<std::thread> lanes;
  for (int lane = 0; lane < 32; ++lane) {
    lanes.emplace_back([&, lane] {
      auto shfl_xor = [&](T x, int o) {
        slots[static_cast<size_t>(lane)] = x;
        sync.arrive_and_wait();
        const T partner = slots[static_cast<size_t>(lane ^ o)];
        sync.arrive_and_wait();
        return partner;
      };
      T v[N];
      for (int i = 0; i < N; ++i) v[i] = in[static_cast<size_t>(lane)][static_cast<size_t>(i)];
      got[static_cast<size_t>(lane)] = detail::warp_reduce_scatter(v, lane, shfl_xor);
    });
  }
  for (std::thread& t : lanes) t.join();
  for (int lane = 0; lane < 32; ++lane) {
    const int idx = detail::reduce_scatter_index(lane, N);
    ASSERT_GE(idx, 0);
    ASSERT_LT(idx, N);
    T want = 0;
    for (const auto& lane_values : in) want += lane_values[static_cast<size_t>(idx)];
    EXPECT_EQ(got[static_cast<size_t>(lane)], want) << "lane " << lane << " value " << idx;
  }
}

TEST(CudaWarpScatterEmulation, EveryLaneHoldsTheWarpSumOfItsValue) {
  const uint64_t seed = std::random_device{}();
  check_reduce_scatter<float, 1>(seed);
  check_reduce_scatter<float, 2>(seed + 1);
  check_reduce_scatter<float, 4>(seed + 2);
  check_reduce_scatter<float, 8>(seed + 3);
  check_reduce_scatter<float, 16>(seed + 4);
  check_reduce_scatter<float, 32>(seed + 5);
  check_reduce_scatter<double, 4>(seed + 6);
}

TEST(CudaWarpScatterEmulation, PaddingFitsTheMixers) {
  static_assert(detail::pow2_at_least(24) == 32 && detail::pow2_at_least(4) == 4 && detail::pow2_at_least(1) == 1);
  static_assert(detail::pow2_at_least(5) == 8 && detail::log2_of(32) == 5 && detail::log2_of(1) == 0);
  for (int lane = 0; lane < 32; ++lane) {
    EXPECT_EQ(detail::reduce_scatter_index(lane, 32), lane);
    EXPECT_EQ(detail::reduce_scatter_index(lane, 4), lane / 8);
  }
}

}  // namespace
}  // namespace dsv4::cuda::testing
