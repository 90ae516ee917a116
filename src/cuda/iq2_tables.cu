// The IQ2_XXS grid and sign tables on the device: quant/iq2_xxs_tables.cc's arrays (ggml data, MIT)
// copied once per device into a __device__ variable. The kernels read them through a pointer
// (the fast kernel copies them into shared memory per block), so no other file needs this module.
#include <cuda_runtime.h>

#include <mutex>

#include "cuda/matvec_launch.h"
#include "cuda/once_per_device.h"
#include "quant/iq2_xxs_tables.h"

namespace dsv4::cuda::detail {

namespace {

__device__ Iq2Tables g_iq2_tables;

std::mutex g_mutex;
bool g_uploaded[kMaxCudaDevices] = {};
const void* g_address[kMaxCudaDevices] = {};

}  // namespace

cudaError_t iq2_device_tables(cudaStream_t stream, const void** tables) {
  int device = 0;
  cudaError_t e = cudaGetDevice(&device);
  if (e != cudaSuccess) return e;
  if (device < 0 || device >= kMaxCudaDevices) return cudaErrorInvalidDevice;
  std::lock_guard<std::mutex> lock(g_mutex);
  if (!g_uploaded[device]) {
    if (stream != nullptr) {
      // A synchronous copy is not allowed while the stream is being captured into a graph.
      cudaStreamCaptureStatus capture = cudaStreamCaptureStatusNone;
      e = cudaStreamIsCapturing(stream, &capture);
      if (e != cudaSuccess) return e;
      if (capture != cudaStreamCaptureStatusNone) return cudaErrorStreamCaptureUnsupported;
    }
    static Iq2Tables host;
    for (int i = 0; i < 256; ++i) host.grid[i] = quant::iq2xxs_grid[i];
    for (int i = 0; i < 128; ++i) host.signs[i] = quant::ksigns_iq2xs[i];
    e = cudaMemcpyToSymbol(g_iq2_tables, &host, sizeof(Iq2Tables));
    if (e != cudaSuccess) return e;
    void* address = nullptr;
    e = cudaGetSymbolAddress(&address, g_iq2_tables);
    if (e != cudaSuccess) return e;
    g_address[device] = address;
    g_uploaded[device] = true;
  }
  *tables = g_address[device];
  return cudaSuccess;
}

}  // namespace dsv4::cuda::detail
