// Sink attention for prefill chunks (MODEL.md §7.5, §7.8-7.10): the same function as attention.h
// on the same AttentionArgs, shaped for many tokens. MQA: the one KV head (hd dims) is shared by
// all H ≤ 64 query heads, so a block takes one token and a split of kPrefillAttnRows of its rows
// for all heads at once and reads each row twice (scores, then P·V) instead of once per head
// group; scores and P·V run on f16 tensor cores with power-of-two-scaled split operands
// (f16_split.cuh: f32-level accuracy for any f32 input range), the head dim streamed through
// shared memory. A combine step adds the sink and de-rotates, as in attention.h, and can write the
// output as out_a's f16 GEMM input directly (AttentionArgs::out16). The rows' split
// is made once per layer (prefill_attention_rows) and shared by all the layer's launches: a block
// copies the halves it needs into shared memory instead of converting f32 rows per slab.
// Decode (T = 1) stays on attention.h: one token's 8-head blocks keep more SMs busy there.
#pragma once

#include <cuda_fp16.h>
#include <cuda_runtime_api.h>

#include <cstdint>

#include "cuda/attention.h"
#include "util/status.h"

namespace dsv4::cuda {

inline constexpr int kPrefillAttnRows = 128;
inline constexpr int kPrefillAttnSlab = 64;           // head dims per slab: a row's lo-half bit each
inline constexpr int kPrefillAttnMaxHeadDim = 1024;  // a head is at most 32 values per lane where it is split

// Splits of the prefill kernel for a token that sees max_rows rows (AttentionArgs::splits; the
// scratch: part_o [T][H][splits][hd], part_ml [T][H][splits][2]).
int prefill_attention_splits(int64_t max_rows);
// Whether a launch of `tokens` tokens takes AttentionArgs::whole_tokens: from kPrefillAttnWholeFrom
// tokens a block per token keeps every SM busy, the split partials' round trip through memory
// (≈ 128 KB a token and split, written, then read by the combine) is gone, and so is the split
// scratch that cut a long-capacity session's chunks into short launches; below it a block per
// split keeps more SMs busy (docs/PERF.md, session 26).
inline constexpr int64_t kPrefillAttnWholeFrom = 256;
inline bool prefill_attention_whole_tokens(int64_t tokens) { return tokens >= kPrefillAttnWholeFrom; }
// The split form's second launch (prefill_attention queues it after the partial kernel): per
// token the splits' partials combined with the sink, de-rotated, written as `out` or out16.
Status prefill_attention_combine(const AttentionArgs& a, cudaStream_t stream);
// Whether the prefill kernel takes this geometry (else attention.h serves it).
bool prefill_attention_supported(int H, int hd);
// Whether it can write its output as f16 GEMM input in groups of `group` heads (AttentionArgs::out16).
bool prefill_attention_f16_output_supported(int group, int hd);

// Every KV row the tokens of one chunk can see, split once: row i (ring slot i < window, then
// the chunk's row i - window, then compressed row i - window - chunk) as hi then lo f16 halves of
// row·2^b (f16_split.cuh; b from the row's max |.|, the partial kernel's P·V scale), and meta[i] =
// (b, bit s set where 64-dim slab s holds a nonzero lo half: slabs exact in f16, e.g. official
// mode's FP8-simulated nope dims, skip the hi·lo MMAs).
struct PrefillAttnRows {
  __half* rows = nullptr;  // [capacity][2·hd]
  int2* meta = nullptr;    // [capacity]
  int chunk = 0;           // tokens of the chunk the rows were made for
};
// Rows the scratch needs for chunks of up to max_chunk tokens and comp_cap compressed rows.
int64_t prefill_attention_row_capacity(int window, int max_chunk, int64_t comp_cap);
// Fills rows (scratch of row_capacity(window, chunk, compressed rows of the layer)) for a chunk of
// `chunk` tokens from a's kv_chunk, ring, comp, pos0, window, ratio and hd; sets rows.chunk. After
// the chunk's compressed rows are made and before its raw rows enter the ring.
Status prefill_attention_rows(const AttentionArgs& a, int chunk, PrefillAttnRows& rows, cudaStream_t stream);
// The queries the partial kernel reads (AttentionArgs::q and q_exp): each head q[t][h] as hi then
// lo f16 halves of q·2^e (hd halves each, over the 4·hd bytes of its f32 row), e from the head's
// largest |q| (f16_split.cuh's split_exponent) in q_exp[t·H + h]. One power of two per head, not
// per 64-dim slab, so that the scores' slabs add up in the same units and q is split once per
// token (q_kv_finish writes this form for prefill chunks, QkvFinishArgs::q_exp), not in every
// block of the token. Here: f32 queries [T][H][hd] turned into that form in place.
Status prefill_attention_split_queries(float* q, int* q_exp, int T, int H, int hd, cudaStream_t stream);
// The attention of a's tokens (a's t0, T) over rows made by prefill_attention_rows for their chunk,
// with a.q and a.q_exp in the split form above.
Status prefill_attention(const AttentionArgs& a, const PrefillAttnRows& rows, cudaStream_t stream);

}  // namespace dsv4::cuda
