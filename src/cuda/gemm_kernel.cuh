// The GEMM kernel: Y[r][f] = s(src(r))·Σ_k X[src(r)][k] · W_e[f][k], f16 tensor cores (mma.sync
// m16n8k16, f32 accumulation), weights decoded from their GGUF blocks in shared memory; s is the
// optional per-row factor of X's scaled conversion (convert_f32_to_f16). f16 runs at the bf16 rate.
// Split mode (tiles with kSplit, gemm_codes.cuh decoders): X is x_hi + x_lo, W holds exact integer
// codes, and each 32-column block's products are scaled in f32 (mma_step_split below;
// GEMM_NOTES.md, "Fourth version").
//
// Roofline (H100 SXM / H200: same compute). Dense bf16 peak ≈ 989 TFLOP/s (datasheet), ≈ 790
// measured with cuBLAS on 8192³ (.library/device/KINDS.md); gemm_bench measures it again next to
// every figure. A prefill token costs ≈ 26 GFLOP of linear layers (PERFORMANCE.md §2.1), so
// 10 000 tokens/s needs ≈ 265 TFLOP/s sustained over these kernels. Memory is not the limit at
// prefill sizes: e.g. 2048 tokens × Q8_0 4096→4096 is 68.7 GFLOP (≈ 87 µs at 790 TFLOP/s) against
// ≈ 67 MB of weights + activations + outputs (≈ 22 µs at 3 TB/s).
// This version's own ceiling is shared memory, not the tensor cores: with mma.sync every warp
// loads its operand fragments from shared memory (ldmatrix). Per k16 step a 64×64 warp tile loads
// 4 KB for 65 536 MACs = 16 MAC/B; at 128 B/clk/SM that is 2048 MAC/clk/SM, exactly the tensor
// peak, before the decoder's shared-memory reads and writes and the activation copies, so the
// large tile tops out near 50–65 % of peak and the small tile (32×32 warp tiles, 8 MAC/B) near
// 35–50 %. The decode costs ≈ 6 instructions per weight element (ncu, Q4_K) once per tile of kBT
// tokens. Measured (H200, docs/PERF.md): 283 TFLOP/s with BF16 weights, 208–242 with Q8_0/K-quants
// at 2048 × 4096 → 4096 (28–38 % of cuBLAS); ncu says latency-bound (2 warps per scheduler, tensor
// pipe 43 % busy), not shared-memory-bound yet. The MoE at ≤ 2048 tokens is decode-bound (an expert
// sees 12–48 rows per 64-row tile). The next step is wgmma (operands straight from shared memory,
// no register staging) fed by TMA, with producer (copy + decode) and consumer warps.
//
// Shapes (named below):
//   CTA tile   kBT rows (tokens) × kBF features; 8 warps as kWarpsT × kWarpsF, warp tile
//              (16·kMT) × (8·kNF). Large: 128 × 256, warp 64 × 64. Small: 64 × 128, warp 32 × 32.
//   k-step     64 columns: X tile kBT × 64 f16 and decoded W tile kBF × 64 f16, 128-byte rows with
//              the 16-byte chunks XOR-swizzled by (row & 7), so ldmatrix reads 8 rows without bank
//              conflicts.
//   raw stage  D::kStageElems (64 or 256) columns of kBF weight rows as copied from global memory
//              (kPitch bytes a row); one stage serves kSPR = kStageElems/64 k-steps.
//   pipeline   kSX X buffers (4 when a raw stage serves 4 k-steps, else 3), 2 decoded-W buffers,
//              kRR raw buffers, all filled by 16-byte cp.async. cp.async group u holds X(u) and
//              the raw stage first needed by decode(u+1) (group 0 also stage 0). Phase t: wait for
//              group t, barrier, issue group t+kSX−1, then the MMAs of step t with the decode of
//              W(t+1) interleaved after each 16-wide slice (the decode's ALU work issues while the
//              tensor cores run the slice) — one barrier per k-step. kRR = 1 + ⌈(kSX−1)/kSPR⌉
//              keeps a raw buffer from being refilled before its last decode
//              ((kRR−1)·kSPR ≥ kSX−1).
//   copies     precomputed per thread (fixed chunk of fixed rows), 32-bit offsets inside one
//              expert matrix (< 4 GiB, checked by gemm.cc) and 32-bit shared-memory addresses: the
//              first version spent more instructions on copy addressing than on MMAs.
// Rows past the group's end and features past n_out are computed from clamped (valid) addresses
// and never stored; no load leaves the tensors.
#pragma once

