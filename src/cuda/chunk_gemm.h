// How a prefill chunk's projections use the tensor-core GEMMs (gemm.h): the weights of a model
// tensor as a GEMM operand, whether the GEMM takes it, and the conversion of f32 rows into the
// GEMM's f16 input (with the low parts in split mode, PrefillMath::kTensorCoreSplit).
#pragma once

#include <cuda_fp16.h>
#include <cuda_runtime_api.h>

#include <cstdint>

#include "cuda/device_model.h"
#include "cuda/gemm.h"
#include "util/status.h"

namespace dsv4::cuda {

inline GemmWeights gemm_weights(const DeviceTensor& w) { return GemmWeights{w.type, w.data, w.ne0, w.ne1, w.ne2}; }

inline bool gemm_takes(const DeviceTensor& w, bool split) {
  const bool aligned16 = reinterpret_cast<uintptr_t>(w.data) % 16 == 0;
  return (split ? gemm_split_supports(w.type, w.ne0) : gemm_supports(w.type, w.ne0)) && aligned16;
}

// The GEMM input of f32 rows: f16 with row factors, plus the low parts (lo) in split mode.
inline Status convert_gemm_input(bool split, const float* x, int64_t stride, int64_t rows, int64_t cols, __half* hi,
                                 __half* lo, float* scale, cudaStream_t stream) {
  if (split) return convert_f32_to_f16_split(x, stride, rows, cols, hi, lo, cols, scale, stream);
  return convert_f32_to_f16(x, stride, rows, cols, hi, cols, scale, stream);
}

}  // namespace dsv4::cuda
