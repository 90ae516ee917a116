// cuda/gemm.h's split mode against a double reference on fresh random inputs: f32 activations with
// mixed magnitudes inside a row (the small elements live in x_lo) and rows of zeros, converted on
// the device by convert_f32_to_f16_split (checked bit for bit first), every weight format the split
// GEMM takes, both tiles, odd sizes, strides, and the grouped form (gathered X rows with their row
// factors, outputs scattered to another order, an empty group, an invalid expert).
//
// Tolerance per output: the split's bound, stated and applied by split_reference.h.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <sstream>
#include <string>
#include <tuple>
#include <vector>

#include "cuda/cuda_test_util.h"
#include "cuda/gemm.h"
#include "cuda/gemm_int8_codes.cuh"
#include "cuda/matvec.h"
#include "cuda/moe.h"
#include "cuda/split_activations.h"
#include "cuda/split_reference.h"

namespace dsv4::cuda::testing {
namespace {


// hi = f16(x·2^s), lo = f16(x·2^s − hi) bit for bit, s as convert_f32_to_f16 picks it; an odd
// stride (the any-shape kernel) and rows held in registers (up to 32 768 values, one partly
// filled float4 slice).
TEST(GemmSplit, ConvertsF32ToTwoF16Parts) {
  std::mt19937_64 rng(fresh_seed());
  for (const auto& [rows, cols, stride] : {std::tuple<int64_t, int64_t, int64_t>{9, 320, 333}, {4, 1028, 1032},
                                           {5, 4096, 4100}, {2, 32768, 32768}}) {
    SCOPED_TRACE(std::to_string(cols) + " columns, stride " + std::to_string(stride));
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
        ASSERT_LE(err, std::max(std::ldexp(std::fabs(static_cast<double>(v)), -22), std::ldexp(1.0, -25)))
            << r << "," << c;
      }
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
      const std::vector<float>& factors = sx.factors;
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
        check_rows(y, ys, rows, rows, x.data(), xs, factors, ref, what.str());
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

// Split-K (GemmSplitK): a short call's column slices in one launch and their in-order sum; against
// the double reference with the split bound, padding unwritten, for the small tile and kAuto (which
// takes it there). A scratch too small for two slices gives the one pass's bits.
TEST_P(GemmSplitTest, SplitKMatchesDoubleReference) {
  const Format& f = format_of(GetParam());
  ASSERT_TRUE(prepare_matvec().ok());
  const uint64_t seed = fresh_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937_64 rng(seed);
  const int64_t m = 300, k = 4096, ys = m + 3;
  const std::vector<uint8_t> wbytes = random_rows(f, k, m, rng);
  const RefWeights ref = reference_weights(f, wbytes.data(), m, k);
  DeviceBuffer dw(wbytes.size()), scratch(size_t{16} << 20);
  ASSERT_TRUE(upload(dw, wbytes) && scratch.ok());
  const GemmWeights w{f.type, dw.get(), k, m, 1};
  for (const int64_t n : {int64_t{1}, int64_t{70}, int64_t{130}}) {
    const int64_t xs = k + 40;
    const std::vector<float> x = mixed_rows(n, xs, k, rng);
    const SplitX sx = split_on_device(x, n, xs, k);
    std::vector<int64_t> rows(static_cast<size_t>(n));
    for (int64_t r = 0; r < n; ++r) rows[static_cast<size_t>(r)] = r;
    auto run = [&](GemmTile tile, GemmSplitK split_k, std::vector<float>* y) {
      DeviceBuffer dy(static_cast<size_t>(n * ys) * 4);
      ASSERT_TRUE(dy.ok());
      CUDA_ASSERT(cudaMemset(dy.get(), 0xFF, dy.size()));
      STATUS_ASSERT(gemm(w, sx.hi.get<__half>(), k, sx.scale.get<float>(), n, dy.get<float>(), ys, nullptr, tile,
                         sx.lo.get<__half>(), split_k));
      CUDA_ASSERT(cudaDeviceSynchronize());
      *y = download<float>(dy, static_cast<size_t>(n * ys));
    };
    for (const GemmTile tile : {GemmTile::kSmall, GemmTile::kAuto}) {
      const GemmSplitK split_k{scratch.get<float>(), scratch.size()};
      const Result<int> splits = gemm_k_splits(w, k, n, tile, true, split_k);
      ASSERT_TRUE(splits.ok()) << splits.error().message;
      ASSERT_GE(*splits, 8) << "n " << n << ": these calls' tiles leave most SMs idle";
      std::vector<float> y;
      ASSERT_NO_FATAL_FAILURE(run(tile, split_k, &y));
      std::ostringstream what;
      what << f.name << " split-K (" << *splits << " slices) m=" << m << " k=" << k << " n=" << n << " tile "
           << static_cast<int>(tile);
      check_rows(y, ys, rows, rows, x.data(), xs, sx.factors, ref, what.str());
      for (int64_t r = 0; r < n; ++r) {
        for (int64_t c = m; c < ys; ++c) {
          uint32_t u;
          std::memcpy(&u, &y[static_cast<size_t>(r * ys + c)], 4);
          ASSERT_EQ(u, 0xFFFFFFFFu) << what.str() << " wrote padding";
        }
      }
    }
    const GemmSplitK too_small{scratch.get<float>(), static_cast<size_t>(n * m) * 4};
    const Result<int> one = gemm_k_splits(w, k, n, GemmTile::kSmall, true, too_small);
    ASSERT_TRUE(one.ok());
    ASSERT_EQ(*one, 1);
    std::vector<float> a, b;
    ASSERT_NO_FATAL_FAILURE(run(GemmTile::kSmall, too_small, &a));
    ASSERT_NO_FATAL_FAILURE(run(GemmTile::kSmall, {}, &b));
    for (size_t i = 0; i < a.size(); ++i) ASSERT_TRUE(same_bits(a[i], b[i])) << "n " << n << " at " << i;
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
  const std::vector<float>& factors = sx.factors;
  for (const GemmTile tile : {GemmTile::kLarge, GemmTile::kSmall}) {
    CUDA_ASSERT(cudaMemset(dy.get(), 0xFF, dy.size()));
    const GroupedGemm g = split_grouped_gemm({f.type, dw.get(), k, m, n_expert}, n_groups, d_off, d_ge, n_rows, sx,
                                             d_xr, n_tokens, dy, m, d_yr, n_rows);
    STATUS_ASSERT(grouped_gemm(g, nullptr, tile));
    CUDA_ASSERT(cudaDeviceSynchronize());
    const std::vector<float> y = download<float>(dy, static_cast<size_t>(n_rows * m));
    for (int gi = 0; gi < n_groups; ++gi) {
      const int e = group_expert[static_cast<size_t>(gi)];
      const GroupRows rows = group_rows(offsets, x_rows, y_rows, gi);
      const std::vector<int64_t>& out_rows = rows.out;
      const std::vector<int64_t>& xr = rows.x;
      if (e >= n_expert) {
        ASSERT_NO_FATAL_FAILURE(expect_unwritten(y, m, out_rows));
        continue;
      }
      const RefWeights ref = reference_weights(f, wbytes.data() + static_cast<size_t>(e) * slab, m, k);
      std::ostringstream what;
      what << f.name << " split grouped, group " << gi << " (expert " << e << "), tile " << static_cast<int>(tile);
      check_rows(y, m, out_rows, xr, x.data(), k, factors, ref, what.str());
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

// ---- int8 mode (gemm.h, GroupedGemm::x_limbs; cuda/gemm_int8.cu) ----
// Its bound (check_rows with int8): the fixed point rounds x to 2^-22·M(k) (M(k): the largest |x|
// of k's 256-block), and the real-valued weight d·code − dmin·m is applied exactly, so the rounding
// costs ≤ 2^-22·T, T = Σ_k mag_k·M(k); 2^-23·S: the CPU's f32 rounding of w (as above); per block
// four f32 roundings of its term and one of the running sum, and the offset MMA's hi + lo sums
// (2^-22 relative) with tensor-core truncation: γ8 = (k/256 + 8)·2^-23 of S. Dropping the lowest
// limb (≈ 2^-14·T), a wrong group, scale or block exponent exceed it by far.

// The int8 activations on the device; limb rows 16 bytes longer than cols (a stride ≠ cols).
struct Int8X {
  DeviceBuffer limbs, records;
  int64_t stride;
};
Int8X int8_on_device(const std::vector<float>& x, int64_t rows, int64_t stride, int64_t cols) {
  const int64_t ls = cols + 16;
  Int8X s{DeviceBuffer(static_cast<size_t>(3 * rows * ls)), DeviceBuffer(static_cast<size_t>(rows * (cols / 256) * 80)),
          ls};
  DeviceBuffer dx(x.size() * 4);
  EXPECT_TRUE(upload(dx, x) && s.limbs.ok() && s.records.ok());
  EXPECT_TRUE(convert_f32_to_int8(dx.get<float>(), stride, rows, cols, s.limbs.get<int8_t>(), ls,
                                  s.records.get<uint8_t>(), nullptr)
                  .ok());
  EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  return s;
}

// Limbs and records against the CPU (x_fixed.cuh's rounding, run here), and independently:
// Σ l_p·2^8p·2^E within 2^(E−1) ≤ 2^-22·M of x, the block's largest |X| in [2^21, 2^22], the group
// sums exact and their hi + lo within 2^-22, 2^E in the record (NaN for a block with an infinity).
TEST(GemmInt8, ConvertsF32ToLimbsAndRecords) {
  std::mt19937_64 rng(fresh_seed());
  const int64_t rows = 9, cols = 512, stride = 533;
  std::vector<float> x = mixed_rows(rows, stride, cols, rng);
  x[static_cast<size_t>(5 * stride + 300)] = std::numeric_limits<float>::infinity();  // row 5, block 1
  const Int8X d = int8_on_device(x, rows, stride, cols);
  const std::vector<int8_t> limbs = download<int8_t>(d.limbs, static_cast<size_t>(3 * rows * d.stride));
  const std::vector<uint8_t> rec = download<uint8_t>(d.records, static_cast<size_t>(rows * (cols / 256) * 80));
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t b = 0; b < cols / 256; ++b) {
      const float* xb = x.data() + r * stride + b * 256;
      uint32_t mbits = 0;
      for (int c = 0; c < 256; ++c) {
        uint32_t u;
        std::memcpy(&u, &xb[c], 4);
        mbits = std::max(mbits, u & 0x7FFFFFFFu);
      }
      const int e = detail::xblock_exponent(mbits, detail::kInt8TopBits);
      const uint8_t* rb = rec.data() + (r * (cols / 256) + b) * 80;
      float scale;
      std::memcpy(&scale, rb + 64, 4);
      const bool finite = mbits < 0x7F800000u;
      if (!finite) {
        ASSERT_TRUE(std::isnan(scale)) << r << "," << b;
      } else {
        ASSERT_EQ(scale, std::ldexp(1.0f, e)) << r << "," << b;
      }
      for (int i = 68; i < 80; ++i) ASSERT_EQ(rb[i], 0) << "record padding";
      int32_t top = 0;
      for (int grp = 0; grp < 16; ++grp) {
        int32_t sum = 0;
        for (int c = 16 * grp; c < 16 * grp + 16; ++c) {
          const size_t at = static_cast<size_t>(r * d.stride + b * 256 + c);
          const int32_t l0 = limbs[at], l1 = limbs[at + static_cast<size_t>(rows * d.stride)],
                        l2 = limbs[at + static_cast<size_t>(2 * rows * d.stride)];
          ASSERT_LE(std::abs(l2), 65);
          const int32_t X = l0 + 256 * l1 + 65536 * l2;
          ASSERT_EQ(X, detail::x_to_fixed(xb[c], e)) << r << "," << b << "," << c;
          if (finite) {
            const double err = std::fabs(std::ldexp(static_cast<double>(X), e) - xb[c]);
            ASSERT_LE(err, std::ldexp(1.0, e - 1)) << r << "," << c;
          }
          sum += X;
          top = std::max(top, std::abs(X));
        }
        uint16_t hi, lo, want_hi, want_lo;
        std::memcpy(&hi, rb + 2 * grp, 2);
        std::memcpy(&lo, rb + 32 + 2 * grp, 2);
        detail::group_sum_f16(sum, &want_hi, &want_lo);
        ASSERT_EQ(hi, want_hi) << r << "," << b << "," << grp;
        ASSERT_EQ(lo, want_lo) << r << "," << b << "," << grp;
        const double got = (static_cast<double>(f16_to_f32(hi)) + f16_to_f32(lo)) * 4096.0;
        ASSERT_LE(std::fabs(got - sum), std::ldexp(std::fabs(static_cast<double>(sum)), -22)) << r << "," << grp;
      }
      if (finite && mbits != 0) {
        ASSERT_GE(top, 1 << 21) << r << "," << b;
        ASSERT_LE(top, 1 << 22) << r << "," << b;
      }
    }
  }
}

// convert_swiglu_to_int8 gives the limbs and records of swiglu() then convert_f32_to_int8, byte for
// byte: gate and up rows interleaved (the fused gate/up GEMM's layout), with and without route
// weights and the clamp, one row with an infinity in its gate.
TEST(GemmInt8, ConvertsSwigluAsSwigluThenLimbs) {
  std::mt19937_64 rng(fresh_seed());
  const int64_t rows = 7, F = 512, stride = 2 * F;
  std::vector<float> gu = mixed_rows(rows, stride, stride, rng);
  gu[static_cast<size_t>(3 * stride + 17)] = std::numeric_limits<float>::infinity();
  std::vector<float> weights(static_cast<size_t>(rows));
  for (float& w : weights) w = std::uniform_real_distribution<float>(0.1f, 2.0f)(rng);
  DeviceBuffer dgu(gu.size() * 4), dw(weights.size() * 4), dmid(static_cast<size_t>(rows * F) * 4);
  const size_t limb_bytes = static_cast<size_t>(3 * rows * F), rec_bytes = static_cast<size_t>(rows * (F / 256) * 80);
  DeviceBuffer want_l(limb_bytes), want_r(rec_bytes), got_l(limb_bytes), got_r(rec_bytes);
  ASSERT_TRUE(upload(dgu, gu) && upload(dw, weights) && dmid.ok() && want_l.ok() && want_r.ok() && got_l.ok() &&
              got_r.ok());
  for (const bool weighted : {false, true}) {
    for (const float limit : {0.0f, 7.0f}) {
      SCOPED_TRACE(std::string(weighted ? "weighted" : "unweighted") + ", limit " + std::to_string(limit));
      SwigluArgs sw;
      sw.gate = dgu.get<float>();
      sw.up = dgu.get<float>() + F;
      sw.stride = stride;
      sw.weights = weighted ? dw.get<float>() : nullptr;
      sw.out = dmid.get<float>();
      sw.n_slots = static_cast<int>(rows);
      sw.F = F;
      sw.limit = limit;
      STATUS_ASSERT(swiglu(sw, nullptr));
      STATUS_ASSERT(convert_f32_to_int8(dmid.get<float>(), F, rows, F, want_l.get<int8_t>(), F,
                                        want_r.get<uint8_t>(), nullptr));
      STATUS_ASSERT(convert_swiglu_to_int8(sw.gate, sw.up, stride, sw.weights, limit, rows, F, got_l.get<int8_t>(), F,
                                           got_r.get<uint8_t>(), nullptr));
      CUDA_ASSERT(cudaDeviceSynchronize());
      ASSERT_EQ(download<uint8_t>(got_l, limb_bytes), download<uint8_t>(want_l, limb_bytes));
      ASSERT_EQ(download<uint8_t>(got_r, rec_bytes), download<uint8_t>(want_r, rec_bytes));
    }
  }
}

// A grouped launch of the int8 mode; groups as given, X rows gathered by x_rows when not empty.
void run_int8(const GemmWeights& w, const Int8X& x8, int64_t x_count, const std::vector<int32_t>& offsets,
              const std::vector<int32_t>& group_expert, const std::vector<int32_t>& x_rows,
              const std::vector<int32_t>& y_rows, float* y, int64_t y_stride, int64_t y_count,
              GemmTile tile = GemmTile::kAuto) {
  DeviceBuffer d_off(offsets.size() * 4), d_ge(std::max<size_t>(4, group_expert.size() * 4)),
      d_xr(std::max<size_t>(4, x_rows.size() * 4)), d_yr(std::max<size_t>(4, y_rows.size() * 4));
  const auto up = [](const DeviceBuffer& b, const std::vector<int32_t>& v) { return v.empty() ? b.ok() : upload(b, v); };
  ASSERT_TRUE(up(d_off, offsets) && up(d_ge, group_expert) && up(d_xr, x_rows) && up(d_yr, y_rows));
  GroupedGemm g;
  g.w = w;
  g.n_groups = static_cast<int>(offsets.size()) - 1;
  g.offsets = d_off.get<int32_t>();
  g.group_expert = group_expert.empty() ? nullptr : d_ge.get<int32_t>();
  g.n_rows = offsets.back();
  g.x_limbs = x8.limbs.get<int8_t>();
  g.x_records = x8.records.get<uint8_t>();
  g.x_stride = x8.stride;
  g.x_rows = x_rows.empty() ? nullptr : d_xr.get<int32_t>();
  g.x_count = x_count;
  g.y = y;
  g.y_stride = y_stride;
  g.y_rows = y_rows.empty() ? nullptr : d_yr.get<int32_t>();
  g.y_count = y_count;
  STATUS_ASSERT(grouped_gemm(g, nullptr, tile));
  CUDA_ASSERT(cudaDeviceSynchronize());
}

// The int8 kernels a row length runs on: mma.sync (kSmall) always; where the Q2_K rows are
// multiples of 16 bytes the wgmma kernel's 64-token tile, then its 16-token tile and their pair,
// which must give its bits (the same integer chains and f32 steps per output).
std::vector<GemmTile> int8_tiles(int64_t k) {
  if (k % 1024 == 0) return {GemmTile::kSmall, GemmTile::kWgmma, GemmTile::kWgmmaNarrow, GemmTile::kWgmmaNarrowPair};
  return {GemmTile::kSmall};
}
const char* tile_name(GemmTile t) {
  return t == GemmTile::kWgmma              ? "wgmma"
         : t == GemmTile::kWgmmaNarrow     ? "wgmma16"
         : t == GemmTile::kWgmmaNarrowPair ? "wgmma16+64"
                                           : "mma.sync";
}
// Whether y has the bits of the 64-token wgmma tile's output.
void expect_wgmma_bits(GemmTile tile, const std::vector<float>& y, const std::vector<float>& wgmma_y) {
  if (tile != GemmTile::kWgmmaNarrow && tile != GemmTile::kWgmmaNarrowPair) return;
  ASSERT_EQ(y.size(), wgmma_y.size());
  for (size_t i = 0; i < y.size(); ++i) {
    uint32_t a, b;
    std::memcpy(&a, &y[i], 4);
    std::memcpy(&b, &wgmma_y[i], 4);
    ASSERT_EQ(a, b) << tile_name(tile) << " differs from the 64-token tile at " << i;
  }
}

// One group (the dense product): odd sizes, n from 1 to past four row tiles, padding unwritten;
// both kernels.
TEST(GemmInt8, Q2_KMatchesDoubleReference) {
  const Format& f = format_of(TensorType::Q2_K);
  const uint64_t seed = fresh_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937_64 rng(seed);
  for (const auto& [m, k] : {std::pair<int64_t, int64_t>{77, 256}, {300, 1024}, {600, 2048}}) {
    const std::vector<uint8_t> wbytes = random_rows(f, k, m, rng);
    const RefWeights ref = reference_weights(f, wbytes.data(), m, k);
    DeviceBuffer dw(wbytes.size());
    ASSERT_TRUE(upload(dw, wbytes));
    for (const int64_t n : {int64_t{1}, int64_t{7}, int64_t{70}, int64_t{130}, int64_t{257}}) {
      const int64_t xs = k + 40, ys = m + 3;
      const std::vector<float> x = mixed_rows(n, xs, k, rng);
      const Int8X x8 = int8_on_device(x, n, xs, k);
      DeviceBuffer dy(static_cast<size_t>(n * ys) * 4);
      ASSERT_TRUE(dy.ok());
      std::vector<int64_t> rows(static_cast<size_t>(n));
      for (int64_t r = 0; r < n; ++r) rows[static_cast<size_t>(r)] = r;
      std::vector<float> wgmma_y;
      for (const GemmTile tile : int8_tiles(k)) {
        CUDA_ASSERT(cudaMemset(dy.get(), 0xFF, dy.size()));
        run_int8({f.type, dw.get(), k, m, 1}, x8, n, {0, static_cast<int32_t>(n)}, {}, {}, {}, dy.get<float>(), ys,
                 n, tile);
        const std::vector<float> y = download<float>(dy, static_cast<size_t>(n * ys));
        if (tile == GemmTile::kWgmma) wgmma_y = y;
        ASSERT_NO_FATAL_FAILURE(expect_wgmma_bits(tile, y, wgmma_y));
        std::ostringstream what;
        what << "Q2_K int8 " << tile_name(tile) << " m=" << m << " k=" << k << " n=" << n;
        check_rows(y, ys, rows, rows, x.data(), xs, {}, ref, what.str(), true);
        for (int64_t r = 0; r < n; ++r) {
          for (int64_t c = m; c < ys; ++c) {
            uint32_t u;
            std::memcpy(&u, &y[static_cast<size_t>(r * ys + c)], 4);
            ASSERT_EQ(u, 0xFFFFFFFFu) << what.str() << " wrote padding";
          }
        }
      }
    }
  }
}

// Grouped as GemmSplitTest.GroupedGatherAndScatter: 5 experts, an empty group, an invalid expert,
// groups of 1, 18, 37, 64 and 130 rows, gathered X rows, outputs scattered by a permutation; both
// kernels, every wgmma tile.
TEST(GemmInt8, Q2_KGroupedGatherAndScatter) {
  const Format& f = format_of(TensorType::Q2_K);
  const uint64_t seed = fresh_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937_64 rng(seed);
  const int n_expert = 5, n_tokens = 90;
  const int64_t m = 200;
  const std::vector<int32_t> offsets = {0, 130, 130, 167, 168, 232, 250};
  const std::vector<int32_t> group_expert = {3, 0, 1, 4, 2, 7};
  const int n_rows = offsets.back();
  std::vector<int32_t> x_rows(static_cast<size_t>(n_rows)), y_rows(static_cast<size_t>(n_rows));
  for (int r = 0; r < n_rows; ++r) {
    x_rows[static_cast<size_t>(r)] = static_cast<int32_t>(rng() % n_tokens);
    y_rows[static_cast<size_t>(r)] = r;
  }
  std::shuffle(y_rows.begin(), y_rows.end(), rng);
  for (const int64_t k : {int64_t{512}, int64_t{1024}}) {
    const std::vector<uint8_t> wbytes = random_rows(f, k, m * n_expert, rng);
    const size_t slab = static_cast<size_t>(row_bytes(f, k) * m);
    const std::vector<float> x = mixed_rows(n_tokens, k, k, rng);
    const Int8X x8 = int8_on_device(x, n_tokens, k, k);
    DeviceBuffer dw(wbytes.size()), dy(static_cast<size_t>(n_rows * m) * 4);
    ASSERT_TRUE(upload(dw, wbytes) && dy.ok());
    std::vector<float> wgmma_y;
    for (const GemmTile tile : int8_tiles(k)) {
      CUDA_ASSERT(cudaMemset(dy.get(), 0xFF, dy.size()));
      run_int8({f.type, dw.get(), k, m, n_expert}, x8, n_tokens, offsets, group_expert, x_rows, y_rows,
               dy.get<float>(), m, n_rows, tile);
      const std::vector<float> y = download<float>(dy, static_cast<size_t>(n_rows * m));
      if (tile == GemmTile::kWgmma) wgmma_y = y;
      ASSERT_NO_FATAL_FAILURE(expect_wgmma_bits(tile, y, wgmma_y));
      for (size_t gi = 0; gi < group_expert.size(); ++gi) {
        const int e = group_expert[gi];
        const GroupRows rows = group_rows(offsets, x_rows, y_rows, static_cast<int>(gi));
        if (e >= n_expert) {
          ASSERT_NO_FATAL_FAILURE(expect_unwritten(y, m, rows.out));
          continue;
        }
        const RefWeights ref = reference_weights(f, wbytes.data() + static_cast<size_t>(e) * slab, m, k);
        check_rows(y, m, rows.out, rows.x, x.data(), k, {}, ref,
                   std::string("Q2_K int8 grouped, ") + tile_name(tile) + ", k " + std::to_string(k) + ", group " +
                       std::to_string(gi),
                   true);
      }
    }
  }
}

// Rows longer than the 16-token tile takes (kInt8NarrowMaxIn): kAuto runs groups of few rows on the
// 64-token tile alone, and asking for the 16-token tile (or the pair) is an error.
TEST(GemmInt8, LongRowsTakeThe64TokenTile) {
  const Format& f = format_of(TensorType::Q2_K);
  const uint64_t seed = fresh_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937_64 rng(seed);
  const int64_t k = 3072, m = 96, n = 5;
  const std::vector<uint8_t> wbytes = random_rows(f, k, m, rng);
  const RefWeights ref = reference_weights(f, wbytes.data(), m, k);
  const std::vector<float> x = mixed_rows(n, k, k, rng);
  const Int8X x8 = int8_on_device(x, n, k, k);
  DeviceBuffer dw(wbytes.size()), dy(static_cast<size_t>(n * m) * 4);
  ASSERT_TRUE(upload(dw, wbytes) && dy.ok());
  run_int8({f.type, dw.get(), k, m, 1}, x8, n, {0, static_cast<int32_t>(n)}, {}, {}, {}, dy.get<float>(), m, n);
  std::vector<int64_t> rows(static_cast<size_t>(n));
  for (int64_t r = 0; r < n; ++r) rows[static_cast<size_t>(r)] = r;
  check_rows(download<float>(dy, static_cast<size_t>(n * m)), m, rows, rows, x.data(), k, {}, ref,
             "Q2_K int8, k 3072, kAuto", true);
  DeviceBuffer d_off(8);
  ASSERT_TRUE(upload(d_off, std::vector<int32_t>{0, static_cast<int32_t>(n)}));
  GroupedGemm g;
  g.w = {f.type, dw.get(), k, m, 1};
  g.n_groups = 1;
  g.offsets = d_off.get<int32_t>();
  g.n_rows = n;
  g.x_limbs = x8.limbs.get<int8_t>();
  g.x_records = x8.records.get<uint8_t>();
  g.x_stride = x8.stride;
  g.y = dy.get<float>();
  g.y_stride = m;
  for (const GemmTile tile : {GemmTile::kWgmmaNarrow, GemmTile::kWgmmaNarrowPair}) {
    const Status s = grouped_gemm(g, nullptr, tile);
    ASSERT_FALSE(s.ok());
    EXPECT_NE(s.message().find("16-token tile takes rows of at most 2048"), std::string::npos) << s.message();
  }
}

TEST(GemmInt8, RejectsWhatItDoesNotTake) {
  EXPECT_TRUE(gemm_int8_supports(TensorType::Q2_K, 512));
  EXPECT_FALSE(gemm_int8_supports(TensorType::IQ2_XXS, 512));
  EXPECT_FALSE(gemm_int8_supports(TensorType::Q2_K, 300));
  DeviceBuffer dw(84 * 8), dx(3 * 256 * 4 + 80 * 4), dy(8 * 4 * 4), d_off(8);
  ASSERT_TRUE(dw.ok() && dx.ok() && dy.ok() && upload(d_off, std::vector<int32_t>{0, 4}));
  GroupedGemm g;
  g.w = {TensorType::IQ2_XXS, dw.get(), 256, 8, 1};
  g.n_groups = 1;
  g.offsets = d_off.get<int32_t>();
  g.n_rows = 4;
  g.x_limbs = dx.get<int8_t>();
  g.x_records = dx.get<uint8_t>() + 3 * 256 * 4;
  g.x_stride = 256;
  g.y = dy.get<float>();
  g.y_stride = 8;
  Status s = grouped_gemm(g, nullptr);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("no int8 GEMM"), std::string::npos) << s.message();
  g.w.type = TensorType::Q2_K;
  g.x_stride = 264;  // not a multiple of 16
  s = grouped_gemm(g, nullptr);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("multiple of 16"), std::string::npos) << s.message();
  // The wgmma kernel's tiles: rows of 84 bytes are not 16-byte multiples (TMA); no 64 × 256 tile, nor
  // the tails pair.
  g.x_stride = 256;
  for (const GemmTile tile : {GemmTile::kWgmma, GemmTile::kWgmmaNarrow, GemmTile::kWgmmaNarrowPair}) {
    s = grouped_gemm(g, nullptr, tile);
    ASSERT_FALSE(s.ok());
    EXPECT_NE(s.message().find("int8 wgmma tiles take weight rows of a multiple of 16 bytes"), std::string::npos)
        << s.message();
  }
  for (const GemmTile tile : {GemmTile::kWgmma64, GemmTile::kWgmmaTails}) {
    s = grouped_gemm(g, nullptr, tile);
    ASSERT_FALSE(s.ok());
    EXPECT_NE(s.message().find("no 64 × 256 wgmma tile"), std::string::npos) << s.message();
  }
}

}  // namespace
}  // namespace dsv4::cuda::testing
