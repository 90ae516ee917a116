// The lightning indexer for prefill chunks (MODEL.md §7.7): the same selection as indexer.h on the
// same IndexerArgs, with the scores of a chunk on f16 tensor cores (split operands, f16_split.cuh):
// a block takes two tokens and every row they rank, S[h][c] = q[t][h]·K_I[c] for all ≤ 64 heads
// as MMAs (the heads are M), per 32-dim slab scaled by its own power of two (exact in official
// mode, where the slab is one FP4 block), then score[t][c] = Σ_h (w[t][h]/sqrt(idh·IH))·max(0,
// S[h][c]) in registers. The top-k is indexer.h's top_k_rows. Decode (T = 1) stays on indexer.h.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "cuda/indexer.h"
#include "util/status.h"

namespace dsv4::cuda {

// Whether the prefill kernels take this geometry (else indexer.h serves it).
bool prefill_indexer_supported(int IH, int idh);
// n_rows: scratch [T] (the rows each token ranks, 0 for tokens that need no selection).
Status prefill_indexer_select(const IndexerArgs& a, int32_t* n_rows, cudaStream_t stream);

}  // namespace dsv4::cuda
