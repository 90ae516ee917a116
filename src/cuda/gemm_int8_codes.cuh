// The int8 GEMM's per-lane arithmetic (cuda/gemm_int8.cu), __host__ __device__ so that
// tests/cuda/cpu/gemm_decode_test.cc runs it on the CPU.
//
// Activations: per (row, 256-element block) one power-of-two scale 2^E (x_fixed.cuh with 22 top
// bits: the block's largest |X| lies in [2^21, 2^22]), X = round(x / 2^E) as three signed int8
// limbs X = l0 + 2^8·l1 + 2^16·l2 (l0, l1 in [−128, 127], |l2| ≤ 65), plane by plane. Beside the
// limbs, one 80-byte record per (row, block): the 16 group sums S_g = Σ_{k in group g} X_k of 16
// consecutive elements (exact integers, |S_g| ≤ 2^26) as hi + lo f16 pairs in units of 2^12
// (bytes 0–31 hi, 32–63 lo; hi + lo = S_g·2^-12 to 2^-22 relative), then 2^E as f32 (byte 64; NaN
// when the block holds an infinity or NaN) and 12 zero bytes. 80 bytes = 5 16-byte chunks: an
// odd count, so 8 rows of records read by ldmatrix hit distinct banks.
//
// Weights (Q2_K): the int8 code q·sc ≤ 45 per element (16 elements share sc), and per block and
// feature a record {d, dmin·2^12, m_0..m_15 as f16 pairs}: y = Σ_blocks 2^E·(d·Σ code·X −
// dmin·Σ_g m_g·S_g), the code sums exact in int32 (tensor cores), the offset sums an f16 MMA.
#pragma once

#include <cuda_fp16.h>

#include <cstdint>

#include "cuda/gemm_codes.cuh"
#include "cuda/gemm_decode.cuh"
#include "cuda/matvec_mma.cuh"
#include "cuda/x_fixed.cuh"

namespace dsv4::cuda::detail {

constexpr int kInt8Limbs = 3;
constexpr int kInt8TopBits = 22;
constexpr int kInt8Block = 256;         // elements per activation scale (and per Q2_K block)
constexpr int kInt8RecordBytes = 80;    // per (row, block): group sums hi/lo, 2^E, padding
constexpr float kInt8SumUnit = 4096.0f;  // the records' group sums count in units of 2^12
constexpr int kInt8TableWords = 12;     // per feature: d, dmin·2^12, 8 words of m pairs, 2 of padding

DSV4_HD uint16_t f16_bits_rn(float f) { return __half_as_ushort(__float2half_rn(f)); }

// S as hi + lo f16 in units of 2^12 (|S| ≤ 2^26): hi·2^12 is an integer, so S − hi·2^12 is exact.
DSV4_HD void group_sum_f16(int32_t s, uint16_t* hi, uint16_t* lo) {
  const uint16_t h = f16_bits_rn(static_cast<float>(s) * (1.0f / kInt8SumUnit));
  const int32_t r = s - static_cast<int32_t>(f16_to_f32(h) * kInt8SumUnit);
  *hi = h;
  *lo = f16_bits_rn(static_cast<float>(r) * (1.0f / kInt8SumUnit));
}

// Eight consecutive activations of a block with scale exponent e: the three limb words (bytes in
// element order, two words per limb) and Σ X over the eight.
DSV4_HD int32_t x_to_limbs8(const float* x, int e, uint2* limb) {
  int32_t sum = 0;
  uint32_t w[kInt8Limbs][2] = {};
  for (int i = 0; i < 8; ++i) {
    const int32_t X = x_to_fixed(x[i], e);
    sum += X;
    for (int p = 0; p < kInt8Limbs; ++p) {
      w[p][i / 4] |= (static_cast<uint32_t>(x_limb(X, p, kInt8Limbs)) & 0xFFu) << (8 * (i % 4));
    }
  }
  for (int p = 0; p < kInt8Limbs; ++p) limb[p] = make_uint2(w[p][0], w[p][1]);
  return sum;
}

// Q2_K as int8 codes. Stage geometry (one 84-byte block per stage) from GemmQ2_K.
struct Int8Q2_K : GemmQ2_K {
  // Codes q·sc of elements e..e+15 (e % 16 == 0: one scale group) of the staged block s
  // (4-aligned): q ≤ 3 and sc ≤ 15 per byte, so one 32-bit multiply scales four bytes without carries.
  DSV4_HD static uint4 codes16(const uint8_t* s, int e) {
    const int h = e >> 7, l = e & 31;
    return codes16_words(reinterpret_cast<const uint32_t*>(s + 16 + 32 * h + l), s[e >> 4], (e >> 5) & 3);
  }
  // The same from the four quant words q (bytes 32h + l.. of the block's qs) and the group's scale
  // byte, j = (e / 32) % 4 the 2-bit field.
  DSV4_HD static uint4 codes16_words(const uint32_t* q, uint32_t scale_byte, int j) {
    const uint32_t sc = scale_byte & 15u;
    const int sh = 2 * j;
    return make_uint4(((q[0] >> sh) & 0x03030303u) * sc, ((q[1] >> sh) & 0x03030303u) * sc,
                      ((q[2] >> sh) & 0x03030303u) * sc, ((q[3] >> sh) & 0x03030303u) * sc);
  }
  // The block's feature record: d, dmin·2^12, then m_g (the scale bytes' high nibbles) as f16
  // pairs, word p = {m_2p (low half), m_2p+1}: the B fragment of the offset MMA.
  DSV4_HD static void table(const uint8_t* s, float* rec) {
    rec[0] = f16_to_f32(*reinterpret_cast<const uint16_t*>(s + 80));
    rec[1] = f16_to_f32(*reinterpret_cast<const uint16_t*>(s + 82)) * kInt8SumUnit;
    uint32_t m[8];
    for (int w = 0; w < 4; ++w) {
      bytes_to_f16x2((*reinterpret_cast<const uint32_t*>(s + 4 * w) >> 4) & 0x0F0F0F0Fu, kF16x2_1024, m + 2 * w);
    }
    for (int w = 0; w < 8; ++w) rec[2 + w] = bits_to_f32(m[w]);
  }
};

// Bytes of one feature row's raw block in the wgmma kernels' TMA stages (gemm_wgmma_int8.cu,
// gemm_wgmma_int8_regs.cu): the block's 84 from a 16-aligned start ≤ 12 bytes before it (96),
// padded to 7 16-byte units so that 8 consecutive rows' loads fall in distinct banks.
constexpr int kInt8RawSpan = 112;
static_assert(Int8Q2_K::kStageElems == kInt8Block && Int8Q2_K::kMisalign + Int8Q2_K::kStageBytes <= kInt8RawSpan &&
              kInt8RawSpan % 32 == 16);

// acc plus a block's contribution to one output, from the three limb chains (started at kCBias,
// so each reads as a float: |Σ code·limb| ≤ 256·45·128 < 2^22), the offset MMA's sum o (units of
// 2^12), the feature's d and dmin·2^12 and the row's 2^E. Four roundings, each ≤ 2^-24 of the
// block's Σ|code·X| (+ Σ m·|S| for the offset) times d·2^E.
DSV4_HD float int8_block_term(float acc, int32_t c0, int32_t c1, int32_t c2, float o, float d, float dmin12, float e2) {
  const float v = fmaf(256.0f, fmaf(256.0f, biased_to_f32(c2), biased_to_f32(c1)), biased_to_f32(c0));
  return fmaf(e2, fmaf(-dmin12, o, d * v), acc);
}

}  // namespace dsv4::cuda::detail
