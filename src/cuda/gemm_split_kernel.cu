// Instantiations and launches of gemm_kernel in split mode (gemm_kernel.cuh, gemm_codes.cuh): one
// per weight format the split GEMM takes and tile. A file of its own so that the two halves of the
// kernel set compile in parallel.
#include <cuda_runtime.h>

#include "cuda/gemm_kernel.cuh"
#include "cuda/gemm_launch.h"

namespace dsv4::cuda::detail {

namespace {

template <class D>
cudaError_t launch_split_format(const GemmLaunch& l, cudaStream_t stream) {
  if (l.tile == GemmKernelTile::kLarge) return gemm_launch_tile<D, GemmTileSplitLarge>(l, stream);
  return gemm_launch_tile<D, GemmTileSplitSmall>(l, stream);
}

}  // namespace

cudaError_t launch_gemm_split(const GemmLaunch& l, cudaStream_t stream) {
  switch (l.type) {
    case gguf::TensorType::F16: return launch_split_format<CodesF16>(l, stream);
    case gguf::TensorType::Q8_0: return launch_split_format<CodesQ8_0>(l, stream);
    case gguf::TensorType::Q2_K: return launch_split_format<CodesQ2_K>(l, stream);
    case gguf::TensorType::Q4_K: return launch_split_format<CodesQ4_K>(l, stream);
    case gguf::TensorType::IQ2_XXS: return launch_split_format<CodesIQ2_XXS>(l, stream);
    default: return cudaErrorInvalidValue;
  }
}

}  // namespace dsv4::cuda::detail
