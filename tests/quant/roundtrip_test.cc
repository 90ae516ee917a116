// Quantise → dequantise round trips on Gaussian data.
//
// Relative RMS error ‖w − x‖/‖x‖ on N(0, 1), measured (65536 values, seed 11) and bounded
// with margin; the figures are printed so regressions in quantiser quality show up:
//   Q8_0 0.0053 (bound 0.008), Q4_K 0.070 (bound 0.09), Q2_K 0.263 (bound 0.32),
//   IQ2_XXS 0.327 (bound 0.38).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>

#include "quant_test_util.h"

namespace dsv4::quant {
namespace {

double roundtrip_rel_rms(TensorType t, const std::vector<float>& x, std::vector<float>* w) {
  const int64_t n = static_cast<int64_t>(x.size());
  const testing::Format* f = nullptr;
  for (const auto& g : testing::all_formats()) {
    if (g.type == t) f = &g;
  }
  std::vector<uint8_t> q(static_cast<size_t>(testing::row_bytes(*f, n)));
  quantize_row(t, x.data(), q.data(), n);
  w->resize(x.size());
  dequantize_row(t, q.data(), w->data(), n);
  double err = 0, sig = 0;
  for (int64_t i = 0; i < n; ++i) {
    err += ((*w)[i] - x[i]) * static_cast<double>((*w)[i] - x[i]);
    sig += x[i] * static_cast<double>(x[i]);
  }
  const double rel = sig > 0 ? std::sqrt(err / sig) : std::sqrt(err);
  if (sig > 0) std::printf("[ measured ] %s relative RMS error: %.4f\n", f->name, rel);
  return rel;
}

class QuantRoundTrip : public ::testing::Test {
 protected:
  void SetUp() override {
    std::mt19937_64 rng(11);
    x_ = testing::gaussian(65536, rng);
  }
  std::vector<float> x_, w_;
};

TEST_F(QuantRoundTrip, Q8_0) {
  EXPECT_LT(roundtrip_rel_rms(TensorType::Q8_0, x_, &w_), 0.008);
  // Per element: half a step of the f32 d plus the f16 rounding of d over |q| ≤ 127.
  for (size_t blk = 0; blk < x_.size() / 32; ++blk) {
    float amax = 0;
    for (int i = 0; i < 32; ++i) amax = std::max(amax, std::fabs(x_[32 * blk + i]));
    const float d = amax / 127.0f;
    for (int i = 0; i < 32; ++i) {
      ASSERT_LE(std::fabs(w_[32 * blk + i] - x_[32 * blk + i]), d * (0.5f + 127.0f * 0x1p-11f) * 1.0001f);
    }
  }
}

TEST_F(QuantRoundTrip, Q4_K) { EXPECT_LT(roundtrip_rel_rms(TensorType::Q4_K, x_, &w_), 0.09); }

TEST_F(QuantRoundTrip, Q2_K) { EXPECT_LT(roundtrip_rel_rms(TensorType::Q2_K, x_, &w_), 0.32); }

TEST_F(QuantRoundTrip, IQ2_XXS) { EXPECT_LT(roundtrip_rel_rms(TensorType::IQ2_XXS, x_, &w_), 0.38); }

TEST_F(QuantRoundTrip, ScaleInvariance) {
  // The K-quants fit each block independently, so scaling the input scales the error.
  for (TensorType t : {TensorType::Q4_K, TensorType::Q2_K, TensorType::IQ2_XXS}) {
    std::vector<float> small(x_.begin(), x_.begin() + 4096);
    for (float& v : small) v *= 0.01f;
    EXPECT_LT(roundtrip_rel_rms(t, small, &w_), t == TensorType::Q4_K ? 0.09 : 0.38);
  }
}

TEST_F(QuantRoundTrip, ZeroBlocksStayZero) {
  std::vector<float> zero(512, 0.0f);
  for (TensorType t : {TensorType::Q8_0, TensorType::Q4_K, TensorType::Q2_K, TensorType::IQ2_XXS}) {
    roundtrip_rel_rms(t, zero, &w_);
    for (float v : w_) EXPECT_EQ(v, 0.0f);
  }
}

}  // namespace
}  // namespace dsv4::quant
