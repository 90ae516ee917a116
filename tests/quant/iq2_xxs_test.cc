// IQ2_XXS: the copied tables' self-checks (FORMATS.md §4.6), a hand-built block, and the
// quantiser's per-group optimality and sign parity.
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstring>
#include <limits>

#include "quant/iq2_xxs_tables.h"
#include "quant_test_util.h"

namespace dsv4::quant {
namespace {

TEST(QuantIQ2_XXS, TableSelfChecks) {
  for (int k = 0; k < 256; ++k) {
    for (int t = 0; t < 8; ++t) {
      const int v = static_cast<int>((iq2xxs_grid[k] >> (8 * t)) & 0xFF);
      EXPECT_TRUE(v == 8 || v == 25 || v == 43) << "grid " << k << " byte " << t << " = " << v;
    }
    for (int j = 0; j < k; ++j) EXPECT_NE(iq2xxs_grid[j], iq2xxs_grid[k]);
  }
  for (int i = 0; i < 128; ++i) {
    EXPECT_EQ(ksigns_iq2xs[i] & 127, i);
    EXPECT_EQ(ksigns_iq2xs[i] >> 7, std::popcount(static_cast<unsigned>(i)) & 1) << i;
  }
  for (int t = 0; t < 8; ++t) EXPECT_EQ(kmask_iq2xs[t], 1 << t);
  // Spot values from ggml-common.h.
  EXPECT_EQ(iq2xxs_grid[0], 0x0808080808080808ull);
  EXPECT_EQ(iq2xxs_grid[1], 0x080808080808082bull);
  EXPECT_EQ(iq2xxs_grid[255], 0x2b2b2b1908081908ull);
  EXPECT_EQ(ksigns_iq2xs[1], 129);
}

void put_sub_block(uint8_t* block, int sb, const uint8_t grid[4], const uint8_t signs[4], int ls) {
  uint32_t a0 = 0, a1 = static_cast<uint32_t>(ls) << 28;
  for (int g = 0; g < 4; ++g) {
    a0 |= static_cast<uint32_t>(grid[g]) << (8 * g);
    a1 |= static_cast<uint32_t>(signs[g]) << (7 * g);
  }
  std::memcpy(block + 2 + 8 * sb, &a0, 4);
  std::memcpy(block + 2 + 8 * sb + 4, &a1, 4);
}

TEST(QuantIQ2_XXS, HandBuiltBlock) {
  uint8_t b[66] = {};
  b[0] = 0x00;
  b[1] = 0x3c;  // d = 1
  // Sub-block 0, ls 3: db = (0.5 + 3)/4 = 0.875.
  const uint8_t grid0[4] = {0, 1, 2, 255}, signs0[4] = {0, 1, 127, 5};
  put_sub_block(b, 0, grid0, signs0, 3);
  // Sub-block 1, ls 0: db = 0.125; sign index 3 (two negatives, parity bit clear).
  const uint8_t grid1[4] = {0, 0, 0, 0}, signs1[4] = {3, 0, 0, 0};
  put_sub_block(b, 1, grid1, signs1, 0);
  // Sub-block 7, ls 15: db = 3.875.
  const uint8_t signs7[4] = {0, 0, 0, 0};
  put_sub_block(b, 7, grid1, signs7, 15);
  float w[256];
  dequantize_row(TensorType::IQ2_XXS, b, w, 256);

  const float expect0[32] = {
      7, 7, 7, 7, 7, 7, 7, 7,                                     // grid 0 (all 8), no signs
      -37.625f, 7, 7, 7, 7, 7, 7, -7,                             // grid 1 (43 first), signs 129
      -21.875f, -21.875f, -7, -7, -7, -7, -7, -7,                 // grid 2 (25, 25, 8…), signs 255
      -7, 21.875f, -7, 7, 21.875f, 37.625f, 37.625f, 37.625f,     // grid 255, signs 5
  };
  for (int i = 0; i < 32; ++i) EXPECT_EQ(w[i], expect0[i]) << i;
  EXPECT_EQ(w[32], -1.0f);
  EXPECT_EQ(w[33], -1.0f);
  for (int i = 34; i < 64; ++i) EXPECT_EQ(w[i], 1.0f) << i;
  for (int i = 64; i < 224; ++i) EXPECT_EQ(w[i], 1.0f) << i;  // all-zero bytes: ls 0, grid 0
  for (int i = 224; i < 256; ++i) EXPECT_EQ(w[i], 31.0f) << i;
}

// Every group of a quantised block is the best (grid point, sign index) for its sub-block
// scale, over all 256 × 128 choices, and has an even number of negatives.
TEST(QuantIQ2_XXS, QuantizerPicksBestGroupAndKeepsParity) {
  std::mt19937_64 rng(4);
  const int64_t n = 256 * 3;
  const auto x = testing::gaussian(n, rng);
  std::vector<uint8_t> b(66 * 3);
  quantize_row(TensorType::IQ2_XXS, x.data(), b.data(), n);
  std::vector<float> w(n);
  dequantize_row(TensorType::IQ2_XXS, b.data(), w.data(), n);
  for (int64_t blk = 0; blk < 3; ++blk) {
    const float d = load_f16(&b[66 * blk]);
    EXPECT_GT(d, 0.0f);
    for (int sb = 0; sb < 8; ++sb) {
      const uint32_t a1 = load_u32(&b[66 * blk + 2 + 8 * sb + 4]);
      const float db = d * (0.5f + static_cast<float>(a1 >> 28)) * 0.25f;
      for (int g = 0; g < 4; ++g) {
        const int64_t base = 256 * blk + 32 * sb + 8 * g;
        int negatives = 0;
        double have = 0;
        for (int t = 0; t < 8; ++t) {
          negatives += w[base + t] < 0;
          have += (x[base + t] - w[base + t]) * static_cast<double>(x[base + t] - w[base + t]);
        }
        EXPECT_EQ(negatives % 2, 0);
        double best = std::numeric_limits<double>::infinity();
        for (int k = 0; k < 256; ++k) {
          for (int s = 0; s < 128; ++s) {
            double e = 0;
            for (int t = 0; t < 8; ++t) {
              const float mag = static_cast<float>((iq2xxs_grid[k] >> (8 * t)) & 0xFF);
              const float v = db * mag * ((ksigns_iq2xs[s] & kmask_iq2xs[t]) ? -1.0f : 1.0f);
              e += (x[base + t] - v) * static_cast<double>(x[base + t] - v);
            }
            best = std::min(best, e);
          }
        }
        EXPECT_LE(have, best * (1 + 1e-5) + 1e-9) << "block " << blk << " sub " << sb << " group " << g;
      }
    }
  }
}

}  // namespace
}  // namespace dsv4::quant
