// dot_row and matvec against dequantise-then-dot, for every weight type.
//
// Tolerance: |dot − Σ w·x| ≤ kRelTol · Σ|w·x| (+ a denormal floor), with Σ w·x and Σ|w·x|
// computed in double from dequantize_row's f32 weights. f32 accumulation over these lengths
// stays far below it; the K-quants' factored dots (s·Σqx − m·Σx) could only exceed it where
// s·q and m cancel across whole sub-blocks, which random blocks and real weights do not do.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "quant_test_util.h"

namespace dsv4::quant {
namespace {

using testing::all_formats;
using testing::Format;

constexpr double kRelTol = 1e-5;

void expect_close(float got, const testing::RefDot& ref, const char* what, const Format& f,
                  int64_t n, int trial) {
  const double tol = kRelTol * ref.abs_sum + 1e-30;
  EXPECT_LE(std::fabs(got - ref.dot), tol)
      << what << " " << f.name << " n=" << n << " trial=" << trial << " got=" << got
      << " ref=" << ref.dot << " Σ|wx|=" << ref.abs_sum;
}

TEST(QuantDot, RandomBlocksMatchDequantizeThenDot) {
  std::mt19937_64 rng(1234);
  for (const Format& f : all_formats()) {
    for (int64_t n : {int64_t{256}, int64_t{1024}, int64_t{4096}, int64_t{7168}}) {
      for (int trial = 0; trial < 40; ++trial) {
        const auto row = testing::random_row(f, n, rng);
        const auto x = testing::gaussian(n, rng);
        const auto ref = testing::reference_dot(f.type, row.data(), x.data(), n);
        ASSERT_TRUE(std::isfinite(ref.dot));
        expect_close(dot_row(f.type, row.data(), x.data(), n), ref, "dot_row", f, n, trial);
        expect_close(f.dot_scalar(row.data(), x.data(), n), ref, "scalar", f, n, trial);
      }
    }
  }
}

// Odd lengths exercise the plain types' vector tails and Q8_0's unpaired last block.
TEST(QuantDot, ShortAndOddLengths) {
  std::mt19937_64 rng(77);
  for (const Format& f : all_formats()) {
    for (int64_t blocks : {1, 2, 3, 5, 9}) {
      for (int64_t extra : {0, 1, 7, 13}) {
        const int64_t n = f.block_elems == 1 ? blocks * 8 + extra : blocks * f.block_elems;
        const auto row = testing::random_row(f, n, rng);
        const auto x = testing::gaussian(n, rng);
        const auto ref = testing::reference_dot(f.type, row.data(), x.data(), n);
        expect_close(dot_row(f.type, row.data(), x.data(), n), ref, "dot_row", f, n, 0);
        expect_close(f.dot_scalar(row.data(), x.data(), n), ref, "scalar", f, n, 0);
      }
    }
  }
}

// Quantised Gaussian weights: realistic scale/min relations rather than random bytes.
TEST(QuantDot, QuantizedWeightsMatchDequantizeThenDot) {
  std::mt19937_64 rng(99);
  const int64_t n = 4096;
  for (const Format& f : all_formats()) {
    for (int trial = 0; trial < 8; ++trial) {
      const auto w = testing::gaussian(n, rng, 0.02f);
      std::vector<uint8_t> row(static_cast<size_t>(testing::row_bytes(f, n)));
      quantize_row(f.type, w.data(), row.data(), n);
      const auto x = testing::gaussian(n, rng);
      const auto ref = testing::reference_dot(f.type, row.data(), x.data(), n);
      expect_close(dot_row(f.type, row.data(), x.data(), n), ref, "dot_row", f, n, trial);
      expect_close(f.dot_scalar(row.data(), x.data(), n), ref, "scalar", f, n, trial);
    }
  }
}

TEST(QuantMatvec, EqualsPerRowDotBitForBit) {
  std::mt19937_64 rng(5);
  // 1024×300 goes through the pool; 256×3 stays on the calling thread.
  for (auto [n_in, n_out] : {std::pair<int64_t, int64_t>{1024, 300}, {256, 3}}) {
    for (const Format& f : all_formats()) {
      const int64_t rb = testing::row_bytes(f, n_in);
      std::vector<uint8_t> w;
      for (int64_t o = 0; o < n_out; ++o) {
        const auto row = testing::random_row(f, n_in, rng);
        w.insert(w.end(), row.begin(), row.end());
      }
      const auto x = testing::gaussian(n_in, rng);
      std::vector<float> y(static_cast<size_t>(n_out), NAN);
      matvec(f.type, w.data(), n_in, n_out, x.data(), y.data());
      for (int64_t o = 0; o < n_out; ++o) {
        const float expect = dot_row(f.type, w.data() + o * rb, x.data(), n_in);
        ASSERT_EQ(std::memcmp(&y[o], &expect, 4), 0) << f.name << " row " << o;
      }
    }
  }
}

TEST(QuantDispatch, WeightTypes) {
  for (const Format& f : all_formats()) EXPECT_TRUE(is_weight_type(f.type)) << f.name;
  EXPECT_FALSE(is_weight_type(TensorType::I32));
  EXPECT_FALSE(is_weight_type(TensorType::Q8_K));
  EXPECT_FALSE(is_weight_type(static_cast<TensorType>(2)));
}

TEST(QuantDispatchDeathTest, RejectsPartialBlocks) {
  std::vector<uint8_t> row(34 * 2);
  std::vector<float> x(64);
  EXPECT_DEATH(dot_row(TensorType::Q8_0, row.data(), x.data(), 33), "multiple of the block size");
  EXPECT_DEATH(dot_row(TensorType::I32, row.data(), x.data(), 4), "not a weight type");
}

}  // namespace
}  // namespace dsv4::quant
