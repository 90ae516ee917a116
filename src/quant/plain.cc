// F32, F16 and BF16 rows (FORMATS.md §4.2): one element per "block".
#include <cstring>

#include "quant/formats.h"
#include "quant/simd.h"

namespace dsv4::quant {

namespace {

inline float load_bf16(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return bf16_to_f32(h);
}

// Left-to-right sum: the portable fallback. The AVX2 paths use four 8-lane accumulators to hide
// FMA latency, so the two agree to a tolerance, not bit-for-bit.
template <class Load>
float dot_scalar_generic(const uint8_t* w, int64_t elem_bytes, const float* x, int64_t n,
                         Load load) {
  float acc = 0.0f;
  for (int64_t i = 0; i < n; ++i) acc += load(w + i * elem_bytes) * x[i];
  return acc;
}

}  // namespace

// ---- F32 ----

void dequantize_f32(const void* src, float* dst, int64_t n) {
  std::memcpy(dst, src, static_cast<size_t>(n) * sizeof(float));
}

float dot_f32_scalar(const void* row, const float* x, int64_t n) {
  return dot_scalar_generic(static_cast<const uint8_t*>(row), 4, x, n, [](const uint8_t* p) {
    float f;
    std::memcpy(&f, p, 4);
    return f;
  });
}

float dot_f32(const void* row, const float* x, int64_t n) {
#ifdef DSV4_QUANT_AVX2
  const float* w = static_cast<const float*>(row);
  __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    a0 = _mm256_fmadd_ps(_mm256_loadu_ps(w + i), _mm256_loadu_ps(x + i), a0);
    a1 = _mm256_fmadd_ps(_mm256_loadu_ps(w + i + 8), _mm256_loadu_ps(x + i + 8), a1);
    a2 = _mm256_fmadd_ps(_mm256_loadu_ps(w + i + 16), _mm256_loadu_ps(x + i + 16), a2);
    a3 = _mm256_fmadd_ps(_mm256_loadu_ps(w + i + 24), _mm256_loadu_ps(x + i + 24), a3);
  }
  for (; i + 8 <= n; i += 8) a0 = _mm256_fmadd_ps(_mm256_loadu_ps(w + i), _mm256_loadu_ps(x + i), a0);
  float acc = hsum(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
  for (; i < n; ++i) acc += w[i] * x[i];
  return acc;
#else
  return dot_f32_scalar(row, x, n);
#endif
}

void quantize_f32(const float* src, void* dst, int64_t n) {
  std::memcpy(dst, src, static_cast<size_t>(n) * sizeof(float));
}

// ---- F16 ----

// Scalar on purpose: f16_to_f32 is the exact widening the spec asks for (NaN payloads
// included), and embedding-row gathers are nowhere near the hot path.
void dequantize_f16(const void* src, float* dst, int64_t n) {
  const uint8_t* p = static_cast<const uint8_t*>(src);
  for (int64_t i = 0; i < n; ++i) dst[i] = load_f16(p + 2 * i);
}

float dot_f16_scalar(const void* row, const float* x, int64_t n) {
  return dot_scalar_generic(static_cast<const uint8_t*>(row), 2, x, n, load_f16);
}

float dot_f16(const void* row, const float* x, int64_t n) {
#ifdef DSV4_QUANT_AVX2
  const uint8_t* w = static_cast<const uint8_t*>(row);
  // F16C widening is exact for every finite half, so only the summation order differs from
  // the scalar path.
  auto ld = [&](int64_t i) {
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w + 2 * i)));
  };
  __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    a0 = _mm256_fmadd_ps(ld(i), _mm256_loadu_ps(x + i), a0);
    a1 = _mm256_fmadd_ps(ld(i + 8), _mm256_loadu_ps(x + i + 8), a1);
    a2 = _mm256_fmadd_ps(ld(i + 16), _mm256_loadu_ps(x + i + 16), a2);
    a3 = _mm256_fmadd_ps(ld(i + 24), _mm256_loadu_ps(x + i + 24), a3);
  }
  for (; i + 8 <= n; i += 8) a0 = _mm256_fmadd_ps(ld(i), _mm256_loadu_ps(x + i), a0);
  float acc = hsum(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
  for (; i < n; ++i) acc += load_f16(w + 2 * i) * x[i];
  return acc;
#else
  return dot_f16_scalar(row, x, n);
#endif
}

void quantize_f16(const float* src, void* dst, int64_t n) {
  uint8_t* p = static_cast<uint8_t*>(dst);
  for (int64_t i = 0; i < n; ++i) store_f16(p + 2 * i, src[i]);
}

// ---- BF16 ----

void dequantize_bf16(const void* src, float* dst, int64_t n) {
  const uint8_t* p = static_cast<const uint8_t*>(src);
  for (int64_t i = 0; i < n; ++i) dst[i] = load_bf16(p + 2 * i);
}

float dot_bf16_scalar(const void* row, const float* x, int64_t n) {
  return dot_scalar_generic(static_cast<const uint8_t*>(row), 2, x, n, load_bf16);
}

float dot_bf16(const void* row, const float* x, int64_t n) {
#ifdef DSV4_QUANT_AVX2
  const uint8_t* w = static_cast<const uint8_t*>(row);
  auto ld = [&](int64_t i) {
    const __m256i h = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w + 2 * i)));
    return _mm256_castsi256_ps(_mm256_slli_epi32(h, 16));
  };
  __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    a0 = _mm256_fmadd_ps(ld(i), _mm256_loadu_ps(x + i), a0);
    a1 = _mm256_fmadd_ps(ld(i + 8), _mm256_loadu_ps(x + i + 8), a1);
    a2 = _mm256_fmadd_ps(ld(i + 16), _mm256_loadu_ps(x + i + 16), a2);
    a3 = _mm256_fmadd_ps(ld(i + 24), _mm256_loadu_ps(x + i + 24), a3);
  }
  for (; i + 8 <= n; i += 8) a0 = _mm256_fmadd_ps(ld(i), _mm256_loadu_ps(x + i), a0);
  float acc = hsum(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
  for (; i < n; ++i) acc += load_bf16(w + 2 * i) * x[i];
  return acc;
#else
  return dot_bf16_scalar(row, x, n);
#endif
}

void quantize_bf16(const float* src, void* dst, int64_t n) {
  uint8_t* p = static_cast<uint8_t*>(dst);
  for (int64_t i = 0; i < n; ++i) {
    const uint16_t h = f32_to_bf16(src[i]);
    std::memcpy(p + 2 * i, &h, 2);
  }
}

}  // namespace dsv4::quant
