#include "cuda/device_info.h"

#include <cuda_runtime_api.h>

#include "cuda/once_per_device.h"

namespace dsv4::cuda {

DeviceInfo device_info() {
  int device = 0;
  if (cudaGetDevice(&device) != cudaSuccess) return {};
  static DeviceInfo info[detail::kMaxCudaDevices];  // once_per_device refuses other devices
  const cudaError_t e = detail::once_per_device(device, [&] {
    DeviceInfo d;
    int sms = 0;
    cudaError_t r = cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device);
    if (r == cudaSuccess) r = cudaDeviceGetAttribute(&d.major, cudaDevAttrComputeCapabilityMajor, device);
    if (r != cudaSuccess) return r;
    if (sms > 0) d.sms = sms;
    info[device] = d;  // under once_per_device's lock, before `done`
    return cudaSuccess;
  });
  return e == cudaSuccess ? info[device] : DeviceInfo{};
}

}  // namespace dsv4::cuda
