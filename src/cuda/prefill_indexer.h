// The lightning indexer for prefill chunks (MODEL.md §7.7): the same selection as indexer.h on the
// same IndexerArgs, with the scores of a chunk on f16 tensor cores (split operands, f16_split.cuh):
// a block takes four tokens and every row they rank, S[h][c] = q[t][h]·K_I[c] for all ≤ 64 heads
// as wgmma MMAs (the heads are M, a warpgroup per token), each query head and row scaled by its
// own power of two, then score[t][c] = Σ_h (w[t][h]/sqrt(idh·IH))·max(0, S[h][c]) in registers.
// The top-k is indexer.h's top_k_rows. Decode (T = 1) stays on indexer.h.
// The rows' split is made once per layer (prefill_indexer_rows) and shared by all of the layer's
// launches: a block copies the halves of each row tile instead of converting f32 rows itself.
#pragma once

#include <cuda_fp16.h>
#include <cuda_runtime_api.h>

#include <cstdint>

#include "cuda/indexer.h"
#include "util/status.h"

namespace dsv4::cuda {

// Whether the prefill kernels take this geometry (else indexer.h serves it).
bool prefill_indexer_supported(int IH, int idh);

// The indexer rows a chunk's tokens rank, split once, in tiles of 64 rows: each row's hi and lo
// f16 of row·2^e (f16_split.cuh: e from the row's largest |.|), as the tile's hi image then its lo
// image in the score kernel's shared-memory layout (wgmma's 128-byte swizzle, so a tile is copied
// as it is); 2^-e per row; and per tile whether any lo half in it is nonzero (official mode's
// FP4-simulated rows are exact in f16: the score kernel then skips the lo MMAs).
struct PrefillIndexRows {
  __half* rows = nullptr;      // prefill_indexer_row_halves(capacity, idh)
  float* inv = nullptr;        // [capacity]
  int32_t* tile_lo = nullptr;  // [capacity / 64]
  int64_t capacity = 0;        // rows: a multiple of 64
};
// Rows the scratch needs for score_cap rows (IndexerArgs::score_cap), and the halves they take.
int64_t prefill_indexer_row_capacity(int64_t score_cap);
int64_t prefill_indexer_row_halves(int64_t capacity, int idh);
// Splits every row that a's tokens rank (its pos0, t0 + T, rows, idh): before any
// prefill_indexer_select of those tokens, after their chunk's indexer rows are made.
Status prefill_indexer_rows(const IndexerArgs& a, const PrefillIndexRows& rows, cudaStream_t stream);
// n_rows: scratch [T] (the rows each token ranks, 0 for tokens that need no selection); rows: made
// by prefill_indexer_rows for these tokens or later ones of the chunk.
Status prefill_indexer_select(const IndexerArgs& a, int32_t* n_rows, const PrefillIndexRows& rows,
                              cudaStream_t stream);

}  // namespace dsv4::cuda
