// Manifold-constrained hyper-connections on the device (MODEL.md §5), for a chunk of T tokens:
//
//   hc_pre : m = W_fn·X (partial sums over column blocks per token, then summed in a fixed order),
//            r = 1/sqrt(mean(X²) + ε) over all n_hc·D values (double), pre/post/comb gates with
//            the Sinkhorn projection (§5.3), u = Σ_h pre_h·X[h], out = RMSNorm_w(u).
//   hc_head: the same collapse with the head's gates σ(m·s + b) + ε (§5.5), out = RMSNorm_w(y).
//   hc_post: X' = post ⊗ f + Cᵀ·X (§5.4), f the sum of `n_parts` rows (the routed experts in
//            slot order) plus an optional extra row (the shared expert); given the next
//            sub-layer's mixer it also leaves that mixer's partial sums over X', so the next
//            hc_pre / hc_head only has to finish them (*_from_partials).
// The partial sums of a column block are a record of M mixer sums and the 4×4 Gram matrix
// G[h][j] = Σ_d X[h][d]·X[j][d] of the block's dims (double): its trace is Σ X² (the flat RMS) and
// ‖Σ_h g_h·X[h]‖² = Σ_hj g_h·g_j·G[h][j], so the collapse's RMS norm needs no pass of its own
// and the finishing kernel spreads over many blocks, each applying the gates to its slice of D.
// Token-major buffers; X is [T][n_hc·D] stream-major per token. Needs n_hc = 4.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "cuda/device_model.h"
#include "util/status.h"

namespace dsv4::cuda {

inline constexpr int kHcStreams = 4;
inline constexpr int kHcMix = (2 + kHcStreams) * kHcStreams;          // mix logits per sub-layer
inline constexpr int kHcMixSize = 2 * kHcStreams + kHcStreams * kHcStreams;  // pre|post|comb
inline constexpr int kHcDimsPerBlock = 64;  // dims d of a column block (all four streams)
// hc_post and hc_mixer_partials run chunks of at least this many tokens a token per lane
// (cuda/hc_chunk.cu), shorter ones a dim per lane (cuda/hc.cu: faster where few tokens leave lanes
// idle; measured crossover 64 tokens, docs/PERF.md session 13). The two sum a record in different
// orders: a token's records are the same bits for every chunk length on either side.
inline constexpr int kHcTokenLaneMinTokens = 64;

// Scratch doubles of the partial sums of an M-row mixer for T tokens, layout [T][blocks][M + 16]
// (blocks = ⌈D / kHcDimsPerBlock⌉); token t's records start at hc_partial_doubles(t, D, M).
int64_t hc_partial_doubles(int64_t T, int64_t D, int M = kHcMix);

struct HcPreArgs {
  const float* x = nullptr;     // [T][4·D]
  DeviceTensor fn;              // [M][4·D] (M = kHcMix, or 4 for the head)
  const float* scale = nullptr;  // [3] (pre) or [1] (head)
  const float* base = nullptr;   // [M]
  const float* norm = nullptr;   // [D] weight of the RMSNorm applied to the collapsed row
  double* partial = nullptr;     // scratch, hc_partial_doubles(T, D)
  float* mix = nullptr;          // hc_pre: [T][kHcMixSize] (pre | post | comb, comb[src·4 + dst])
  float* out = nullptr;          // [T][D]
  int T = 0;
  int64_t D = 0;
  float rms_eps = 1e-6f, hc_eps = 1e-6f;
  int sinkhorn_iters = 20;
};
Status hc_pre(const HcPreArgs& a, cudaStream_t stream);
// hc_head: rows of X to collapse are x + t·4D for t < T (mix is not written).
Status hc_head(const HcPreArgs& a, cudaStream_t stream);

// The parts of those: the mixer's partial sums (M = kHcMix or 4 rows of fn) into `partial`; the
// rest from partial sums left by hc_mixer_partials or by hc_post (same layout), where
// hc_pre_from_partials leaves the comb logits in mix; hc_comb projects them in place (§5.3, the
// Sinkhorn: the collapse's longest chain, which only the sub-layer's hc_post waits for).
Status hc_mixer_partials(const float* x, const DeviceTensor& fn, int M, int T, int64_t D, double* partial,
                         cudaStream_t stream);
Status hc_pre_from_partials(const HcPreArgs& a, cudaStream_t stream);
Status hc_head_from_partials(const HcPreArgs& a, cudaStream_t stream);
Status hc_comb(float* mix, int T, float hc_eps, int sinkhorn_iters, cudaStream_t stream);

struct HcPostArgs {
  const float* x = nullptr;      // [T][4·D] input state of the sub-layer
  const float* f = nullptr;      // n_parts rows per token: f + (t·n_parts + i)·D
  int n_parts = 1;
  const float* f_extra = nullptr;  // [T][D] added after the parts, or null
  const float* mix = nullptr;    // [T][kHcMixSize]
  float* out = nullptr;          // [T][4·D], must not alias x
  int T = 0;
  int64_t D = 0;
  const DeviceTensor* next_fn = nullptr;  // the next mixer (or null: no partial sums)
  int next_M = kHcMix;                    // its rows: kHcMix, or 4 for the head
  double* partial = nullptr;              // its partial sums, hc_partial_doubles(T, D)
};
Status hc_post(const HcPostArgs& a, cudaStream_t stream);

// hc_post, then the collapse of the new state X' (the next sub-layer's hc_pre, or the head's
// hc_head when `head`), in one launch: a thread-block cluster of ⌈D/256⌉ blocks per token, block b
// owning dims [256b, 256b + 256), whose records meet in distributed shared memory, so there are
// no partial sums in global memory and X' is collapsed from registers. Used for one-token
// chunks, where the second launch cost more than the work. post.next_fn, next_M and partial are
// not used, nor next.x and next.partial; next.T and next.D must be post's. next.mix may be
// post.mix (the coefficients read are replaced by the next sub-layer's, its comb as logits for
// hc_comb, as hc_pre_from_partials leaves them).
inline constexpr int64_t kHcPostCollapseMaxDims = 16 * 256;
Status hc_post_collapse(const HcPostArgs& post, const HcPreArgs& next, bool head, cudaStream_t stream);

// X[t] = the embedding row of tokens[t] widened to f32, copied into the 4 streams (§4).
Status embed_tokens(const DeviceTensor& token_embd, const int32_t* tokens, int T, float* x, cudaStream_t stream);

}  // namespace dsv4::cuda
