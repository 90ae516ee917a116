// The GEMM's weight decoders: 8 consecutive elements of a staged row → 8 f16 (one 16-byte
// shared-memory store of the B tile). Built from quant_decode.cuh's primitives (f16 widening,
// the exponent-trick byte conversion, IQ2_XXS sign folding and table layout); the block layouts
// are FORMATS.md §4's.
//
// Why a third form next to Fmt::dot and Fmt::elem: the GEMM decodes each weight once per tile of
// 64–128 tokens, so decode cost is amortised, but it still has to stay near 4 instructions per
// element to keep up with the tensor cores; Fmt::elem re-derives the scales per element (≈ 30–45
// instructions for the K-quants, PTX count) and Fmt::dot fuses the decode into an f32 dot.
//
// A "stage" is the part of a row that one pipeline stage copies: kStageElems elements starting on a
// block boundary, kStageBytes bytes, at a shared-memory address ≡ (global address mod 16) (the
// copy moves 16-byte chunks from the 16-aligned address at or below the stage). kMisalign is the
// largest such offset any stage can have given a 16-aligned tensor, so a staged row needs
// round_up(kMisalign + kStageBytes, 16) bytes.
//
// Element values equal f16_satfinite(quant::dequantize_row's f32 value), bit for bit, except
// Q2_K/Q4_K, where step·q − offset is one fused multiply-add (one rounding instead of two;
// tests/cuda/cpu/gemm_decode_test.cc bounds the difference). f16 rather than bf16: the same
// tensor-core rate with 2^-11 instead of 2^-9 relative rounding, which the whole-model bar
// (relative L2 ≤ 1e-3 over dozens of layers) needs. Range: a weight beyond ±65504 saturates to
// ±65504 (no model weight comes near: quantised weights are f16 scales times small integers, and
// F16 tensors are f16 already); one below 2^-14 keeps an absolute error ≤ 2^-25.
#pragma once

#include <cuda_fp16.h>

#include <cmath>
#include <cstdint>

#include "cuda/quant_decode.cuh"
#include "util/half.h"

