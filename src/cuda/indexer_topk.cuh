// What the indexer's score kernel (indexer.cu) and its top-k (indexer_topk.cu) share: the rows a
// token ranks, the order-preserving key of a score, and the histogram of the keys' top bits that the
// score kernel builds as it writes the scores, so that the top-k starts from the bin holding its
// k-th largest score instead of ranking every candidate on one SM.
#pragma once

#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>

#include "cuda/indexer.h"
#include "util/status.h"

namespace dsv4::cuda::detail {

// floor((p+1)/4) for token t of a launch starting at chunk token t0.
__device__ __forceinline__ int64_t visible_rows(const int* pos0, int t0, int t) {
  return (static_cast<int64_t>(*pos0) + t0 + t + 1) / 4;
}

// Larger score → larger key; NaN as -inf, -0 as +0 (cpu::top_k_desc compares values: -0 == +0, so
// the two tie and go by index).
__device__ __forceinline__ uint32_t score_key(float s) {
  if (isnan(s)) s = -INFINITY;
  if (s == 0.0f) s = 0.0f;
  const uint32_t b = __float_as_uint(s);
  return (b & 0x80000000u) ? ~b : (b | 0x80000000u);
}

// A key's bin: its top 12 bits (sign, exponent, three mantissa bits: eight bins a binade).
constexpr int kScoreBinShift = 32 - 12;
static_assert(kIndexerScoreBins == 1 << (32 - kScoreBinShift), "bins of the keys' top bits");
__device__ __forceinline__ uint32_t score_bin(uint32_t key) { return key >> kScoreBinShift; }

// A block's histogram (kIndexerScoreBins counts in shared memory, complete: after a barrier) added
// into a token's global bins, the non-empty ones only (the scores of a token lie in a few binades).
__device__ __forceinline__ void add_bins(const uint32_t* block_bins, uint32_t* bins) {
  for (int i = threadIdx.x; i < kIndexerScoreBins; i += blockDim.x) {
    const uint32_t c = block_bins[i];
    if (c != 0u) atomicAdd(bins + i, c);
  }
}

// The top-k of T tokens' scores (row t at scores + t·stride, n_rows[t] candidates, or the visible
// rows of pos0/t0 where n_rows is null; rows with at most k candidates are left alone) into
// selected + t·k, ascending. scratch (IndexerArgs::topk_scratch; null: none) holds the histograms
// of score_bin of the tokens with at least bins_from candidates, made by the kernel before this
// launch; this launch clears them.
Status launch_top_k(const float* scores, int64_t stride, const int32_t* n_rows, const int* pos0, int t0, int T, int k,
                    uint32_t* scratch, int bins_from, int32_t* selected, cudaStream_t stream);

}  // namespace dsv4::cuda::detail
