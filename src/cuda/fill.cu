#include <cuda_runtime.h>

#include <algorithm>

#include "cuda/check.h"
#include "cuda/fill.h"

namespace dsv4::cuda {

namespace {

__global__ void fill_kernel(float* p, int64_t n, float v) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    p[i] = v;
  }
}

__global__ void advance_kernel(int* pos, int by) { *pos += by; }

__global__ void iota_mod_kernel(int32_t* p, int64_t n, int modulo) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i < n) p[i] = static_cast<int32_t>(i % modulo);
}

__global__ void group_major_kernel(int32_t* rows, int32_t* offsets, int T, int G) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i < int64_t{T} * G) rows[i] = static_cast<int32_t>(i % T * G + i / T);
  if (i <= G) offsets[i] = static_cast<int32_t>(i * T);
}

}  // namespace

Status fill_f32(float* p, int64_t n, float value, cudaStream_t stream) {
  if (n <= 0) return Status();
  const int blocks = static_cast<int>(std::min<int64_t>((n + 255) / 256, 4096));
  fill_kernel<<<blocks, 256, 0, stream>>>(p, n, value);
  return cuda_status(cudaGetLastError(), "fill kernel");
}

Status advance_position(int* pos, int by, cudaStream_t stream) {
  advance_kernel<<<1, 1, 0, stream>>>(pos, by);
  return cuda_status(cudaGetLastError(), "position kernel");
}

Status fill_iota_mod(int32_t* p, int64_t n, int modulo, cudaStream_t stream) {
  if (n <= 0) return Status();
  iota_mod_kernel<<<static_cast<unsigned>((n + 255) / 256), 256, 0, stream>>>(p, n, modulo);
  return cuda_status(cudaGetLastError(), "iota kernel");
}

Status fill_group_major(int32_t* rows, int32_t* offsets, int T, int G, cudaStream_t stream) {
  if (T <= 0 || G <= 0) return Status();
  const int64_t n = std::max<int64_t>(int64_t{T} * G, G + 1);
  group_major_kernel<<<static_cast<unsigned>((n + 255) / 256), 256, 0, stream>>>(rows, offsets, T, G);
  return cuda_status(cudaGetLastError(), "group-major rows kernel");
}

}  // namespace dsv4::cuda