namespace dsv4::cuda::detail {

// f32 → f16, round to nearest even, finite values beyond ±65504 saturated (cvt's .satfinite);
// NaN stays NaN.
inline uint16_t f16_satfinite(float f) {
  const uint16_t h = f32_to_f16(f);
  return (h & 0x7FFFu) == 0x7C00u && std::isfinite(f) ? static_cast<uint16_t>((h & 0x8000u) | 0x7BFFu) : h;
}

// {lo, hi} → f16x2 (lo in the low half), as f16_satfinite.
DSV4_HD uint32_t pack_f16x2(float lo, float hi) {
#ifdef __CUDA_ARCH__
  uint32_t r;
  asm("cvt.rn.satfinite.f16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo));
  return r;
#else
  return uint32_t{f16_satfinite(lo)} | (uint32_t{f16_satfinite(hi)} << 16);
#endif
}

// The 4 bytes of w as exact small numbers: magic_byte<k>(w) − bias, k = 0..3.
DSV4_HD void bytes4(uint32_t w, float bias, float* v) {
  v[0] = magic_byte<0>(w) - bias;
  v[1] = magic_byte<1>(w) - bias;
  v[2] = magic_byte<2>(w) - bias;
  v[3] = magic_byte<3>(w) - bias;
}

DSV4_HD uint4 pack8(const float* v) {
  return make_uint4(pack_f16x2(v[0], v[1]), pack_f16x2(v[2], v[3]), pack_f16x2(v[4], v[5]),
                    pack_f16x2(v[6], v[7]));
}


struct GemmF32 {
  using Fmt = FmtF32;
  static constexpr int kStageElems = 64, kStageBytes = 256, kMisalign = 0, kTableBytes = 0;
  DSV4_HD static uint4 decode8(const uint8_t* s, int e, const uint8_t*) {
    const float4 a = *reinterpret_cast<const float4*>(s + 4 * e);
    const float4 b = *reinterpret_cast<const float4*>(s + 4 * e + 16);
    return make_uint4(pack_f16x2(a.x, a.y), pack_f16x2(a.z, a.w), pack_f16x2(b.x, b.y),
                      pack_f16x2(b.z, b.w));
  }
};

struct GemmF16 {
  using Fmt = FmtF16;
  static constexpr int kStageElems = 64, kStageBytes = 128, kMisalign = 0, kTableBytes = 0;
  DSV4_HD static uint4 decode8(const uint8_t* s, int e, const uint8_t*) {
    return *reinterpret_cast<const uint4*>(s + 2 * e);
  }
};

struct GemmBF16 {
  using Fmt = FmtBF16;
  static constexpr int kStageElems = 64, kStageBytes = 128, kMisalign = 0, kTableBytes = 0;
  // bf16 pair → f32 pair (the bf16 bits are the f32's upper half) → f16 pair.
  DSV4_HD static uint32_t cvt(uint32_t w) {
    return pack_f16x2(bits_to_f32(w << 16), bits_to_f32(w & 0xFFFF0000u));
  }
  DSV4_HD static uint4 decode8(const uint8_t* s, int e, const uint8_t*) {
    const uint4 u = *reinterpret_cast<const uint4*>(s + 2 * e);
    return make_uint4(cvt(u.x), cvt(u.y), cvt(u.z), cvt(u.w));
  }
};

// Q8_0: a stage is 2 blocks (68 bytes; rows of 34-byte blocks, so stages start 4-aligned).
struct GemmQ8_0 {
  using Fmt = FmtQ8_0;
  static constexpr int kStageElems = 64, kStageBytes = 68, kMisalign = 12, kTableBytes = 0;
  DSV4_HD static uint4 decode8(const uint8_t* s, int e, const uint8_t*) {
    const uint8_t* b = s + (e >> 5) * 34;
    const uint16_t* q = reinterpret_cast<const uint16_t*>(b + 2 + (e & 31));  // 2-aligned
    const float d = f16_to_f32(*reinterpret_cast<const uint16_t*>(b));
    float v[8];
    bytes4((q[0] | (uint32_t{q[1]} << 16)) ^ 0x80808080u, kMagic + 128.0f, v);  // q + 128 per byte
    bytes4((q[2] | (uint32_t{q[3]} << 16)) ^ 0x80808080u, kMagic + 128.0f, v + 4);
    for (int i = 0; i < 8; ++i) v[i] *= d;
    return pack8(v);
  }
};

// Q4_K: a stage is one block (144 bytes: always 16-aligned). Elements e..e+7 (e % 8 == 0) share
// sub-block sb = 2p + hi and are the low (hi = 0) or high nibbles of qs[32p + (e % 32) ..].
struct GemmQ4_K {
  using Fmt = FmtQ4_K;
  static constexpr int kStageElems = 256, kStageBytes = 144, kMisalign = 0, kTableBytes = 0;
  DSV4_HD static uint4 decode8(const uint8_t* s, int e, const uint8_t*) {
    const uint4 h = *reinterpret_cast<const uint4*>(s);  // d|dmin, scales 0-3, 4-7, 8-11
    const int p = e >> 6, hi = (e >> 5) & 1, sb = 2 * p + hi, sh = 8 * (sb & 3);
    const uint32_t t0 = h.y >> sh, t1 = h.z >> sh, t2 = h.w >> sh;
    const bool low = sb < 4;
    const uint32_t sc = low ? (t0 & 63u) : ((t2 & 15u) | ((t0 >> 2) & 48u));
    const uint32_t mn = low ? (t1 & 63u) : (((t2 >> 4) & 15u) | ((t1 >> 2) & 48u));
    const float2 dm = f16x2_to_f32(h.x);
    const float step = dm.x * static_cast<float>(sc), offset = dm.y * static_cast<float>(mn);
    const uint2 q = *reinterpret_cast<const uint2*>(s + 16 + 32 * p + (e & 31));
    float v[8];
    bytes4((q.x >> (4 * hi)) & 0x0F0F0F0Fu, kMagic, v);
    bytes4((q.y >> (4 * hi)) & 0x0F0F0F0Fu, kMagic, v + 4);
    for (int i = 0; i < 8; ++i) v[i] = fmaf(step, v[i], -offset);
    return pack8(v);
  }
};

// Q2_K: a stage is one block (84 bytes: 4-aligned). Elements e..e+7 lie in half h, bit plane j,
// bytes qs[32h + (e % 32) ..], one 16-element scale group.
struct GemmQ2_K {
  using Fmt = FmtQ2_K;
  static constexpr int kStageElems = 256, kStageBytes = 84, kMisalign = 12, kTableBytes = 0;
  DSV4_HD static uint4 decode8(const uint8_t* s, int e, const uint8_t*) {
    const int h = e >> 7, j = (e >> 5) & 3, l = e & 31;
    const uint32_t sc = s[8 * h + 2 * j + (l >> 4)];
    const float2 dm = f16x2_to_f32(*reinterpret_cast<const uint32_t*>(s + 80));
    const float step = dm.x * static_cast<float>(sc & 15u), offset = dm.y * static_cast<float>(sc >> 4);
    const uint32_t* q = reinterpret_cast<const uint32_t*>(s + 16 + 32 * h + l);
    float v[8];
    bytes4((q[0] >> (2 * j)) & 0x03030303u, kMagic, v);
    bytes4((q[1] >> (2 * j)) & 0x03030303u, kMagic, v + 4);
    for (int i = 0; i < 8; ++i) v[i] = fmaf(step, v[i], -offset);
    return pack8(v);
  }
};

// IQ2_XXS: a stage is one block (66 bytes: 2-aligned). Elements e..e+7 are group g of sub-block sb:
// one grid entry, 8 sign bits. Tables as FmtIQ2_XXS::load_tables lays them out in shared memory.
struct GemmIQ2_XXS {
  using Fmt = FmtIQ2_XXS;
  static constexpr int kStageElems = 256, kStageBytes = 66, kMisalign = 14;
  static constexpr int kTableBytes = Fmt::kTableBytes;
#ifdef __CUDACC__
  __device__ static void load_tables(uint8_t* t, const void* device_tables) { Fmt::load_tables(t, device_tables); }
#endif
  DSV4_HD static uint4 decode8(const uint8_t* s, int e, const uint8_t* tables) {
    const int sb = e >> 5, g = (e >> 3) & 3;
    const uint8_t* sub = s + 2 + 8 * sb;
    const float d = f16_to_f32(*reinterpret_cast<const uint16_t*>(s));
    const uint32_t a1 = *reinterpret_cast<const uint16_t*>(sub + 4) |
                        (uint32_t{*reinterpret_cast<const uint16_t*>(sub + 6)} << 16);
    const uint2 grid = reinterpret_cast<const uint2*>(tables)[sub[g]];
    const uint32_t signs = tables[2048 + ((a1 >> (7 * g)) & 127u)];
    const float db = d * (0.5f + static_cast<float>(a1 >> 28)) * 0.25f;
    float v[8];
    bytes4(Fmt::fold_signs(grid.x, Fmt::sign_mask4(signs & 15u)), kMagic + 64.0f, v);
    bytes4(Fmt::fold_signs(grid.y, Fmt::sign_mask4(signs >> 4)), kMagic + 64.0f, v + 4);
    for (int i = 0; i < 8; ++i) v[i] *= db;
    return pack8(v);
  }
};

}  // namespace dsv4::cuda::detail
