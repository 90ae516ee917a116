// Sink attention for prefill chunks (MODEL.md §7.5, §7.8-7.10): the same function as attention.h
// on the same AttentionArgs, shaped for many tokens. MQA: the one KV head (hd dims) is shared by
// all H ≤ 64 query heads, so a block takes one token and a split of kPrefillAttnRows of its rows
// for all heads at once and reads each row twice (scores, then P·V) instead of once per head
// group; scores and P·V run on f16 tensor cores with power-of-two-scaled split operands
// (f16_split.cuh: f32-level accuracy for any f32 input range), the head dim streamed through
// shared memory. A combine step adds the sink and de-rotates, as in attention.h.
// Decode (T = 1) stays on attention.h: one token's 8-head blocks keep more SMs busy there.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "cuda/attention.h"
#include "util/status.h"

namespace dsv4::cuda {

inline constexpr int kPrefillAttnRows = 128;

// Splits of the prefill kernel for a token that sees max_rows rows (AttentionArgs::splits; the
// scratch: part_o [T][H][splits][hd], part_ml [T][H][splits][2]).
int prefill_attention_splits(int64_t max_rows);
// Whether the prefill kernel takes this geometry (else attention.h serves it).
bool prefill_attention_supported(int H, int hd);
Status prefill_attention(const AttentionArgs& a, cudaStream_t stream);

}  // namespace dsv4::cuda
