// Helpers for the CUDA tests: checked device buffers, random valid weight blocks, the CPU
// reference with its error scale.
#pragma once

#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "gguf/types.h"
#include "quant/formats.h"
#include "quant/quant.h"
#include "util/half.h"

namespace dsv4::cuda::testing {

// A seed for a test's random inputs, different every run (tests print it in their trace).
inline uint64_t fresh_seed() {
  std::random_device rd;
  return (static_cast<uint64_t>(rd()) << 32) ^ rd();
}

using gguf::TensorType;

#define CUDA_ASSERT(expr)                                                                \
  do {                                                                                   \
    const cudaError_t cuda_assert_e_ = (expr);                                           \
    ASSERT_EQ(cuda_assert_e_, cudaSuccess) << #expr << ": " << cudaGetErrorName(cuda_assert_e_) \
                                           << " " << cudaGetErrorString(cuda_assert_e_); \
  } while (0)

#define STATUS_ASSERT(expr)                                              \
  do {                                                                   \
    const ::dsv4::Status status_assert_s_ = (expr);                      \
    ASSERT_TRUE(status_assert_s_.ok()) << #expr << ": "                  \
                                       << (status_assert_s_.ok() ? "" : status_assert_s_.message()); \
  } while (0)

// A device allocation freed on scope exit. Poisoned with 0xFF bytes (a NaN in every f32) so an
// output that is never written cannot pass.
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  explicit DeviceBuffer(size_t bytes) : bytes_(bytes) {
    if (cudaMalloc(&p_, bytes ? bytes : 1) != cudaSuccess) p_ = nullptr;
    if (p_ && cudaMemset(p_, 0xFF, bytes ? bytes : 1) != cudaSuccess) {
      cudaFree(p_);
      p_ = nullptr;
    }
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer(DeviceBuffer&& o) noexcept : p_(o.p_), bytes_(o.bytes_) {
    o.p_ = nullptr;
    o.bytes_ = 0;
  }
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(DeviceBuffer&& o) noexcept {
    if (this != &o) {
      if (p_) cudaFree(p_);
      p_ = o.p_;
      bytes_ = o.bytes_;
      o.p_ = nullptr;
      o.bytes_ = 0;
    }
    return *this;
  }
  ~DeviceBuffer() {
    if (p_) cudaFree(p_);
  }
  bool ok() const { return p_ != nullptr; }
  template <class T = void>
  T* get() const {
    return static_cast<T*>(p_);
  }
  uint8_t* bytes() const { return static_cast<uint8_t*>(p_); }
  size_t size() const { return bytes_; }

 private:
  void* p_ = nullptr;
  size_t bytes_ = 0;
};

struct Format {
  TensorType type;
  const char* name;
  int64_t block_elems;
  int64_t block_bytes;
  std::vector<int> f16_offsets;  // f16 scale fields inside a block
};

inline const std::vector<Format>& all_formats() {
  static const std::vector<Format> f = {
      {TensorType::F32, "F32", 1, 4, {}},          {TensorType::F16, "F16", 1, 2, {}},
      {TensorType::BF16, "BF16", 1, 2, {}},        {TensorType::Q8_0, "Q8_0", 32, 34, {0}},
      {TensorType::Q2_K, "Q2_K", 256, 84, {80, 82}}, {TensorType::Q4_K, "Q4_K", 256, 144, {0, 2}},
      {TensorType::IQ2_XXS, "IQ2_XXS", 256, 66, {0}},
  };
  return f;
}

inline const Format& format_of(TensorType t) {
  for (const Format& f : all_formats()) {
    if (f.type == t) return f;
  }
  return all_formats()[0];
}

inline int64_t row_bytes(const Format& f, int64_t n) { return n / f.block_elems * f.block_bytes; }

// A moderate random half: ±2^[-8, 2] with a random mantissa; now and then zero or a subnormal.
inline uint16_t moderate_f16(std::mt19937_64& rng) {
  const uint64_t r = rng();
  const uint16_t sign = (r & 1) ? 0x8000 : 0;
  const uint16_t mant = static_cast<uint16_t>((r >> 8) & 0x3FF);
  switch ((r >> 1) & 63) {
    case 0: return sign;                                         // ±0
    case 1: return static_cast<uint16_t>(sign | (mant ? mant : 1));  // subnormal
    default: {
      const uint16_t exp = static_cast<uint16_t>(15 - 8 + ((r >> 20) % 11));  // 2^-8 .. 2^2
      return static_cast<uint16_t>(sign | (exp << 10) | mant);
    }
  }
}

// n_rows rows of n_in elements: random bytes with every f16 scale replaced by a moderate half for
// block formats; Gaussian values for the plain types.
inline std::vector<uint8_t> random_rows(const Format& f, int64_t n_in, int64_t n_rows,
                                        std::mt19937_64& rng) {
  std::vector<uint8_t> w(static_cast<size_t>(row_bytes(f, n_in) * n_rows));
  const int64_t n = n_in * n_rows;
  if (f.block_elems == 1) {
    std::normal_distribution<float> normal;
    for (int64_t i = 0; i < n; ++i) {
      const float v = normal(rng);
      if (f.type == TensorType::F32) std::memcpy(w.data() + 4 * i, &v, 4);
      const uint16_t h = f.type == TensorType::F16 ? f32_to_f16(v) : f32_to_bf16(v);
      if (f.type != TensorType::F32) std::memcpy(w.data() + 2 * i, &h, 2);
    }
    return w;
  }
  for (auto& b : w) b = static_cast<uint8_t>(rng());
  for (int64_t blk = 0; blk < n / f.block_elems; ++blk) {
    for (int off : f.f16_offsets) {
      const uint16_t h = moderate_f16(rng);
      std::memcpy(w.data() + blk * f.block_bytes + off, &h, 2);
    }
  }
  return w;
}

inline std::vector<float> gaussian(int64_t n, std::mt19937_64& rng) {
  std::normal_distribution<float> normal;
  std::vector<float> v(static_cast<size_t>(n));
  for (auto& x : v) x = normal(rng);
  return v;
}

// Per element, the magnitude the f32 rounding error of a dot is relative to: |w| for most formats;
// |step·q| + |offset| for Q2_K and Q4_K, whose dots are computed factored (step·Σqx − offset·Σx).
inline std::vector<double> magnitudes(const Format& f, const uint8_t* row, int64_t n) {
  std::vector<double> m(static_cast<size_t>(n));
  if (f.type == TensorType::Q2_K) {
    for (int64_t blk = 0; blk < n / 256; ++blk) {
      const uint8_t* b = row + blk * 84;
      const double d = quant::load_f16(b + 80), dmin = quant::load_f16(b + 82);
      for (int e = 0; e < 256; ++e) {
        const int h = e / 128, mm = e % 128, j = mm / 32, l = mm % 32;
        const int q = (b[16 + 32 * h + l] >> (2 * j)) & 3, sc = b[8 * h + 2 * j + l / 16];
        m[static_cast<size_t>(blk * 256 + e)] = std::fabs(d * (sc & 15) * q) + std::fabs(dmin * (sc >> 4));
      }
    }
    return m;
  }
  if (f.type == TensorType::Q4_K) {
    for (int64_t blk = 0; blk < n / 256; ++blk) {
      const uint8_t* b = row + blk * 144;
      const double d = quant::load_f16(b), dmin = quant::load_f16(b + 2);
      for (int e = 0; e < 256; ++e) {
        const int p = e / 64, l = e % 64, sb = 2 * p + l / 32;
        int sc, mn;
        quant::q4_k_scale_min(b + 4, sb, &sc, &mn);
        const int q = l < 32 ? (b[16 + 32 * p + l] & 0xF) : (b[16 + 32 * p + l - 32] >> 4);
        m[static_cast<size_t>(blk * 256 + e)] = std::fabs(d * sc * q) + std::fabs(dmin * mn);
      }
    }
    return m;
  }
  std::vector<float> w(static_cast<size_t>(n));
  quant::dequantize_row(f.type, row, w.data(), n);
  for (int64_t i = 0; i < n; ++i) m[static_cast<size_t>(i)] = std::fabs(w[static_cast<size_t>(i)]);
  return m;
}

// The CPU's answer for one row, the exact (double) dot of the dequantised row, the error scale
// Σ_i magnitude_i·|x_i|, and Σ_i magnitude_i·max|x| over i's block of 256 (the scale of rounding
// the activations to fixed point per 256-block, x_fixed.cuh).
struct RowRef {
  double cpu = 0;
  double exact = 0;
  double scale = 0;
  double block_max_scale = 0;
};

inline RowRef row_reference(const Format& f, const uint8_t* row, const float* x, int64_t n) {
  RowRef r;
  r.cpu = quant::dot_row(f.type, row, x, n);
  std::vector<float> w(static_cast<size_t>(n));
  quant::dequantize_row(f.type, row, w.data(), n);
  const std::vector<double> m = magnitudes(f, row, n);
  double block_max = 0;
  for (int64_t i = 0; i < n; ++i) {
    if (i % 256 == 0) {
      block_max = 0;
      for (int64_t j = i; j < std::min<int64_t>(n, i + 256); ++j) block_max = std::max<double>(block_max, std::fabs(x[j]));
    }
    r.exact += static_cast<double>(w[static_cast<size_t>(i)]) * x[i];
    r.scale += m[static_cast<size_t>(i)] * std::fabs(x[i]);
    r.block_max_scale += m[static_cast<size_t>(i)] * block_max;
  }
  return r;
}

inline bool same_bits(float a, float b) {
  uint32_t ua, ub;
  std::memcpy(&ua, &a, 4);
  std::memcpy(&ub, &b, 4);
  return ua == ub;
}

}  // namespace dsv4::cuda::testing
