// Shared helpers for the quant tests: formats by type, random rows, exact reference dots.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "quant/formats.h"
#include "quant/quant.h"

namespace dsv4::quant::testing {

struct Format {
  TensorType type;
  const char* name;
  int64_t block_elems;
  int64_t block_bytes;
  std::vector<int> f16_offsets;  // f16 scale fields inside a block
  float (*dot_scalar)(const void*, const float*, int64_t);
};

inline const std::vector<Format>& all_formats() {
  static const std::vector<Format> f = {
      {TensorType::F32, "F32", 1, 4, {}, dot_f32_scalar},
      {TensorType::F16, "F16", 1, 2, {}, dot_f16_scalar},
      {TensorType::BF16, "BF16", 1, 2, {}, dot_bf16_scalar},
      {TensorType::Q8_0, "Q8_0", 32, 34, {0}, dot_q8_0_scalar},
      {TensorType::Q2_K, "Q2_K", 256, 84, {80, 82}, dot_q2_k_scalar},
      {TensorType::Q4_K, "Q4_K", 256, 144, {0, 2}, dot_q4_k_scalar},
      {TensorType::IQ2_XXS, "IQ2_XXS", 256, 66, {0}, dot_iq2_xxs_scalar},
  };
  return f;
}

inline int64_t row_bytes(const Format& f, int64_t n) { return n / f.block_elems * f.block_bytes; }

inline uint16_t random_finite_f16(std::mt19937_64& rng) {
  for (;;) {
    const uint16_t h = static_cast<uint16_t>(rng());
    if (((h >> 10) & 0x1f) != 0x1f) return h;
  }
}

// A row of n elements: random bytes with every f16 scale replaced by a random finite half
// (subnormals included) for block formats; moderate random values for the plain types, whose
// full range would overflow an f32 dot.
inline std::vector<uint8_t> random_row(const Format& f, int64_t n, std::mt19937_64& rng) {
  std::vector<uint8_t> row(static_cast<size_t>(row_bytes(f, n)));
  if (f.block_elems == 1) {
    std::normal_distribution<float> normal;
    std::uniform_int_distribution<int> expo(-12, 12);
    std::vector<float> v(static_cast<size_t>(n));
    for (auto& x : v) x = std::ldexp(normal(rng), expo(rng));
    quantize_row(f.type, v.data(), row.data(), n);
    return row;
  }
  for (auto& b : row) b = static_cast<uint8_t>(rng());
  for (int64_t blk = 0; blk < n / f.block_elems; ++blk) {
    for (int off : f.f16_offsets) {
      const uint16_t h = random_finite_f16(rng);
      std::memcpy(row.data() + blk * f.block_bytes + off, &h, 2);
    }
  }
  return row;
}

inline std::vector<float> gaussian(int64_t n, std::mt19937_64& rng, float sigma = 1.0f) {
  std::normal_distribution<float> normal(0.0f, sigma);
  std::vector<float> v(static_cast<size_t>(n));
  for (auto& x : v) x = normal(rng);
  return v;
}

struct RefDot {
  double dot;      // Σ w·x in double from the dequantised weights
  double abs_sum;  // Σ |w·x|, the scale the tolerance is relative to
};

inline RefDot reference_dot(TensorType t, const void* row, const float* x, int64_t n) {
  std::vector<float> w(static_cast<size_t>(n));
  dequantize_row(t, row, w.data(), n);
  RefDot r{0, 0};
  for (int64_t i = 0; i < n; ++i) {
    const double p = static_cast<double>(w[i]) * x[i];
    r.dot += p;
    r.abs_sum += std::fabs(p);
  }
  return r;
}

}  // namespace dsv4::quant::testing
