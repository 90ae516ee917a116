// prefill_attention.h: the split form's second launch, the combine.
//
// Combine kernel, block (group of heads, token), a warp per head: o = Σ_s e^{m_s-M} o_s /
// (e^{sink-M} + Σ_s e^{m_s-M} l_s) over the token's non-empty splits, then the inverse RoPE at p
// (§7.10), written as f32, or (AttentionArgs::out16) as out_a's GEMM input: the block is one out_a
// group of the token, whose values wait in shared memory for their largest magnitude, then leave
// as hi/lo f16 scaled by its power of two (gemm.h's conversion, a row factor per group), so that
// the f32 output is never written and converted in a launch of its own (session 14).
#include <cuda_runtime.h>

#include <algorithm>

#include "cuda/attention_rows.cuh"
#include "cuda/check.h"
#include "cuda/device_math.cuh"
#include "cuda/f16_rows.cuh"
#include "cuda/once_per_device.h"
#include "cuda/pdl.cuh"
#include "cuda/prefill_attention.h"

namespace dsv4::cuda {

namespace {

using namespace detail;

constexpr int kRows = kPrefillAttnRows;  // rows of a split
constexpr int kCombineHeads = 8;         // most heads per combine block (a warp each); f32 output takes 8
constexpr int kCombineMaxValues = 16384;  // f16 output: a group's values held in shared memory (64 KB)
constexpr int kCombineBatch = 2;          // splits whose partials a lane loads at once, for two dims

// Combine, block (group of gh heads, token), a warp per head. Every split the combine reads holds
// at least one row, so l_s ≥ 1 and m_s is finite. With a.out16 the group's gh·hd outputs wait in
// shared memory for their largest magnitude, then leave as hi (and lo) f16 of o·2^s.
// 64 registers (4 blocks of 8 warps an SM) with the batch's loads in flight.
__global__ void __launch_bounds__(32 * kCombineHeads, 4) combine_kernel(AttentionArgs a, int gh) {
  pdl_wait();  // launched with PDL: nothing before this line (pdl.cuh)
  pdl_trigger();
  extern __shared__ __align__(16) float smem[];
  const bool f16 = a.out16 != nullptr;
  float* vals = smem;                          // [gh][hd] (f16 output only)
  float* w = smem + (f16 ? gh * a.hd : 0);     // [gh][splits]: e^{m_s-M}
  __shared__ float group_max[kCombineHeads];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int g = blockIdx.x, t = blockIdx.y, h = g * gh + warp, hd = a.hd;
  const AttnRowSet rs = attn_row_set(a, t);
  const int n_split = static_cast<int>((rs.total() + kRows - 1) / kRows);
  float m_abs = 0.0f;
  if (h < a.H) {
    const int64_t base = (static_cast<int64_t>(t) * a.H + h) * a.splits;
    const float2* ml = reinterpret_cast<const float2*>(a.part_ml) + base;
    float* wh = w + warp * a.splits;
    const float sink = a.sinks[h];
    float m_local = -INFINITY;
    for (int s = lane; s < n_split; s += 32) m_local = fmaxf(m_local, ml[s].x);
    const float M = fmaxf(sink, warp_max(m_local));
    float den_local = 0.0f;
    for (int s = lane; s < n_split; s += 32) {
      const float2 v = ml[s];
      const float e = expf(v.x - M);
      wh[s] = e;
      den_local += v.y * e;
    }
    const float den = expf(sink - M) + warp_sum(den_local);
    __syncwarp();  // the weights visible to the warp
    const int rot0 = hd - a.n_rot;
    const auto finish = [&](int d, float4 acc) {
      float4 o = make_float4(acc.x / den, acc.y / den, acc.z / den, acc.w / den);
      if (d >= rot0) {  // §7.10 at p, two whole pairs: rot0 and d are even
        float c, sn;
        rope_cos_sin(a.omega[(d - rot0) / 2], rs.pos, &c, &sn);
        const float2 p0 = rope_rotated(o.x, o.y, c, sn, true);
        rope_cos_sin(a.omega[(d - rot0) / 2 + 1], rs.pos, &c, &sn);
        const float2 p1 = rope_rotated(o.z, o.w, c, sn, true);
        o = make_float4(p0.x, p0.y, p1.x, p1.y);
      }
      if (f16) {
        *reinterpret_cast<float4*>(vals + warp * hd + d) = o;
        m_abs = fmaxf(m_abs, fmaxf(fmaxf(fabsf(o.x), fabsf(o.y)), fmaxf(fabsf(o.z), fabsf(o.w))));
      } else {
        *reinterpret_cast<float4*>(a.out + (static_cast<int64_t>(t) * a.H + h) * hd + d) = o;
      }
    };
    const auto add = [](float4 acc, float4 v, float w) {
      return make_float4(fmaf(v.x, w, acc.x), fmaf(v.y, w, acc.y), fmaf(v.z, w, acc.z), fmaf(v.w, w, acc.w));
    };
    // Two of the lane's dims (d, d + 128) at a time and their splits kCombineBatch at a time, all
    // the loads in flight before the first add (a loop of one load and its adds waited a memory
    // latency per split: a CSA token has 5, a sliding one 1); each dim's adds in split order.
    for (int d = 4 * lane; d < hd; d += 256) {  // hd is a multiple of 32
      const bool second = d + 128 < hd;
      float4 acc[2] = {make_float4(0.f, 0.f, 0.f, 0.f), make_float4(0.f, 0.f, 0.f, 0.f)};
      for (int s0 = 0; s0 < n_split; s0 += kCombineBatch) {
        float4 v[2][kCombineBatch];
#pragma unroll
        for (int k = 0; k < kCombineBatch; ++k) {
          if (s0 + k < n_split) {
            const float* p = a.part_o + (base + s0 + k) * hd + d;
            v[0][k] = *reinterpret_cast<const float4*>(p);
            if (second) v[1][k] = *reinterpret_cast<const float4*>(p + 128);
          }
        }
#pragma unroll
        for (int k = 0; k < kCombineBatch; ++k) {
          if (s0 + k < n_split) {
            acc[0] = add(acc[0], v[0][k], wh[s0 + k]);
            if (second) acc[1] = add(acc[1], v[1][k], wh[s0 + k]);
          }
        }
      }
      finish(d, acc[0]);
      if (second) finish(d + 128, acc[1]);
    }
  }
  if (!f16) return;
  m_abs = warp_max(m_abs);
  if (lane == 0) group_max[warp] = m_abs;
  __syncthreads();  // the group's values and maxima
  float m = 0.0f;
  for (int i = 0; i < gh; ++i) m = fmaxf(m, group_max[i]);
  const int shift = row_shift(m);
  if (threadIdx.x == 0) a.out16_scale[static_cast<int64_t>(t) * (a.H / gh) + g] = pow2f(-shift);
  const float f = pow2f(shift);
  const int64_t at = static_cast<int64_t>(t) * a.H * hd + static_cast<int64_t>(g) * gh * hd;
  for (int c = 4 * threadIdx.x; c < gh * hd; c += 4 * blockDim.x) {
    store_scaled_f16x4(*reinterpret_cast<const float4*>(vals + c), f, a.out16 + at + c,
                       a.out16_lo ? a.out16_lo + at + c : nullptr);
  }
}

}  // namespace

bool prefill_attention_f16_output_supported(int group, int hd) {
  return group >= 1 && group <= kCombineHeads && int64_t{group} * hd <= kCombineMaxValues;
}

Status prefill_attention_combine(const AttentionArgs& a, cudaStream_t stream) {
  int device = 0;
  DSV4_CUDA_TRY(cudaGetDevice(&device));
  // The combine's shared memory is sized at run time (hd, the split count): all the device allows.
  DSV4_CUDA_TRY(once_per_device(device, [device] {
    return allow_optin_smem(device, reinterpret_cast<const void*>(combine_kernel));
  }));
  const bool f16 = a.out16 != nullptr;
  const int gh = f16 ? a.out16_group : std::min(a.H, kCombineHeads);
  const size_t combine_smem = static_cast<size_t>(gh) * ((f16 ? a.hd : 0) + a.splits) * sizeof(float);
  DSV4_CUDA_TRY(launch_pdl(combine_kernel, dim3((a.H + gh - 1) / gh, a.T), dim3(32 * gh), combine_smem, stream, a, gh));
  return cuda_status(cudaGetLastError(), "prefill attention combine");
}

}  // namespace dsv4::cuda
