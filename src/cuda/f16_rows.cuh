// The scaled f16 form of a GEMM input row (gemm.h's convert_f32_to_f16 and _split): its power of
// two and the hi/lo halves of one element; pow2f, which f16_split.cuh's operands use as well.
// Shared by the conversion kernels (gemm_sort.cu) and the kernels that write a GEMM's input
// directly (prefill attention's combine and its whole-token blocks).
#pragma once

#include <cuda_fp16.h>
#include <cuda_runtime.h>

namespace dsv4::cuda::detail {

// 2^e for |e| ≤ 126, exact.
__device__ __forceinline__ float pow2f(int e) { return __int_as_float((e + 127) << 23); }

// The power of two s of a row whose largest magnitude is m (gemm.h): 0 for a zero or non-finite m.
__device__ __forceinline__ int row_shift(float m) {
  return m > 0.0f && isfinite(m) ? min(max(14 - ilogbf(m), -126), 126) : 0;
}

// hi (and lo) of one scaled element: lo = f16(v − hi), v − hi being exact in f32.
__device__ __forceinline__ __half f16_hi(float v) {
  return __float2half_rn(isfinite(v) ? fminf(fmaxf(v, -65504.0f), 65504.0f) : v);
}
__device__ __forceinline__ __half f16_lo(float v, __half hi) {
  return __float2half_rn(isfinite(v) ? v - __half2float(hi) : 0.0f);
}

// Four consecutive elements of a row times its factor f = 2^s as hi (and, with lo, lo) f16 at
// hi/lo (8-byte aligned).
__device__ __forceinline__ void store_scaled_f16x4(float4 v, float f, __half* hi, __half* lo) {
  const float e[4] = {v.x * f, v.y * f, v.z * f, v.w * f};
  const __half h[4] = {f16_hi(e[0]), f16_hi(e[1]), f16_hi(e[2]), f16_hi(e[3])};
  const __half2 h01 = __halves2half2(h[0], h[1]), h23 = __halves2half2(h[2], h[3]);
  *reinterpret_cast<uint2*>(hi) = make_uint2(*reinterpret_cast<const uint32_t*>(&h01),
                                             *reinterpret_cast<const uint32_t*>(&h23));
  if (lo == nullptr) return;
  const __half2 l01 = __halves2half2(f16_lo(e[0], h[0]), f16_lo(e[1], h[1]));
  const __half2 l23 = __halves2half2(f16_lo(e[2], h[2]), f16_lo(e[3], h[3]));
  *reinterpret_cast<uint2*>(lo) = make_uint2(*reinterpret_cast<const uint32_t*>(&l01),
                                             *reinterpret_cast<const uint32_t*>(&l23));
}

}  // namespace dsv4::cuda::detail
