// The routed experts' SwiGLU of one element (moe.h, MODEL.md §8.5): silu(min(g, L))·clamp(u, ±L),
// times the route weight when there is one (clamp iff L > 1e-6). One definition for the swiglu
// kernel (moe.cu) and the 2-bit matvec's fused activation staging (matvec_2bit.cu), so that the
// fused down projection reads exactly the bits the separate kernel would have written.
#pragma once

#include "cuda/device_math.cuh"

namespace dsv4::cuda::detail {

__device__ __forceinline__ float swiglu_element(float g, float u, const float* weight, float limit) {
  if (limit > 1e-6f) {
    g = fminf(g, limit);
    u = fminf(fmaxf(u, -limit), limit);
  }
  const float v = __fmul_rn(silu_f32(g), u);
  return weight ? __fmul_rn(v, *weight) : v;
}

}  // namespace dsv4::cuda::detail
