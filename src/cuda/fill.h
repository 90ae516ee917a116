// Small device utilities used by the session state, the decode graph and the prefill chunk.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "util/status.h"

namespace dsv4::cuda {

// p[0, n) = value.
Status fill_f32(float* p, int64_t n, float value, cudaStream_t stream);
// *pos += by (the decode graph advances its own position).
Status advance_position(int* pos, int by, cudaStream_t stream);
// p[i] = i % modulo for i < n (the group ids of the grouped output projection: 0..G-1 repeated).
Status fill_iota_mod(int32_t* p, int64_t n, int modulo, cudaStream_t stream);
// The rows of T tokens × G groups (token-major, row t·G + g) listed group by group: rows[g·T + t] =
// t·G + g, offsets[g] = g·T for g ≤ G (grouped_gemm's x_rows / y_rows and offsets of the output
// projection's G groups in a prefill chunk).
Status fill_group_major(int32_t* rows, int32_t* offsets, int T, int G, cudaStream_t stream);

}  // namespace dsv4::cuda
