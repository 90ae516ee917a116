// Shared-memory mbarriers, TMA loads, named barriers and register reallocation (sm_90a) for
// warp-specialised kernels: a ring of stages, each with a "full" barrier that completes when its
// writers have arrived and their copies (cp.async or TMA) have landed, and an "empty" barrier on
// which its readers arrive when they no longer read it. A barrier's phase k completes on its k-th
// use; a waiter passes phase k by waiting for parity k % 2.
#pragma once

#include <cstdint>

namespace dsv4::cuda::detail {

#ifdef __CUDACC__

__device__ __forceinline__ void mbar_init(uint32_t bar, uint32_t count) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(bar), "r"(count) : "memory");
}

// After the inits, before the barrier that publishes them: makes them visible to the async proxy
// (TMA's and cp.async's arrivals).
__device__ __forceinline__ void mbar_init_fence() {
  asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
}

// A warp-specialised ring's barriers, by one thread before the CTA barrier that publishes them:
// `stages` full barriers (full_count arrivals each) and as many empty ones (empty_count), then
// raw_stages barriers of one arrival each (a TMA's, counted with its bytes), each kind 8 bytes
// apart from its base.
__device__ __forceinline__ void mbar_init_ring(uint32_t full, uint32_t full_count, uint32_t empty,
                                               uint32_t empty_count, int stages, uint32_t raw, int raw_stages) {
  for (int s = 0; s < stages; ++s) {
    mbar_init(full + 8 * s, full_count);
    mbar_init(empty + 8 * s, empty_count);
  }
  for (int r = 0; r < raw_stages; ++r) mbar_init(raw + 8 * r, 1);
  mbar_init_fence();
}

__device__ __forceinline__ void mbar_arrive(uint32_t bar) {
  asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(bar) : "memory");
}

// One arrival of the barrier's count, made when this thread's earlier cp.async copies have landed.
__device__ __forceinline__ void mbar_arrive_on_cp_async(uint32_t bar) {
  asm volatile("cp.async.mbarrier.arrive.noinc.shared::cta.b64 [%0];\n" ::"r"(bar) : "memory");
}

// An arrival that also makes the phase wait for `bytes` more of asynchronous (TMA) copies.
__device__ __forceinline__ void mbar_arrive_expect_tx(uint32_t bar, uint32_t bytes) {
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(bar), "r"(bytes) : "memory");
}

// TMA: the box of a 3-dimensional tensor map at coordinates (c0, c1, c2) to shared address dst,
// counted on barrier bar as bytes of its transaction.
__device__ __forceinline__ void tma_load_3d(uint32_t dst, const void* map, int c0, int c1, int c2, uint32_t bar) {
  asm volatile(
      "cp.async.bulk.tensor.3d.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3, %4}], [%5];\n" ::
          "r"(dst),
      "l"(map), "r"(c0), "r"(c1), "r"(c2), "r"(bar)
      : "memory");
}

__device__ __forceinline__ void mbar_wait(uint32_t bar, uint32_t parity) {
  asm volatile(
      "{\n.reg .pred done;\n"
      "WAIT:\n"
      "mbarrier.try_wait.parity.shared::cta.b64 done, [%0], %1;\n"
      "@!done bra WAIT;\n"
      "}\n" ::"r"(bar),
      "r"(parity)
      : "memory");
}

// Barrier 1..15 among kThreads threads (whole warps); barrier 0 is __syncthreads.
template <int kId, int kThreads>
__device__ __forceinline__ void named_barrier_sync() {
  static_assert(kId > 0 && kId < 16 && kThreads % 32 == 0);
  asm volatile("bar.sync %0, %1;\n" ::"n"(kId), "n"(kThreads) : "memory");
}

// Hands registers between the warpgroups of a CTA (every thread of the warpgroup executes it).
template <int kRegs>
__device__ __forceinline__ void setmaxnreg_dec() {
  asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(kRegs));
}
template <int kRegs>
__device__ __forceinline__ void setmaxnreg_inc() {
  asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(kRegs));
}

#endif  // __CUDACC__

}  // namespace dsv4::cuda::detail
