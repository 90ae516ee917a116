// Programmatic dependent launch (PDL, sm_90) for the decode chain of kernels.
//
// A kernel launched with launch_pdl may start while the kernel before it in the stream is still
// running; pdl_wait() blocks until that kernel has completed and its memory is visible. So a
// kernel launched this way may touch, before pdl_wait(), only data that no kernel still running can
// write (the decode matvec prefetches its weights there; the small decode kernels read the position
// and form their RoPE angles there), and must call pdl_wait() before anything else. What makes the
// position safe: every kernel here calls pdl_trigger() only after its own pdl_wait(), so when a
// kernel starts, every kernel two or more launches back has completed, and the position is written
// only by the step's last launch (advance_position), an ordinary one. A kernel that triggered before
// its wait would break this.
// pdl_trigger() lets the next PDL-launched kernel be scheduled now instead of at this kernel's end
// (it changes nothing about when that kernel's pdl_wait() returns). Both are no-ops for kernels
// launched the ordinary way, so kernels may call them whatever the launch. DSV4_NO_PDL=1 in the
// environment launches everything the ordinary way (for measuring PDL's share and for bisecting).
#pragma once

#include <cuda_runtime.h>

#include <cstdlib>
#include <utility>

namespace dsv4::cuda::detail {

__device__ __forceinline__ void pdl_wait() { asm volatile("griddepcontrol.wait;\n" ::: "memory"); }
__device__ __forceinline__ void pdl_trigger() { asm volatile("griddepcontrol.launch_dependents;\n" ::: "memory"); }

inline bool pdl_enabled() {
  static const bool on = std::getenv("DSV4_NO_PDL") == nullptr;
  return on;
}

// cluster_x > 0: thread-block clusters of cluster_x blocks along x (grid.x a multiple of it;
// sizes above the portable 8 need the kernel's cudaFuncAttributeNonPortableClusterSizeAllowed).
template <class... Params, class... Args>
cudaError_t launch_pdl_cluster(void (*kernel)(Params...), dim3 grid, dim3 block, unsigned cluster_x, size_t smem,
                               cudaStream_t stream, Args&&... args) {
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = grid;
  cfg.blockDim = block;
  cfg.dynamicSmemBytes = smem;
  cfg.stream = stream;
  cudaLaunchAttribute attr[2];
  unsigned n = 0;
  if (cluster_x > 0) {
    attr[n].id = cudaLaunchAttributeClusterDimension;
    attr[n].val.clusterDim.x = cluster_x;
    attr[n].val.clusterDim.y = 1;
    attr[n].val.clusterDim.z = 1;
    ++n;
  }
  if (pdl_enabled()) {
    attr[n].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attr[n].val.programmaticStreamSerializationAllowed = 1;
    ++n;
  }
  cfg.attrs = attr;
  cfg.numAttrs = n;
  return cudaLaunchKernelEx(&cfg, kernel, std::forward<Args>(args)...);
}

template <class... Params, class... Args>
cudaError_t launch_pdl(void (*kernel)(Params...), dim3 grid, dim3 block, size_t smem, cudaStream_t stream,
                       Args&&... args) {
  return launch_pdl_cluster(kernel, grid, block, 0, smem, stream, std::forward<Args>(args)...);
}

}  // namespace dsv4::cuda::detail