#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <type_traits>

#include "cuda/device_math.cuh"
#include "cuda/gemm_codes.cuh"
#include "cuda/gemm_decode.cuh"
#include "cuda/gemm_launch.h"
#include "cuda/once_per_device.h"
#ifdef __CUDACC__
#include "cuda/cp_async.cuh"  // shared_address
#endif

namespace dsv4::cuda::detail {

// kSplitK: the tile takes split-K launches (GemmLaunch::k_splits): split mode's small tile, which
// gemm() picks where the large one would not give every SM a CTA (the large split tile sits at the
// register limit; f16 mode, the non-default prefill, does not split).
struct GemmTileLarge {
  static constexpr int kWarpsT = 2, kWarpsF = 4, kMT = 4, kNF = 8, kMinBlocks = 1;
  static constexpr bool kSplit = false, kSplitK = false;
};
struct GemmTileSmall {
  static constexpr int kWarpsT = 2, kWarpsF = 4, kMT = 2, kNF = 4, kMinBlocks = 2;
  static constexpr bool kSplit = false, kSplitK = false;
};
// Split mode (x = x_hi + x_lo, exact weight codes, f32 block scales; D is a gemm_codes.cuh
// decoder): twice the X tile and a temporary accumulator per 16 × (8·kNF) slab, so the warp tile
// is 32 × 64 (large) or 32 × 32 (small) and a CTA covers 64 tokens.
struct GemmTileSplitLarge {
  static constexpr int kWarpsT = 2, kWarpsF = 4, kMT = 2, kNF = 8, kMinBlocks = 1;
  static constexpr bool kSplit = true, kSplitK = false;
};
struct GemmTileSplitSmall {
  static constexpr int kWarpsT = 2, kWarpsF = 4, kMT = 2, kNF = 4, kMinBlocks = 1;
  static constexpr bool kSplit = true, kSplitK = true;
};

// A gemm_codes.cuh decoder's kScaled / kMinGroups; false / 0 for the f16 decoders, so that the
// split code path compiles (unused) next to them.
template <class D, class = void>
struct SplitCodes {
  static constexpr bool kScaled = false;
  static constexpr int kMinGroups = 0;
};
template <class D>
struct SplitCodes<D, std::void_t<decltype(D::kMinGroups)>> {
  static constexpr bool kScaled = D::kScaled;
  static constexpr int kMinGroups = D::kMinGroups;
};

// Split mode: per decoded W buffer, f32 tables [2 + kMinGroups][kBF]: the scale of each feature row
// for the two 32-column halves of the k-step, then its offsets dmin·m per group.
template <class D, class T>
constexpr int gemm_split_rows() {
  return T::kSplit ? 2 + SplitCodes<D>::kMinGroups : 0;
}

constexpr int kGemmThreads = 256;
constexpr int kGemmK = 64;  // columns per k-step

template <class D, class T>
struct GemmGeometry {
  static constexpr int kBT = T::kWarpsT * 16 * T::kMT;
  static constexpr int kBF = T::kWarpsF * 8 * T::kNF;
  // X buffers: 4 where a raw stage serves 4 k-steps (raw buffers stay at 2), else 3 (each extra X
  // buffer would also cost a raw buffer).
  static constexpr int kSX = D::kStageElems / kGemmK > 1 ? 4 : 3;
  static constexpr int kSPR = D::kStageElems / kGemmK;
  static constexpr int kRR = 1 + (kSX - 1 + kSPR - 1) / kSPR;
  // Bytes copied per staged row, and its shared-memory pitch: an odd number of 16-byte units, so
  // that 8 lanes reading 16 bytes each from 8 consecutive rows hit distinct banks.
  static constexpr int kSpan = (D::kMisalign + D::kStageBytes + 15) / 16 * 16;
  static constexpr int kPitch = (kSpan / 16) % 2 ? kSpan : kSpan + 16;
  static constexpr int kTableBytes = (D::kTableBytes + 127) / 128 * 128;
  static constexpr int kXBytes = kBT * 128 * (T::kSplit ? 2 : 1);  // split: the hi tile, then lo
  static constexpr int kWBytes = kBF * 128;
  static constexpr int kRawBytes = kBF * kPitch;
  static constexpr int kSplitRows = gemm_split_rows<D, T>();
  static constexpr int kScaleBytes = kSplitRows * kBF * 4;
  static constexpr int kSmem = kTableBytes + kSX * kXBytes + 2 * kWBytes + kRR * kRawBytes + 2 * kScaleBytes;
  static_assert(T::kWarpsT * T::kWarpsF * 32 == kGemmThreads, "8 warps");
  static_assert(kBT % 32 == 0 && kBF % 32 == 0, "loader strides");
  static constexpr bool kFits = kSmem <= 227 * 1024;  // shared memory per block on sm_90
};

#ifdef __CUDACC__

__device__ __forceinline__ void gemm_cp_async16(uint32_t dst, const void* src) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(dst), "l"(src) : "memory");
}
__device__ __forceinline__ void gemm_cp_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
template <int N>
__device__ __forceinline__ void gemm_cp_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}
__device__ __forceinline__ void ldmatrix_x4(uint32_t* r, uint32_t addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}
// The B fragments of kNF n8 tiles of a 128-byte-pitch tile: ldmatrix.x4 j (rows 16j.. of the
// tile at addr) gives tiles 2j and 2j + 1.
template <int kNF>
__device__ __forceinline__ void ldmatrix_b_tiles(uint32_t (*b)[2], uint32_t addr) {
#pragma unroll
  for (int j = 0; j < kNF / 2; ++j) {
    uint32_t r[4];
    ldmatrix_x4(r, addr + j * 16 * 128);
    b[2 * j][0] = r[0];
    b[2 * j][1] = r[1];
    b[2 * j + 1][0] = r[2];
    b[2 * j + 1][1] = r[3];
  }
}
__device__ __forceinline__ void mma_f16(float* c, const uint32_t* a, const uint32_t* b) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
      "{%8, %9}, {%0, %1, %2, %3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}
