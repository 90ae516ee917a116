// prefill_attention.h: the partial kernel's inputs, made once per layer (the rows) and once per
// token (the queries, where q_kv_finish has not made them).
//
// Row conversion, a warp per row: every row the chunk's tokens can see → hi/lo f16 of row·2^b_r
// (b_r from the row's max |.|, f16_split.cuh) with b_r and a bit per kPrefillAttnSlab-dim slab
// that holds a nonzero lo half.
// Query split, a warp per head: split_query.cuh's form, in place.
#include <cuda_runtime.h>

#include <algorithm>

#include "cuda/check.h"
#include "cuda/device_math.cuh"
#include "cuda/f16_rows.cuh"
#include "cuda/f16_split.cuh"
#include "cuda/pdl.cuh"
#include "cuda/prefill_attention.h"
#include "cuda/split_query.cuh"

namespace dsv4::cuda {

namespace {

using namespace detail;

constexpr int kSlab = kPrefillAttnSlab;
constexpr int kMaxPerLane = kPrefillAttnMaxHeadDim / 32;

// Warp per row: max |.| → b, then hi/lo of row·2^b and the slabs' lo bits. Rows: ring slots that
// hold a position before the chunk, the chunk's rows, the compressed rows up to its last position.
__global__ void convert_rows_kernel(AttentionArgs a, int chunk, __half* out, int2* meta) {
  pdl_wait();  // launched with PDL: nothing before this line (pdl.cuh)
  pdl_trigger();
  const int64_t pos0 = *a.pos0;
  const int64_t W = a.window, n_ring = pos0 < W ? pos0 : W;
  const int64_t n_comp = a.ratio != 0 ? (pos0 + chunk) / a.ratio : 0;
  const int64_t n = W + chunk + n_comp;
  const int lane = threadIdx.x & 31, hd = a.hd, n4 = hd / 4;
  const int64_t warps = static_cast<int64_t>(gridDim.x) * (blockDim.x >> 5);
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * (blockDim.x >> 5) + (threadIdx.x >> 5); i < n; i += warps) {
    if (i >= n_ring && i < W) continue;  // a slot no token of this chunk reads
    const float* src = i < W ? a.ring + i * hd : i < W + chunk ? a.kv_chunk + (i - W) * hd : a.comp + (i - W - chunk) * hd;
    const float4* src4 = reinterpret_cast<const float4*>(src);
    float m = 0.0f;
    for (int j = lane; j < n4; j += 32) {
      const float4 v = src4[j];
      m = fmaxf(m, fmaxf(fmaxf(fabsf(v.x), fabsf(v.y)), fmaxf(fabsf(v.z), fabsf(v.w))));
    }
    const int e = split_exponent(warp_max(m));
    const float f = pow2f(e);
    __half* hi = out + i * 2 * hd;
    unsigned mask = 0;
    for (int j = lane; j < n4; j += 32) {
      const float4 v = src4[j];
      const SplitPair p = split_f16(v.x * f, v.y * f), q = split_f16(v.z * f, v.w * f);
      *reinterpret_cast<uint2*>(hi + 4 * j) = make_uint2(half2_bits(p.hi), half2_bits(q.hi));
      *reinterpret_cast<uint2*>(hi + hd + 4 * j) = make_uint2(half2_bits(p.lo), half2_bits(q.lo));
      if (((half2_bits(p.lo) | half2_bits(q.lo)) & 0x7FFF7FFFu) != 0) mask |= 1u << (4 * j / kSlab);  // ±0 counts as zero
    }
    mask = __reduce_or_sync(0xFFFFFFFFu, mask);
    if (lane == 0) meta[i] = make_int2(e, static_cast<int>(mask));
  }
}

// A warp per query head (row t·H + h of q): its f32 values → the split form, in place.
__global__ void split_queries_kernel(float* q, int* q_exp, int64_t n_heads, int hd) {
  pdl_wait();  // launched with PDL: nothing before this line (pdl.cuh)
  pdl_trigger();
  const int64_t row = static_cast<int64_t>(blockIdx.x) * (blockDim.x >> 5) + (threadIdx.x >> 5);
  if (row >= n_heads) return;
  const int lane = threadIdx.x & 31, per_lane = hd / 32;
  float* src = q + row * hd;
  float v[kMaxPerLane];
#pragma unroll
  for (int i = 0; i < kMaxPerLane; ++i) {
    if (i < per_lane) v[i] = src[lane + 32 * i];
  }
  store_split_query(v, per_lane, reinterpret_cast<__half*>(src), hd, q_exp + row);
}

}  // namespace

int64_t prefill_attention_row_capacity(int window, int max_chunk, int64_t comp_cap) {
  return int64_t{window} + max_chunk + comp_cap;
}

Status prefill_attention_rows(const AttentionArgs& a, int chunk, PrefillAttnRows& rows, cudaStream_t stream) {
  if (!prefill_attention_supported(a.H, a.hd)) return make_error("prefill attention rows: unsupported geometry");
  if (chunk <= 0 || a.window <= 0 || rows.rows == nullptr || rows.meta == nullptr) {
    return make_error("prefill attention rows: no chunk, window or scratch");
  }
  rows.chunk = chunk;
  const int warps = 8;
  const int blocks = static_cast<int>(std::min<int64_t>((int64_t{a.window} + chunk + warps - 1) / warps, 2048));
  DSV4_CUDA_TRY(launch_pdl(convert_rows_kernel, dim3(blocks), dim3(32 * warps), 0, stream, a, chunk, rows.rows,
                           rows.meta));
  return cuda_status(cudaGetLastError(), "prefill attention rows");
}

Status prefill_attention_split_queries(float* q, int* q_exp, int T, int H, int hd, cudaStream_t stream) {
  if (T <= 0) return Status();
  if (!prefill_attention_supported(H, hd) || q == nullptr || q_exp == nullptr) {
    return make_error("prefill attention queries: unsupported geometry or no buffers");
  }
  const int64_t n_heads = int64_t{T} * H;
  constexpr int kWarps = 8;
  DSV4_CUDA_TRY(launch_pdl(split_queries_kernel, dim3(static_cast<unsigned>((n_heads + kWarps - 1) / kWarps)),
                           dim3(32 * kWarps), 0, stream, q, q_exp, n_heads, hd));
  return cuda_status(cudaGetLastError(), "prefill attention queries");
}

}  // namespace dsv4::cuda
