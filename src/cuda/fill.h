// Small device utilities used by the session state and the decode graph.
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

}  // namespace dsv4::cuda