// c = a·b (C = 0).
__device__ __forceinline__ void mma_f16_zero(float* c, const uint32_t* a, const uint32_t* b) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
      "{%8, %9}, {%10, %10, %10, %10};\n"
      : "=f"(c[0]), "=f"(c[1]), "=f"(c[2]), "=f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]), "f"(0.0f));
}

// The tensor's last chunk, cut short by its end: plain loads, zero-filled (cp.async with a short
// source size is reported by compute-sanitizer as a full 16-byte read). Rare, so kept out of line.
// The barrier after the cp.async wait orders these stores too.
static __device__ __noinline__ void gemm_copy_tail(uint8_t* dst, const uint8_t* src, const uint8_t* end) {
  for (int b = 0; b < 16; ++b) dst[b] = src + b < end ? __ldg(src + b) : uint8_t{0};
}

// One thread's part of a raw weight stage: 16-byte chunk c of the stage (stage_off bytes into each
// row) for feature rows f, f + kRowStep, ... (kPasses of them, clamped to n_out − 1) of the matrix
// at w, to dst, dst + kRowStep·pitch, ... (shared addresses; dst_ptr is dst as a generic pointer,
// for the tail). kAlignDown: the stage's first byte is rounded down to 16 (formats whose stages
// are not 16-aligned; the decoder adds the misalignment back). A chunk cut short by the tensor's
// end (w_end) is copied byte-wise, zero-filled.
template <int kPasses, int kRowStep, bool kAlignDown>
__device__ __forceinline__ void gemm_copy_raw_rows(uint32_t dst, uint8_t* dst_ptr, int pitch, const uint8_t* w,
                                                   uint32_t row_bytes, uint32_t stage_off, int f, int n_out, int c,
                                                   const uint8_t* w_end) {
#pragma unroll
  for (int j = 0; j < kPasses; ++j) {
    const uint32_t row = static_cast<uint32_t>(min(f + j * kRowStep, n_out - 1));
    const uint8_t* start = w + (row * row_bytes + stage_off);
    if constexpr (kAlignDown) start -= reinterpret_cast<uintptr_t>(start) & 15;
    const uint8_t* src = start + 16 * c;
    const int at = j * kRowStep * pitch;
    if (src + 16 <= w_end) {
      gemm_cp_async16(dst + at, src);
    } else {
      gemm_copy_tail(dst_ptr + at, src, w_end);
    }
  }
}

// Byte offset of 16-byte chunk c of row r in a swizzled 128-byte-row tile.
__device__ __forceinline__ int swz(int r, int c) { return r * 128 + ((c ^ (r & 7)) << 4); }

