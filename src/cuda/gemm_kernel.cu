// Instantiations and launches of gemm_kernel (gemm_kernel.cuh): one per weight format and tile.
#include <cuda_runtime.h>

#include <atomic>
#include <cstdint>

#include "cuda/gemm_kernel.cuh"
#include "cuda/gemm_launch.h"

namespace dsv4::cuda::detail {

namespace {

template <class D, class T>
cudaError_t launch(const GemmLaunch& l, cudaStream_t stream) {
  using G = GemmGeometry<D, T>;
  static_assert(G::kFits);
  // Above 48 KB a kernel needs an opt-in, once per device (a host-side setting, so it is also
  // safe while the stream is being captured).
  static std::atomic<uint64_t> opted_in{0};
  int device = 0;
  cudaError_t e = cudaGetDevice(&device);
  if (e != cudaSuccess) return e;
  const uint64_t bit = device < 64 ? uint64_t{1} << device : 0;
  if (bit == 0 || (opted_in.load() & bit) == 0) {
    e = cudaFuncSetAttribute(gemm_kernel<D, T>, cudaFuncAttributeMaxDynamicSharedMemorySize, G::kSmem);
    if (e != cudaSuccess) return e;
    opted_in.fetch_or(bit);
  }
  const int64_t slots = l.offsets ? (l.n_rows + G::kBT - 1) / G::kBT + l.n_groups
                                  : (l.n_rows + G::kBT - 1) / G::kBT;
  if (slots > 65535) return cudaErrorInvalidConfiguration;
  const dim3 grid((l.n_out + G::kBF - 1) / G::kBF, static_cast<unsigned>(slots));
  gemm_kernel<D, T><<<grid, kGemmThreads, G::kSmem, stream>>>(l);
  return cudaGetLastError();
}

template <class D>
cudaError_t launch_format(const GemmLaunch& l, cudaStream_t stream) {
  if (l.large) {
    if constexpr (GemmGeometry<D, GemmTileLarge>::kFits) {
      return launch<D, GemmTileLarge>(l, stream);
    }
  }
  return launch<D, GemmTileSmall>(l, stream);
}

}  // namespace

GemmTileShape gemm_tile_shape(bool large) {
  using L = GemmGeometry<GemmQ4_K, GemmTileLarge>;
  using S = GemmGeometry<GemmQ4_K, GemmTileSmall>;
  return large ? GemmTileShape{L::kBT, L::kBF} : GemmTileShape{S::kBT, S::kBF};
}

cudaError_t launch_gemm(const GemmLaunch& l, cudaStream_t stream) {
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
