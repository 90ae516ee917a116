// The split GEMM's weight decoders: every quantised weight is (block scale) × (small integer code)
// [− (group offset) for Q2_K/Q4_K], so the kernel multiplies exact codes on the tensor cores and
// applies each block's scale in f32 (cuda/gemm_kernel.cuh, split mode). Codes are exact in f16
// (integers of magnitude ≤ 2048):
//   F16      the weight itself, no scale
//   Q8_0     q (int8), scale d per 32
//   Q4_K     q·sc (q 0..15, sc 6-bit: ≤ 945), scale d per 256, offset dmin·m per 32
//   Q2_K     q·sc (q 0..3, sc 4-bit: ≤ 45), scale d per 256, offset dmin·m per 16
//   IQ2_XXS  ±grid (8/25/43), scale d/8·(2·ls + 1) per 32 (ls 4-bit)
// so scale·code is the real-valued weight of FORMATS.md §4 exactly (the CPU's dequantize_row
// rounds it in f32: ≤ 2^-24·(|scale·code| + |offset|) away).
//
// Cost (per 8 elements): the byte-to-f16 step is a PRMT into the f16 pattern 1024 + byte and one
// HSUB2 per pair; the K-quants and IQ2_XXS add one HMUL2 per pair (exact: integer results
// ≤ 2048), no f32 work per element — cheaper than gemm_decode.cuh's f32 decode + CVT.
//
// Interface (besides the stage geometry and Fmt taken from the f16 decoder it extends):
//   codes8(s, e, tables)  8 codes of elements e..e+7 (e % 8 == 0) as f16x4 pairs
//   codes32(s, e, tables, v)  (optional) codes8 of e, e + 8, e + 16, e + 24 (e % 32 == 0) into v[4],
//                         returning scale(s, e)
//   kScaled               whether scale() exists (F16: no per-block step at all)
//   scale(s, e)           the f32 scale of the block holding e (constant over 32 elements)
//   kMinGroups            offset groups per 64 elements (0: no offsets)
//   min_term(s, e)        dmin·m of the group holding e, subtracted times Σ x over the group
#pragma once

#include <cuda_fp16.h>

#include <cstdint>

#include "cuda/gemm_decode.cuh"
#include "cuda/quant_decode.cuh"
#include "util/half.h"

