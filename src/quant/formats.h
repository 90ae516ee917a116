// Per-format kernels behind quant.h's dispatch. Internal to quant/ (and its tests, which call
// the scalar dots directly so the non-AVX2 fallback is tested on AVX2 machines too).
//
// Blocks are read through byte pointers and memcpy: rows of 34- and 66-byte blocks are only
// 2-byte aligned, and the file is mmapped, so no struct may assume more.
#pragma once

#include <cstdint>
#include <cstring>

#include "util/half.h"

namespace dsv4::quant {

// Block geometry of FORMATS.md §4.1, kept here so quant/ does not depend on gguf's .cc.
inline constexpr int64_t kQK_K = 256;
inline constexpr int64_t kQ8_0Elems = 32;
inline constexpr int64_t kQ8_0Bytes = 34;    // d f16 @0, qs int8[32] @2
inline constexpr int64_t kQ2_KBytes = 84;    // scales u8[16] @0, qs u8[64] @16, d @80, dmin @82
inline constexpr int64_t kQ4_KBytes = 144;   // d @0, dmin @2, scales u8[12] @4, qs u8[128] @16
inline constexpr int64_t kIQ2_XXSBytes = 66;  // d @0, qs u16[32] @2

inline float load_f16(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return f16_to_f32(h);
}
inline void store_f16(uint8_t* p, float f) {
  const uint16_t h = f32_to_f16(f);
  std::memcpy(p, &h, 2);
}
inline uint32_t load_u32(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

// Each format: dequantize (scalar, exactly the formula of FORMATS.md), dot (the fast path
// used by dot_row/matvec), dot_scalar (portable fallback, also tested), quantize.
#define DSV4_QUANT_FORMAT(name)                                          \
  void dequantize_##name(const void* src, float* dst, int64_t n);        \
  float dot_##name(const void* row, const float* x, int64_t n);          \
  float dot_##name##_scalar(const void* row, const float* x, int64_t n); \
  void quantize_##name(const float* src, void* dst, int64_t n);

DSV4_QUANT_FORMAT(f32)
DSV4_QUANT_FORMAT(f16)
DSV4_QUANT_FORMAT(bf16)
DSV4_QUANT_FORMAT(q8_0)
DSV4_QUANT_FORMAT(q2_k)
DSV4_QUANT_FORMAT(q4_k)
DSV4_QUANT_FORMAT(iq2_xxs)

#undef DSV4_QUANT_FORMAT

// Q4_K's packed 6-bit scale and min of sub-block sb ∈ [0, 8) (FORMATS.md §4.5).
inline void q4_k_scale_min(const uint8_t* scales, int sb, int* sc, int* mn) {
  if (sb < 4) {
    *sc = scales[sb] & 63;
    *mn = scales[sb + 4] & 63;
  } else {
    *sc = (scales[sb + 4] & 0xF) | ((scales[sb - 4] >> 6) << 4);
    *mn = (scales[sb + 4] >> 4) | ((scales[sb] >> 6) << 4);
  }
}

}  // namespace dsv4::quant
