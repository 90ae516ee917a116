// F32, F16, BF16 rows.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <vector>

#include "quant_test_util.h"
#include "util/half.h"

namespace dsv4::quant {
namespace {

TEST(QuantPlain, F16DequantizesEveryHalfExactly) {
  std::vector<uint16_t> h(65536);
  for (uint32_t i = 0; i < 65536; ++i) h[i] = static_cast<uint16_t>(i);
  std::vector<float> out(65536);
  dequantize_row(TensorType::F16, h.data(), out.data(), 65536);
  for (uint32_t i = 0; i < 65536; ++i) {
    const float expect = f16_to_f32(h[i]);
    ASSERT_EQ(std::memcmp(&out[i], &expect, 4), 0) << "half " << i;
  }
  EXPECT_EQ(out[0x3c00], 1.0f);
  EXPECT_EQ(out[0xc000], -2.0f);
  EXPECT_EQ(out[0x0001], std::ldexp(1.0f, -24));
}

TEST(QuantPlain, Bf16IsTheUpperHalfOfAnF32) {
  const uint16_t h[4] = {0x3f80, 0xc000, 0x4049, 0x0001};
  float out[4];
  dequantize_row(TensorType::BF16, h, out, 4);
  EXPECT_EQ(out[0], 1.0f);
  EXPECT_EQ(out[1], -2.0f);
  EXPECT_EQ(f32_bits(out[2]), 0x40490000u);
  EXPECT_EQ(f32_bits(out[3]), 0x00010000u);
}

TEST(QuantPlain, F32CopiesAndQuantizersRoundToNearest) {
  std::mt19937_64 rng(3);
  const auto v = testing::gaussian(1000, rng);
  std::vector<float> f32(1000), back(1000);
  quantize_row(TensorType::F32, v.data(), f32.data(), 1000);
  dequantize_row(TensorType::F32, f32.data(), back.data(), 1000);
  EXPECT_EQ(back, v);

  std::vector<uint16_t> h(1000);
  quantize_row(TensorType::F16, v.data(), h.data(), 1000);
  for (int i = 0; i < 1000; ++i) EXPECT_EQ(h[i], f32_to_f16(v[i]));
  dequantize_row(TensorType::F16, h.data(), back.data(), 1000);
  for (int i = 0; i < 1000; ++i) EXPECT_LE(std::fabs(back[i] - v[i]), std::fabs(v[i]) * 0x1p-11f + 0x1p-25f);

  quantize_row(TensorType::BF16, v.data(), h.data(), 1000);
  for (int i = 0; i < 1000; ++i) EXPECT_EQ(h[i], f32_to_bf16(v[i]));
  dequantize_row(TensorType::BF16, h.data(), back.data(), 1000);
  for (int i = 0; i < 1000; ++i) EXPECT_LE(std::fabs(back[i] - v[i]), std::fabs(v[i]) * 0x1p-8f);
}

}  // namespace
}  // namespace dsv4::quant
