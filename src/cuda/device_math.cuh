// Device building blocks shared by the forward kernels: fixed-order block reductions, the
// activation-quantisation simulations of MODEL.md §11 (the CPU's cpu/sim.cc rules, re-stated for
// the device and checked against it in tests/cuda/ops_test.cc), RoPE angles, and element access
// to small weight matrices.
//
// Numerics: where the CPU reference evaluates a transcendental function in f32 on a handful of
// values (sigmoid of the HC gates, sqrt(softplus) of the router), the device evaluates it in
// double and rounds once, which agrees with a correctly rounded f32 libm; bulk exps (softmax,
// pooling) use expf. RoPE angles are fl32(p·ω) as on the CPU, their cos/sin evaluated in double
// (never the fast-math intrinsics: the angle reaches 1e6 rad).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "cuda/quant_decode.cuh"
#include "gguf/types.h"

namespace dsv4::cuda::detail {

// ---- reductions: warp butterflies, then the warps in order (deterministic) ----

template <class T>
__device__ __forceinline__ T warp_sum(T v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xFFFFFFFFu, v, o);
  return v;
}

__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xFFFFFFFFu, v, o));
  return v;
}

// Synchronises the W warps of group g of a block (named barrier 1 + g; 0 is __syncthreads).
__device__ __forceinline__ void group_barrier(int g, int W) {
  asm volatile("bar.sync %0, %1;\n" ::"r"(1 + g), "r"(W * 32) : "memory");
}

// Sum over the block (blockDim.x a multiple of 32, at most 1024); every thread gets the result.
// `scratch` holds 32 values; the call ends with a barrier so scratch can be reused.
template <class T>
__device__ T block_sum(T v, T* scratch) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
  v = warp_sum(v);
  __syncthreads();  // scratch may still be read by a previous call
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  T s = scratch[0];
  for (int w = 1; w < warps; ++w) s += scratch[w];
  __syncthreads();
  return s;
}

__device__ inline float block_max(float v, float* scratch) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
  v = warp_max(v);
  __syncthreads();
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  float m = scratch[0];
  for (int w = 1; w < warps; ++w) m = fmaxf(m, scratch[w]);
  __syncthreads();
  return m;
}

// Inclusive prefix sum of v over the lanes of a full warp, in lane order (`lane` is the caller's).
__device__ __forceinline__ int warp_inclusive_scan(int v, int lane) {
#pragma unroll
  for (int o = 1; o < 32; o <<= 1) {
    const int n = __shfl_up_sync(0xFFFFFFFFu, v, o);
    if (lane >= o) v += n;
  }
  return v;
}

// Exclusive prefix sum of `flag` over the block in thread order; *total gets the block's sum.
// warp_sums holds 32 ints. Every thread of the block must call it.
__device__ inline int block_exclusive_scan(int flag, int* warp_sums, int* total) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
  const int incl = warp_inclusive_scan(flag, lane);
  __syncthreads();
  if (lane == 31) warp_sums[warp] = incl;
  __syncthreads();
  // Every warp scans the warp sums itself, lane w holding warp w's: one load and five shuffles a
  // lane, where a loop over all the sums took 32 loads a lane.
  const int sum = lane < warps ? warp_sums[lane] : 0;
  const int upto = warp_inclusive_scan(sum, lane);
  *total = __shfl_sync(0xFFFFFFFFu, upto, warps - 1);
  return __shfl_sync(0xFFFFFFFFu, upto - sum, warp) + incl - flag;
}

// ---- f32 functions as a correctly rounded libm gives them ----

__device__ __forceinline__ float exp_f32(float x) { return static_cast<float>(exp(static_cast<double>(x))); }
__device__ __forceinline__ float sigmoid_f32(float z) { return __fdiv_rn(1.0f, __fadd_rn(1.0f, exp_f32(-z))); }
__device__ __forceinline__ float silu_f32(float z) { return __fmul_rn(z, sigmoid_f32(z)); }
// Overflow-safe softplus (MODEL.md §8.2), as cpu::softplus.
__device__ __forceinline__ float softplus_f32(float x) {
  if (x > 20.0f) return x;
  if (x < -20.0f) return exp_f32(x);
  return static_cast<float>(log1p(static_cast<double>(exp_f32(x))));
}

// ---- MODEL.md §11 simulations (cpu/sim.h) ----