// The X row that sorted row r reads and the Y row it writes: x_rows[r] and y_rows[r] clamped to
// [0, x_count) and [0, y_count) (gemm.h: device data, not trusted), or r when they are null.
__device__ __forceinline__ int gemm_x_row(const GemmLaunch& p, int r) {
  return p.x_rows ? min(max(p.x_rows[r], 0), p.x_count - 1) : r;
}
__device__ __forceinline__ int gemm_y_row(const GemmLaunch& p, int r) {
  return p.y_rows ? min(max(p.y_rows[r], 0), p.y_count - 1) : r;
}
// The input factor and output row of sorted row r of a tile whose rows end at tile_end (rows past
// the end read its last row's; they are not stored).
__device__ __forceinline__ void gemm_row_record(const GemmLaunch& p, int r, int tile_end, float* scale, int* out) {
  const int rr = min(r, tile_end - 1);
  *scale = p.x_scale ? p.x_scale[gemm_x_row(p, rr)] : 1.0f;
  *out = gemm_y_row(p, rr);
}

// The rows this CTA computes: [*row0, min(*row0 + bt, *row_end)) of the sorted order, with matrix
// *expert. False (for every thread alike) when the slot has no tile or the expert id is invalid.
// p.tails: kSkipShort leaves out a group's last tile where it holds at most bt / 2 rows;
// kOnlyShort takes just those rows, at most bt of them, as the group's one tile (bt: half the tile
// of its kSkipShort partner); kSkipFew leaves out the groups of at most kFewRows rows, kOnlyFew
// takes only those, as one tile each (bt = kFewRows).
__device__ __forceinline__ bool gemm_find_tile(const GemmLaunch& p, int slot, int bt, int* row0,
                                               int* row_end, int* expert) {
  if (p.offsets == nullptr) {
    *row0 = slot * bt;
    *row_end = p.n_rows;
    *expert = 0;
    return *row0 < p.n_rows;
  }
  const int lane = threadIdx.x & 31;
  int remaining = slot;
  for (int base = 0; base < p.n_groups; base += 32) {
    const int g = base + lane;
    int lo = 0, hi = 0, tiles = 0;
    if (g < p.n_groups) {
      lo = min(max(p.offsets[g], 0), p.n_rows);
      hi = min(max(p.offsets[g + 1], lo), p.n_rows);
      const int rows = hi - lo;
      switch (p.tails) {
        case GemmTails::kAll: tiles = (rows + bt - 1) / bt; break;
        case GemmTails::kSkipShort: tiles = rows / bt + (rows % bt > bt / 2 ? 1 : 0); break;
        case GemmTails::kOnlyShort: {
          const int tail = rows % (2 * bt);
          tiles = tail > 0 && tail <= bt ? 1 : 0;
          lo = hi - tail;
          break;
        }
        case GemmTails::kSkipFew: tiles = rows > kFewRows ? (rows + bt - 1) / bt : 0; break;
        case GemmTails::kOnlyFew: tiles = rows > 0 && rows <= kFewRows ? 1 : 0; break;
      }
    }
    const int incl = warp_inclusive_scan(tiles, lane);  // over the warp's groups
    const int total = __shfl_sync(0xFFFFFFFFu, incl, 31);
    if (remaining < total) {
      const int f = __ffs(__ballot_sync(0xFFFFFFFFu, incl > remaining)) - 1;
      const int before = __shfl_sync(0xFFFFFFFFu, incl - tiles, f);
      *row0 = __shfl_sync(0xFFFFFFFFu, lo, f) + (remaining - before) * bt;
      *row_end = __shfl_sync(0xFFFFFFFFu, hi, f);
      *expert = p.group_expert ? p.group_expert[base + f] : base + f;
      return *expert >= 0 && *expert < p.n_expert;
    }
    remaining -= total;
  }
  return false;
}

