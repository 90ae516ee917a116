// Per-device one-time setup of kernel attributes (cudaFuncSetAttribute must be repeated on every
// device a kernel runs on; doing it on every launch would cost a driver call per launch).
#pragma once

#include <cuda_runtime_api.h>

#include <mutex>

namespace dsv4::cuda::detail {

// Device ordinals that per-device state (arrays indexed by the device) covers: [0, kMaxCudaDevices).
constexpr int kMaxCudaDevices = 64;

// Runs `set` (a cudaError_t() callable: kernel attributes) once per device, the first time it
// succeeds; a device outside [0, kMaxCudaDevices) gets cudaErrorInvalidDevice and `set` is not run.
template <class Set>
cudaError_t once_per_device(int device, Set set) {
  static std::mutex mu;
  static bool done[kMaxCudaDevices] = {};
  std::lock_guard<std::mutex> lock(mu);
  if (device < 0 || device >= kMaxCudaDevices) return cudaErrorInvalidDevice;
  if (done[device]) return cudaSuccess;
  const cudaError_t e = set();
  if (e == cudaSuccess) done[device] = true;
  return e;
}

}  // namespace dsv4::cuda::detail
