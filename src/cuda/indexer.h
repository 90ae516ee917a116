// The lightning indexer and its top-k (MODEL.md §7.7) for a chunk of T tokens. Only tokens whose
// eligible prefix n_vis = floor((p+1)/4) exceeds top_k are scored (the others see every eligible
// row; the attention kernel indexes those directly):
//   1. indexer queries q[t][h] = FP4_SIM(Hadamard(RoPE(q[t][h], p))) in place (official mode);
//   2. score[t][c] = Σ_h (w[t][h]/sqrt(idh·IH))·max(0, q[t][h]·K_I[c]) for c < n_vis;
//   3. selected[t] = the top_k rows by score, ties to the lower index, listed in ascending order
//      (a radix select on the score bits, then an ordered compaction).
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "util/status.h"

namespace dsv4::cuda {

struct IndexerArgs {
  float* q = nullptr;            // [T][IH·idh], prepared in place (this launch's tokens)
  const float* w = nullptr;      // [T][IH] head weights (unscaled projection)
  const float* rows = nullptr;   // indexer rows [n][idh]
  float* scores = nullptr;       // scratch [T][score_cap]
  int32_t* selected = nullptr;   // [T][top_k] (this launch's tokens)
  const float* omega = nullptr;
  const int* pos0 = nullptr;     // device: position of the chunk's first token
  int t0 = 0;                    // this launch's token t is the chunk's token t0 + t
  int T = 0, IH = 0, idh = 0, n_rot = 0, top_k = 0;
  int64_t score_cap = 0;         // at least floor((pos0+T)/4)
  bool sim = true;
};
Status indexer_select(const IndexerArgs& a, cudaStream_t stream);

// The same top-k selection on its own (tests): row t of `scores` has n[t] valid entries; rows
// with n[t] <= k are skipped.
Status top_k_rows(const float* scores, int64_t stride, const int32_t* n, int T, int k, int32_t* selected,
                  cudaStream_t stream);

}  // namespace dsv4::cuda
