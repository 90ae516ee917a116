// The MTP block's input streams (MODEL.md §10.1): after its two projections, X[t][h] = E'[t] + H'[t][h]
// for every stream h (the projections and norms themselves are the forward pass's own, forward.cc).
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "util/status.h"

namespace dsv4::cuda {

// x[t·x_stride + i] = e[t·D + i] + y[t·D + i] for t < T, i < D (one stream of the T tokens' X).
Status add_stream_rows(const float* e, const float* y, float* x, int64_t x_stride, int T, int64_t D,
                       cudaStream_t stream);

}  // namespace dsv4::cuda