template <class D, class T>
__global__ void __launch_bounds__(kGemmThreads, T::kMinBlocks)
    gemm_kernel(__grid_constant__ const GemmLaunch p) {
  using G = GemmGeometry<D, T>;
  constexpr int kBT = G::kBT, kBF = G::kBF, kSX = G::kSX, kSPR = G::kSPR, kRR = G::kRR;
  constexpr int kPitch = G::kPitch, kChunks = G::kSpan / 16;
  constexpr int kXRows = kBT / 32;              // X rows per thread
  constexpr int kCPT = kBF * 8 / kGemmThreads;  // decoded 16-byte chunks per thread
  // Raw copy: a row's kChunks chunks go to kLanes (a power of two ≥ kChunks) consecutive threads,
  // so each thread always copies the same chunk c of rows r, r + 256/kLanes, ...
  constexpr int kLanes = kChunks <= 8 ? 8 : 16;
  constexpr int kRawPasses = kBF * kLanes / kGemmThreads;
  extern __shared__ __align__(128) uint8_t smem[];
  uint8_t* const tables = smem;
  const uint32_t xs = shared_address(smem + G::kTableBytes);
  const uint32_t ws = xs + kSX * G::kXBytes;
  const uint32_t raw = ws + 2 * G::kWBytes;
  const uint8_t* const raw_ptr = smem + G::kTableBytes + kSX * G::kXBytes + 2 * G::kWBytes;
  uint8_t* const ws_ptr = smem + G::kTableBytes + kSX * G::kXBytes;
  float* const split_tab = reinterpret_cast<float*>(const_cast<uint8_t*>(raw_ptr) + kRR * G::kRawBytes);

  int row0, row_end, expert;
  if (!gemm_find_tile(p, blockIdx.y, kBT, &row0, &row_end, &expert)) return;
  const int f0 = blockIdx.x * kBF;
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  // A split-K launch's slice kz: its columns' weights, X and partial products (0 otherwise).
  const int64_t kz = T::kSplitK ? blockIdx.z : 0;
  const uint8_t* const wexp = p.w + expert * p.slab_bytes + kz * p.w_split_bytes;
  const uint32_t row_bytes = static_cast<uint32_t>(p.row_bytes);  // slabs < 4 GiB (gemm.cc)
  const int n_steps = p.n_in / kGemmK;

  // X: thread tid copies 16-byte chunk (tid & 7) of rows (tid >> 3) + 32·i. W decode: kCPT
  // consecutive chunks of one row (a whole row in the large tile), so the decoder's scale
  // arithmetic is shared by 32–64 elements. Either way the 8 lanes of a store phase write 8
  // distinct 16-byte slots of the swizzled tile.
  const int chunk = tid & 7, row_base = tid >> 3;
  const int drow = tid / (8 / kCPT), dchunk = (tid % (8 / kCPT)) * kCPT;
  const __half* xrow[kXRows];
  const __half* xrow_lo[T::kSplit ? kXRows : 1];
#pragma unroll
  for (int i = 0; i < kXRows; ++i) {
    const int r = min(row0 + row_base + 32 * i, row_end - 1);
    const int src = gemm_x_row(p, r);
    xrow[i] = p.x + src * p.x_stride + kz * p.x_split + chunk * 8;
    if constexpr (T::kSplit) xrow_lo[i] = p.x_lo + src * p.x_stride + kz * p.x_split + chunk * 8;
  }
  const uint32_t x_dst = static_cast<uint32_t>(swz(row_base, chunk));  // + i·32 rows

  const int raw_c = tid % kLanes, raw_r = tid / kLanes;
  auto issue_raw = [&](int stage) {
    if (raw_c >= kChunks) return;
    const uint32_t at = (stage % kRR) * G::kRawBytes + raw_r * kPitch + 16 * raw_c;
    gemm_copy_raw_rows<kRawPasses, kGemmThreads / kLanes, (D::kMisalign > 0)>(
        raw + at, const_cast<uint8_t*>(raw_ptr) + at, kPitch, wexp, row_bytes,
        static_cast<uint32_t>(stage * D::kStageBytes), f0 + raw_r, p.n_out, raw_c, p.w_end);
  };
  auto issue_group = [&](int u) {
    if (u < n_steps) {
      const uint32_t dst = xs + (u % kSX) * G::kXBytes + x_dst;
#pragma unroll
      for (int i = 0; i < kXRows; ++i) gemm_cp_async16(dst + i * 32 * 128, xrow[i] + u * kGemmK);
      if constexpr (T::kSplit) {
#pragma unroll
        for (int i = 0; i < kXRows; ++i) gemm_cp_async16(dst + (kBT + i * 32) * 128, xrow_lo[i] + u * kGemmK);
      }
      if (u == 0) issue_raw(0);
      if ((u + 1) % kSPR == 0 && u + 1 < n_steps) issue_raw((u + 1) / kSPR);
    }
    gemm_cp_commit();
  };

  // Decode of step t, chunks [c0, c0 + n) of this thread's row. All loads come before the stores:
  // the compiler cannot tell the tiles apart, and a store in between would keep it from sharing
  // the block header loads between chunks.
  const uint32_t drow_mis = static_cast<uint32_t>(reinterpret_cast<uintptr_t>(wexp)) +
                            static_cast<uint32_t>(min(f0 + drow, p.n_out - 1)) * row_bytes;
  auto decode = [&](int t, int c0, auto n_chunks) {
    constexpr int n = decltype(n_chunks)::value;
    const int stage = t / kSPR, e = (t % kSPR) * kGemmK + (dchunk + c0) * 8;
    int mis = 0;
    if constexpr (D::kMisalign > 0) {
      mis = static_cast<int>((drow_mis + static_cast<uint32_t>(stage * D::kStageBytes)) & 15u);
    }
    const uint8_t* src = raw_ptr + (stage % kRR) * G::kRawBytes + drow * kPitch + mis;
    uint8_t* dst = ws_ptr + (t & 1) * G::kWBytes;
    uint4 v[n];
    if constexpr (T::kSplit) {
      // Codes, and per 32 columns the block scale, per offset group its dmin·m (at the group's
      // first chunk; one writer per table entry).
      constexpr int kMinGroups = SplitCodes<D>::kMinGroups;
      [[maybe_unused]] constexpr int kGroupChunks = kMinGroups ? 8 / kMinGroups : 8;
      float sc[n], mn[n];
#pragma unroll
      for (int c = 0; c < n; ++c) {
        v[c] = D::codes8(src, e + 8 * c, tables);
        sc[c] = SplitCodes<D>::kScaled ? D::scale(src, e + 8 * c) : 1.0f;
        mn[c] = kMinGroups > 0 ? D::min_term(src, e + 8 * c) : 0.0f;
      }
      float* tab = split_tab + (t & 1) * G::kSplitRows * kBF;
#pragma unroll
      for (int c = 0; c < n; ++c) {
        [[maybe_unused]] const int k = dchunk + c0 + c;  // chunk within the k-step
        if constexpr (SplitCodes<D>::kScaled) {
          if (k % 4 == 0) tab[(k / 4) * kBF + drow] = sc[c];
        }
        if constexpr (kMinGroups > 0) {
          if (k % kGroupChunks == 0) tab[(2 + k / kGroupChunks) * kBF + drow] = mn[c];
        }
      }
    } else {
#pragma unroll
      for (int c = 0; c < n; ++c) v[c] = D::decode8(src, e + 8 * c, tables);
    }
#pragma unroll
    for (int c = 0; c < n; ++c) *reinterpret_cast<uint4*>(dst + swz(drow, dchunk + c0 + c)) = v[c];
  };

  // Warp tile and the per-lane ldmatrix rows (row & 7 == lane & 7 for both operands).
  const int tb = (warp / T::kWarpsF) * 16 * T::kMT;
  const int fb = (warp % T::kWarpsF) * 8 * T::kNF;
  const int a_row = tb + (lane & 15), a_chunk = lane >> 4;
  const int b_row = fb + (lane & 7) + ((lane >> 4) << 3), b_chunk = (lane >> 3) & 1;
  float acc[T::kMT][T::kNF][4];
#pragma unroll
  for (int i = 0; i < T::kMT; ++i)
#pragma unroll
    for (int j = 0; j < T::kNF; ++j)
#pragma unroll
      for (int c = 0; c < 4; ++c) acc[i][j][c] = 0.0f;

  // MMAs of step t; after each 16-wide slice, a quarter of the decode of step t + 1 (when
  // `next`), so its ALU work issues while the tensor cores run the slice's MMAs.
  auto mma_step = [&](int t, bool next) {
    const uint32_t xa = xs + (t % kSX) * G::kXBytes + a_row * 128;
    const uint32_t wb = ws + (t & 1) * G::kWBytes + b_row * 128;
#pragma unroll
    for (int kk = 0; kk < kGemmK / 16; ++kk) {
      const uint32_t ax = static_cast<uint32_t>(((2 * kk + a_chunk) ^ (lane & 7)) << 4);
      const uint32_t bx = static_cast<uint32_t>(((2 * kk + b_chunk) ^ (lane & 7)) << 4);
      uint32_t a[T::kMT][4], b[T::kNF][2];
#pragma unroll
      for (int i = 0; i < T::kMT; ++i) ldmatrix_x4(a[i], xa + i * 16 * 128 + ax);
      ldmatrix_b_tiles<T::kNF>(b, wb + bx);
#pragma unroll
      for (int i = 0; i < T::kMT; ++i)
#pragma unroll
        for (int j = 0; j < T::kNF; ++j) mma_f16(acc[i][j], a[i], b[j]);
      if (next) decode(t + 1, kk * (kCPT / 4), std::integral_constant<int, kCPT / 4>{});
    }
  };

  // Split mode, step t: per 32-column half, the B fragments of its two slices, then per 16-row
  // slab i the hi and lo A fragments; the codes' products (exact) go into tmp, which is scaled
  // into acc once per half (one FFMA per accumulator). Offsets: Σ x over each group comes from an
  // MMA against ones (the same A fragments), subtracted times dmin·m.
  auto mma_step_split = [&](int t, bool next) {
    const uint32_t xa = xs + (t % kSX) * G::kXBytes + a_row * 128;
    const uint32_t wb = ws + (t & 1) * G::kWBytes + b_row * 128;
    const float* tab = split_tab + (t & 1) * G::kSplitRows * kBF + fb + 2 * (lane & 3);
    constexpr uint32_t kOnes[2] = {0x3C003C00u, 0x3C003C00u};
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      uint32_t b[2][T::kNF][2];
#pragma unroll
      for (int s = 0; s < 2; ++s) {
        const uint32_t bx = static_cast<uint32_t>(((2 * (2 * h + s) + b_chunk) ^ (lane & 7)) << 4);
        ldmatrix_b_tiles<T::kNF>(b[s], wb + bx);
      }
#pragma unroll
      for (int i = 0; i < T::kMT; ++i) {
        uint32_t a[2][2][4];  // [slice][hi, lo]
#pragma unroll
        for (int s = 0; s < 2; ++s) {
          const uint32_t ax = static_cast<uint32_t>(((2 * (2 * h + s) + a_chunk) ^ (lane & 7)) << 4);
          ldmatrix_x4(a[s][0], xa + i * 16 * 128 + ax);
          ldmatrix_x4(a[s][1], xa + (kBT + i * 16) * 128 + ax);
        }
#pragma unroll
        for (int j = 0; j < T::kNF; ++j) {
          if constexpr (SplitCodes<D>::kScaled) {
            const float2 sc = *reinterpret_cast<const float2*>(tab + h * kBF + 8 * j);
            float tmp[4];
            mma_f16_zero(tmp, a[0][0], b[0][j]);
            mma_f16(tmp, a[0][1], b[0][j]);
            mma_f16(tmp, a[1][0], b[1][j]);
            mma_f16(tmp, a[1][1], b[1][j]);
            acc[i][j][0] = fmaf(sc.x, tmp[0], acc[i][j][0]);
            acc[i][j][1] = fmaf(sc.y, tmp[1], acc[i][j][1]);
            acc[i][j][2] = fmaf(sc.x, tmp[2], acc[i][j][2]);
            acc[i][j][3] = fmaf(sc.y, tmp[3], acc[i][j][3]);
          } else {
            mma_f16(acc[i][j], a[0][0], b[0][j]);
            mma_f16(acc[i][j], a[0][1], b[0][j]);
            mma_f16(acc[i][j], a[1][0], b[1][j]);
            mma_f16(acc[i][j], a[1][1], b[1][j]);
          }
        }
        if constexpr (SplitCodes<D>::kMinGroups > 0) {
          constexpr int kSlicesPerGroup = 4 / SplitCodes<D>::kMinGroups;  // 1 (Q2_K) or 2 (Q4_K)
          float sum[4] = {0.0f, 0.0f, 0.0f, 0.0f};              // rows g (0, 1) and g + 8 (2, 3)
#pragma unroll
          for (int s = 0; s < 2; ++s) {
            mma_f16(sum, a[s][0], kOnes);
            mma_f16(sum, a[s][1], kOnes);
            const int kk = 2 * h + s;
            if ((kk + 1) % kSlicesPerGroup == 0) {
              const float* mrow = tab + (2 + kk / kSlicesPerGroup) * kBF;
#pragma unroll
              for (int j = 0; j < T::kNF; ++j) {
                const float2 m = *reinterpret_cast<const float2*>(mrow + 8 * j);
                acc[i][j][0] = fmaf(-m.x, sum[0], acc[i][j][0]);
                acc[i][j][1] = fmaf(-m.y, sum[1], acc[i][j][1]);
                acc[i][j][2] = fmaf(-m.x, sum[2], acc[i][j][2]);
                acc[i][j][3] = fmaf(-m.y, sum[3], acc[i][j][3]);
              }
#pragma unroll
              for (int c = 0; c < 4; ++c) sum[c] = 0.0f;
            }
          }
        }
      }
      if (next) decode(t + 1, h * (kCPT / 2), std::integral_constant<int, kCPT / 2>{});
    }
  };

  if constexpr (D::kTableBytes > 0) D::load_tables(tables, p.iq2_tables);
