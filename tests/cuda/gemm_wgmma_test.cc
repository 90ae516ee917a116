// The wgmma split GEMM (GemmTile::kWgmma, cuda/gemm_wgmma.cu: dense, Q8_0) against a double
// reference on fresh random inputs: f32 activations of mixed magnitudes inside a row (the small
// elements live in x_lo), a row of zeros, a random power of two per row, converted on the device by
// convert_f32_to_f16_split; partial row and feature tiles, a single k-step, strides, every dense
// Q8_0 shape of flash-q2 at a prefill chunk (600 rows: four full 128-row tiles and a partial one),
// and out_a's grouped form (8 column slices of one activation matrix, 8 slabs of one tensor, outputs
// interleaved), as forward.cc calls it.
//
// Tolerance per output, the split's (tests/cuda/gemm_split_test.cc), against exact = Σ_k x_k·w_k
// over the CPU's dequantised weights (double):
//   |y − exact| ≤ (2^-22 + 2^-23 + γ)·S + 2^-25·f·W1,   γ = (k/8 + 16)·2^-23,
// S = Σ_k |x_k·w_k|, W1 = Σ_k |w_k|, f = the row factor. The kernel forms the same numbers as the
// split: x_hi + x_lo is x to 2^-22 relative (2^-25·f absolute below f16's normal range), code ×
// x_hi / x_lo products are exact on the tensor cores, each 32-column chain of four k16 MMAs starts
// at zero (its sum may truncate: within γ) and enters acc by one FFMA with the block scale d;
// 2^-23·S covers the CPU's f32 rounding of d·q. A chain accumulated into acc (the session-6 v1
// mistake) stays inside γ only by luck of k, which is why the whole-model tests run too; a wrong
// scale, code, row, slice or swizzle is off by far more.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "cuda/cuda_test_util.h"
#include "cuda/gemm.h"
#include "cuda/split_activations.h"

