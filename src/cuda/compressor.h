// The compressors of MODEL.md §7.6 with the frontier semantics of §12.2, for a chunk of T tokens
// at positions pos0 .. pos0+T-1 (pos0 read from the device):
//   1. every window that completes inside the chunk is pooled (per-channel softmax over its
//      candidates, taken from the chunk's projections or, for tokens before pos0, from the
//      frontier), normalised, RoPE'd at its first position and simulated (attention compressor:
//      FP8 on the nope dims; indexer compressor: Hadamard + FP4 on the whole row), and written as
//      row w of `rows`;
//   2. the frontier becomes what processing the chunk token by token leaves in it (each slot's
//      last write; for ratio 4 the previous-window half is the last completed window).
// So chunked prefill and token-by-token decode give the same rows and frontiers.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "util/status.h"

namespace dsv4::cuda {

struct CompressorArgs {
  const float* kv = nullptr;    // token t's a_t at kv + t·proj_stride (c·d values)
  const float* gate = nullptr;  // token t's z_t at gate + t·proj_stride (before APE)
  int64_t proj_stride = 0;
  const float* ape = nullptr;   // [ratio][c·d]
  float* front_kv = nullptr;    // [slots][c·d], slots = c·ratio
  float* front_gate = nullptr;
  const float* norm = nullptr;  // [d]
  float* rows = nullptr;        // row w at rows + w·d
  const float* omega = nullptr;
  const int* pos0 = nullptr;
  // Windows without overlap (ratio ≠ 4) with both set: each window's channels pooled by several
  // blocks, which leave them in pooled ([T / ratio + 1][d]) and count themselves in counters
  // ([T / ratio + 1], zero before the launch and after it). Null: one block a window.
  float* pooled = nullptr;
  unsigned* counters = nullptr;
  int T = 0, ratio = 0, d = 0, n_rot = 0;
  bool indexer = false;  // the indexer compressor (Hadamard + FP4) rather than the attention one (FP8)
  bool sim = true;       // official mode
  float eps = 1e-6f;
};
Status compressor_chunk(const CompressorArgs& a, cudaStream_t stream);

}  // namespace dsv4::cuda