#pragma unroll
  for (int u = 0; u < kSX - 1; ++u) issue_group(u);
  gemm_cp_wait<kSX - 2>();
  __syncthreads();
  decode(0, 0, std::integral_constant<int, kCPT>{});
  for (int t = 0; t < n_steps; ++t) {
    gemm_cp_wait<kSX - 2>();
    __syncthreads();
    issue_group(t + kSX - 1);
    if constexpr (T::kSplit) {
      mma_step_split(t, t + 1 < n_steps);
    } else {
      mma_step(t, t + 1 < n_steps);
    }
  }

  // Accumulator element c of tile (i, j): row g + 8·(c / 2), feature 2·(lane % 4) + c % 2.
  const int tile_end = min(row0 + kBT, row_end);
  const bool pairs = (reinterpret_cast<uintptr_t>(p.y) & 7) == 0 && (p.y_stride & 1) == 0;
#pragma unroll
  for (int i = 0; i < T::kMT; ++i) {
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int r = row0 + tb + 16 * i + (lane >> 2) + 8 * h;
      if (r >= tile_end) continue;
      float scale = 1.0f;
      if (p.x_scale) scale = p.x_scale[gemm_x_row(p, r)];
      const int out = gemm_y_row(p, r);
      float* yrow = p.y + kz * p.y_split_stride + static_cast<int64_t>(out) * p.y_stride;
#pragma unroll
      for (int j = 0; j < T::kNF; ++j) {
        const int f = f0 + fb + 8 * j + 2 * (lane & 3);
        const float v0 = acc[i][j][2 * h] * scale, v1 = acc[i][j][2 * h + 1] * scale;
        if (pairs && f + 1 < p.n_out) {
          *reinterpret_cast<float2*>(yrow + f) = make_float2(v0, v1);
        } else {
          if (f < p.n_out) yrow[f] = v0;
          if (f + 1 < p.n_out) yrow[f + 1] = v1;
        }
      }
    }
  }
}

