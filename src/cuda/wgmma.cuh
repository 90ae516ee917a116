// Hopper wgmma primitives for the prefill kernels (sm_90a): shared-memory matrix descriptors for
// 128-byte-swizzled tiles, the warpgroup and proxy fences, m64n128k16, m64n64k16 and m64n32k16 (B
// K-major or transposed; m64n32k16 and m64n64k16 also with A from registers) with f16 operands and
// f32 accumulators, a chain of split-operand products over them, and m64n64k32 and m64n16k32 with
// s8 operands (A from registers) and s32 accumulators. The tiles are the layout gemm_kernel.cuh's
// swz() writes (128-byte rows, 16-byte chunk c of row r at chunk c ^ (r & 7); sw128_half below in
// elements), which is the hardware's 128-byte swizzle when the tile starts on a 1024-byte
// boundary: the swizzle XORs address bits 4-6 with bits 7-9.
#pragma once

#include <cstdint>

namespace dsv4::cuda::detail {

#ifdef __CUDACC__

// The f16 element index of (row r, column d < 64) in a tile of 128-byte rows in that swizzle.
__device__ __forceinline__ int sw128_half(int r, int d) { return r * 64 + ((((d >> 3) ^ r) & 7) << 3) + (d & 7); }

// The first 1024-byte boundary of a dynamic shared-memory allocation (which is only sure to be
// 16-byte aligned): the swizzle's period. Launches ask for 1024 bytes more than they use.
__device__ __forceinline__ uint8_t* smem_align_1024(uint8_t* raw) {
  const uint32_t a = static_cast<uint32_t>(__cvta_generic_to_shared(raw));
  return raw + ((1024u - a % 1024u) % 1024u);
}

// Orders this thread's generic-proxy writes to shared memory (stores, landed cp.async copies)
// before the async proxy's reads (wgmma operands, TMA); a barrier then hands them to the readers.
__device__ __forceinline__ void fence_proxy_async() { asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory"); }

// Descriptor of a K-major tile at shared address addr (1024-aligned, or advanced by a multiple of
// 32 bytes inside a row to select a k16 slice): 8-row groups 1024 bytes apart (stride byte offset),
// the leading byte offset unused for swizzled K-major tiles (1 by convention), 128-byte swizzle.
__device__ __forceinline__ uint64_t wgmma_desc_sw128(uint32_t addr) {
  return static_cast<uint64_t>((addr & 0x3FFFFu) >> 4) | (uint64_t{1} << 16) | (uint64_t{1024 >> 4} << 32) |
         (uint64_t{1} << 62);
}

// The same descriptor as a low word (address field and leading byte offset) and a constant high
// word, for kernels that issue many MMAs on one tile: the descriptor of addr + bytes (a multiple of
// 16) is the low word plus bytes / 16, one add (the 14-bit address field cannot carry: shared
// addresses are below 2^18), where wgmma_desc_sw128 of each address costs five uniform instructions.
__device__ __forceinline__ uint32_t wgmma_desc_sw128_lo(uint32_t addr) { return ((addr & 0x3FFFFu) >> 4) | (1u << 16); }
__device__ __forceinline__ uint64_t wgmma_desc_sw128_at(uint32_t lo, uint32_t bytes) {
  return (uint64_t{(1024 >> 4) | (1u << 30)} << 32) | (lo + (bytes >> 4));
}

// Before the first wgmma of a batch: orders this warpgroup's earlier register and shared-memory
// accesses before the asynchronous MMAs.
__device__ __forceinline__ void wgmma_fence() { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }
__device__ __forceinline__ void wgmma_commit() { asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory"); }
template <int N>
__device__ __forceinline__ void wgmma_wait() {
  asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory");
}

// Keeps the compiler from moving accesses of an accumulator across a wgmma wait or issue (the
// asynchronous MMA writes it behind the compiler's back).
template <int N>
__device__ __forceinline__ void wgmma_fence_operands(float (&d)[N]) {
#pragma unroll
  for (int i = 0; i < N; ++i) asm volatile("" : "+f"(d[i])::"memory");
}

// d = A·Bᵀ (+ d when accumulate): A 64 × 16 and B 128 × 16, both K-major f16 in shared memory.
// Thread t of the warpgroup holds d[4j + c] = D[16·(t / 32) + (t % 32) / 4 + 8·(c / 2)][8j + 2·(t % 4) + c % 2].
__device__ __forceinline__ void wgmma_m64n128k16_f16(float (&d)[64], uint64_t a, uint64_t b, bool accumulate) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %66, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n128k16.f32.f16.f16 {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}, %64, %65, p, 1, 1, 0, 0;\n}\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]),
        "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]),
        "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]),
        "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]),
        "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]),
        "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]),
        "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]),
        "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63])
      : "l"(a), "l"(b), "r"(static_cast<int>(accumulate)));
}

