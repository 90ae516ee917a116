// The lightning indexer and its top-k (MODEL.md §7.7) for a chunk of T tokens. Only tokens whose
// eligible prefix n_vis = floor((p+1)/4) exceeds top_k are scored (the others see every eligible
// row; the attention kernel indexes those directly):
//   1. indexer queries q[t][h] = FP4_SIM(Hadamard(RoPE(q[t][h], p))) in place (official mode);
//   2. score[t][c] = Σ_h (w[t][h]/sqrt(idh·IH))·max(0, q[t][h]·K_I[c]) for c < n_vis;
//   3. selected[t] = the top_k rows by score, ties to the lower index, listed in ascending order
//      (for tokens of many candidates, from the histogram of their scores' top bits that the score
//      kernel builds where the caller gives it scratch; else a radix select on the score bits).
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "util/status.h"

namespace dsv4::cuda {

// A token's top-k scratch (IndexerArgs::topk_scratch, top_k_rows): the histogram of its scores'
// top bits (kIndexerScoreBins counts), counters, the rows taken (k of them at most), the candidates
// left to rank (8 bytes each, as many as the last block of indexer_topk.cu holds).
inline constexpr int kIndexerScoreBins = 4096;
inline constexpr int kIndexerTopkListMax = 1024;  // the largest top_k ranked from the histogram
// Candidates from which the top-k takes the histogram's way: below, the one-block radix select is
// faster (its fixed cost is smaller; H200, docs/PERF.md session 29).
inline constexpr int kIndexerTopkBinsFrom = 20480;
inline constexpr int kIndexerTopkSurvivorsMax = 24576;  // 8 bytes each: the last block's 192 KB
inline constexpr int kIndexerTopkScratchWords =
    kIndexerScoreBins + 8 + kIndexerTopkListMax + 2 * kIndexerTopkSurvivorsMax;

struct IndexerArgs {
  float* q = nullptr;            // [T][IH·idh], prepared in place (this launch's tokens)
  const float* w = nullptr;      // [T][IH] head weights (unscaled projection)
  const float* rows = nullptr;   // indexer rows [n][idh]
  float* scores = nullptr;       // scratch [T][score_cap]
  int32_t* selected = nullptr;   // [T][top_k] (this launch's tokens)
  // [T][kIndexerTopkScratchWords], all zero before the launch and after it (the score kernel counts
  // its scores' bins there, the top-k reads and clears them), or null: the top-k then ranks every
  // candidate on one SM, which at long contexts takes several times longer (docs/PERF.md, session 29).
  uint32_t* topk_scratch = nullptr;
  int topk_bins_from = kIndexerTopkBinsFrom;  // tokens with fewer candidates: the radix select
  const float* omega = nullptr;
  const int* pos0 = nullptr;     // device: position of the chunk's first token
  int t0 = 0;                    // this launch's token t is the chunk's token t0 + t
  int T = 0, IH = 0, idh = 0, n_rot = 0, top_k = 0;
  int64_t score_cap = 0;         // at least floor((pos0+T)/4)
  bool sim = true;
};
Status indexer_select(const IndexerArgs& a, cudaStream_t stream);
// indexer_select's two steps apart, queued in this order: the queries prepared in place (RoPE,
// Hadamard + FP4 in official mode; they read only q), then the scores and the top-k (which read
// the rows and the weights), so that the first need not wait for what only the second reads.
Status indexer_queries(const IndexerArgs& a, cudaStream_t stream);
Status indexer_rank(const IndexerArgs& a, cudaStream_t stream);

// The same top-k selection on its own: row t of `scores` has n[t] valid entries; rows with
// n[t] <= k are skipped. With `scratch` ([T][kIndexerTopkScratchWords], zero; zero again after), a
// launch before the top-k makes the histograms the score kernel would have made for the tokens of
// at least bins_from candidates.
Status top_k_rows(const float* scores, int64_t stride, const int32_t* n, int T, int k, int32_t* selected,
                  cudaStream_t stream, uint32_t* scratch = nullptr, int bins_from = kIndexerTopkBinsFrom);

}  // namespace dsv4::cuda
