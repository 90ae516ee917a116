// Small AVX2 helpers shared by the format files.
#pragma once

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define DSV4_QUANT_AVX2 1

namespace dsv4::quant {

// Fixed reduction order, so a dot gives the same bits whatever the caller.
inline float hsum(__m256 v) {
  const __m128 s4 = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  const __m128 s2 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
  const __m128 s1 = _mm_add_ss(s2, _mm_shuffle_ps(s2, s2, 1));
  return _mm_cvtss_f32(s1);
}

// 8 signed bytes (the low 8 of v) as 8 floats.
inline __m256 i8x8_to_ps(__m128i v) { return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(v)); }

}  // namespace dsv4::quant
#endif