// The same with B 64 × 16 (the prefill indexer's 64-row tiles): thread t holds d[4j + c] =
// D[16·(t / 32) + (t % 32) / 4 + 8·(c / 2)][8j + 2·(t % 4) + c % 2], j < 8.
__device__ __forceinline__ void wgmma_m64n64k16_f16(float (&d)[32], uint64_t a, uint64_t b, bool accumulate) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %34, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n64k16.f32.f16.f16 {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}, %32, %33, p, 1, 1, 0, 0;\n}\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]),
        "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]),
        "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]),
        "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31])
      : "l"(a), "l"(b), "r"(static_cast<int>(accumulate)));
}

// d = A·B (+ d when accumulate): A 64 × 16 K-major as above, B of 32 columns: kTransposeB false,
// 32 × 16 K-major (the narrow GEMM tile's hi and lo rows, gemm_wgmma_narrow.cuh); true, 16 × 32
// stored N-major (each k's 32 values contiguous, rows of 128 bytes in the 128-byte swizzle, the
// transpose bit set: the prefill attention's P·V, whose value rows are dims-contiguous). Thread t
// holds d[4j + c] = D[16·(t / 32) + (t % 32) / 4 + 8·(c / 2)][8j + 2·(t % 4) + c % 2], j < 4.
template <bool kTransposeB>
__device__ __forceinline__ void wgmma_m64n32k16_f16(float (&d)[16], uint64_t a, uint64_t b, bool accumulate) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %18, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n32k16.f32.f16.f16 {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15}, %16, %17, p, 1, 1, 0, %19;\n}\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]),
        "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15])
      : "l"(a), "l"(b), "r"(static_cast<int>(accumulate)), "n"(kTransposeB ? 1 : 0));
}

// d (+)= A·Bᵀ with A 64 × 16 f16 from registers (warp w holds rows 16w..16w+15 as mma.m16n8k16's A
// fragment: a[0] row (t % 32) / 4, columns 2·(t % 4) and + 1; a[1] that row + 8; a[2] / a[3] the
// same rows, columns + 8) and B 32 × 16 K-major in shared memory (the narrow tile's hi and lo
// rows); d as wgmma_m64n32k16_f16's. The a registers are read asynchronously: they must not
// change until the wgmma is waited for.
__device__ __forceinline__ void wgmma_m64n32k16_f16_ra(float (&d)[16], const uint32_t (&a)[4], uint64_t b,
                                                       bool accumulate) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %21, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n32k16.f32.f16.f16 {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15}, {%16, %17, %18, %19}, %20, p, 1, 1, 0;\n}\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]),
        "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(b), "r"(static_cast<int>(accumulate)));
}

// The same with B 64 × 16 (the 64-token register tile's hi or lo rows): d[4j + c], j < 8.
__device__ __forceinline__ void wgmma_m64n64k16_f16_ra(float (&d)[32], const uint32_t (&a)[4], uint64_t b,
                                                       bool accumulate) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %37, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n64k16.f32.f16.f16 {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}, {%32, %33, %34, %35}, %36, p, 1, 1, 0;\n}\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]),
        "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]),
        "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]),
        "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(b), "r"(static_cast<int>(accumulate)));
}

// One zero-started chain of split-operand products (f16_split.cuh) over kSteps k16 steps, issued as
// one group and waited for: per step a_lo·b_hi (kALo), a_hi·b_lo (kBLo), a_hi·b_hi, the small terms
// before the large. descs(k) gives step k's SplitDescs; mma(d, a, b, accumulate) issues one wgmma
// of d's shape. kALo and kBLo are template arguments: a wgmma under a run-time condition makes
// ptxas serialise every wgmma of the kernel (C7520), so callers pick one of the branch-free copies.
struct SplitDescs {
  uint64_t a_hi, a_lo, b_hi, b_lo;
};
template <int kSteps, bool kALo, bool kBLo, int N, class Descs, class Mma>
__device__ __forceinline__ void wgmma_split_chain(float (&d)[N], Descs descs, Mma mma) {
  wgmma_fence_operands(d);
  wgmma_fence();
#pragma unroll
  for (int k = 0; k < kSteps; ++k) {
    const SplitDescs s = descs(k);
    if constexpr (kALo) mma(d, s.a_lo, s.b_hi, k > 0);
    if constexpr (kBLo) mma(d, s.a_hi, s.b_lo, k > 0 || kALo);
    mma(d, s.a_hi, s.b_hi, k > 0 || kALo || kBLo);
  }
  wgmma_commit();
  wgmma_wait<0>();
  wgmma_fence_operands(d);
}

