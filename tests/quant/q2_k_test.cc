// Q2_K: hand-built blocks checking the scale/min nibble order, the subtracted min, and the
// bit-plane layout of qs.
#include <gtest/gtest.h>

#include <cstring>

#include "quant_test_util.h"

namespace dsv4::quant {
namespace {

void put_f16(uint8_t* p, uint16_t h) { std::memcpy(p, &h, 2); }

TEST(QuantQ2_K, ScaleLowNibbleMinHighNibbleAndPlanes) {
  uint8_t b[84] = {};
  // Group g: scale g (low nibble), min 15 − g (high nibble).
  for (int g = 0; g < 16; ++g) b[g] = static_cast<uint8_t>(g | ((15 - g) << 4));
  // First half: byte 0b11'10'01'00, so plane j holds q = j. Second half: all planes of byte l
  // hold l % 4.
  for (int l = 0; l < 32; ++l) b[16 + l] = 0xE4;
  for (int l = 0; l < 32; ++l) b[16 + 32 + l] = static_cast<uint8_t>((l % 4) * 0x55);
  put_f16(b + 80, 0x3c00);  // d = 1
  put_f16(b + 82, 0x3800);  // dmin = 0.5
  float w[256];
  dequantize_row(TensorType::Q2_K, b, w, 256);

  EXPECT_EQ(w[0], -7.5f);    // group 0: 0·0 − 0.5·15
  EXPECT_EQ(w[17], -7.0f);   // group 1, q 0: −0.5·14
  EXPECT_EQ(w[40], -4.5f);   // plane 1 (q 1), group 2: 2·1 − 0.5·13
  EXPECT_EQ(w[127], 17.0f);  // plane 3 (q 3), group 7: 7·3 − 0.5·8
  EXPECT_EQ(w[128], -3.5f);  // second half, l 0 (q 0), group 8: −0.5·7
  EXPECT_EQ(w[131], 20.5f);  // l 3 (q 3), group 8: 8·3 − 3.5
  EXPECT_EQ(w[246], 30.0f);  // plane 3, l 22 (q 2), group 15: 15·2 − 0
  EXPECT_EQ(w[255], 45.0f);  // l 31 (q 3), group 15: 15·3

  for (int n = 0; n < 256; ++n) {
    const int h = n / 128, j = (n % 128) / 32, l = n % 32;
    const int q = h == 0 ? j : l % 4;
    const int g = n / 16;
    EXPECT_EQ(w[n], 1.0f * static_cast<float>(g * q) - 0.5f * static_cast<float>(15 - g)) << n;
  }
}

TEST(QuantQ2_K, SingleBitsLandOnTheirElements) {
  uint8_t b[84] = {};
  for (int g = 0; g < 16; ++g) b[g] = 0x01;  // scale 1, min 0
  b[16 + 5] = 0x08;        // half 0, byte 5, bits 2..3 = 2: plane 1 → element 32 + 5, q 2
  b[16 + 32 + 20] = 0x40;  // half 1, byte 20, bits 6..7 = 1: plane 3 → element 128 + 96 + 20
  put_f16(b + 80, 0x3c00);
  put_f16(b + 82, 0x3c00);
  float w[256];
  dequantize_row(TensorType::Q2_K, b, w, 256);
  for (int n = 0; n < 256; ++n) {
    const float expect = n == 37 ? 2.0f : n == 244 ? 1.0f : 0.0f;
    EXPECT_EQ(w[n], expect) << n;
  }
}

TEST(QuantQ2_K, QuantizerUsesBothSuperBlockFactors) {
  std::mt19937_64 rng(8);
  const auto x = testing::gaussian(256 * 8, rng);
  std::vector<uint8_t> b(84 * 8);
  quantize_row(TensorType::Q2_K, x.data(), b.data(), 256 * 8);
  for (int blk = 0; blk < 8; ++blk) {
    uint16_t d, dmin;
    std::memcpy(&d, &b[84 * blk + 80], 2);
    std::memcpy(&dmin, &b[84 * blk + 82], 2);
    EXPECT_GT(f16_to_f32(d), 0.0f);
    EXPECT_GT(f16_to_f32(dmin), 0.0f);  // zero-mean data needs a min
  }
}

}  // namespace
}  // namespace dsv4::quant
