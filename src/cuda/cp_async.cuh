// Asynchronous global → shared copies (sm_80+ cp.async) for the matvec kernels' weight rings.
#pragma once

#include <cuda_runtime.h>

namespace dsv4::cuda::detail {

__device__ __forceinline__ unsigned shared_address(const void* p) {
  return static_cast<unsigned>(__cvta_generic_to_shared(p));
}

// 16 bytes, bypassing L1 (weights are read once).
__device__ __forceinline__ void cp_async16(void* smem_dst, const void* gmem_src) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(shared_address(smem_dst)), "l"(gmem_src) : "memory");
}
// 16 bytes, or 16 zero bytes when !valid (src is not read then, but must still be an address).
// L2::128B asks L2 for the whole 128-byte line around the source: the hc chunk kernel reads each
// row 64 bytes per stage, the line's other half a stage later (measured: −4 % on the FFN's
// hc_post, ±0 elsewhere; L2::256B was 13-15 % slower, docs/PERF.md session 13).
__device__ __forceinline__ void cp_async16_or_zero(void* smem_dst, const void* gmem_src, bool valid) {
  asm volatile("cp.async.cg.shared.global.L2::128B [%0], [%1], 16, %2;\n" ::"r"(shared_address(smem_dst)), "l"(gmem_src),
               "r"(valid ? 16 : 0)
               : "memory");
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
