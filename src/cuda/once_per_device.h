// Per-device one-time setup of kernel attributes (cudaFuncSetAttribute must be repeated on every
// device a kernel runs on; doing it on every launch would cost a driver call per launch).
#pragma once

#include <cuda_runtime_api.h>

#include <mutex>

namespace dsv4::cuda::detail {

// Runs `set` (a cudaError_t() callable: kernel attributes) once per device, the first time it succeeds.
template <class Set>
cudaError_t once_per_device(int device, Set set) {
  constexpr int kMaxDevices = 64;
  static std::mutex mu;
  static bool done[kMaxDevices] = {};
  std::lock_guard<std::mutex> lock(mu);
  if (device < 0 || device >= kMaxDevices) return cudaErrorInvalidDevice;
  if (done[device]) return cudaSuccess;
  const cudaError_t e = set();
  if (e == cudaSuccess) done[device] = true;
  return e;
}

}  // namespace dsv4::cuda::detail
