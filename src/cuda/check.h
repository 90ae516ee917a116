// CUDA runtime errors as dsv4 Status values. Every runtime call in cuda/ goes through these, so a
// failure carries the call that failed and CUDA's name for the error.
#pragma once

#include <cuda_runtime_api.h>

#include <string>
#include <string_view>

#include "util/status.h"

namespace dsv4::cuda {

inline Status cuda_status(cudaError_t e, std::string_view what) {
  if (e == cudaSuccess) return Status::ok_status();
  return make_error(std::string(what) + ": " + cudaGetErrorName(e) + " (" + cudaGetErrorString(e) +
                    ")");
}

}  // namespace dsv4::cuda

// Returns the Status of a failing runtime call from the enclosing function.
#define DSV4_CUDA_TRY(expr)                                                   \
  do {                                                                        \
    ::dsv4::Status dsv4_cuda_status_ = ::dsv4::cuda::cuda_status((expr), #expr); \
    if (!dsv4_cuda_status_.ok()) return dsv4_cuda_status_;                    \
  } while (0)
