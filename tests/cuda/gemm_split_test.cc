// cuda/gemm.h's split mode against a double reference on fresh random inputs: f32 activations with
// mixed magnitudes inside a row (the small elements live in x_lo) and rows of zeros, converted on
// the device by convert_f32_to_f16_split (checked bit for bit first), every weight format the split
// GEMM takes, both tiles, odd sizes, strides, and the grouped form (gathered X rows with their row
// factors, outputs scattered to another order, an empty group, an invalid expert).
//
// Tolerance per output, against exact = Σ_k x_k·w_k over the CPU's dequantised weights (double):
//   |y − exact| ≤ (2^-22 + 2^-23 + γ)·S + 2^-25·f·W1,
// S = Σ_k |x_k|·mag_k (mag = |w|, or |step·q| + |offset| for Q2_K/Q4_K: cuda_test_util.h),
// W1 = Σ_k mag_k, f = the row factor. 2^-22·S: x_hi + x_lo represents x to 2^-22 relative
// (2^-25·f absolute where the low part is below f16's normal range); the codes and their products
// on the tensor cores are exact; 2^-23·S: the CPU rounds w (step·q − offset) in f32 where the GPU
// applies the exact scale, offset and code; γ = (k/8 + 16)·2^-23 bounds the f32 accumulation
// (tensor-core sums allowed to truncate, one scale FFMA per 32 columns, the offsets' FFMAs).
// The f16-product mode misses this by ≈ 2^-11·S, a wrong scale, code, group or row by far more.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "cuda/cuda_test_util.h"
#include "cuda/gemm.h"
#include "cuda/matvec.h"

