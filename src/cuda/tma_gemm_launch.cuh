// The launch shared by the GEMM kernels whose weight stages come by TMA (gemm_wgmma.cu,
// gemm_wgmma_regs.cu, gemm_wgmma_int8.cu): the kernel's dynamic shared memory allowed once
// per device, the weights as a byte-row tensor map (boxes of span bytes × box_rows rows of one
// matrix), and a grid of ⌈n_out / features_per_cta⌉ × slots CTAs.
#pragma once

#include <cuda.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "cuda/gemm_launch.h"
#include "cuda/once_per_device.h"
#include "cuda/tensor_map.h"

namespace dsv4::cuda::detail {

template <auto kKernel>
cudaError_t launch_tma_gemm(const GemmLaunch& l, cudaStream_t stream, int threads, int smem, int span, int box_rows,
                            int features_per_cta, int64_t slots) {
  int device = 0;
  cudaError_t e = cudaGetDevice(&device);
  if (e == cudaSuccess) {
    // One flag per kernel: the lambda is a type of its own in each instantiation.
    e = once_per_device(device, [smem] {
      return cudaFuncSetAttribute(kKernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem);
    });
  }
  if (e != cudaSuccess) return e;
  if (slots > 65535) return cudaErrorInvalidConfiguration;
  CUtensorMap w_map;
  e = encode_byte_rows_map(&w_map, l.w, static_cast<uint64_t>(l.row_bytes), static_cast<uint64_t>(l.n_out),
                           static_cast<uint64_t>(l.n_expert), static_cast<uint64_t>(l.slab_bytes),
                           static_cast<uint32_t>(span), static_cast<uint32_t>(box_rows));
  if (e != cudaSuccess) return e;
  const dim3 grid(static_cast<unsigned>((l.n_out + features_per_cta - 1) / features_per_cta),
                  static_cast<unsigned>(slots));
  kKernel<<<grid, threads, smem, stream>>>(l, w_map);
  return cudaGetLastError();
}

}  // namespace dsv4::cuda::detail
