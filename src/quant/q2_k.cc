// Q2_K (FORMATS.md §4.4): 256-element super-blocks of 16 groups × 16, 2-bit q in bit planes,
// one byte per group holding the scale (low nibble) and min (high nibble); w = d·sc·q − dmin·mn.
//
// Element n lives in qs[32·(n/128) + n%32] at bit 2·((n%128)/32), and its group is n/16: each
// 32-byte half of qs, shifted by 2j and masked, yields 32 consecutive elements (two groups).
#include "quant/formats.h"
#include "quant/kquant_fit.h"
#include "quant/simd.h"

namespace dsv4::quant {

namespace {

constexpr int kGroups = 16;

// Forced inline: a call inside the dot's block loop would make the ymm accumulators (all
// caller-saved) spill and reload once per block, which measured ~40% slower.
[[gnu::always_inline]] inline void group_factors(const uint8_t* b, float* step, float* offset) {
  const float d = load_f16(b + 80), dmin = load_f16(b + 82);
  for (int g = 0; g < kGroups; ++g) {
    step[g] = d * static_cast<float>(b[g] & 0xF);
    offset[g] = dmin * static_cast<float>(b[g] >> 4);
  }
}

}  // namespace

void dequantize_q2_k(const void* src, float* dst, int64_t n) {
  const uint8_t* b = static_cast<const uint8_t*>(src);
  for (int64_t i = 0; i < n; i += kQK_K, b += kQ2_KBytes, dst += kQK_K) {
    float step[kGroups], offset[kGroups];
    group_factors(b, step, offset);
    const uint8_t* qs = b + 16;
    for (int e = 0; e < kQK_K; ++e) {
      const int h = e / 128, m = e % 128, j = m / 32, l = m % 32;
      const int q = (qs[32 * h + l] >> (2 * j)) & 3;
      const int is = 8 * h + 2 * j + l / 16;
      dst[e] = step[is] * static_cast<float>(q) - offset[is];
    }
  }
}

// Factored per group as in Q4_K: s·Σ q·x − m·Σ x (see the note on rounding in q4_k.cc).
float dot_q2_k_scalar(const void* row, const float* x, int64_t n) {
  const uint8_t* b = static_cast<const uint8_t*>(row);
  float acc = 0.0f, acc_min = 0.0f;
  for (int64_t i = 0; i < n; i += kQK_K, b += kQ2_KBytes, x += kQK_K) {
    float step[kGroups], offset[kGroups];
    group_factors(b, step, offset);
    const uint8_t* qs = b + 16;
    for (int g = 0; g < kGroups; ++g) {
      const int h = g / 8, j = (g % 8) / 2, l0 = 16 * (g % 2);
      float sqx = 0.0f, sx = 0.0f;
      for (int l = l0; l < l0 + 16; ++l) {
        const float xv = x[128 * h + 32 * j + l];
        sqx += static_cast<float>((qs[32 * h + l] >> (2 * j)) & 3) * xv;
        sx += xv;
      }
      acc += step[g] * sqx;
      acc_min += offset[g] * sx;
    }
  }
  return acc - acc_min;
}

float dot_q2_k(const void* row, const float* x, int64_t n) {
#ifdef DSV4_QUANT_AVX2
  // 8 bytes of qs widened to 32-bit lanes once, then each bit plane is a shift and a mask:
  // one byte shuffle per 32 elements instead of one per 8.
  const uint8_t* b = static_cast<const uint8_t*>(row);
  const __m256i low2 = _mm256_set1_epi32(3);
  // Two accumulator pairs, alternating by plane, keep the FMA chains short.
  __m256 acc0 = _mm256_setzero_ps(), acc1 = acc0, min0 = acc0, min1 = acc0;
  for (int64_t i = 0; i < n; i += kQK_K, b += kQ2_KBytes, x += kQK_K) {
    alignas(32) float step[kGroups], offset[kGroups];
    group_factors(b, step, offset);
    for (int h = 0; h < 2; ++h) {
      // Bytes [16c, 16c + 16) of the half hold, in plane j, the 16 elements of group 8h + 2j + c.
      for (int c = 0; c < 2; ++c) {
        const uint8_t* q8 = b + 16 + 32 * h + 16 * c;
        const __m256i v0 = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(q8)));
        const __m256i v1 = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(q8 + 8)));
        // Plane j of v0/v1, already shifted down by 2j.
        auto plane = [&](__m256i p0, __m256i p1, int j, __m256& acc, __m256& acc_min) {
          const __m256 q0 = _mm256_cvtepi32_ps(_mm256_and_si256(p0, low2));
          const __m256 q1 = _mm256_cvtepi32_ps(_mm256_and_si256(p1, low2));
          const float* xs = x + 128 * h + 32 * j + 16 * c;
          const __m256 x0 = _mm256_loadu_ps(xs), x1 = _mm256_loadu_ps(xs + 8);
          const __m256 s = _mm256_fmadd_ps(q1, x1, _mm256_mul_ps(q0, x0));
          const int g = 8 * h + 2 * j + c;
          acc = _mm256_fmadd_ps(_mm256_broadcast_ss(step + g), s, acc);
          acc_min = _mm256_fmadd_ps(_mm256_broadcast_ss(offset + g), _mm256_add_ps(x0, x1), acc_min);
        };
        plane(v0, v1, 0, acc0, min0);
        plane(_mm256_srli_epi32(v0, 2), _mm256_srli_epi32(v1, 2), 1, acc1, min1);
        plane(_mm256_srli_epi32(v0, 4), _mm256_srli_epi32(v1, 4), 2, acc0, min0);
        plane(_mm256_srli_epi32(v0, 6), _mm256_srli_epi32(v1, 6), 3, acc1, min1);
      }
    }
  }
  return hsum(_mm256_sub_ps(_mm256_add_ps(acc0, acc1), _mm256_add_ps(min0, min1)));
#else
  return dot_q2_k_scalar(row, x, n);
#endif
}

void quantize_q2_k(const float* src, void* dst, int64_t n) {
  uint8_t* b = static_cast<uint8_t*>(dst);
  for (int64_t i = 0; i < n; i += kQK_K, b += kQ2_KBytes, src += kQK_K) {
    KSuperBlock k;
    quantize_k_superblock(src, kGroups, 16, 3, 15, &k);
    for (int g = 0; g < kGroups; ++g) b[g] = static_cast<uint8_t>(k.sc[g] | (k.mn[g] << 4));
    uint8_t* qs = b + 16;
    for (int l = 0; l < 64; ++l) qs[l] = 0;
    for (int e = 0; e < kQK_K; ++e) {
      const int h = e / 128, j = (e % 128) / 32, l = e % 32;
      qs[32 * h + l] = static_cast<uint8_t>(qs[32 * h + l] | (k.q[e] << (2 * j)));
    }
    store_f16(b + 80, k.d);
    store_f16(b + 82, k.dmin);
  }
}

}  // namespace dsv4::quant
