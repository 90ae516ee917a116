#include "cuda/mtp_input.h"

#include "cuda/check.h"

namespace dsv4::cuda {
namespace {

__global__ void add_stream_rows_kernel(const float* e, const float* y, float* x, int64_t x_stride, int64_t D) {
  const int64_t t = blockIdx.y;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < D;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    x[t * x_stride + i] = e[t * D + i] + y[t * D + i];
  }
}

}  // namespace

Status add_stream_rows(const float* e, const float* y, float* x, int64_t x_stride, int T, int64_t D,
                       cudaStream_t stream) {
  if (T < 1 || D < 1) return make_error("add_stream_rows: empty");
  constexpr int kThreads = 256;
  const int blocks = static_cast<int>((D + kThreads - 1) / kThreads);
  add_stream_rows_kernel<<<dim3(blocks, T), kThreads, 0, stream>>>(e, y, x, x_stride, D);
  return cuda_status(cudaGetLastError(), "add_stream_rows");
}

}  // namespace dsv4::cuda