template <int N>
__device__ __forceinline__ void wgmma_fence_operands(int32_t (&d)[N]) {
#pragma unroll
  for (int i = 0; i < N; ++i) asm volatile("" : "+r"(d[i])::"memory");
}

// The same for A operands in registers: their values computed before this point, so that none is
// written between wgmma.fence and the MMA that reads it (ptxas would then inject a
// warpgroup.arrive before that MMA, C7519).
template <int N>
__device__ __forceinline__ void wgmma_fence_operands(uint32_t (&a)[N]) {
#pragma unroll
  for (int i = 0; i < N; ++i) asm volatile("" : "+r"(a[i])::"memory");
}

// d += A·Bᵀ: A 64 × 32 s8 from registers (warp w holds rows 16w..16w+15 as mma.m16n8k32's A
// fragment: a[0] row (t % 32) / 4, bytes 4·(t % 4).., a[1] that row + 8, a[2] / a[3] the same
// 16 bytes further; what ldmatrix.x4 gives from a 16 × 32-byte slab), B 64 × 32 K-major s8 in
// shared memory (a 128-byte row holds 128 elements, so a k32 slice is 32 bytes of it, as a k16
// slice of f16), exact s32 sums. Thread t holds d[4j + c] = D[16·(t / 32) + (t % 32) / 4 +
// 8·(c / 2)][8j + 2·(t % 4) + c % 2], j < 8. The a registers are read asynchronously: they must
// not change until the wgmma is waited for.
__device__ __forceinline__ void wgmma_m64n64k32_s8_ra(int32_t (&d)[32], const uint32_t (&a)[4], uint64_t b) {
  asm volatile(
      "wgmma.mma_async.sync.aligned.m64n64k32.s32.s8.s8 {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}, {%32, %33, %34, %35}, %36, 1;\n"
      : "+r"(d[0]), "+r"(d[1]), "+r"(d[2]), "+r"(d[3]), "+r"(d[4]), "+r"(d[5]), "+r"(d[6]), "+r"(d[7]),
        "+r"(d[8]), "+r"(d[9]), "+r"(d[10]), "+r"(d[11]), "+r"(d[12]), "+r"(d[13]), "+r"(d[14]), "+r"(d[15]),
        "+r"(d[16]), "+r"(d[17]), "+r"(d[18]), "+r"(d[19]), "+r"(d[20]), "+r"(d[21]), "+r"(d[22]), "+r"(d[23]),
        "+r"(d[24]), "+r"(d[25]), "+r"(d[26]), "+r"(d[27]), "+r"(d[28]), "+r"(d[29]), "+r"(d[30]), "+r"(d[31])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(b));
}

// The same with B 48 × 32 (the int8 GEMM's 16-token tile: the 16 rows of each of its three limb
// planes as one operand, one MMA a k32 slice instead of three): d[4j + c], j < 6.
__device__ __forceinline__ void wgmma_m64n48k32_s8_ra(int32_t (&d)[24], const uint32_t (&a)[4], uint64_t b) {
  asm volatile(
      "wgmma.mma_async.sync.aligned.m64n48k32.s32.s8.s8 {"
      "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "
      "%16, %17, %18, %19, %20, %21, %22, %23}, "
      "{%24, %25, %26, %27}, %28, 1;\n"
      : "+r"(d[0]), "+r"(d[1]), "+r"(d[2]), "+r"(d[3]), "+r"(d[4]), "+r"(d[5]), "+r"(d[6]), "+r"(d[7]),
        "+r"(d[8]), "+r"(d[9]), "+r"(d[10]), "+r"(d[11]), "+r"(d[12]), "+r"(d[13]), "+r"(d[14]), "+r"(d[15]),
        "+r"(d[16]), "+r"(d[17]), "+r"(d[18]), "+r"(d[19]), "+r"(d[20]), "+r"(d[21]), "+r"(d[22]), "+r"(d[23])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(b));
}

#endif  // __CUDACC__

}  // namespace dsv4::cuda::detail