// 2^(e + (mantissa != 0)) of a positive finite f32, read off its bits (§11.2).
__device__ __forceinline__ float pow2_ceil(float f) {
  const uint32_t bits = __float_as_uint(f) & 0x7fffffffu;
  const uint32_t e = bits >> 23, mant = bits & 0x7fffffu;
  if (e == 0xffu) return f;
  if (e == 0) {
    uint32_t p = 1;
    while (p < mant) p <<= 1;
    return __uint_as_float(mant == 0 ? 0u : p);
  }
  return __uint_as_float((e + (mant != 0 ? 1u : 0u)) << 23);
}

// Nearest e4m3fn value, ties to even (|x| <= 448).
__device__ __forceinline__ float e4m3_round(float x) {
  const float a = fabsf(x);
  if (!(a > 0.0f)) return x;
  float quantum;
  if (a < 0x1p-6f) {
    quantum = 0x1p-9f;
  } else {
    const int e = static_cast<int>((__float_as_uint(a) >> 23) & 0xffu) - 127;
    quantum = __uint_as_float(static_cast<uint32_t>(e - 3 + 127) << 23);
  }
  const float r = __fmul_rn(rintf(__fdiv_rn(a, quantum)), quantum);
  return copysignf(r, x);
}

// Nearest e2m1 value, ties to the even code (|x| <= 6).
__device__ __forceinline__ float e2m1_round(float x) {
  const float a = fabsf(x);
  float r;
  if (a <= 0.25f) r = 0.0f;
  else if (a < 0.75f) r = 0.5f;
  else if (a <= 1.25f) r = 1.0f;
  else if (a < 1.75f) r = 1.5f;
  else if (a <= 2.5f) r = 2.0f;
  else if (a < 3.5f) r = 3.0f;
  else if (a <= 5.0f) r = 4.0f;
  else r = 6.0f;
  return copysignf(r, x);
}

// One value of a power-of-two-scaled round trip whose block amax is `amax` (floor applied here):
// fp8 (qmax 448, floor 1e-4) or fp4 (qmax 6, floor 6·2^-126).
__device__ __forceinline__ float fp8_sim_value(float v, float amax) {
  const float scale = pow2_ceil(__fmul_rn(fmaxf(amax, 1e-4f), 1.0f / 448.0f));
  const float t = fminf(fmaxf(__fmul_rn(v, __fdiv_rn(1.0f, scale)), -448.0f), 448.0f);
  return __fmul_rn(e4m3_round(t), scale);
}
__device__ __forceinline__ float fp4_sim_value(float v, float amax) {
  const float scale = pow2_ceil(__fmul_rn(fmaxf(amax, 6.0f * 0x1p-126f), 1.0f / 6.0f));
  const float t = fminf(fmaxf(__fmul_rn(v, __fdiv_rn(1.0f, scale)), -6.0f), 6.0f);
  return __fmul_rn(e2m1_round(t), scale);
}

// FP8_SIM in place on v[0, n) in shared memory (n a multiple of 64), one warp per block of 64.
// All threads of the block call it; it ends with a barrier.
__device__ inline void fp8_sim_shared(float* v, int n) {
  __syncthreads();
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
  for (int b = warp; b < n / 64; b += warps) {
    float* blk = v + 64 * b;
    const float x0 = blk[lane], x1 = blk[lane + 32];
    const float amax = warp_max(fmaxf(fabsf(x0), fabsf(x1)));
    blk[lane] = fp8_sim_value(x0, amax);
    blk[lane + 32] = fp8_sim_value(x1, amax);
  }
  __syncthreads();
}

// Hadamard (natural order, scaled by fl32(1/sqrt(n))) then FP4_SIM (blocks of 32), in place on
// v[0, n) in shared memory (n a power of two >= 32). Same butterflies as cpu::hadamard.
__device__ inline void hadamard_fp4_shared(float* v, int n, bool fp4) {
  __syncthreads();
  for (int h = 1; h < n; h <<= 1) {
    for (int k = threadIdx.x; k < n / 2; k += blockDim.x) {
      const int i = (k / h) * 2 * h + (k % h);
      const float a = v[i], b = v[i + h];
      v[i] = __fadd_rn(a, b);
      v[i + h] = __fsub_rn(a, b);
    }
    __syncthreads();
  }
  const float scale = static_cast<float>(1.0 / sqrt(static_cast<double>(n)));
  for (int i = threadIdx.x; i < n; i += blockDim.x) v[i] = __fmul_rn(v[i], scale);
  __syncthreads();
  if (!fp4) return;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
  for (int b = warp; b < n / 32; b += warps) {
    const float x = v[32 * b + lane];
    const float amax = warp_max(fabsf(x));
    v[32 * b + lane] = fp4_sim_value(x, amax);
  }
  __syncthreads();
}