namespace dsv4::cuda::testing {
namespace {

template <class T>
bool upload(const DeviceBuffer& b, const std::vector<T>& v) {
  return b.ok() && b.size() >= v.size() * sizeof(T) &&
         cudaMemcpy(b.get(), v.data(), v.size() * sizeof(T), cudaMemcpyHostToDevice) == cudaSuccess;
}
template <class T>
std::vector<T> download(const DeviceBuffer& b, size_t n) {
  std::vector<T> v(n);
  EXPECT_EQ(cudaMemcpy(v.data(), b.get(), n * sizeof(T), cudaMemcpyDeviceToHost), cudaSuccess);
  return v;
}

// rows × cols activations (row stride `stride`, NaN between rows): row 2 all zeros; elsewhere
// gaussian values times 2^e per element, e uniform in [−16, 2] (mixed magnitudes: many elements
// are far below the row's largest), and a random power of two per row.
std::vector<float> mixed_rows(int64_t rows, int64_t stride, int64_t cols, std::mt19937_64& rng) {
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

// The split activations on the device: hi, lo ([rows][cols]) and the row factors.
struct SplitX {
  DeviceBuffer hi, lo, scale;
};
SplitX split_on_device(const std::vector<float>& x, int64_t rows, int64_t stride, int64_t cols) {
  SplitX s{DeviceBuffer(static_cast<size_t>(rows * cols) * 2), DeviceBuffer(static_cast<size_t>(rows * cols) * 2),
           DeviceBuffer(static_cast<size_t>(rows) * 4)};
  DeviceBuffer dx(x.size() * 4);
  EXPECT_TRUE(upload(dx, x) && s.hi.ok() && s.lo.ok() && s.scale.ok());
  EXPECT_TRUE(convert_f32_to_f16_split(dx.get<float>(), stride, rows, cols, s.hi.get<__half>(), s.lo.get<__half>(),
                                       cols, s.scale.get<float>(), nullptr)
                  .ok());
  EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  return s;
}

// Weights dequantised by the CPU, with their magnitudes.
struct RefWeights {
  int64_t rows = 0, cols = 0;
  std::vector<float> w;
  std::vector<double> mag;
};
RefWeights reference_weights(const Format& f, const uint8_t* bytes, int64_t rows, int64_t cols) {
  RefWeights r{rows, cols, std::vector<float>(static_cast<size_t>(rows * cols)), {}};
  for (int64_t i = 0; i < rows; ++i) {
    const uint8_t* row = bytes + i * row_bytes(f, cols);
    quant::dequantize_row(f.type, row, r.w.data() + i * cols, cols);
    const std::vector<double> m = magnitudes(f, row, cols);
    r.mag.insert(r.mag.end(), m.begin(), m.end());
  }
  return r;
}

// Checks y[out_rows[i]·y_stride + f] = x row x_rows[i] times wm, as the header bounds it; factor
// is that row's row factor (for the absolute term).
void check_rows(const std::vector<float>& y, int64_t y_stride, const std::vector<int64_t>& out_rows,
                const std::vector<int64_t>& x_rows, const std::vector<float>& x, int64_t x_stride,
                const std::vector<float>& factors, const RefWeights& wm, const std::string& what) {
  const int64_t k = wm.cols;
  const double gamma = static_cast<double>(k / 8 + 16) * std::ldexp(1.0, -23);
  const double rel = std::ldexp(1.0, -22) + std::ldexp(1.0, -23) + gamma;
  int reported = 0;
  for (size_t i = 0; i < out_rows.size(); ++i) {
    const float* xr = x.data() + x_rows[i] * x_stride;
    const double factor = factors[static_cast<size_t>(x_rows[i])];
    for (int64_t f = 0; f < wm.rows; ++f) {
      double exact = 0, s = 0, w1 = 0;
      for (int64_t c = 0; c < k; ++c) {
        const size_t j = static_cast<size_t>(f * k + c);
        exact += static_cast<double>(xr[c]) * wm.w[j];
        s += std::fabs(static_cast<double>(xr[c])) * wm.mag[j];
        w1 += wm.mag[j];
      }
      const float got = y[static_cast<size_t>(out_rows[i] * y_stride + f)];
      const double tol = rel * s + std::ldexp(factor * w1, -25) + 1e-37;
      if ((!std::isfinite(got) || std::fabs(got - exact) > tol) && reported++ < 5) {
        ADD_FAILURE() << what << ": row " << out_rows[i] << " feature " << f << ": got " << got << ", exact "
                      << exact << " (tol " << tol << ", " << std::fabs(got - exact) / std::max(s, 1e-300)
                      << " of S)";
      }
    }
  }
  if (reported > 5) ADD_FAILURE() << what << ": " << reported << " outputs out of tolerance";
}

// hi = f16(x·2^s), lo = f16(x·2^s − hi) bit for bit, s as convert_f32_to_f16 picks it.
TEST(GemmSplit, ConvertsF32ToTwoF16Parts) {
  std::mt19937_64 rng(fresh_seed());
  const int64_t rows = 9, cols = 320, stride = 333;
  const std::vector<float> x = mixed_rows(rows, stride, cols, rng);
  const SplitX s = split_on_device(x, rows, stride, cols);
  const std::vector<uint16_t> hi = download<uint16_t>(s.hi, static_cast<size_t>(rows * cols));
  const std::vector<uint16_t> lo = download<uint16_t>(s.lo, static_cast<size_t>(rows * cols));
  const std::vector<float> factor = download<float>(s.scale, static_cast<size_t>(rows));
  for (int64_t r = 0; r < rows; ++r) {
    float m = 0.0f;
    for (int64_t c = 0; c < cols; ++c) m = std::max(m, std::fabs(x[static_cast<size_t>(r * stride + c)]));
    const int sh = m > 0.0f ? std::clamp(14 - std::ilogb(m), -126, 126) : 0;
    ASSERT_EQ(factor[static_cast<size_t>(r)], std::ldexp(1.0f, -sh)) << "row " << r;
    for (int64_t c = 0; c < cols; ++c) {
      const float v = std::ldexp(x[static_cast<size_t>(r * stride + c)], sh);
      const uint16_t want_hi = f32_to_f16(v);
      const uint16_t want_lo = f32_to_f16(v - f16_to_f32(want_hi));
      const size_t j = static_cast<size_t>(r * cols + c);
      ASSERT_EQ(hi[j], want_hi) << r << "," << c;
      ASSERT_EQ(lo[j], want_lo) << r << "," << c;
      const double err = std::fabs(static_cast<double>(v) - f16_to_f32(hi[j]) - f16_to_f32(lo[j]));
      ASSERT_LE(err, std::max(std::ldexp(std::fabs(static_cast<double>(v)), -22), std::ldexp(1.0, -25))) << r << "," << c;
    }
  }
}

class GemmSplitTest : public ::testing::TestWithParam<TensorType> {};

TEST_P(GemmSplitTest, MatchesDoubleReference) {
  const Format& f = format_of(GetParam());
  ASSERT_TRUE(gemm_split_supports(f.type, 256));
  ASSERT_TRUE(prepare_matvec().ok());
  const uint64_t seed = fresh_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937_64 rng(seed);
  struct Shape {
    int64_t m, k;
  };
  for (const Shape shape : {Shape{77, 256}, Shape{300, 1024}}) {
    const std::vector<uint8_t> wbytes = random_rows(f, shape.k, shape.m, rng);
    const RefWeights ref = reference_weights(f, wbytes.data(), shape.m, shape.k);
    DeviceBuffer dw(wbytes.size());
    ASSERT_TRUE(upload(dw, wbytes));
    for (const int64_t n : {int64_t{1}, int64_t{7}, int64_t{130}}) {
      const int64_t xs = shape.k + 40, ys = shape.m == 300 ? shape.m + 3 : shape.m;
      const std::vector<float> x = mixed_rows(n, xs, shape.k, rng);
      const SplitX sx = split_on_device(x, n, xs, shape.k);
      const std::vector<float> factors = download<float>(sx.scale, static_cast<size_t>(n));
      std::vector<int64_t> rows(static_cast<size_t>(n));
      for (int64_t r = 0; r < n; ++r) rows[static_cast<size_t>(r)] = r;
      std::vector<float> first;
      for (const GemmTile tile : {GemmTile::kLarge, GemmTile::kSmall, GemmTile::kAuto}) {
        DeviceBuffer dy(static_cast<size_t>(n * ys) * 4);
        ASSERT_TRUE(dy.ok());
        const GemmWeights w{f.type, dw.get(), shape.k, shape.m, 1};
        STATUS_ASSERT(gemm(w, sx.hi.get<__half>(), shape.k, sx.scale.get<float>(), n, dy.get<float>(), ys, nullptr,
                           tile, sx.lo.get<__half>()));
        CUDA_ASSERT(cudaDeviceSynchronize());
        const std::vector<float> y = download<float>(dy, static_cast<size_t>(n * ys));
        std::ostringstream what;
        what << f.name << " split m=" << shape.m << " k=" << shape.k << " n=" << n << " tile " << static_cast<int>(tile);
        check_rows(y, ys, rows, rows, x, xs, factors, ref, what.str());
        for (int64_t r = 0; r < n; ++r) {
          for (int64_t c = shape.m; c < ys; ++c) {
            uint32_t u;
            std::memcpy(&u, &y[static_cast<size_t>(r * ys + c)], 4);
            ASSERT_EQ(u, 0xFFFFFFFFu) << what.str() << " wrote padding";
          }
        }
        // Each output is the same sequence of operations in either tile.
        if (first.empty()) {
          first = y;
        } else {
          for (size_t i = 0; i < y.size(); ++i) {
            ASSERT_TRUE(same_bits(y[i], first[i])) << what.str() << ": differs from the first tile at " << i;
          }
        }
      }
    }
  }
}

// Grouped: 5 experts' matrices, groups of 130, 0 (empty), 37, 1 and 64 rows plus one group with an
// invalid expert id; sorted row r reads X row x_rows[r] (a random token) and writes output row
// y_rows[r] (a permutation).
TEST_P(GemmSplitTest, GroupedGatherAndScatter) {
  const Format& f = format_of(GetParam());
  ASSERT_TRUE(prepare_matvec().ok());
  const uint64_t seed = fresh_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937_64 rng(seed);
  const int n_expert = 5, n_tokens = 90;
  const int64_t m = 200, k = 512;
  const std::vector<int32_t> offsets = {0, 130, 130, 167, 168, 232, 250};
  const std::vector<int32_t> group_expert = {3, 0, 1, 4, 2, 7};
  const int n_rows = offsets.back(), n_groups = static_cast<int>(group_expert.size());
  std::vector<int32_t> x_rows(static_cast<size_t>(n_rows)), y_rows(static_cast<size_t>(n_rows));
  for (int r = 0; r < n_rows; ++r) {
    x_rows[static_cast<size_t>(r)] = static_cast<int32_t>(rng() % n_tokens);
    y_rows[static_cast<size_t>(r)] = r;
  }
  std::shuffle(y_rows.begin(), y_rows.end(), rng);
  const std::vector<uint8_t> wbytes = random_rows(f, k, m * n_expert, rng);
  const size_t slab = static_cast<size_t>(row_bytes(f, k) * m);
  DeviceBuffer dw(wbytes.size()), d_off(offsets.size() * 4), d_ge(group_expert.size() * 4),
      d_xr(x_rows.size() * 4), d_yr(y_rows.size() * 4), dy(static_cast<size_t>(n_rows * m) * 4);
  ASSERT_TRUE(upload(dw, wbytes) && upload(d_off, offsets) && upload(d_ge, group_expert) && upload(d_xr, x_rows) &&
              upload(d_yr, y_rows) && dy.ok());
  const std::vector<float> x = mixed_rows(n_tokens, k, k, rng);
  const SplitX sx = split_on_device(x, n_tokens, k, k);
  const std::vector<float> factors = download<float>(sx.scale, static_cast<size_t>(n_tokens));
  for (const GemmTile tile : {GemmTile::kLarge, GemmTile::kSmall}) {
    CUDA_ASSERT(cudaMemset(dy.get(), 0xFF, dy.size()));
    GroupedGemm g;
    g.w = {f.type, dw.get(), k, m, n_expert};
    g.n_groups = n_groups;
    g.offsets = d_off.get<int32_t>();
    g.group_expert = d_ge.get<int32_t>();
    g.n_rows = n_rows;
    g.x = sx.hi.get<__half>();
    g.x_lo = sx.lo.get<__half>();
    g.x_stride = k;
    g.x_scale = sx.scale.get<float>();
    g.x_rows = d_xr.get<int32_t>();
    g.x_count = n_tokens;
    g.y = dy.get<float>();
    g.y_stride = m;
    g.y_rows = d_yr.get<int32_t>();
    g.y_count = n_rows;
    STATUS_ASSERT(grouped_gemm(g, nullptr, tile));
    CUDA_ASSERT(cudaDeviceSynchronize());
    const std::vector<float> y = download<float>(dy, static_cast<size_t>(n_rows * m));
    for (int gi = 0; gi < n_groups; ++gi) {
      const int e = group_expert[static_cast<size_t>(gi)];
      std::vector<int64_t> out_rows, xr;
      for (int r = offsets[static_cast<size_t>(gi)]; r < offsets[static_cast<size_t>(gi) + 1]; ++r) {
        out_rows.push_back(y_rows[static_cast<size_t>(r)]);
        xr.push_back(x_rows[static_cast<size_t>(r)]);
      }
      if (e >= n_expert) {  // invalid expert: its rows stay unwritten
        for (const int64_t r : out_rows) {
          for (int64_t c = 0; c < m; ++c) {
            uint32_t u;
            std::memcpy(&u, &y[static_cast<size_t>(r * m + c)], 4);
            ASSERT_EQ(u, 0xFFFFFFFFu) << "invalid expert wrote row " << r;
          }
        }
        continue;
      }
      const RefWeights ref = reference_weights(f, wbytes.data() + static_cast<size_t>(e) * slab, m, k);
      std::ostringstream what;
      what << f.name << " split grouped, group " << gi << " (expert " << e << "), tile " << static_cast<int>(tile);
      check_rows(y, m, out_rows, xr, x, k, factors, ref, what.str());
    }
  }
}

INSTANTIATE_TEST_SUITE_P(SplitFormats, GemmSplitTest,
                         ::testing::Values(TensorType::F16, TensorType::Q8_0, TensorType::Q2_K, TensorType::Q4_K,
                                           TensorType::IQ2_XXS),
                         [](const ::testing::TestParamInfo<TensorType>& i) {
                           return std::string(format_of(i.param).name);
                         });

TEST(GemmSplit, RejectsTypesItDoesNotTake) {
  EXPECT_FALSE(gemm_split_supports(TensorType::F32, 256));
  EXPECT_FALSE(gemm_split_supports(TensorType::BF16, 256));
  EXPECT_FALSE(gemm_split_supports(TensorType::Q8_0, 96));
  DeviceBuffer dw(256 * 4 * 8), dx(256 * 2 * 4), dy(8 * 4 * 4);
  ASSERT_TRUE(dw.ok() && dx.ok() && dy.ok());
  const GemmWeights w{TensorType::F32, dw.get(), 256, 8, 1};
  const Status s = gemm(w, dx.get<__half>(), 256, nullptr, 2, dy.get<float>(), 8, nullptr, GemmTile::kAuto,
                        dx.get<__half>() + 512);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("no split GEMM"), std::string::npos) << s.message();
}

}  // namespace
}  // namespace dsv4::cuda::testing
