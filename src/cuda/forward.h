// The CUDA forward pass of one chunk of consecutive tokens (MODEL.md §3-§9): the same function as
// cpu/forward.cc, in the same order, built from the kernels of hc.h, norms.h, compressor.h,
// indexer.h, attention.h (prefill chunks: prefill_indexer.h, prefill_attention.h), moe.h and the
// matvec kernels of matvec.h.
//
// Everything a step depends on is read from device memory: the chunk's tokens (state.tokens) and
// the position of its first token (state.pos), so a captured single-token step replays as one
// CUDA graph for every token. The host only chooses the shape (chunk length, whether every
// token's logits are wanted, whether the indexer has to score: any token with more than top_k
// eligible compressed rows) and picks the graph captured for that shape.
#pragma once

#include <cuda_runtime_api.h>

#include "cuda/device_model.h"
#include "cuda/device_state.h"
#include "cuda/matvec.h"
#include "cuda/stage_profile.h"
#include "util/status.h"

namespace dsv4::cuda {

struct ChunkShape {
  int T = 1;                  // tokens in the chunk, 1 .. state.max_chunk()
  bool all_logits = false;    // logits of every token into state.logits_all (else the last only)
  // No head at all: state.logits are left as they were (the MTP block's pairs whose guess nobody
  // reads, MtpBlockSession::run).
  bool no_logits = false;
  bool index_scoring = false;  // some token of the chunk needs the indexer's top-k
  // > 0: every position of the chunk is below `end` (the host's count; not for a graph, whose
  // replays move on), so the indexer's score rows need end / 4 floats, not the state's capacity / 4:
  // a session of a long capacity then scores as many tokens a launch as a short one.
  int64_t end = 0;
  // Projections of a chunk of T ≥ 2 tokens as tensor-core GEMMs (gemm.h; needs a state made with
  // tensor-core scratch), else the f32 matvec over T token slots. split_products: the GEMMs' split
  // mode (f32-level products; weight types it does not take use the matvec), else f16 products
  // (but for the routed experts' down projection: int8 limbs where it takes the weights, either way).
  bool tensor_core = false;
  bool split_products = false;
  // T ≥ 2 on the decode step's kernels: the matvec projections, the split attention and the
  // one-token indexer launches, which read every position from device memory (a multi-token
  // step's graph), instead of the prefill attention and indexer.
  bool step_kernels = false;
};

struct SimModes {
  bool fp8_kv = true;        // MODEL.md §11 official mode
  bool fp4_indexer = true;
};

class Branch;

// Queues the chunk on `stream`. Leaves the next-token logits of the last token in state.logits
// (and every token's in state.logits_all when asked) and advances state.pos by T. With a branch
// (branch.h) the independent sub-steps run on its side stream, joined back before their results
// are read and before the chunk ends; a profiled chunk runs everything in line.
Status forward_chunk(const DeviceModel& model, DeviceState& state, const ChunkShape& shape, const SimModes& modes,
                     cudaStream_t stream, StageProfile* profile = nullptr, Branch* branch = nullptr);

// Whether a chunk of T tokens starting at pos0 needs the indexer's scores.
bool chunk_needs_index_scoring(const model::Config& config, int64_t pos0, int T);

// y[t] = W·x[t] for t < T (x rows of W.ne0 values, y rows of W.ne1) with the decode matvec: T = 1
// is a decode step; T > 1 runs the same kernel over T slots of slab 0, an even T's tokens in pairs
// whose weights the Q8_0 row tile decodes once (a multi-token step's projections; a prefill chunk
// uses it only for a weight shape the tensor-core GEMM of gemm.h does not take). as_steps: every
// token's outputs the bits of a one-token launch (a multi-token step), so where a one-slot launch
// takes a kernel that T slots would not (the F16 row tile), one launch a token.
Status project(const DeviceTensor& w, const float* x, int T, float* y, const int32_t* zeros, cudaStream_t stream,
               bool as_steps = false);

// The matvec of W's slabs (its type, ne0 inputs, ne1 rows, ne2 slabs); slots and inputs are the caller's.
ExpertMatvec tensor_matvec(const DeviceTensor& w);

}  // namespace dsv4::cuda