namespace dsv4::cuda::testing {
namespace {

// One weight matrix (m × k, Q8_0 random blocks) on the host, dequantised by the CPU.
struct Matrix {
  int64_t m = 0, k = 0;
  std::vector<uint8_t> bytes;
  std::vector<float> w;
};
Matrix random_matrix(int64_t m, int64_t k, std::mt19937_64& rng) {
  const Format& f = format_of(TensorType::Q8_0);
  Matrix a{m, k, random_rows(f, k, m, rng), std::vector<float>(static_cast<size_t>(m * k))};
  for (int64_t i = 0; i < m; ++i) {
    quant::dequantize_row(f.type, a.bytes.data() + i * row_bytes(f, k), a.w.data() + i * k, k);
  }
  return a;
}

// y row r (at y + r·y_stride) against x row r (columns [x_col, x_col + k) of rows x_width apart)
// times a, for each r in rows; features [m, pad_to) of every checked row must keep the 0xFF fill.
void check_rows(const std::vector<float>& y, int64_t y_stride, int64_t pad_to, const std::vector<float>& x,
                int64_t x_width, int64_t x_col, const std::vector<float>& factors, const Matrix& a,
                const std::vector<int64_t>& rows, const std::string& what) {
  const int64_t k = a.k;
  const double rel = std::ldexp(1.0, -22) + std::ldexp(1.0, -23) + static_cast<double>(k / 8 + 16) * std::ldexp(1.0, -23);
  int reported = 0;
  for (const int64_t r : rows) {
    const float* xr = x.data() + r * x_width + x_col;
    for (int64_t f = 0; f < a.m; ++f) {
      const float* wr = a.w.data() + f * k;
      double exact = 0, s = 0, w1 = 0;
      for (int64_t c = 0; c < k; ++c) {
        const double p = static_cast<double>(xr[c]) * wr[c];
        exact += p;
        s += std::fabs(p);
        w1 += std::fabs(wr[c]);
      }
      const float got = y[static_cast<size_t>(r * y_stride + f)];
      const double tol = rel * s + std::ldexp(factors[static_cast<size_t>(r)] * w1, -25) + 1e-37;
      if ((!std::isfinite(got) || std::fabs(got - exact) > tol) && reported++ < 5) {
        ADD_FAILURE() << what << ": row " << r << " feature " << f << ": got " << got << ", exact " << exact
                      << " (tol " << tol << ", " << std::fabs(got - exact) / std::max(s, 1e-300) << " of S)";
      }
    }
    for (int64_t c = a.m; c < pad_to; ++c) {
      uint32_t u;
      std::memcpy(&u, &y[static_cast<size_t>(r * y_stride + c)], 4);
      if (u != 0xFFFFFFFFu && reported++ < 5) ADD_FAILURE() << what << ": wrote padding at row " << r << " column " << c;
    }
  }
  if (reported > 5) ADD_FAILURE() << what << ": " << reported << " outputs out of tolerance";
}

struct Shape {
  const char* name;
  int64_t k, m;
};

// n rows through gemm() with `tile`, weights a, activations x_width wide (x_width ≥ k, the matrix
// reads the first k columns), y_stride ≥ m; returns y (n × y_stride, 0xFF-filled before).
std::vector<float> run_gemm(const Matrix& a, const DeviceBuffer& dw, const SplitX& sx, int64_t x_width, int64_t n,
                            int64_t y_stride, GemmTile tile) {
  DeviceBuffer dy(static_cast<size_t>(n * y_stride) * 4);
  EXPECT_TRUE(dy.ok());
  EXPECT_EQ(cudaMemset(dy.get(), 0xFF, dy.size()), cudaSuccess);
  const GemmWeights w{TensorType::Q8_0, dw.get(), a.k, a.m, 1};
  const Status s =
      gemm(w, sx.hi.get<__half>(), x_width, sx.scale.get<float>(), n, dy.get<float>(), y_stride, nullptr, tile,
           sx.lo.get<__half>());
  EXPECT_TRUE(s.ok()) << s.message();
  EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  return download<float>(dy, static_cast<size_t>(n * y_stride));
}

// Partial tiles in both directions, one k-step, n below one tile, x and y strides; kAuto takes the
// wgmma kernel from 512 rows (same bits as kWgmma), and the mma.sync split kernel (kLarge) meets
// the same bound.
TEST(GemmWgmma, PartialTilesMatchDoubleReference) {
  const uint64_t seed = fresh_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937_64 rng(seed);
  struct Case {
    int64_t m, k, n, x_width, y_stride;
  };
  for (const Case c : {Case{300, 1024, 517, 1064, 303}, Case{77, 64, 5, 64, 80}, Case{130, 320, 129, 320, 130}}) {
    const Matrix a = random_matrix(c.m, c.k, rng);
    DeviceBuffer dw(a.bytes.size());
    ASSERT_TRUE(upload(dw, a.bytes));
    const std::vector<float> x = mixed_rows(c.n, c.x_width, c.x_width, rng);
    const SplitX sx = split_on_device(x, c.n, c.x_width, c.x_width);
    std::vector<int64_t> rows(static_cast<size_t>(c.n));
    for (int64_t r = 0; r < c.n; ++r) rows[static_cast<size_t>(r)] = r;
    std::ostringstream what;
    what << "m=" << c.m << " k=" << c.k << " n=" << c.n;
    const std::vector<float> y = run_gemm(a, dw, sx, c.x_width, c.n, c.y_stride, GemmTile::kWgmma);
    check_rows(y, c.y_stride, c.y_stride, x, c.x_width, 0, sx.factors, a, rows, what.str() + " wgmma");
    const std::vector<float> y_mma = run_gemm(a, dw, sx, c.x_width, c.n, c.y_stride, GemmTile::kLarge);
    check_rows(y_mma, c.y_stride, c.y_stride, x, c.x_width, 0, sx.factors, a, rows, what.str() + " mma.sync");
    if (c.n >= 512) {
      const std::vector<float> y_auto = run_gemm(a, dw, sx, c.x_width, c.n, c.y_stride, GemmTile::kAuto);
      for (size_t i = 0; i < y.size(); ++i) {
        ASSERT_TRUE(same_bits(y[i], y_auto[i])) << what.str() << ": kAuto differs from kWgmma at " << i;
      }
    }
  }
}

// Every dense Q8_0 projection of flash-q2 (hidden 4096, q rank 1024, kv 512, 64 heads × 512, o rank
// 1024 × 8 groups, shared expert 2048) at 600 rows; rows checked: both ends of every 128-row tile.
TEST(GemmWgmma, FlashShapesMatchDoubleReference) {
  const uint64_t seed = fresh_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937_64 rng(seed);
  const int64_t n = 600;
  const std::vector<int64_t> rows = {0, 1, 2, 127, 128, 255, 256, 383, 384, 511, 512, 599};
  for (const Shape s : {Shape{"q_a", 4096, 1024}, Shape{"kv", 4096, 512}, Shape{"q_b", 1024, 32768},
                        Shape{"out_b", 8192, 4096}, Shape{"shared gate/up", 4096, 2048},
                        Shape{"shared down", 2048, 4096}}) {
    const Matrix a = random_matrix(s.m, s.k, rng);
    DeviceBuffer dw(a.bytes.size());
    ASSERT_TRUE(upload(dw, a.bytes));
    const std::vector<float> x = mixed_rows(n, s.k, s.k, rng);
    const SplitX sx = split_on_device(x, n, s.k, s.k);
    const std::vector<float> y = run_gemm(a, dw, sx, s.k, n, s.m, GemmTile::kAuto);
    check_rows(y, s.m, s.m, x, s.k, 0, sx.factors, a, rows, std::string(s.name) + " (kAuto)");
  }
}

// out_a as forward.cc runs it: G = 8 GEMMs, group g reads columns [g·k, (g+1)·k) of one converted
// matrix (row factors over the whole row) with matrix g of one tensor and writes columns
// [g·m, (g+1)·m) of rows G·m wide.
TEST(GemmWgmma, GroupedOutputAMatchesDoubleReference) {
  const uint64_t seed = fresh_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937_64 rng(seed);
  const int64_t G = 8, k = 4096, m = 1024, n = 520, width = G * k;
  const std::vector<int64_t> rows = {0, 2, 127, 128, 300, 511, 512, 519};
  const Matrix all = random_matrix(G * m, k, rng);
  DeviceBuffer dw(all.bytes.size()), dy(static_cast<size_t>(n * G * m) * 4);
  ASSERT_TRUE(upload(dw, all.bytes) && dy.ok());
  const std::vector<float> x = mixed_rows(n, width, width, rng);
  const SplitX sx = split_on_device(x, n, width, width);
  const int64_t slab = m * row_bytes(format_of(TensorType::Q8_0), k);
  for (int64_t g = 0; g < G; ++g) {
    const GemmWeights w{TensorType::Q8_0, static_cast<const uint8_t*>(dw.get()) + g * slab, k, m, 1};
    STATUS_ASSERT(gemm(w, sx.hi.get<__half>() + g * k, width, sx.scale.get<float>(), n, dy.get<float>() + g * m,
                       G * m, nullptr, GemmTile::kAuto, sx.lo.get<__half>() + g * k));
  }
  CUDA_ASSERT(cudaDeviceSynchronize());
  const std::vector<float> y = download<float>(dy, static_cast<size_t>(n * G * m));
  for (int64_t g = 0; g < G; ++g) {
    Matrix a{m, k, {}, std::vector<float>(all.w.begin() + g * m * k, all.w.begin() + (g + 1) * m * k)};
    const std::vector<float> yg = [&] {
      std::vector<float> v(static_cast<size_t>(n * m));
      for (int64_t r = 0; r < n; ++r) std::memcpy(&v[static_cast<size_t>(r * m)], &y[static_cast<size_t>(r * G * m + g * m)], m * 4);
      return v;
    }();
    check_rows(yg, m, m, x, width, g * k, sx.factors, a, rows, "out_a group " + std::to_string(g));
  }
}

TEST(GemmWgmma, RejectsWhatItDoesNotTake) {
  DeviceBuffer dw(4096 * 34), dx(4096 * 2 * 4), dy(1024 * 4);
  ASSERT_TRUE(dw.ok() && dx.ok() && dy.ok());
  const GemmWeights f16{TensorType::F16, dw.get(), 64, 8, 1};
  const GemmWeights q8{TensorType::Q8_0, dw.get(), 64, 8, 1};
  // F16 weights, and Q8_0 without x_lo (f16 mode).
  EXPECT_FALSE(gemm(f16, dx.get<__half>(), 64, nullptr, 2, dy.get<float>(), 8, nullptr, GemmTile::kWgmma,
                    dx.get<__half>() + 1024)
                   .ok());
  EXPECT_FALSE(gemm(q8, dx.get<__half>(), 64, nullptr, 2, dy.get<float>(), 8, nullptr, GemmTile::kWgmma).ok());
  GroupedGemm g;
  g.w = q8;
  EXPECT_FALSE(grouped_gemm(g, nullptr, GemmTile::kWgmma).ok());
}

}  // namespace
}  // namespace dsv4::cuda::testing