// One launch of gemm_kernel<D, T> for l (grid from its rows, groups and features).
template <class D, class T>
cudaError_t gemm_launch_tile(const GemmLaunch& l, cudaStream_t stream) {
  using G = GemmGeometry<D, T>;
  static_assert(G::kFits);
  // Above 48 KB a kernel needs an opt-in (a host-side setting, so it is also safe while the
  // stream is being captured).
  int device = 0;
  cudaError_t e = cudaGetDevice(&device);
  if (e == cudaSuccess) {
    e = once_per_device(device, [] {
      return cudaFuncSetAttribute(gemm_kernel<D, T>, cudaFuncAttributeMaxDynamicSharedMemorySize, G::kSmem);
    });
  }
  if (e != cudaSuccess) return e;
  const int64_t slots = l.offsets ? (l.n_rows + G::kBT - 1) / G::kBT + l.n_groups
                                  : (l.n_rows + G::kBT - 1) / G::kBT;
  if (slots > 65535) return cudaErrorInvalidConfiguration;
  if (l.k_splits < 1 || l.k_splits > 65535 || (l.k_splits > 1 && !T::kSplitK)) return cudaErrorInvalidConfiguration;
  const dim3 grid((l.n_out + G::kBF - 1) / G::kBF, static_cast<unsigned>(slots), static_cast<unsigned>(l.k_splits));
  gemm_kernel<D, T><<<grid, kGemmThreads, G::kSmem, stream>>>(l);
  return cudaGetLastError();
}

#endif  // __CUDACC__

}  // namespace dsv4::cuda::detail
