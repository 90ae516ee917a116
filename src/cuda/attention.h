// Sink attention over raw and compressed rows (MODEL.md §7.5, §7.8-7.10) for a chunk of T tokens:
// token t at p = pos0 + t attends the raw rows of positions max(0, p-W+1) .. p (this chunk's rows
// from kv_chunk, earlier ones from the ring) and its compressed rows (ratio 128: all c <
// floor((p+1)/128); ratio 4: all c < floor((p+1)/4) while at most top_k, else the indexer's
// selection), with one sink logit per head in the denominator; each head's output is de-rotated
// at p (§7.10). Flash-decoding: the rows are split over blocks of kAttnRowsPerSplit, each block
// serving up to 8 heads (one KV read for all of them), then a combine step adds the sink.
#pragma once

#include <cuda_fp16.h>
#include <cuda_runtime_api.h>

#include <cstdint>

#include "util/status.h"

namespace dsv4::cuda {

inline constexpr int kAttnRowsPerSplit = 32;

struct AttentionArgs {
  const float* q = nullptr;          // [T][H][hd] (this launch's tokens); prefill_attention reads the
                                     // split form over the same bytes (prefill_attention.h)
  const int* q_exp = nullptr;        // prefill_attention: [T][H] the split queries' powers of two
  const float* kv_chunk = nullptr;   // [chunk][hd] the whole chunk's raw rows
  const float* ring = nullptr;       // [W][hd]: position p in row p mod W
  const float* comp = nullptr;       // compressed rows [n][hd] (ratio != 0)
  const int32_t* selected = nullptr;  // [chunk][top_k] (ratio 4)
  const float* sinks = nullptr;      // [H]
  const float* omega = nullptr;
  const int* pos0 = nullptr;         // device: position of the chunk's first token
  // Null, or device: the first position of the raw window (the MTP block's, DeviceState::window_start),
  // so that the raw rows of position p are max(*window_start, p - W + 1) .. p.
  const int* window_start = nullptr;
  int t0 = 0;                        // this launch's token t is the chunk's token t0 + t
  float* part_o = nullptr;           // scratch [T][H][splits][hd]
  float* part_ml = nullptr;          // scratch [T][H][splits][2]
  float* out = nullptr;              // [T][H][hd] (this launch's tokens)
  int T = 0, H = 0, hd = 0, n_rot = 0, window = 0, ratio = 0, top_k = 0;
  int splits = 0;                    // attention_splits(most rows a token of this layer can see)
  // A one-token chunk's own row also goes to ring slot p mod W here (no store_raw_rows launch): its
  // occupant, p - W, is outside the window of p and of every later position.
  float* store_ring = nullptr;
  // prefill_attention only: the output as a GEMM's f16 input (gemm.h's convert_f32_to_f16, _split
  // with out16_lo) instead of f32 in `out`, scaled per token and group of out16_group heads (the
  // columns h·hd of heads g·out16_group ..): hi (lo) [T][H·hd] and 2^-s at
  // out16_scale[t·(H / out16_group) + g]. Null: f32 in out.
  __half* out16 = nullptr;
  __half* out16_lo = nullptr;
  float* out16_scale = nullptr;
  int out16_group = 0;
  // prefill_attention only: a block takes all of its token's splits in turn and finishes the token
  // itself (no part_o / part_ml, no combine launch); `out` is then needed with out16 too (its f32
  // values are where the block keeps the running sums). prefill_attention_whole_tokens says when.
  bool whole_tokens = false;
};
int attention_splits(int64_t max_rows);
Status attention(const AttentionArgs& a, cudaStream_t stream);

// ring[p mod W] = kv_chunk[p - pos0] for the last min(T, W) positions of the chunk.
Status store_raw_rows(const float* kv_chunk, float* ring, const int* pos0, int T, int window, int hd,
                      cudaStream_t stream);

}  // namespace dsv4::cuda
