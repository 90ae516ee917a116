// The activation-quantisation simulations that are part of the trained function (MODEL.md §11),
// and the official/plain mode switch that turns them on or off.
//
//   FP8_SIM  (§11.1-11.2): e4m3fn round trip in blocks of 64, power-of-two scale, amax floor 1e-4;
//            applied to the nope dims of every raw and compressed KV row.
//   Hadamard (§11.3):      Sylvester Walsh-Hadamard transform scaled by 1/sqrt(n), no sign flips.
//   FP4_SIM  (§11.4):      e2m1 round trip in blocks of 32, power-of-two scale, amax floor
//   6*2^-126;
//            applied after the Hadamard to indexer queries and indexer rows.
#pragma once

#include <cstdint>

namespace dsv4::cpu {

// Which simulations a forward pass applies. KV state produced in one mode must never be continued
// in another (the State records the mode of its first forward and refuses a different one).
struct SimOptions {
  bool fp8_kv = true;       // FP8_SIM on the nope dims of raw and compressed KV rows
  bool fp4_indexer = true;  // Hadamard + FP4_SIM on indexer queries and indexer rows

  // The function the network was trained with (matches the official code and ds4).
  static constexpr SimOptions official() { return {true, true}; }
  // No simulations (matches HF transformers; for comparisons only).
  static constexpr SimOptions plain() { return {false, false}; }

  bool operator==(const SimOptions&) const = default;
};

// POW2CEIL of §11.2 for a positive finite f32: 2^(e + (mantissa != 0)) read off the bits of `f`,
// i.e. the smallest power of two >= f. Subnormal inputs get the same definition.
float pow2_ceil(float f);

// Nearest e4m3fn value to x, ties to the even mantissa code; |x| must be <= 448 (callers clamp).
// Normals (1 + m/8)*2^(e-7), subnormals m*2^-9.
float e4m3_round(float x);

// Nearest e2m1 value to x (magnitudes 0, .5, 1, 1.5, 2, 3, 4, 6), ties to the even code;
// |x| must be <= 6 (callers clamp). The sign is kept (tiny negatives become -0).
float e2m1_round(float x);

// FP8_SIM in place over n values in consecutive blocks of `block` (a shorter last block when n is
// not a multiple; the real model's 448 nope dims are exactly 7 blocks of 64).
void fp8_sim(float* v, int64_t n, int64_t block = 64);

// FP4_SIM in place, blocks of `block` (32 in the model), shorter last block as above.
void fp4_sim(float* v, int64_t n, int64_t block = 32);

// In-place H·v/sqrt(n) with H the natural-order (Sylvester) Hadamard matrix: butterflies of
// stride 1, 2, 4, ..., n/2 computing (a, b) -> (a + b, a - b), then one f32 multiply by
// fl32(1/sqrt(n)). n must be a power of two.
void hadamard(float* v, int64_t n);

inline bool is_pow2(int64_t n) { return n > 0 && (n & (n - 1)) == 0; }

}  // namespace dsv4::cpu
