// Mixture-of-experts pieces (MODEL.md §8) for a chunk of T tokens; the expert projections
// themselves are matvec_experts calls (forward_ffn.cc, routed_experts.cc):
//   moe_route     : s_e = sqrt(softplus(l_e)); experts = tid2eid[token] (hash layers) or the top-k
//                   of s + bias (ties to the lower id); weights = scale·s_i / max(Σ s_sel, 2^-14)
//                   (or scale·s_i without normalisation), the sum in selection order.
//   swiglu        : out[j] = silu(min(g_j, L))·clamp(u_j, ±L)·w_j (clamp iff L > 1e-6; w_j = 1
//                   when weights is null): the routed experts' weighted activation before the down
//                   projection (§8.5, trap 31) and the shared expert's (§8.6). Decode's routed
//                   down projection computes it itself (ExpertMatvec::up, matvec.h) with the same
//                   per-element function (swiglu.cuh); prefill and the shared expert use this.
//   replicate_rows: out[t·copies + i] = x[t] (each routed slot's input row, prefill).
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "util/status.h"

namespace dsv4::cuda {

struct RouteArgs {
  const float* logits = nullptr;   // [T][E]
  const float* bias = nullptr;     // [E] (top-k layers) or null (hash layers)
  const int32_t* tid2eid = nullptr;  // [n_vocab][K] (hash layers)
  const int32_t* tokens = nullptr;  // [T]
  int32_t* experts = nullptr;      // [T][K]
  float* weights = nullptr;        // [T][K]
  int T = 0, E = 0, K = 0;
  bool normalize = true;
  float scale = 1.0f;
};
Status moe_route(const RouteArgs& a, cudaStream_t stream);

struct SwigluArgs {
  const float* gate = nullptr;  // slot j's gate row at gate + j·stride
  const float* up = nullptr;    // slot j's up row at up + j·stride
  int64_t stride = 0;
  const float* weights = nullptr;  // [n_slots] or null
  float* out = nullptr;         // [n_slots][F]
  int n_slots = 0;
  int64_t F = 0;
  float limit = 0.0f;
};
Status swiglu(const SwigluArgs& a, cudaStream_t stream);

Status replicate_rows(const float* x, int64_t n, int copies, int T, float* out, cudaStream_t stream);

}  // namespace dsv4::cuda