// ---- RoPE (MODEL.md §7.4): interleaved pairs on the last 2·n_pairs dims ----

// cos/sin of φ = fl32(fl32(pos)·ω).
__device__ __forceinline__ void rope_cos_sin(float omega, int64_t pos, float* c, float* s) {
  const float phi = __fmul_rn(static_cast<float>(pos), omega);
  double sd, cd;
  sincos(static_cast<double>(phi), &sd, &cd);
  *c = static_cast<float>(cd);
  *s = static_cast<float>(sd);
}

// The pair (x0, x1) rotated by +φ, or −φ when inverse, given cos φ and sin φ.
__device__ __forceinline__ float2 rope_rotated(float x0, float x1, float c, float s, bool inverse) {
  if (!inverse) {
    return make_float2(__fsub_rn(__fmul_rn(x0, c), __fmul_rn(x1, s)), __fadd_rn(__fmul_rn(x0, s), __fmul_rn(x1, c)));
  }
  return make_float2(__fadd_rn(__fmul_rn(x0, c), __fmul_rn(x1, s)), __fsub_rn(__fmul_rn(x1, c), __fmul_rn(x0, s)));
}

// Rotates pair j of the tail of v (width `width`, shared or global) by +φ or −φ.
__device__ __forceinline__ void rope_pair(float* v, int width, int n_pairs, int j, float c, float s, bool inverse) {
  float* x = v + width - 2 * n_pairs + 2 * j;
  const float2 y = rope_rotated(x[0], x[1], c, s, inverse);
  x[0] = y.x;
  x[1] = y.y;
}

// The whole tail of v rotated at `pos` by the block's threads (ends with a barrier).
__device__ inline void rope_shared(float* v, int width, int n_pairs, const float* omega, int64_t pos, bool inverse) {
  __syncthreads();
  for (int j = threadIdx.x; j < n_pairs; j += blockDim.x) {
    float c, s;
    rope_cos_sin(omega[j], pos, &c, &s);
    rope_pair(v, width, n_pairs, j, c, s, inverse);
  }
  __syncthreads();
}

// Asks L2 for the line holding p. Safe before griddepcontrol.wait on any address: nothing enters
// the SM, and L2 is the point of coherence of global memory.
__device__ __forceinline__ void prefetch_l2(const void* p) { asm volatile("prefetch.global.L2 [%0];\n" ::"l"(p)); }

// rope_shared in two halves, so that a PDL kernel takes the angles (ω is a weight and the position
// changes only between steps) before griddepcontrol.wait: cs[j] = (cos, sin) of pair j ...
__device__ inline void rope_angles_shared(float2* cs, int n_pairs, const float* omega, int64_t pos) {
  for (int j = threadIdx.x; j < n_pairs; j += blockDim.x) rope_cos_sin(omega[j], pos, &cs[j].x, &cs[j].y);
}

// ... and the rotation by them once v is there (same values as rope_shared; ends with a barrier).
__device__ inline void rope_apply_shared(float* v, int width, int n_pairs, const float2* cs, bool inverse) {
  __syncthreads();
  for (int j = threadIdx.x; j < n_pairs; j += blockDim.x) rope_pair(v, width, n_pairs, j, cs[j].x, cs[j].y, inverse);
  __syncthreads();
}

// ---- element i of a row of a small weight matrix (F32, F16, BF16 or Q8_0) ----

__device__ __forceinline__ float weight_elem(gguf::TensorType type, const uint8_t* row, int64_t i) {
  switch (type) {
    case gguf::TensorType::F32: return reinterpret_cast<const float*>(row)[i];
    case gguf::TensorType::F16: return f16_to_f32(reinterpret_cast<const uint16_t*>(row)[i]);
    case gguf::TensorType::BF16: return __uint_as_float(static_cast<uint32_t>(reinterpret_cast<const uint16_t*>(row)[i]) << 16);
    case gguf::TensorType::Q8_0: return FmtQ8_0::elem(row + (i / 32) * 34, static_cast<int>(i % 32), nullptr);
    default: return 0.0f;
  }
}

}  // namespace dsv4::cuda::detail
