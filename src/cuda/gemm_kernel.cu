// Instantiations and launches of gemm_kernel (gemm_kernel.cuh): one per weight format and tile
// (split mode: gemm_split_kernel.cu).
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "cuda/gemm_kernel.cuh"
#include "cuda/gemm_launch.h"

namespace dsv4::cuda::detail {

namespace {

template <class D>
cudaError_t launch_format(const GemmLaunch& l, cudaStream_t stream) {
  if (l.tile == GemmKernelTile::kLarge) {
    if constexpr (GemmGeometry<D, GemmTileLarge>::kFits) {
      return gemm_launch_tile<D, GemmTileLarge>(l, stream);
    }
  }
  return gemm_launch_tile<D, GemmTileSmall>(l, stream);
}

__global__ void k_sum_kernel(const float* partials, int k_splits, int64_t slice, int n_out, int64_t count, float* y,
                             int64_t y_stride) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < count; i += gridDim.x * int64_t{blockDim.x}) {
    const int64_t r = i / n_out, f = i % n_out;
    const float* part = partials + r * n_out + f;
    float sum = part[0];
    for (int z = 1; z < k_splits; ++z) sum += part[z * slice];
    y[r * y_stride + f] = sum;
  }
}

}  // namespace

cudaError_t launch_gemm_k_sum(const float* partials, int k_splits, int64_t slice, int64_t n, int n_out, float* y,
                              int64_t y_stride, cudaStream_t stream) {
  const int64_t count = n * n_out;
  const int blocks = static_cast<int>(std::min<int64_t>((count + 255) / 256, 2048));
  k_sum_kernel<<<blocks, 256, 0, stream>>>(partials, k_splits, slice, n_out, count, y, y_stride);
  return cudaGetLastError();
}

GemmTileShape gemm_tile_shape(bool large, bool split) {
  if (split) {
    using L = GemmGeometry<CodesQ4_K, GemmTileSplitLarge>;
    using S = GemmGeometry<CodesQ4_K, GemmTileSplitSmall>;
    return large ? GemmTileShape{L::kBT, L::kBF} : GemmTileShape{S::kBT, S::kBF};
  }
  using L = GemmGeometry<GemmQ4_K, GemmTileLarge>;
  using S = GemmGeometry<GemmQ4_K, GemmTileSmall>;
  return large ? GemmTileShape{L::kBT, L::kBF} : GemmTileShape{S::kBT, S::kBF};
}

cudaError_t launch_gemm(const GemmLaunch& l, cudaStream_t stream) {
  if (l.x_lo) return launch_gemm_split(l, stream);
  switch (l.type) {
    case gguf::TensorType::F32: return launch_format<GemmF32>(l, stream);
    case gguf::TensorType::F16: return launch_format<GemmF16>(l, stream);
    case gguf::TensorType::BF16: return launch_format<GemmBF16>(l, stream);
    case gguf::TensorType::Q8_0: return launch_format<GemmQ8_0>(l, stream);
    case gguf::TensorType::Q2_K: return launch_format<GemmQ2_K>(l, stream);
    case gguf::TensorType::Q4_K: return launch_format<GemmQ4_K>(l, stream);
    case gguf::TensorType::IQ2_XXS: return launch_format<GemmIQ2_XXS>(l, stream);
    default: return cudaErrorInvalidValue;
  }
}

}  // namespace dsv4::cuda::detail
