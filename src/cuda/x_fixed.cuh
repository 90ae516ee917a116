// Activations as exact integers for integer dot products (int8 mma, dp4a): a block of activations
// shares one power-of-two scale 2^E, each element becomes X = round(x / 2^E), and X is written as
// signed base-256 digits ("limbs"), X = Σ_p limb_p·256^p. With the block's largest |X| in
// [2^(b−1), 2^b) every element within 2^(b−24) of the largest is exact and smaller ones are rounded
// to 2^−b of it: b = 30 with four limbs is exact beyond f32's own rounding of a dot product,
// b = 22 with three limbs rounds like a 23-bit fixed-point number per block.
// __host__ __device__ so the CPU emulation tests (tests/cuda/cpu) run the same code.
#pragma once

#include <cstdint>
#include <cstring>

#include "cuda/quant_decode.cuh"

namespace dsv4::cuda::detail {

// |x| = m·2^(ef − 150) with ef ≥ 1 (subnormals: ef = 1, no hidden bit).
DSV4_HD int float_ef(uint32_t abs_bits) {
  const int f = static_cast<int>(abs_bits >> 23);
  return f > 0 ? f : 1;
}
DSV4_HD uint32_t float_m(uint32_t abs_bits) {
  return (abs_bits & 0x7FFFFFu) | ((abs_bits >> 23) ? 0x800000u : 0u);
}
// The block's scale exponent E from its largest |x| (as bits): the largest X lies in
// [2^(top_bits−1), 2^top_bits), and E ≥ −149 keeps every 2^(E + 8p) a float.
DSV4_HD int xblock_exponent(uint32_t max_abs_bits, int top_bits = 30) {
  const int e = float_ef(max_abs_bits) - 126 - top_bits;
  return e > -149 ? e : -149;
}
// round(x / 2^E) (halves away from zero).
DSV4_HD int32_t x_to_fixed(float x, int e_block) {
  uint32_t bits;
#ifdef __CUDA_ARCH__
  bits = __float_as_uint(x);
#else
  memcpy(&bits, &x, 4);
#endif
  const uint32_t a = bits & 0x7FFFFFFFu;
  if (a >= 0x7F800000u) return 0;  // the block's scale is NaN then
  const int shift = float_ef(a) - 150 - e_block;
  const uint32_t m = float_m(a);
  uint32_t v;
  if (shift >= 0) {
    v = m << shift;
  } else if (shift > -26) {
    v = (m + (1u << (-shift - 1))) >> -shift;
  } else {
    v = 0;
  }
  return (bits >> 31) ? -static_cast<int32_t>(v) : static_cast<int32_t>(v);
}
// Limb p of X out of n_limbs (signed digits base 256: limbs below the last in [−128, 127], the
// last holds the rest: [−64, 64] when |X| ≤ 2^(8·n_limbs − 2)).
DSV4_HD int32_t x_limb(int32_t X, int p, int n_limbs = 4) {
  for (int q = 0; q < p; ++q) {
    const int32_t b = static_cast<int8_t>(X & 0xFF);
    X = (X - b) >> 8;
  }
  return p == n_limbs - 1 ? X : static_cast<int8_t>(X & 0xFF);
}
// 2^e as a float, for −149 ≤ e ≤ 127.
DSV4_HD float pow2f(int e) {
  return bits_to_f32(e >= -126 ? static_cast<uint32_t>(e + 127) << 23 : 1u << (e + 149));
}

// The block's scale 2^e, or NaN when its largest |x| (as bits) is ±inf or NaN: every output the
// block touches is then NaN, as the f32 dot would be ±inf or NaN.
DSV4_HD float xblock_scale(uint32_t max_abs_bits, int e) {
  return max_abs_bits < 0x7F800000u ? pow2f(e) : bits_to_f32(0x7FC00000u);
}

// Integer dot products of 4 byte pairs, c + Σ_k a_k·b_k (dp4a), with b signed (a limb word) and
// a signed (int8 codes, dp4a_s8s8) or unsigned (biased or shifted codes, dp4a_u8s8).
DSV4_HD int32_t dp4a_s8s8(uint32_t a, uint32_t b, int32_t c) {
#ifdef __CUDA_ARCH__
  return __dp4a(static_cast<int>(a), static_cast<int>(b), c);
#else
  for (int k = 0; k < 4; ++k) c += static_cast<int8_t>(a >> (8 * k)) * static_cast<int8_t>(b >> (8 * k));
  return c;
#endif
}
DSV4_HD int32_t dp4a_u8s8(uint32_t a, uint32_t b, int32_t c) {
#ifdef __CUDA_ARCH__
  int32_t d;
  asm("dp4a.u32.s32 %0, %1, %2, %3;" : "=r"(d) : "r"(a), "r"(b), "r"(c));
  return d;
#else
  for (int k = 0; k < 4; ++k) c += static_cast<int32_t>((a >> (8 * k)) & 0xFFu) * static_cast<int8_t>(b >> (8 * k));
  return c;
#endif
}

}  // namespace dsv4::cuda::detail
