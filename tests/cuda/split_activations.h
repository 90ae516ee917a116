// Activations for the split-mode GEMM tests (gemm_split_test.cc, gemm_wgmma_test.cc): f32 rows of
// mixed magnitudes, and their hi/lo f16 split made on the device as the forward pass makes it
// (chunk_forward.h).
#pragma once

#include <cuda_fp16.h>

#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "cuda/cuda_test_util.h"
#include "cuda/device_util.h"
#include "cuda/gemm.h"

namespace dsv4::cuda::testing {

// rows × cols activations (row stride `stride`, NaN between rows): row 2 all zeros; elsewhere
// gaussian values times 2^e per element, e uniform in [−16, 2] (mixed magnitudes: many elements
// are far below the row's largest, so the small ones live in x_lo), and a random power of two in
// [2^-20, 2^20] per row.
inline std::vector<float> mixed_rows(int64_t rows, int64_t stride, int64_t cols, std::mt19937_64& rng) {
  std::vector<float> x(static_cast<size_t>(rows * stride), std::nanf(""));
  const std::vector<float> g = gaussian(rows * cols, rng);
  for (int64_t r = 0; r < rows; ++r) {
    const int row_exp = static_cast<int>(rng() % 41) - 20;
    for (int64_t c = 0; c < cols; ++c) {
      const int e = static_cast<int>(rng() % 19) - 16;
      x[static_cast<size_t>(r * stride + c)] =
          r == 2 ? 0.0f : std::ldexp(g[static_cast<size_t>(r * cols + c)], e + row_exp);
    }
  }
  return x;
}

// The split activations on the device: hi, lo ([rows][cols]) and the row factors (also on the host).
struct SplitX {
  DeviceBuffer hi, lo, scale;
  std::vector<float> factors;
};
inline SplitX split_on_device(const std::vector<float>& x, int64_t rows, int64_t stride, int64_t cols) {
  SplitX s{DeviceBuffer(static_cast<size_t>(rows * cols) * 2), DeviceBuffer(static_cast<size_t>(rows * cols) * 2),
           DeviceBuffer(static_cast<size_t>(rows) * 4), {}};
  DeviceBuffer dx(x.size() * 4);
  EXPECT_TRUE(upload(dx, x) && s.hi.ok() && s.lo.ok() && s.scale.ok());
  EXPECT_TRUE(convert_f32_to_f16_split(dx.get<float>(), stride, rows, cols, s.hi.get<__half>(), s.lo.get<__half>(),
                                       cols, s.scale.get<float>(), nullptr)
                  .ok());
  EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  s.factors = download<float>(s.scale, static_cast<size_t>(rows));
  return s;
}

}  // namespace dsv4::cuda::testing
