// Q4_K (FORMATS.md §4.5): 256-element super-blocks of 8 sub-blocks × 32, 4-bit q, 6-bit
// scale/min codes packed into 12 bytes; w = d·sc·q − dmin·mn.
#include "quant/formats.h"
#include "quant/kquant_fit.h"
#include "quant/simd.h"

namespace dsv4::quant {

namespace {

constexpr int kSub = 8;

// Per sub-block step d·sc and offset dmin·mn, in the dequantiser's f32 arithmetic.
// Forced inline: a call inside the dot's block loop would make the ymm accumulators (all
// caller-saved) spill and reload once per block, which measured ~40% slower.
[[gnu::always_inline]] inline void sub_factors(const uint8_t* b, float* step, float* offset) {
  const float d = load_f16(b), dmin = load_f16(b + 2);
  for (int sb = 0; sb < kSub; ++sb) {
    int sc, mn;
    q4_k_scale_min(b + 4, sb, &sc, &mn);
    step[sb] = d * static_cast<float>(sc);
    offset[sb] = dmin * static_cast<float>(mn);
  }
}

}  // namespace

void dequantize_q4_k(const void* src, float* dst, int64_t n) {
  const uint8_t* b = static_cast<const uint8_t*>(src);
  for (int64_t i = 0; i < n; i += kQK_K, b += kQ4_KBytes, dst += kQK_K) {
    float step[kSub], offset[kSub];
    sub_factors(b, step, offset);
    const uint8_t* qs = b + 16;
    for (int e = 0; e < kQK_K; ++e) {
      const int p = e / 64, l = e % 64, sb = 2 * p + l / 32;
      const int q = l < 32 ? (qs[32 * p + l] & 0xF) : (qs[32 * p + l - 32] >> 4);
      dst[e] = step[sb] * static_cast<float>(q) - offset[sb];
    }
  }
}

// Factored per sub-block: Σ (s·q − m)·x = s·Σ q·x − m·Σ x. This is the dequantise-then-dot
// sum up to rounding; the rounding error is relative to Σ(|s·q·x| + |m·x|), which exceeds
// Σ|w·x| only where s·q and m nearly cancel across a whole sub-block.
float dot_q4_k_scalar(const void* row, const float* x, int64_t n) {
  const uint8_t* b = static_cast<const uint8_t*>(row);
  float acc = 0.0f, acc_min = 0.0f;
  for (int64_t i = 0; i < n; i += kQK_K, b += kQ4_KBytes, x += kQK_K) {
    float step[kSub], offset[kSub];
    sub_factors(b, step, offset);
    const uint8_t* qs = b + 16;
    for (int p = 0; p < 4; ++p) {
      float sqx_lo = 0, sx_lo = 0, sqx_hi = 0, sx_hi = 0;
      const float* xp = x + 64 * p;
      for (int l = 0; l < 32; ++l) {
        sqx_lo += static_cast<float>(qs[32 * p + l] & 0xF) * xp[l];
        sx_lo += xp[l];
        sqx_hi += static_cast<float>(qs[32 * p + l] >> 4) * xp[32 + l];
        sx_hi += xp[32 + l];
      }
      acc += step[2 * p] * sqx_lo + step[2 * p + 1] * sqx_hi;
      acc_min += offset[2 * p] * sx_lo + offset[2 * p + 1] * sx_hi;
    }
  }
  return acc - acc_min;
}

float dot_q4_k(const void* row, const float* x, int64_t n) {
#ifdef DSV4_QUANT_AVX2
  // 8 bytes of qs widened to 32-bit lanes give 8 elements of sub-block 2p (low nibbles) and
  // the 8 elements 32 further on in sub-block 2p + 1 (high nibbles).
  const uint8_t* b = static_cast<const uint8_t*>(row);
  const __m256i low4 = _mm256_set1_epi32(15);
  __m256 acc_lo = _mm256_setzero_ps(), acc_hi = acc_lo, min_lo = acc_lo, min_hi = acc_lo;
  for (int64_t i = 0; i < n; i += kQK_K, b += kQ4_KBytes, x += kQK_K) {
    alignas(32) float step[kSub], offset[kSub];
    sub_factors(b, step, offset);
    for (int p = 0; p < 4; ++p) {
      const uint8_t* qs = b + 16 + 32 * p;
      const float* xl = x + 64 * p;
      const float* xh = xl + 32;
      __m256 sl = _mm256_setzero_ps(), sh = sl, xsl = sl, xsh = sl;
      for (int c = 0; c < 4; ++c) {
        const __m256i v = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(qs + 8 * c)));
        const __m256 x0 = _mm256_loadu_ps(xl + 8 * c), x1 = _mm256_loadu_ps(xh + 8 * c);
        sl = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_and_si256(v, low4)), x0, sl);
        sh = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_srli_epi32(v, 4)), x1, sh);
        xsl = _mm256_add_ps(xsl, x0);
        xsh = _mm256_add_ps(xsh, x1);
      }
      acc_lo = _mm256_fmadd_ps(_mm256_broadcast_ss(step + 2 * p), sl, acc_lo);
      acc_hi = _mm256_fmadd_ps(_mm256_broadcast_ss(step + 2 * p + 1), sh, acc_hi);
      min_lo = _mm256_fmadd_ps(_mm256_broadcast_ss(offset + 2 * p), xsl, min_lo);
      min_hi = _mm256_fmadd_ps(_mm256_broadcast_ss(offset + 2 * p + 1), xsh, min_hi);
    }
  }
  return hsum(_mm256_sub_ps(_mm256_add_ps(acc_lo, acc_hi), _mm256_add_ps(min_lo, min_hi)));
#else
  return dot_q4_k_scalar(row, x, n);
#endif
}

void quantize_q4_k(const float* src, void* dst, int64_t n) {
  uint8_t* b = static_cast<uint8_t*>(dst);
  for (int64_t i = 0; i < n; i += kQK_K, b += kQ4_KBytes, src += kQK_K) {
    KSuperBlock k;
    quantize_k_superblock(src, kSub, 32, 15, 63, &k);
    store_f16(b, k.d);
    store_f16(b + 2, k.dmin);
    // Inverse of q4_k_scale_min: codes 0..3 keep 6 bits in bytes 0..7; codes 4..7 split into a
    // low nibble pair in bytes 8..11 and their top two bits in bits 6..7 of bytes 0..7.
    uint8_t* scales = b + 4;
    for (int sb = 0; sb < 4; ++sb) {
      scales[sb] = static_cast<uint8_t>(k.sc[sb] | ((k.sc[sb + 4] >> 4) << 6));
      scales[sb + 4] = static_cast<uint8_t>(k.mn[sb] | ((k.mn[sb + 4] >> 4) << 6));
      scales[sb + 8] = static_cast<uint8_t>((k.sc[sb + 4] & 0xF) | ((k.mn[sb + 4] & 0xF) << 4));
    }
    uint8_t* qs = b + 16;
    for (int p = 0; p < 4; ++p) {
      for (int l = 0; l < 32; ++l) {
        qs[32 * p + l] = static_cast<uint8_t>(k.q[64 * p + l] | (k.q[64 * p + 32 + l] << 4));
      }
    }
  }
}

}  // namespace dsv4::quant
