// Q8_0: hand-built blocks and the quantiser.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <vector>

#include "quant_test_util.h"

namespace dsv4::quant {
namespace {

TEST(QuantQ8_0, HandBuiltBlocks) {
  uint8_t b[2 * 34];
  // Block 0: d = 0.5 (0x3800), qs = −128, −127, …, 96 in steps of 7.
  b[0] = 0x00;
  b[1] = 0x38;
  for (int i = 0; i < 32; ++i) b[2 + i] = static_cast<uint8_t>(static_cast<int8_t>(-128 + 7 * i));
  // Block 1: d = −3 (0xc200), qs[i] = i − 16.
  b[34] = 0x00;
  b[35] = 0xc2;
  for (int i = 0; i < 32; ++i) b[36 + i] = static_cast<uint8_t>(static_cast<int8_t>(i - 16));
  float out[64];
  dequantize_row(TensorType::Q8_0, b, out, 64);
  EXPECT_EQ(out[0], -64.0f);
  EXPECT_EQ(out[1], -60.5f);
  EXPECT_EQ(out[31], 0.5f * 89.0f);
  for (int i = 0; i < 32; ++i) EXPECT_EQ(out[i], 0.5f * static_cast<float>(-128 + 7 * i)) << i;
  EXPECT_EQ(out[32], 48.0f);
  EXPECT_EQ(out[48], 0.0f);
  EXPECT_EQ(out[63], -45.0f);
  for (int i = 0; i < 32; ++i) EXPECT_EQ(out[32 + i], -3.0f * static_cast<float>(i - 16)) << i;
}

TEST(QuantQ8_0, QuantizerUsesAmaxOver127AndRoundsToNearest) {
  float x[32];
  for (int i = 0; i < 32; ++i) x[i] = 0.0f;
  x[0] = 2.54f;   // amax: d = 0.02, q = 127
  x[1] = -2.54f;  // q = −127
  x[2] = 0.031f;  // 1.55 → 2
  x[3] = -0.029f;  // −1.45 → −1
  uint8_t b[34];
  quantize_row(TensorType::Q8_0, x, b, 32);
  uint16_t d;
  std::memcpy(&d, b, 2);
  EXPECT_EQ(d, f32_to_f16(2.54f / 127.0f));
  const int8_t* qs = reinterpret_cast<const int8_t*>(b + 2);
  EXPECT_EQ(qs[0], 127);
  EXPECT_EQ(qs[1], -127);
  EXPECT_EQ(qs[2], 2);
  EXPECT_EQ(qs[3], -1);
  EXPECT_EQ(qs[4], 0);

  // All zeros: d = 0, every q = 0.
  for (float& v : x) v = 0.0f;
  quantize_row(TensorType::Q8_0, x, b, 32);
  for (uint8_t v : b) EXPECT_EQ(v, 0);
}

}  // namespace
}  // namespace dsv4::quant
