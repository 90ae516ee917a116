// Asynchronous global → shared copies (sm_80+ cp.async) for the matvec kernels' weight rings.
#pragma once

#include <cuda_runtime.h>

namespace dsv4::cuda::detail {

__device__ __forceinline__ unsigned shared_address(void* p) { return static_cast<unsigned>(__cvta_generic_to_shared(p)); }

// 16 bytes, bypassing L1 (weights are read once).
__device__ __forceinline__ void cp_async16(void* smem_dst, const void* gmem_src) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(shared_address(smem_dst)), "l"(gmem_src) : "memory");
}
// 4 bytes (4-byte copies must go through L1: .ca).
__device__ __forceinline__ void cp_async4(void* smem_dst, const void* gmem_src) {
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4;\n" ::"r"(shared_address(smem_dst)), "l"(gmem_src) : "memory");
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
// Waits until at most N of this thread's committed groups are still in flight.
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

}  // namespace dsv4::cuda::detail