namespace dsv4::cuda::detail {

// f16x2 arithmetic on bit patterns (low half first); inline asm so that nothing is contracted or
// reordered: the operands are small integers and every result is exact. On the host (the
// emulation tests) each half goes through f32, which is exact for these operands too.
template <class Op>
inline uint32_t host_f16x2(uint32_t a, uint32_t b, Op op) {
  const float lo = op(f16_to_f32(static_cast<uint16_t>(a)), f16_to_f32(static_cast<uint16_t>(b)));
  const float hi = op(f16_to_f32(static_cast<uint16_t>(a >> 16)), f16_to_f32(static_cast<uint16_t>(b >> 16)));
  return uint32_t{f32_to_f16(lo)} | (uint32_t{f32_to_f16(hi)} << 16);
}
DSV4_HD uint32_t hsub2_bits(uint32_t a, uint32_t b) {
#ifdef __CUDA_ARCH__
  uint32_t r;
  asm("sub.rn.f16x2 %0, %1, %2;" : "=r"(r) : "r"(a), "r"(b));
  return r;
#else
  return host_f16x2(a, b, [](float x, float y) { return x - y; });
#endif
}
DSV4_HD uint32_t hmul2_bits(uint32_t a, uint32_t b) {
#ifdef __CUDA_ARCH__
  uint32_t r;
  asm("mul.rn.f16x2 %0, %1, %2;" : "=r"(r) : "r"(a), "r"(b));
  return r;
#else
  return host_f16x2(a, b, [](float x, float y) { return x * y; });
#endif
}

// f16 bit patterns of 1024 and 1024 + 128, both halves.
constexpr uint32_t kF16x2_1024 = 0x64006400u, kF16x2_1152 = 0x64806480u;

// The 4 bytes of w as f16x2 pairs (byte − bias, exactly; bias2 = f16x2 of 1024 + bias).
DSV4_HD void bytes_to_f16x2(uint32_t w, uint32_t bias2, uint32_t* out) {
  out[0] = hsub2_bits(prmt(w, 0x64646464u, 0x4140u), bias2);
  out[1] = hsub2_bits(prmt(w, 0x64646464u, 0x4342u), bias2);
}

// An integer v < 1024 as f16x2 (both halves): the pattern of 1024 + v minus 1024, exactly.
DSV4_HD uint32_t small_f16x2(uint32_t v) {
  const uint32_t h = 0x6400u + v;
  return hsub2_bits(h | (h << 16), kF16x2_1024);
}

struct CodesF16 : GemmF16 {
  static constexpr bool kScaled = false;
  static constexpr int kMinGroups = 0;
  DSV4_HD static uint4 codes8(const uint8_t* s, int e, const uint8_t* t) { return decode8(s, e, t); }
  DSV4_HD static float scale(const uint8_t*, int) { return 1.0f; }
  DSV4_HD static float min_term(const uint8_t*, int) { return 0.0f; }
};

struct CodesQ8_0 : GemmQ8_0 {
  static constexpr bool kScaled = true;
  static constexpr int kMinGroups = 0;
  DSV4_HD static uint4 codes8(const uint8_t* s, int e, const uint8_t*) {
    const uint16_t* q = reinterpret_cast<const uint16_t*>(s + (e >> 5) * 34 + 2 + (e & 31));  // 2-aligned
    uint32_t v[4];
    bytes_to_f16x2((q[0] | (uint32_t{q[1]} << 16)) ^ 0x80808080u, kF16x2_1152, v);  // q + 128 per byte
    bytes_to_f16x2((q[2] | (uint32_t{q[3]} << 16)) ^ 0x80808080u, kF16x2_1152, v + 2);
    return make_uint4(v[0], v[1], v[2], v[3]);
  }
  DSV4_HD static float scale(const uint8_t* s, int e) {
    return f16_to_f32(*reinterpret_cast<const uint16_t*>(s + (e >> 5) * 34));
  }
  DSV4_HD static float min_term(const uint8_t*, int) { return 0.0f; }
};

struct CodesQ4_K : GemmQ4_K {
  static constexpr bool kScaled = true;
  static constexpr int kMinGroups = 2;
  // Sub-block sb's 6-bit scale (which = 0) or min (which = 1).
  DSV4_HD static uint32_t six_bits(const uint8_t* s, int sb, int which) {
    const uint4 h = *reinterpret_cast<const uint4*>(s);  // d|dmin, scales 0-3, 4-7, 8-11
    const int sh = 8 * (sb & 3);
    const uint32_t t0 = (which ? h.z : h.y) >> sh, t2 = h.w >> sh;
    return sb < 4 ? (t0 & 63u) : (((t2 >> (4 * which)) & 15u) | ((t0 >> 2) & 48u));
  }
  DSV4_HD static uint4 codes8(const uint8_t* s, int e, const uint8_t*) {
    const int p = e >> 6, hi = (e >> 5) & 1;
    const uint32_t sc2 = small_f16x2(six_bits(s, 2 * p + hi, 0));
    const uint2 q = *reinterpret_cast<const uint2*>(s + 16 + 32 * p + (e & 31));
    uint32_t v[4];
    bytes_to_f16x2((q.x >> (4 * hi)) & 0x0F0F0F0Fu, kF16x2_1024, v);
    bytes_to_f16x2((q.y >> (4 * hi)) & 0x0F0F0F0Fu, kF16x2_1024, v + 2);
    return make_uint4(hmul2_bits(v[0], sc2), hmul2_bits(v[1], sc2), hmul2_bits(v[2], sc2), hmul2_bits(v[3], sc2));
  }
  DSV4_HD static float scale(const uint8_t* s, int) { return f16_to_f32(*reinterpret_cast<const uint16_t*>(s)); }
  DSV4_HD static float min_term(const uint8_t* s, int e) {
    return f16_to_f32(*reinterpret_cast<const uint16_t*>(s + 2)) * static_cast<float>(six_bits(s, e >> 5, 1));
  }
};

struct CodesQ2_K : GemmQ2_K {
  static constexpr bool kScaled = true;
  static constexpr int kMinGroups = 4;
  DSV4_HD static uint32_t scale_byte(const uint8_t* s, int e) {
    return s[8 * (e >> 7) + 2 * ((e >> 5) & 3) + ((e & 31) >> 4)];
  }
  DSV4_HD static uint4 codes8(const uint8_t* s, int e, const uint8_t*) {
    const int h = e >> 7, j = (e >> 5) & 3, l = e & 31;
    const uint32_t sc2 = small_f16x2(scale_byte(s, e) & 15u);
    const uint32_t* q = reinterpret_cast<const uint32_t*>(s + 16 + 32 * h + l);
    uint32_t v[4];
    bytes_to_f16x2((q[0] >> (2 * j)) & 0x03030303u, kF16x2_1024, v);
    bytes_to_f16x2((q[1] >> (2 * j)) & 0x03030303u, kF16x2_1024, v + 2);
    return make_uint4(hmul2_bits(v[0], sc2), hmul2_bits(v[1], sc2), hmul2_bits(v[2], sc2), hmul2_bits(v[3], sc2));
  }
  DSV4_HD static float scale(const uint8_t* s, int) { return f16_to_f32(*reinterpret_cast<const uint16_t*>(s + 80)); }
  DSV4_HD static float min_term(const uint8_t* s, int e) {
    return f16_to_f32(*reinterpret_cast<const uint16_t*>(s + 82)) * static_cast<float>(scale_byte(s, e) >> 4);
  }
};

// IQ2_XXS: the code is ±grid (≤ 43) and the scale d/8·(2·ls + 1) of the element's sub-block (one
// 32-column half of a k-step), so no code needs a multiply. Its own tables: grid point i's eight
// magnitudes as f16 (4 words: one LDS.128 where the byte grid needs a PRMT and an HSUB2 per pair)
// in kGridCopies copies, then the 128 sign bytes. Copy c of point i is at byte 16·(8·i + c) and a
// thread reads copy threadIdx.x % 8, so the 8 lanes that one wavefront of an LDS.128 serves read
// 8 different bank quads whatever points they ask for (one copy cost 2.5 wavefronts per quarter
// warp). A sign becomes bit 15 or 31 of its f16x2 word through one multiply (word j takes sign bits
// 2j and 2j + 1 to bits 15 and 31: the shifted copies of the other bits land elsewhere) and one
// LOP3 that masks it and flips the magnitudes' sign bits.
struct CodesIQ2_XXS : GemmIQ2_XXS {
  static constexpr bool kScaled = true;
  static constexpr int kMinGroups = 0;
  static constexpr int kGridCopies = 8;
  static constexpr int kGridF16Bytes = 256 * 16 * kGridCopies;
  static constexpr int kTableBytes = kGridF16Bytes + 128;
  // Grid point g (8 magnitude bytes) as 8 f16 (exact: 1024 + m − 1024).
  DSV4_HD static uint4 grid_f16(uint64_t g) {
    uint32_t h[4];
    bytes_to_f16x2(static_cast<uint32_t>(g), kF16x2_1024, h);
    bytes_to_f16x2(static_cast<uint32_t>(g >> 32), kF16x2_1024, h + 2);
    return make_uint4(h[0], h[1], h[2], h[3]);
  }
  // Entry i < 256 of the tables t, every copy (and sign byte i where i < 128), from the format's.
  DSV4_HD static void table_entry(uint8_t* t, const uint64_t* grid, const uint8_t* signs, int i) {
    const uint4 m = grid_f16(grid[i]);
    for (int c = 0; c < kGridCopies; ++c) reinterpret_cast<uint4*>(t)[kGridCopies * i + c] = m;
    if (i < 128) t[kGridF16Bytes + i] = signs[i];
  }
#ifdef __CUDACC__
  // The tables in shared memory from the format's device tables (all threads; a barrier must follow).
  __device__ static void load_tables(uint8_t* t, const void* device_tables) {
    const Iq2Tables* src = static_cast<const Iq2Tables*>(device_tables);
    for (int i = threadIdx.x; i < 256; i += blockDim.x) table_entry(t, src->grid, src->signs, i);
  }
#endif
  // The grid copy this thread reads (any copy holds the same values; the host reads copy 0).
  DSV4_HD static int grid_copy() {
#ifdef __CUDA_ARCH__
    return static_cast<int>(threadIdx.x % kGridCopies);
#else
    return 0;
#endif
  }
  DSV4_HD static uint32_t signed_word(uint32_t magnitudes, uint32_t signs, uint32_t spread) {
    return magnitudes ^ ((signs * spread) & 0x80008000u);
  }
  // Group g of a sub-block whose grid indices are a0 and signs and scale a1; grid is this thread's
  // copy (tables + 16·grid_copy()).
  DSV4_HD static uint4 group8(uint32_t a0, uint32_t a1, int g, const uint8_t* grid, const uint8_t* tables) {
    const uint4 m = *reinterpret_cast<const uint4*>(grid + 16 * kGridCopies * ((a0 >> (8 * g)) & 255u));
    const uint32_t signs = tables[kGridF16Bytes + ((a1 >> (7 * g)) & 127u)];
    return make_uint4(signed_word(m.x, signs, 0x40008000u), signed_word(m.y, signs, 0x10002000u),
                      signed_word(m.z, signs, 0x04000800u), signed_word(m.w, signs, 0x01000200u));
  }
  DSV4_HD static void sub_block(const uint8_t* s, int e, uint32_t* a0, uint32_t* a1) {
    const uint16_t* sub = reinterpret_cast<const uint16_t*>(s + 2 + 8 * (e >> 5));  // 2-aligned
    *a0 = sub[0] | (uint32_t{sub[1]} << 16);
    *a1 = sub[2] | (uint32_t{sub[3]} << 16);
  }
  DSV4_HD static uint4 codes8(const uint8_t* s, int e, const uint8_t* tables) {
    uint32_t a0, a1;
    sub_block(s, e, &a0, &a1);
    return group8(a0, a1, (e >> 3) & 3, tables + 16 * grid_copy(), tables);
  }
  // The 32 codes of the sub-block starting at element e (e % 32 == 0) and its scale: its header
  // read once (codes8 four times, whose addresses the compiler does not see are the same, reads it
  // per group).
  DSV4_HD static float codes32(const uint8_t* s, int e, const uint8_t* tables, uint4* v) {
    uint32_t a0, a1;
    sub_block(s, e, &a0, &a1);
    const uint8_t* grid = tables + 16 * grid_copy();
    DSV4_UNROLL
    for (int g = 0; g < 4; ++g) v[g] = group8(a0, a1, g, grid, tables);
    return scale_of(s, a1);
  }
  // For a thread that decodes one group of a sub-block (gemm_wgmma_regs.cu): group g of the
  // sub-block holding element e (its grid index byte read alone, the signs and scale word as two
  // halves) and the sub-block's odd_factor; the same codes as codes8, and block_d8 · odd_factor is
  // scale_of.
  DSV4_HD static uint4 one_group8(const uint8_t* s, int e, int g, const uint8_t* grid, const uint8_t* tables,
                                  float* odd) {
    const uint8_t* sub = s + 2 + 8 * (e >> 5);  // 2-aligned
    const uint32_t index = sub[g];
    const uint16_t* const words = reinterpret_cast<const uint16_t*>(sub);
    const uint32_t a1 = words[2] | (uint32_t{words[3]} << 16);
    *odd = odd_factor(a1);
    return group8(index << (8 * g), a1, g, grid, tables);  // the index byte where a0 would hold it
  }
  // one_group8's codes times the sub-block's 2·ls + 1 (|±grid·(2ls + 1)| ≤ 1 333: exact in f16), so
  // that the block's sub-blocks share one scale, block_d8 (gemm_wgmma_regs.cu's 64-token tile).
  DSV4_HD static uint4 one_group8_odd(const uint8_t* s, int e, int g, const uint8_t* grid, const uint8_t* tables) {
    const uint8_t* sub = s + 2 + 8 * (e >> 5);  // 2-aligned
    const uint16_t* const words = reinterpret_cast<const uint16_t*>(sub);
    const uint32_t a1 = words[2] | (uint32_t{words[3]} << 16);
    const uint32_t odd2 = small_f16x2(2 * (a1 >> 28) + 1);
    const uint4 v = group8(uint32_t{sub[g]} << (8 * g), a1, g, grid, tables);
    return make_uint4(hmul2_bits(v.x, odd2), hmul2_bits(v.y, odd2), hmul2_bits(v.z, odd2), hmul2_bits(v.w, odd2));
  }
  // The block's d/8 and a sub-block's 2·ls + 1 (from its signs and scale word a1).
  DSV4_HD static float block_d8(const uint8_t* s) { return f16_to_f32(*reinterpret_cast<const uint16_t*>(s)) * 0.125f; }
  DSV4_HD static float odd_factor(uint32_t a1) { return static_cast<float>(2 * (a1 >> 28) + 1); }
  // d/8·(2·ls + 1): exact in f32 (an 11-bit significand times a 5-bit integer).
  DSV4_HD static float scale_of(const uint8_t* s, uint32_t a1) { return block_d8(s) * odd_factor(a1); }
  DSV4_HD static float scale(const uint8_t* s, int e) {
    uint32_t a0, a1;
    sub_block(s, e, &a0, &a1);
    return scale_of(s, a1);
  }
  DSV4_HD static float min_term(const uint8_t*, int) { return 0.0f; }
};

}  // namespace dsv4::cuda::detail
