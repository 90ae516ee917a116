// One query head in the prefill attention's split form (prefill_attention.h): hi then lo f16 halves
// of q·2^e with one e for the head (f16_split.cuh's split_exponent of its largest |q|), written by
// the warp that holds the head, lane l holding elements l + 32i. Shared by q_kv_finish, which
// leaves prefill chunks' queries in this form, and prefill_attention_split_queries.
#pragma once

#include <cuda_fp16.h>

#include "cuda/device_math.cuh"
#include "cuda/f16_split.cuh"

namespace dsv4::cuda::detail {

// dst: the head's 2·hd halves (hi[hd], lo[hd]); may be the bytes the warp read v from, since every
// lane's v is in registers once the warp's max is reduced.
template <int kMaxPerLane>
__device__ __forceinline__ void store_split_query(const float (&v)[kMaxPerLane], int per_lane, __half* dst, int hd,
                                                  int* exp_out) {
  const int lane = threadIdx.x & 31;
  float m = 0.0f;
#pragma unroll
  for (int i = 0; i < kMaxPerLane; ++i) {
    if (i < per_lane) m = fmaxf(m, fabsf(v[i]));
  }
  const int e = split_exponent(warp_max(m));
  const float f = pow2f(e);
#pragma unroll
  for (int i = 0; i < kMaxPerLane; ++i) {
    if (i < per_lane) {
      const float x = v[i] * f;
      const __half hi = __float2half_rn(x);
      dst[lane + 32 * i] = hi;
      dst[hd + lane + 32 * i] = __float2half_rn(x - __half2float(hi));
    }
  }
  if (lane == 0) *exp_out = e;
}

}  // namespace dsv4::cuda::detail
