// MODEL.md §11 simulations against hand-derived values.
#include "cpu/sim.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <vector>

#include "util/half.h"

namespace dsv4::cpu {
namespace {

TEST(Pow2Ceil, ExponentMantissaRule) {
  EXPECT_EQ(pow2_ceil(1.0f), 1.0f);
  EXPECT_EQ(pow2_ceil(std::nextafter(1.0f, 2.0f)), 2.0f);
  EXPECT_EQ(pow2_ceil(std::nextafter(1.0f, 0.0f)), 1.0f);
  EXPECT_EQ(pow2_ceil(0.75f), 1.0f);
  EXPECT_EQ(pow2_ceil(3.0f), 4.0f);
  EXPECT_EQ(pow2_ceil(0x1p-126f), 0x1p-126f);
  // Subnormals: the smallest power of two not below the value.
  EXPECT_EQ(pow2_ceil(0x1p-130f), 0x1p-130f);
  EXPECT_EQ(pow2_ceil(3 * 0x1p-140f), 0x1p-138f);
  EXPECT_EQ(pow2_ceil(std::nextafter(0x1p-126f, 0.0f)), 0x1p-126f);
}

TEST(E4M3, Normals) {
  EXPECT_EQ(e4m3_round(1.0f), 1.0f);
  EXPECT_EQ(e4m3_round(1.0625f), 1.0f);   // tie between codes m=0 and m=1 -> even m=0
  EXPECT_EQ(e4m3_round(1.1875f), 1.25f);  // tie between m=1 and m=2 -> m=2
  EXPECT_EQ(e4m3_round(1.07f), 1.125f);
  EXPECT_EQ(e4m3_round(448.0f), 448.0f);  // max finite (e=15, m=6)
  EXPECT_EQ(e4m3_round(432.0f), 448.0f);  // tie 416 (m=5) / 448 (m=6)
  EXPECT_EQ(e4m3_round(400.0f), 384.0f);  // tie 384 (m=4) / 416 (m=5)
  EXPECT_EQ(e4m3_round(-400.0f), -384.0f);
  EXPECT_EQ(e4m3_round(0.3f), 0.3125f);  // binade [0.25, 0.5): step 1/32, 9.6 -> 10
}

TEST(E4M3, Subnormals) {
  const float q = 0x1p-9f;  // subnormal step
  EXPECT_EQ(e4m3_round(q), q);
  EXPECT_EQ(e4m3_round(3 * q), 3 * q);
  EXPECT_EQ(e4m3_round(0.5f * q), 0.0f);  // tie 0 / 1 -> 0
  EXPECT_EQ(e4m3_round(0.51f * q), q);
  EXPECT_EQ(e4m3_round(1.5f * q), 2 * q);             // tie 1 / 2 -> 2
  EXPECT_EQ(e4m3_round(2.5f * q), 2 * q);             // tie 2 / 3 -> 2
  EXPECT_EQ(e4m3_round(7.5f * q), 0x1p-6f);           // tie 7 (0x07) / min normal (0x08) -> 0x08
  EXPECT_EQ(e4m3_round(0x1p-6f * 1.0625f), 0x1p-6f);  // min normal binade tie -> even
  EXPECT_EQ(e4m3_round(-1.5f * q), -2 * q);
  EXPECT_TRUE(std::signbit(e4m3_round(-0.1f * q)));
}

TEST(E2M1, TiesToEvenCode) {
  EXPECT_EQ(e2m1_round(0.25f), 0.0f);
  EXPECT_EQ(e2m1_round(0.75f), 1.0f);
  EXPECT_EQ(e2m1_round(1.25f), 1.0f);
  EXPECT_EQ(e2m1_round(1.75f), 2.0f);
  EXPECT_EQ(e2m1_round(2.5f), 2.0f);
  EXPECT_EQ(e2m1_round(3.5f), 4.0f);
  EXPECT_EQ(e2m1_round(5.0f), 4.0f);
  EXPECT_EQ(e2m1_round(-5.0f), -4.0f);
  EXPECT_EQ(e2m1_round(-2.5f), -2.0f);
  EXPECT_EQ(e2m1_round(0.26f), 0.5f);
  EXPECT_EQ(e2m1_round(0.74f), 0.5f);
  EXPECT_EQ(e2m1_round(2.6f), 3.0f);
  EXPECT_EQ(e2m1_round(5.01f), 6.0f);
  EXPECT_EQ(e2m1_round(6.0f), 6.0f);
  EXPECT_TRUE(std::signbit(e2m1_round(-0.2f)));
}

TEST(Fp8Sim, BlockWithScale) {
  // amax 28 = 448·2^-4: 28·fl32(1/448) rounds to exactly 2^-4, so the scale is 2^-4 and every
  // value is rounded as v·16 on the e4m3 grid.
  std::vector<float> v(64, 0.0f);
  const float s = 0x1p-4f;
  v[0] = 28.0f;
  v[1] = 1.0625f * s;
  v[2] = 1.1875f * s;
  v[3] = 1.5f * 0x1p-9f * s;
  v[4] = 0.5f * 0x1p-9f * s;
  v[5] = 400.0f * s;
  v[6] = -432.0f * s;
  fp8_sim(v.data(), 64);
  EXPECT_EQ(v[0], 28.0f);
  EXPECT_EQ(v[1], 1.0f * s);
  EXPECT_EQ(v[2], 1.25f * s);
  EXPECT_EQ(v[3], 0x1p-8f * s);
  EXPECT_EQ(v[4], 0.0f);
  EXPECT_EQ(v[5], 384.0f * s);
  EXPECT_EQ(v[6], -448.0f * s);
  for (int i = 7; i < 64; ++i) EXPECT_EQ(v[i], 0.0f);
}

TEST(Fp8Sim, Pow2EdgeProductIsExactPowerOfTwoVsOneUlpAbove) {
  // 448·fl32(1/448) rounds to exactly 1.0 -> scale 1: 3·2^-9 is an e4m3 subnormal, kept.
  std::vector<float> a(64, 0.0f);
  a[0] = 448.0f;
  a[1] = 3 * 0x1p-9f;
  fp8_sim(a.data(), 64);
  EXPECT_EQ(a[0], 448.0f);
  EXPECT_EQ(a[1], 3 * 0x1p-9f);
  // One ulp above 448: the product is one ulp above 1.0 -> scale 2. 3·2^-9 / 2 = 1.5·2^-9 ties
  // to 2·2^-9, times 2 = 2^-7; the amax itself rounds to 224·2 = 448.
  std::vector<float> b(64, 0.0f);
  b[0] = std::nextafter(448.0f, 1000.0f);
  b[1] = 3 * 0x1p-9f;
  fp8_sim(b.data(), 64);
  EXPECT_EQ(b[0], 448.0f);
  EXPECT_EQ(b[1], 0x1p-7f);
}

TEST(Fp8Sim, ProductRuleNotLog2f) {
  // amax = 448·2^-20·(1 + 2^-23): the f32 product is above 2^-20, so the bit rule gives 2^-19;
  // ceil(log2f(amax/448)) would give 2^-20 (log2f rounds -19.99999983 to -20).
  const float amax = f32_from_bits(0x39e00001u);
  EXPECT_EQ(pow2_ceil(amax * (1.0f / 448.0f)), 0x1p-19f);
  std::vector<float> v(64, 0.0f);
  v[0] = amax;
  v[1] = 3 * 0x1p-9f * 0x1p-20f;  // would be kept exactly with a 2^-20 scale
  fp8_sim(v.data(), 64);
  EXPECT_EQ(v[1], 2 * 0x1p-9f * 0x1p-19f);  // v/2^-19 = 1.5·2^-9 ties to 2·2^-9
}

TEST(Fp8Sim, AmaxFloorAndZeros) {
  std::vector<float> z(64, 0.0f);
  fp8_sim(z.data(), 64);
  for (float x : z) EXPECT_EQ(x, 0.0f);
  // amax 1e-6 is floored to 1e-4: scale POW2CEIL(1e-4·fl32(1/448)) = 2^-22; 1e-6/2^-22 = 4.19
  // -> 4 (step 0.5 in [4, 8)).
  std::vector<float> t(64, 0.0f);
  t[0] = 1e-6f;
  fp8_sim(t.data(), 64);
  EXPECT_EQ(t[0], 4.0f * 0x1p-22f);
}

TEST(Fp8Sim, BlocksAreIndependentAndPartialLastBlock) {
  std::vector<float> v(100, 0.0f);
  v[0] = 448.0f;   // block 0: scale 1
  v[1] = 0.003f;   // subnormal on the grid: 1.536·2^-9 -> 2·2^-9
  v[64] = 28.0f;   // block 1 (36 values): scale 2^-4
  v[65] = 0.003f;  // normal on the grid: 0.048 = 12.288·2^-8 -> 12·2^-8, /16
  fp8_sim(v.data(), 100);
  EXPECT_EQ(v[1], 0.00390625f);
  EXPECT_EQ(v[64], 28.0f);
  EXPECT_EQ(v[65], 0.0029296875f);
}

TEST(Fp4Sim, HandValues) {
  std::vector<float> v = {6, 5, 3.5f, 2.5f, 1.75f, 1.25f, 0.75f, 0.25f, -5, -2.6f, 0.3f, 4.4f};
  v.resize(32, 0.0f);
  fp4_sim(v.data(), 32);  // amax 6: 6·fl32(1/6) rounds to exactly 1 -> scale 1
  const std::vector<float> want = {6, 4, 4, 2, 2, 1, 1, 0, -4, -3, 0.5f, 4};
  for (size_t i = 0; i < want.size(); ++i) EXPECT_EQ(v[i], want[i]) << i;
  // Same pattern scaled by 2^-3 (amax 0.75 -> scale 2^-3).
  std::vector<float> w = {0.75f, 0.625f, 0.4375f, 0.3125f};
  w.resize(32, 0.0f);
  fp4_sim(w.data(), 32);
  EXPECT_EQ(w[0], 0.75f);
  EXPECT_EQ(w[1], 0.5f);
  EXPECT_EQ(w[2], 0.5f);
  EXPECT_EQ(w[3], 0.25f);
}

TEST(Fp4Sim, Pow2EdgeAndFloor) {
  // 6·fl32(1/6) = 1 exactly after rounding -> scale 1; one ulp above 6 -> scale 2.
  std::vector<float> a(32, 0.0f), b(32, 0.0f);
  a[0] = 6.0f;
  a[1] = 1.5f;
  b[0] = std::nextafter(6.0f, 7.0f);
  b[1] = 1.5f;  // 0.75 on the grid -> tie -> 1 -> 2.0
  fp4_sim(a.data(), 32);
  fp4_sim(b.data(), 32);
  EXPECT_EQ(a[1], 1.5f);
  EXPECT_EQ(b[0], 6.0f);
  EXPECT_EQ(b[1], 2.0f);
  // All zeros stay zeros (amax floored to 6·2^-126, scale 2^-126).
  std::vector<float> z(32, 0.0f);
  fp4_sim(z.data(), 32);
  for (float x : z) EXPECT_EQ(x, 0.0f);
  EXPECT_EQ(pow2_ceil(6.0f * 0x1p-126f * (1.0f / 6.0f)), 0x1p-126f);
}

TEST(Hadamard, SylvesterOrderAndScale) {
  // H4 column 1 in natural order is (+, -, +, -); scaled by 1/2.
  std::vector<float> v = {0, 1, 0, 0};
  hadamard(v.data(), 4);
  EXPECT_EQ(v, (std::vector<float>{0.5f, -0.5f, 0.5f, -0.5f}));
  // Order 128: entry (i, j) = (-1)^popcount(i & j) / sqrt(128).
  for (int j : {0, 1, 5, 77, 127}) {
    std::vector<float> e(128, 0.0f);
    e[static_cast<size_t>(j)] = 1.0f;
    hadamard(e.data(), 128);
    for (int i = 0; i < 128; ++i) {
      const float sign = (__builtin_popcount(static_cast<unsigned>(i & j)) % 2) ? -1.0f : 1.0f;
      EXPECT_EQ(e[static_cast<size_t>(i)], sign * 0.08838834764831845f) << i << " " << j;
    }
  }
  // Orthonormal: applying it twice gives the input back (to rounding).
  std::vector<float> x(128);
  for (int i = 0; i < 128; ++i)
    x[static_cast<size_t>(i)] = std::sin(0.37f * static_cast<float>(i)) * 3.0f;
  std::vector<float> y = x;
  hadamard(y.data(), 128);
  hadamard(y.data(), 128);
  for (int i = 0; i < 128; ++i)
    EXPECT_NEAR(y[static_cast<size_t>(i)], x[static_cast<size_t>(i)], 1e-5f);
}

TEST(SimOptions, Presets) {
  EXPECT_TRUE(SimOptions::official().fp8_kv);
  EXPECT_TRUE(SimOptions::official().fp4_indexer);
  EXPECT_FALSE(SimOptions::plain().fp8_kv);
  EXPECT_FALSE(SimOptions::plain().fp4_indexer);
  EXPECT_FALSE(SimOptions::official() == SimOptions::plain());
}

}  // namespace
}  // namespace dsv4::cpu
