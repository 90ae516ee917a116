// f32-accurate products on f16 tensor cores: a vector x is scaled by a power of two 2^e chosen so
// that max |x·2^e| lies in [2^14, 2^15) (no f16 overflow, and lo = x·2^e − hi stays clear of the
// f16 subnormals for every element within 2^-3·2^-11 of the maximum), then split hi = f16(x·2^e),
// lo = f16(x·2^e − hi): hi + lo carries 22 significant bits. a·b ≈ a_lo·b_hi + a_hi·b_lo +
// a_hi·b_hi (three m16n8k16 MMAs, the dropped a_lo·b_lo is ≈ 2^-22 relative). Each short MMA chain
// starts at zero and its sum is added to f32 totals with an ordinary rounded add: the tensor cores
// truncate their aligned sums, so a long chain into a large accumulator would be biased
// (GEMM_NOTES.md, split GEMM v1). Uses gemm_kernel.cuh's ldmatrix_x4 / mma_f16.
#pragma once

#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "cuda/f16_rows.cuh"
#include "cuda/gemm_kernel.cuh"

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

// ldmatrix with transposition: the B fragments of a [k][n] row-major tile.
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t* r, uint32_t addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}

// c += a·b for split operands (a_lo·b_hi and a_hi·b_lo first: the small terms before the large).
// b_exact: every b_lo is zero (b is exact in f16, e.g. FP8-simulated values after a power-of-two
// scale), so a_hi·b_lo adds exact zeros and is skipped: the same c, two MMAs instead of three.
// b_lo is not read then. The flag must be warp-uniform.
__device__ __forceinline__ void mma_split(float* c, const uint32_t* a_hi, const uint32_t* a_lo, const uint32_t* b_hi,
                                          const uint32_t* b_lo, bool b_exact = false) {
  mma_f16(c, a_lo, b_hi);
  if (!b_exact) mma_f16(c, a_hi, b_lo);
  mma_f16(c, a_hi, b_hi);
}

}  // namespace dsv4::cuda::detail
