// The grouped GEMM's helpers: the stable counting sort of (token, expert) pairs by expert, and the
// f32 → f16 conversion of activation rows (optionally scaled per row by a power of two).
//
// Sort, in three launches (deterministic, no float atomics):
//   count    one warp per chunk of kSortChunk pairs counts its pairs per expert in shared memory
//            (warp match: the lowest lane of each expert's lanes adds their number);
//   scan     one block turns the [expert][chunk] counts into the first sorted row of each
//            (expert, chunk) — expert-major, so chunk order = pair order — and the expert offsets
//            (a warp per expert over its chunks);
//   scatter  each chunk's warp walks its pairs in order again; a pair's row is its (expert, chunk)
//            base + the number of earlier pairs of the same expert in the chunk.
// 49 152 pairs (8192 tokens × 6) make 192 chunks; the scan reads 256 × 192 counters.
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "cuda/device_math.cuh"
#include "cuda/f16_rows.cuh"
#include "cuda/gemm_launch.h"

namespace dsv4::cuda::detail {

namespace {

constexpr int kScanThreads = 1024;

__device__ __forceinline__ int valid_expert(int e, int n_expert) { return e >= 0 && e < n_expert ? e : -1; }

__global__ void sort_count(const int32_t* topk, int n_pairs, int n_expert, int n_chunks, int32_t* counts) {
  extern __shared__ int32_t cnt[];
  const int lane = threadIdx.x;
  for (int i = lane; i < n_expert; i += 32) cnt[i] = 0;
  __syncwarp();
  const int begin = blockIdx.x * kSortChunk, end = min(begin + kSortChunk, n_pairs);
  for (int base = begin; base < end; base += 32) {
    const int p = base + lane;
    const int e = p < end ? valid_expert(topk[p], n_expert) : -1;
    const unsigned same = __match_any_sync(0xFFFFFFFFu, e);
    if (e >= 0 && lane == __ffs(same) - 1) cnt[e] += __popc(same);
    __syncwarp();
  }
  for (int i = lane; i < n_expert; i += 32) counts[i * n_chunks + blockIdx.x] = cnt[i];
}

// One block turns the counts into first rows in three passes, a warp per expert where it walks the
// expert's chunks (coalesced, 32 chunks at a time; one thread per expert walking them serially, a
// load latency each, took ≈ 150 µs at 256 experts × 192 chunks): the experts' totals, their
// exclusive scan in the block (a thread per contiguous run of experts), then each expert's chunks
// scanned from its base. totals: n_expert ints of dynamic shared memory.
__global__ void sort_scan(int32_t* counts, int n_expert, int n_chunks, int32_t* offsets) {
  extern __shared__ int32_t totals[];
  __shared__ int32_t part[kScanThreads];
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, warps = kScanThreads / 32;
  for (int e = warp; e < n_expert; e += warps) {
    const int32_t* row = counts + static_cast<int64_t>(e) * n_chunks;
    int sum = 0;
    for (int c = lane; c < n_chunks; c += 32) sum += row[c];
    sum = warp_sum(sum);
    if (lane == 0) totals[e] = sum;
  }
  __syncthreads();
  // Exclusive scan of the totals: thread tid takes experts e0 .. e1 - 1 in order.
  const int per = (n_expert + kScanThreads - 1) / kScanThreads;
  const int e0 = min(tid * per, n_expert), e1 = min(e0 + per, n_expert);
  int local = 0;
  for (int e = e0; e < e1; ++e) local += totals[e];
  part[tid] = local;
  __syncthreads();
  for (int d = 1; d < kScanThreads; d <<= 1) {  // inclusive Hillis–Steele scan
    const int v = tid >= d ? part[tid - d] : 0;
    __syncthreads();
    part[tid] += v;
    __syncthreads();
  }
  int base = part[tid] - local;
  for (int e = e0; e < e1; ++e) {
    const int size = totals[e];
    totals[e] = base;
    offsets[e] = base;
    base += size;
  }
  if (tid == kScanThreads - 1) offsets[n_expert] = part[tid];
  __syncthreads();
  for (int e = warp; e < n_expert; e += warps) {
    int32_t* row = counts + static_cast<int64_t>(e) * n_chunks;
    int carry = totals[e];
    for (int c0 = 0; c0 < n_chunks; c0 += 32) {
      const int c = c0 + lane;
      const int v = c < n_chunks ? row[c] : 0;
      const int incl = warp_inclusive_scan(v, lane);
      if (c < n_chunks) row[c] = carry + incl - v;
      carry += __shfl_sync(0xFFFFFFFFu, incl, 31);
    }
  }
}

__global__ void sort_scatter(const int32_t* topk, int n_pairs, int top_k, int n_expert, int n_chunks,
                             const int32_t* first_row, int32_t* row_pair, int32_t* row_token,
                             int32_t* pair_row, const float* pair_weight, float* row_weight) {
  extern __shared__ int32_t next[];
  const int lane = threadIdx.x;
  for (int i = lane; i < n_expert; i += 32) next[i] = first_row[i * n_chunks + blockIdx.x];
  __syncwarp();
  const int begin = blockIdx.x * kSortChunk, end = min(begin + kSortChunk, n_pairs);
  for (int base = begin; base < end; base += 32) {
    const int p = base + lane;
    const int e = p < end ? valid_expert(topk[p], n_expert) : -1;
    const unsigned same = __match_any_sync(0xFFFFFFFFu, e);
    if (e >= 0) {
      const int r = next[e] + __popc(same & ((1u << lane) - 1u));
      row_pair[r] = p;
      row_token[r] = p / top_k;
      pair_row[p] = r;
      if (row_weight) row_weight[r] = pair_weight[p];
    } else if (p < end) {
      pair_row[p] = -1;
    }
    __syncwarp();
    if (e >= 0 && lane == __ffs(same) - 1) next[e] += __popc(same);
    __syncwarp();
  }
}

constexpr int kConvertThreads = 256;

// One block per row (grid-strided): the row's largest magnitude (scaled form), then the stores;
// the row read twice (the second time mostly from L2). Any shape.
__global__ void f32_to_f16_rows(const float* x, int64_t x_stride, int64_t n_rows, int64_t cols, __half* out,
                                __half* out_lo, int64_t out_stride, float* row_scale) {
  __shared__ float scratch[32];  // block_max's
  for (int64_t r = blockIdx.x; r < n_rows; r += gridDim.x) {
    const float* xr = x + r * x_stride;
    int s = 0;
    if (row_scale) {
      float m = 0.0f;
      for (int64_t c = threadIdx.x; c < cols; c += kConvertThreads) m = fmaxf(m, fabsf(xr[c]));
      s = row_shift(block_max(m, scratch));
      if (threadIdx.x == 0) row_scale[r] = pow2f(-s);
    }
    const float f = pow2f(s);
    for (int64_t c = threadIdx.x; c < cols; c += kConvertThreads) {
      const float v = xr[c] * f;
      const __half hi = f16_hi(v);
      out[r * out_stride + c] = hi;
      if (out_lo) out_lo[r * out_stride + c] = f16_lo(v, hi);
    }
  }
}

// The same for rows of at most kV·4·256 values held in registers between the two passes (one read
// of the row), 16-byte loads and 8-byte stores: cols, x_stride and out_stride multiples of 4, x
// 16-aligned, out and out_lo 8-aligned (launch_convert_f32_to_f16 checks).
template <int kV>
__global__ void __launch_bounds__(kConvertThreads) f32_to_f16_rows_held(const float* x, int64_t x_stride,
                                                                        int64_t n_rows, int cols, __half* out,
                                                                        __half* out_lo, int64_t out_stride,
                                                                        float* row_scale) {
  __shared__ float scratch[32];  // block_max's
  const int n4 = cols / 4;
  for (int64_t r = blockIdx.x; r < n_rows; r += gridDim.x) {
    const float4* xr = reinterpret_cast<const float4*>(x + r * x_stride);
    float4 v[kV];
    float m = 0.0f;
#pragma unroll
    for (int i = 0; i < kV; ++i) {
      const int c = threadIdx.x + i * kConvertThreads;
      v[i] = c < n4 ? xr[c] : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
      m = fmaxf(m, fmaxf(fmaxf(fabsf(v[i].x), fabsf(v[i].y)), fmaxf(fabsf(v[i].z), fabsf(v[i].w))));
    }
    int s = 0;
    if (row_scale) {
      s = row_shift(block_max(m, scratch));
      if (threadIdx.x == 0) row_scale[r] = pow2f(-s);
    }
    const float f = pow2f(s);
#pragma unroll
    for (int i = 0; i < kV; ++i) {
      const int c = threadIdx.x + i * kConvertThreads;
      if (c >= n4) continue;
      const int64_t at = r * out_stride + 4 * c;
      store_scaled_f16x4(v[i], f, out + at, out_lo ? out_lo + at : nullptr);
    }
  }
}

}  // namespace

cudaError_t launch_sort_by_expert(const int32_t* topk, int n_pairs, int top_k, int n_expert,
                                  int32_t* offsets, int32_t* row_pair, int32_t* row_token,
                                  int32_t* pair_row, const float* pair_weight, float* row_weight,
                                  int32_t* chunk_counts, cudaStream_t stream) {
  const int n_chunks = (n_pairs + kSortChunk - 1) / kSortChunk;
  const size_t smem = static_cast<size_t>(n_expert) * sizeof(int32_t);
  sort_count<<<n_chunks, 32, smem, stream>>>(topk, n_pairs, n_expert, n_chunks, chunk_counts);
  sort_scan<<<1, kScanThreads, smem, stream>>>(chunk_counts, n_expert, n_chunks, offsets);
  sort_scatter<<<n_chunks, 32, smem, stream>>>(topk, n_pairs, top_k, n_expert, n_chunks, chunk_counts,
                                               row_pair, row_token, pair_row, pair_weight, row_weight);
  return cudaGetLastError();
}

cudaError_t launch_convert_f32_to_f16(const float* x, int64_t x_stride, int64_t n_rows, int64_t cols,
                                      __half* out, __half* out_lo, int64_t out_stride, float* row_scale,
                                      cudaStream_t stream) {
  const unsigned blocks = static_cast<unsigned>(n_rows < 65535 ? n_rows : 65535);
  const bool vectors = cols % 4 == 0 && x_stride % 4 == 0 && out_stride % 4 == 0 && aligned(x, 16) &&
                       aligned(out, 8) && aligned(out_lo, 8);
  const int64_t per_thread = (cols / 4 + kConvertThreads - 1) / kConvertThreads;  // float4s
  const auto held = [&](auto kernel) {
    kernel<<<blocks, kConvertThreads, 0, stream>>>(x, x_stride, n_rows, static_cast<int>(cols), out, out_lo,
                                                   out_stride, row_scale);
    return cudaGetLastError();
  };
  if (vectors && per_thread <= 1) return held(f32_to_f16_rows_held<1>);
  if (vectors && per_thread <= 2) return held(f32_to_f16_rows_held<2>);
  if (vectors && per_thread <= 4) return held(f32_to_f16_rows_held<4>);
  if (vectors && per_thread <= 8) return held(f32_to_f16_rows_held<8>);
  if (vectors && per_thread <= 16) return held(f32_to_f16_rows_held<16>);
  if (vectors && per_thread <= 32) return held(f32_to_f16_rows_held<32>);
  f32_to_f16_rows<<<blocks, kConvertThreads, 0, stream>>>(x, x_stride, n_rows, cols, out, out_lo, out_stride,
                                                          row_scale);
  return cudaGetLastError();
}

}  // namespace dsv4::cuda::detail
