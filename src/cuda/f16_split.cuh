// f32-accurate products on f16 tensor cores: a vector x is scaled by a power of two 2^e chosen so
// that max |x·2^e| lies in [2^14, 2^15) (no f16 overflow, and lo = x·2^e − hi stays clear of the
// f16 subnormals for every element within 2^-3·2^-11 of the maximum), then split hi = f16(x·2^e),
// lo = f16(x·2^e − hi): hi + lo carries 22 significant bits. a·b ≈ a_lo·b_hi + a_hi·b_lo +
// a_hi·b_hi (three MMAs, the small terms first; the dropped a_lo·b_lo is ≈ 2^-22 relative). Each
// short MMA chain starts at zero and its sum is added to f32 totals with an ordinary rounded add:
// the tensor cores truncate their aligned sums, so a long chain into a large accumulator would be
// biased (GEMM_NOTES.md, split GEMM v1).
#pragma once

#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "cuda/f16_rows.cuh"

namespace dsv4::cuda::detail {

inline constexpr int kSplitExpMax = 126;  // both 2^e and 2^-e stay normal floats

// e with max |x·2^e| in [2^14, 2^15) for a vector whose largest magnitude is m ≥ 0, read from
// m's exponent field (three instructions; ilogbf's special cases cost more than the whole
// split). m below 2^-112 (zero and the f32 subnormals included) gets kSplitExpMax: its scaled
// values stay below 2^14 and lose only what the f16 subnormals lose.
__device__ __forceinline__ int split_exponent(float m) {
  const int e = 141 - (__float_as_int(m) >> 23);  // 14 - (field - 127); the sign bit of m is 0
  return e > kSplitExpMax ? kSplitExpMax : e;     // field ≤ 254 keeps e ≥ -113
}

// The 32 bits of an f16 pair, for stores of several pairs at once.
__device__ __forceinline__ uint32_t half2_bits(__half2 h) { return *reinterpret_cast<const uint32_t*>(&h); }

// hi and lo of x (already scaled), packed as the f16 pairs of two adjacent elements.
struct SplitPair {
  __half2 hi, lo;
};
__device__ __forceinline__ SplitPair split_f16(float x0, float x1) {
  const __half2 hi = __floats2half2_rn(x0, x1);
  const float2 h = __half22float2(hi);
  return {hi, __floats2half2_rn(x0 - h.x, x1 - h.y)};
}

}  // namespace dsv4::cuda::detail
