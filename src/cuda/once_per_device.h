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

// Lets `kernel` (a __global__ function's address) launch with all the dynamic shared memory the
// device allows a block: the opt-in limit less the kernel's static shared memory. For kernels whose
// launches size their shared memory at run time (no launch that can run needs more); called through
// once_per_device, from a call site of its own per kernel (once_per_device keeps one flag per
// callable type, not per kernel).
inline cudaError_t allow_optin_smem(int device, const void* kernel) {
  int optin = 0;
  cudaError_t e = cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device);
  cudaFuncAttributes attr{};
  if (e == cudaSuccess) e = cudaFuncGetAttributes(&attr, kernel);
  if (e == cudaSuccess) {
    e = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                             optin - static_cast<int>(attr.sharedSizeBytes));
  }
  return e;
}

}  // namespace dsv4::cuda::detail
