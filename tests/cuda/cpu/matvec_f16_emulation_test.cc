// The F16 row-tile kernel's per-lane code (cuda/matvec_f16.cuh) run on the CPU: a tile's item copied
// chunk by chunk the way the warp's cp.async do it (into a buffer full of garbage, rows past the
// matrix re-reading its last row), each lane's row read back from its place in the buffer and
// dotted item by item in the kernel's order, against quant::dot_row and the exact dot (the GPU
// suite, tests/cuda/matvec_test.cc, checks the kernel itself).
#include <cuda_runtime.h>  // __host__ / __device__ and the vector types, for host compilation
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <set>
#include <vector>

#include "cuda/cuda_test_util.h"
#include "cuda/matvec_f16.cuh"

namespace dsv4::cuda::testing {
namespace {

using detail::kF16ItemBytes;
using detail::kF16ItemElems;
using detail::kF16ItemRowBytes;
using detail::kF16RowStride;
using detail::kF16TileRows;

TEST(CudaMatvecF16Emulation, CopiesCoverTheTileOnce) {
  std::set<int> seen;
  for (int lane = 0; lane < 32; ++lane) {
    for (int j = 0; j < detail::kF16Copies; ++j) {
      int row = 0, chunk = 0;
      detail::f16_copy(lane, j, row, chunk);
      ASSERT_LT(row, kF16TileRows);
      ASSERT_LT(chunk, kF16ItemRowBytes / 16);
      EXPECT_TRUE(seen.insert(row * 8 + chunk).second) << "row " << row << " chunk " << chunk << " copied twice";
    }
  }
  EXPECT_EQ(seen.size(), static_cast<size_t>(kF16TileRows * kF16ItemRowBytes / 16));
}

// Row sums of a matrix of n_rows × n_in halves, tile by tile and item by item as the kernel's lanes
// compute them with one warp per row (items in order).
std::vector<float> emulate(const std::vector<uint8_t>& w, int64_t n_in, int64_t n_rows, const std::vector<float>& x,
                           std::mt19937_64& rng) {
  const int64_t rb = n_in * 2;
  std::vector<float> out(static_cast<size_t>(n_rows), 0.0f);
  std::vector<uint8_t> buf(kF16ItemBytes);
  for (int64_t row0 = 0; row0 < n_rows; row0 += kF16TileRows) {
    for (int64_t item = 0; item < n_in / kF16ItemElems; ++item) {
      for (auto& b : buf) b = static_cast<uint8_t>(rng());
      for (int lane = 0; lane < 32; ++lane) {
        for (int j = 0; j < detail::kF16Copies; ++j) {
          int row = 0, chunk = 0;
          detail::f16_copy(lane, j, row, chunk);
          const int64_t src_row = std::min<int64_t>(row0 + row, n_rows - 1);
          std::memcpy(&buf[static_cast<size_t>(row * kF16RowStride + chunk * 16)],
                      &w[static_cast<size_t>(src_row * rb + item * kF16ItemRowBytes + chunk * 16)], 16);
        }
      }
      for (int lane = 0; lane < 32 && row0 + lane < n_rows; ++lane) {
        uint4 row[8];
        std::memcpy(row, &buf[static_cast<size_t>(lane * kF16RowStride)], sizeof(row));
        float4 xs[16];
        std::memcpy(xs, &x[static_cast<size_t>(item * kF16ItemElems)], sizeof(xs));
        out[static_cast<size_t>(row0 + lane)] += detail::f16_item_dot(row, xs);
      }
    }
  }
  return out;
}

TEST(CudaMatvecF16Emulation, RowsMatchTheCpu) {
  const uint64_t seed = fresh_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937_64 rng(seed);
  const Format& f = format_of(TensorType::F16);
  for (int64_t n_in : {64, 192, 1024}) {
    for (int64_t n_rows : {1, 31, 32, 45, 96}) {
      const std::vector<uint8_t> w = random_rows(f, n_in, n_rows, rng);
      const std::vector<float> x = gaussian(n_in, rng);
      const std::vector<float> got = emulate(w, n_in, n_rows, x, rng);
      for (int64_t o = 0; o < n_rows; ++o) {
        const RowRef ref = row_reference(f, w.data() + o * n_in * 2, x.data(), n_in);
        const double tol = 1e-5 * ref.scale + 1e-30;
        EXPECT_NEAR(got[static_cast<size_t>(o)], ref.cpu, tol) << n_in << " x " << n_rows << ", row " << o;
        EXPECT_NEAR(got[static_cast<size_t>(o)], ref.exact, tol) << n_in << " x " << n_rows << ", row " << o;
      }
      if (HasFailure()) return;
    }
  }
}

// An infinite or NaN product makes the row's sum non-finite, as the CPU's is.
TEST(CudaMatvecF16Emulation, NonFiniteActivationsGiveNonFiniteRows) {
  std::mt19937_64 rng(fresh_seed());
  const Format& f = format_of(TensorType::F16);
  const std::vector<uint8_t> w = random_rows(f, 128, 3, rng);
  std::vector<float> x = gaussian(128, rng);
  x[70] = NAN;
  for (float v : emulate(w, 128, 3, x, rng)) EXPECT_TRUE(std::isnan(v));
}

}  // namespace
}  // namespace dsv4::cuda::testing
