// Q8_0 (FORMATS.md §4.3): blocks of 32 int8 with one f16 scale, w = d·qs[n].
#include <algorithm>
#include <cmath>

#include "quant/formats.h"
#include "quant/simd.h"

namespace dsv4::quant {

void dequantize_q8_0(const void* src, float* dst, int64_t n) {
  const uint8_t* b = static_cast<const uint8_t*>(src);
  for (int64_t i = 0; i < n; i += kQ8_0Elems, b += kQ8_0Bytes, dst += kQ8_0Elems) {
    const float d = load_f16(b);
    const int8_t* qs = reinterpret_cast<const int8_t*>(b + 2);
    for (int j = 0; j < kQ8_0Elems; ++j) dst[j] = d * static_cast<float>(qs[j]);
  }
}

// d is factored out of each block: Σ d·q·x = d·Σ q·x, one multiply per block instead of 32.
float dot_q8_0_scalar(const void* row, const float* x, int64_t n) {
  const uint8_t* b = static_cast<const uint8_t*>(row);
  float acc = 0.0f;
  for (int64_t i = 0; i < n; i += kQ8_0Elems, b += kQ8_0Bytes, x += kQ8_0Elems) {
    const int8_t* qs = reinterpret_cast<const int8_t*>(b + 2);
    float s = 0.0f;
    for (int j = 0; j < kQ8_0Elems; ++j) s += static_cast<float>(qs[j]) * x[j];
    acc += load_f16(b) * s;
  }
  return acc;
}

float dot_q8_0(const void* row, const float* x, int64_t n) {
#ifdef DSV4_QUANT_AVX2
  const uint8_t* b = static_cast<const uint8_t*>(row);
  __m256 acc0 = _mm256_setzero_ps(), acc1 = acc0;
  // Bytes widened straight from memory (one shuffle per 8) rather than split in registers.
  auto q = [](const uint8_t* p) {
    return i8x8_to_ps(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)));
  };
  auto block = [&](const uint8_t* blk, const float* xb) {
    __m256 s = _mm256_mul_ps(q(blk + 2), _mm256_loadu_ps(xb));
    __m256 t = _mm256_mul_ps(q(blk + 10), _mm256_loadu_ps(xb + 8));
    s = _mm256_fmadd_ps(q(blk + 18), _mm256_loadu_ps(xb + 16), s);
    t = _mm256_fmadd_ps(q(blk + 26), _mm256_loadu_ps(xb + 24), t);
    return _mm256_add_ps(s, t);
  };
  int64_t i = 0;
  // Two blocks per iteration into separate accumulators, so consecutive blocks' FMAs overlap.
  for (; i + 2 * kQ8_0Elems <= n; i += 2 * kQ8_0Elems, b += 2 * kQ8_0Bytes, x += 2 * kQ8_0Elems) {
    acc0 = _mm256_fmadd_ps(_mm256_set1_ps(load_f16(b)), block(b, x), acc0);
    acc1 = _mm256_fmadd_ps(_mm256_set1_ps(load_f16(b + kQ8_0Bytes)),
                           block(b + kQ8_0Bytes, x + kQ8_0Elems), acc1);
  }
  if (i < n) acc0 = _mm256_fmadd_ps(_mm256_set1_ps(load_f16(b)), block(b, x), acc0);
  return hsum(_mm256_add_ps(acc0, acc1));
#else
  return dot_q8_0_scalar(row, x, n);
#endif
}

// ggml-style round to nearest: d = amax/127, q = rint(x/d). The quotient uses the f32 d, not
// its f16 rounding, matching the reference quantiser the published files came from.
void quantize_q8_0(const float* src, void* dst, int64_t n) {
  uint8_t* b = static_cast<uint8_t*>(dst);
  for (int64_t i = 0; i < n; i += kQ8_0Elems, b += kQ8_0Bytes, src += kQ8_0Elems) {
    float amax = 0.0f;
    for (int j = 0; j < kQ8_0Elems; ++j) amax = std::max(amax, std::fabs(src[j]));
    const float d = amax / 127.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    store_f16(b, d);
    int8_t* qs = reinterpret_cast<int8_t*>(b + 2);
    for (int j = 0; j < kQ8_0Elems; ++j) {
      const float q = std::nearbyint(src[j] * id);
      qs[j] = static_cast<int8_t>(std::clamp(q, -127.0f, 127.0f));
    }
  }
}

}  // namespace dsv4::quant
