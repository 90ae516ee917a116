// Q4_K: hand-built blocks checking the 6-bit scale/min unpacking of every sub-block and the
// nibble layout of qs.
#include <gtest/gtest.h>

#include <cstring>

#include "quant_test_util.h"

namespace dsv4::quant {
namespace {

// Scale and min codes per sub-block and their packing, worked out by hand:
//   bytes 0..3  = sc[0..3] | (sc[4..7] >> 4) << 6
//   bytes 4..7  = mn[0..3] | (mn[4..7] >> 4) << 6
//   bytes 8..11 = (sc[4..7] & 15) | (mn[4..7] & 15) << 4
constexpr int kSc[8] = {1, 2, 3, 63, 17, 33, 48, 63};
constexpr int kMn[8] = {5, 0, 62, 7, 40, 1, 16, 63};
constexpr uint8_t kScales[12] = {0x41, 0x82, 0xC3, 0xFF, 0x85, 0x00, 0x7E, 0xC7, 0x81, 0x11, 0x00, 0xFF};

TEST(QuantQ4_K, SixBitScaleUnpacking) {
  for (int sb = 0; sb < 8; ++sb) {
    int sc, mn;
    q4_k_scale_min(kScales, sb, &sc, &mn);
    EXPECT_EQ(sc, kSc[sb]) << "sub-block " << sb;
    EXPECT_EQ(mn, kMn[sb]) << "sub-block " << sb;
  }
}

TEST(QuantQ4_K, HandBuiltBlock) {
  uint8_t b[144] = {};
  const uint16_t d = 0x3c00, dmin = 0x3800;  // 1, 0.5
  std::memcpy(b, &d, 2);
  std::memcpy(b + 2, &dmin, 2);
  std::memcpy(b + 4, kScales, 12);
  // Byte 32p + l: low nibble (element 64p + l) = l & 15, high nibble (element 64p + 32 + l)
  // = 15 − (l & 15).
  for (int p = 0; p < 4; ++p) {
    for (int l = 0; l < 32; ++l) b[16 + 32 * p + l] = static_cast<uint8_t>((l & 15) | ((15 - (l & 15)) << 4));
  }
  float w[256];
  dequantize_row(TensorType::Q4_K, b, w, 256);

  EXPECT_EQ(w[0], -2.5f);    // sub-block 0, q 0: −0.5·5
  EXPECT_EQ(w[33], 28.0f);   // sub-block 1, q 14: 2·14 − 0
  EXPECT_EQ(w[69], -16.0f);  // sub-block 2, q 5: 3·5 − 0.5·62
  EXPECT_EQ(w[111], -3.5f);  // sub-block 3, q 0: −0.5·7
  EXPECT_EQ(w[130], 14.0f);  // sub-block 4, q 2: 17·2 − 0.5·40
  EXPECT_EQ(w[163], 395.5f); // sub-block 5, q 12: 33·12 − 0.5·1
  EXPECT_EQ(w[209], 40.0f);  // sub-block 6, q 1: 48·1 − 0.5·16
  EXPECT_EQ(w[255], -31.5f); // sub-block 7, q 0: −0.5·63

  for (int n = 0; n < 256; ++n) {
    const int sb = n / 32, l = n % 32;
    const int q = sb % 2 == 0 ? (l & 15) : 15 - (l & 15);
    EXPECT_EQ(w[n], static_cast<float>(kSc[sb] * q) - 0.5f * static_cast<float>(kMn[sb])) << n;
  }
}

// The quantiser's packing must be the exact inverse of the unpacking for every code value.
TEST(QuantQ4_K, QuantizerPackingRoundTripsCodes) {
  std::mt19937_64 rng(21);
  // Sub-blocks with very different spreads and offsets use many distinct 6-bit codes.
  std::vector<float> x(256 * 16);
  std::normal_distribution<float> normal;
  for (size_t i = 0; i < x.size(); ++i) {
    const int sub = static_cast<int>(i / 32);
    x[i] = normal(rng) * (0.05f + 0.3f * static_cast<float>(sub % 8)) + 0.2f * static_cast<float>(sub % 5);
  }
  std::vector<uint8_t> b(144 * 16);
  quantize_row(TensorType::Q4_K, x.data(), b.data(), static_cast<int64_t>(x.size()));
  std::vector<float> w(x.size());
  dequantize_row(TensorType::Q4_K, b.data(), w.data(), static_cast<int64_t>(x.size()));
  double err = 0, sig = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    err += (w[i] - x[i]) * (w[i] - x[i]);
    sig += x[i] * x[i];
  }
  EXPECT_LT(std::sqrt(err / sig), 0.12);
}

}  // namespace
}  // namespace dsv4::quant
