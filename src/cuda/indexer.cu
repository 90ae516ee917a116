// indexer.h.
//
// Scores on the tensor cores (mma.sync m16n8k16, f16 in, f32 out): a block per SM and token,
// walking the token's tiles of 128 rows (blockIdx.x, + gridDim.x, ...), 8 warps of an m16 tile each.
// The block splits the token's queries (64 heads × idh, zero-padded) once into hi and lo f16 images,
// each head scaled by a power of two 2^e_q (f16_split.cuh: 22 bits of every value, exact for
// official mode's FP4 values), while its first tile's rows land by cp.async; each warp copies the
// rows of its next tile while it scores the current one (two buffers, no block barrier). A warp
// reads its rows from shared memory as the MMAs' A fragments (scaled per row by 2^e_r, split in
// registers; a k16 slice's dims in an order that makes a lane's four one float4, the queries stored
// in the same order) and runs one chain over all dims from zero, small products first (q_lo·row_hi,
// q_hi·row_lo, q_hi·row_hi; an all-zero lo skips its MMAs: it would add exact zeros).
// score = 2^-e_r·Σ_h w_h·2^-e_q·max(0, C[h]) (powers of two commute with the ReLU).
// The SIMT f32 kernel before it (a block per 32 rows, each staging the token's 32 KB of queries,
// the FMAs on the CUDA cores) took 53 µs a CSA layer at a 278K context; this one 22 (H200,
// docs/PERF.md session 28). Accuracy as the prefill scores' (prefill_indexer.cu): ≲ 2^-18 of
// Σ_h |w_h|·|q_h|·|k|, which only moves near-ties of the top-k.
//
// Top-k: one block of 1024 threads per token. Radix select over the order-preserving key of each
// score (NaN ranked as -inf, like cpu::top_k_desc; the keys of up to 8192 candidates, or 49 152 for
// a token alone, kept in shared memory after the first pass), 8 bits per pass from below the bits
// all keys share: the histogram of the candidates that share the decided prefix locates the bucket
// holding the k-th largest key, until that bucket is taken whole or every bit is decided. Then the
// threshold (on the decided bits) and how many of its equal keys to take are known; equal keys are
// taken in index order, which is the lower-index tie rule. The selected indices are written in
// ascending order by an ordered compaction (two bitmaps built by warp ballots, one barrier per
// window of candidates).
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "cuda/check.h"
#include "cuda/cp_async.cuh"
#include "cuda/device_math.cuh"
#include "cuda/f16_split.cuh"
#include "cuda/gemm_kernel.cuh"
#include "cuda/indexer.h"
#include "cuda/once_per_device.h"
#include "cuda/pdl.cuh"

namespace dsv4::cuda {

namespace {

using namespace detail;

constexpr int kScoreThreads = 256;
constexpr int kScoreWarps = kScoreThreads / 32;
constexpr int kWarpRows = 16;  // an m16 tile a warp
constexpr int kScoreTileRows = kScoreWarps * kWarpRows;
constexpr int kScoreHeads = 64;  // N of the MMAs: IH ≤ 64, zero-padded
constexpr int kTopkThreads = 1024;
// Candidates of the top-k's ordered compaction, 32 a word: the two counts of a window share one
// 32-bit word in its scans (at most 2^14 each), and a warp's run of words is at most 32.
constexpr int kTopkWindowWords = 512;
static_assert(32 * kTopkWindowWords <= (1 << 14) && kTopkWindowWords <= kTopkThreads,
              "packed counts; runs of 32 words at most");
// Keys a top-k block keeps in shared memory: 8192 (32 KB) with a block per token of a chunk, so
// that two blocks share an SM; up to 49 152 (192 KB) for one token alone (the decode step), whose
// later passes read from global memory (L2) what its shared memory does not hold.
constexpr int kTopkCached = 8192;
constexpr int kTopkCachedAlone = 49152;

// floor((p+1)/4) for token t of a launch starting at chunk token t0.
__device__ __forceinline__ int64_t visible_rows(const int* pos0, int t0, int t) {
  return (static_cast<int64_t>(*pos0) + t0 + t + 1) / 4;
}

// Before griddepcontrol.wait the kernels read only weights and the position (no kernel of a
// step writes it: advance_position, the step's last launch, is not overlapped by a PDL launch),
// and ask L2 for rows (a prefetch brings nothing into the SM; L2 is coherent). Every block waits
// before it returns: a grid must not complete before the one it depends on.
__global__ void prep_kernel(IndexerArgs a) {
  extern __shared__ __align__(16) float v[];  // [idh], then float2 angles [n_rot/2] (idh is a power of two)
  float2* cs = reinterpret_cast<float2*>(v + a.idh);
  const int h = blockIdx.x, t = blockIdx.y;
  const bool needed = visible_rows(a.pos0, a.t0, t) > a.top_k;
  const int64_t pos = static_cast<int64_t>(*a.pos0) + a.t0 + t;
  if (needed) rope_angles_shared(cs, a.n_rot / 2, a.omega, pos);
  pdl_wait();
  pdl_trigger();
  if (!needed) return;
  float* q = a.q + (static_cast<int64_t>(t) * a.IH + h) * a.idh;
  for (int i = threadIdx.x; i < a.idh; i += blockDim.x) v[i] = q[i];
  rope_apply_shared(v, a.idh, a.n_rot / 2, cs, false);
  if (a.sim) hadamard_fp4_shared(v, a.idh, true);
  for (int i = threadIdx.x; i < a.idh; i += blockDim.x) q[i] = v[i];
}

// Shared memory of the score kernel: q's hi and lo images ([head][dim] f16, each k16 slice's dims
// in the MMAs' order), the heads' weights, then two buffers of a row tile as the rows are (f32).
template <int kIdh>
struct ScoreSmem {
  static constexpr int kQPitch = kIdh + 8;     // halves: ldmatrix's 8 rows of 16 bytes in distinct banks
  static constexpr int kRowPitch = kIdh + 16;  // floats: a quarter warp's float4 reads (2 rows) in distinct banks
  __half q[2][kScoreHeads * kQPitch];
  float w[kScoreHeads];
  float rows[2][kScoreTileRows * kRowPitch];
};

// Position in a k16 slice of the MMAs of dim j of the slice: thread q of a quad holds positions
// 2q, 2q + 1 (its a0/b0 pair) and 2q + 8, 2q + 9 (a2/b1), here dims 4q .. 4q + 3, so that a lane
// reads its part of a row as one float4.
__device__ __forceinline__ int slice_position(int j) { return 2 * (j >> 2) + (j & 1) + 8 * ((j >> 1) & 1); }

template <int kIdh>
__global__ void __launch_bounds__(kScoreThreads) score_kernel(IndexerArgs a) {
  using S = ScoreSmem<kIdh>;
  constexpr int kSteps = kIdh / 16, kChunks = kIdh / 4;  // k16 slices; 16-byte chunks of a row
  extern __shared__ __align__(16) uint8_t smem_raw[];
  S& sm = *reinterpret_cast<S*>(smem_raw);
  const int t = blockIdx.y;
  const int64_t n_vis = visible_rows(a.pos0, a.t0, t);
  const int tiles = static_cast<int>((n_vis + kScoreTileRows - 1) / kScoreTileRows);
  const bool needed = n_vis > a.top_k && static_cast<int>(blockIdx.x) < tiles;
  // The block's first two tiles asked of L2 while the kernel before finishes (the newest row may be
  // this step's compressor's: a prefetch brings nothing into the SM, and L2 is coherent).
  if (needed) {
    for (int k = 0; k < 2; ++k) {
      const int64_t r0 = (blockIdx.x + static_cast<int64_t>(k) * gridDim.x) * kScoreTileRows;
      const int64_t bytes = (min(n_vis, r0 + kScoreTileRows) - r0) * kIdh * static_cast<int64_t>(sizeof(float));
      const char* base = reinterpret_cast<const char*>(a.rows + r0 * kIdh);
      for (int64_t o = threadIdx.x * 128; o < bytes; o += blockDim.x * 128) prefetch_l2(base + o);
    }
  }
  pdl_wait();  // launched with PDL (pdl.cuh)
  pdl_trigger();
  if (!needed) return;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;

  // A warp's 16 rows of tile i, the block's k-th, into buffer k % 2 by cp.async (rows past the
  // visible ones as zeros), one commit group a tile (empty past the last): each warp reads only the
  // rows it copied.
  const auto copy_tile = [&](int i, int k) {
    constexpr int kRowsPerCopy = 32 / kChunks;
    const int chunk = lane % kChunks, sub = lane / kChunks;
    if (i < tiles) {
#pragma unroll
      for (int r = 0; r < kWarpRows; r += kRowsPerCopy) {
        const int j = kWarpRows * warp + r + sub;  // the tile's row
        const int64_t row = static_cast<int64_t>(i) * kScoreTileRows + j;
        const bool in = row < n_vis;
        cp_async16_or_zero(sm.rows[k & 1] + j * S::kRowPitch + 4 * chunk, a.rows + (in ? row : 0) * kIdh + 4 * chunk,
                           in);
      }
    }
    cp_async_commit();
  };
  copy_tile(blockIdx.x, 0);

  // q of token t split (while the first tile lands): head h scaled by 2^e_q (split_exponent of its
  // largest |.|), hi and lo halves at their slice positions; the head's weight w_h/sqrt(idh·IH)·2^-e_q
  // (heads past IH: 0).
  const float w_scale = static_cast<float>(1.0 / sqrt(static_cast<double>(kIdh * a.IH)));
  const float* qt = a.q + static_cast<int64_t>(t) * a.IH * kIdh;
  bool q_lo = false;
  for (int h = warp; h < kScoreHeads; h += kScoreWarps) {
    constexpr int kPairs = kIdh / 2, kPerLane = (kPairs + 31) / 32;
    float2 v[kPerLane];
    float m = 0.0f;
#pragma unroll
    for (int e = 0; e < kPerLane; ++e) {
      const int i = lane + 32 * e;
      v[e] = h < a.IH && i < kPairs ? reinterpret_cast<const float2*>(qt + h * kIdh)[i] : make_float2(0.0f, 0.0f);
      m = fmaxf(m, fmaxf(fabsf(v[e].x), fabsf(v[e].y)));
    }
    const int e_q = split_exponent(warp_max(m));
    const float f = pow2f(e_q);
#pragma unroll
    for (int e = 0; e < kPerLane; ++e) {
      const int i = lane + 32 * e;
      if (i >= kPairs) break;
      const SplitPair sp = split_f16(v[e].x * f, v[e].y * f);
      const int d = 2 * i, at = h * S::kQPitch + (d & ~15) + slice_position(d & 15);  // dims d, d + 1: adjacent
      *reinterpret_cast<__half2*>(sm.q[0] + at) = sp.hi;
      *reinterpret_cast<__half2*>(sm.q[1] + at) = sp.lo;
      q_lo |= half2_bits(sp.lo) != 0u;
    }
    if (lane == 0) {
      sm.w[h] = h < a.IH ? __fmul_rn(a.w[static_cast<int64_t>(t) * a.IH + h], w_scale) * pow2f(-e_q) : 0.0f;
    }
  }
  q_lo = __syncthreads_or(q_lo) != 0;  // also: q and the weights are in shared memory

  // Per tile (the block's tiles blockIdx.x, + gridDim.x, ...; the next one's rows copied while this
  // one is scored), per warp its m16 tile of rows: C[r][h] = Σ_d row·2^e_r · q_h·2^e_q over all dims,
  // one MMA chain from zero (the small products first in each slice: q_lo·row_hi, q_hi·row_lo,
  // q_hi·row_hi, those with an all-zero lo skipped, as they would add exact zeros); then
  // score[r] = 2^-e_r·Σ_h w'_h·max(0, C[r][h]) (the powers of two commute with the ReLU).
  const int g = lane >> 2, qd = lane & 3;
  float wh[8][2];  // the weights of this thread's heads 8j + 2qd, + 1
#pragma unroll
  for (int j = 0; j < 8; ++j) {
    wh[j][0] = sm.w[8 * j + 2 * qd];
    wh[j][1] = sm.w[8 * j + 2 * qd + 1];
  }
  // ldmatrix.x4 of heads 16p.. for slice s: lane l addresses head 16p + 8·(l/16) + l%8, positions
  // 8·((l/8) % 2).. of the slice: registers {0, 1} are n8 tile 2p's B fragment, {2, 3} tile 2p + 1's.
  const uint32_t q_at = shared_address(sm.q[0]) +
                        2 * ((8 * (lane >> 4) + (lane & 7)) * S::kQPitch + 8 * ((lane >> 3) & 1));
  constexpr uint32_t kQLo = sizeof(sm.q[0]);
  float* const out = a.scores + static_cast<int64_t>(t) * a.score_cap;
#pragma unroll 1
  for (int i = blockIdx.x, k = 0; i < tiles; i += gridDim.x, ++k) {
    copy_tile(i + gridDim.x, k + 1);
    cp_async_wait<1>();
    __syncwarp();  // every lane's copies of tile i have landed
    const int64_t row0 = static_cast<int64_t>(i) * kScoreTileRows + kWarpRows * warp;
    if (row0 < n_vis) {
      // Rows g and g + 8 of the warp's m16 tile: this lane's dims 4qd .. 4qd + 3 of slice s at 16·s.
      const float* r0 = sm.rows[k & 1] + (kWarpRows * warp + g) * S::kRowPitch + 4 * qd;
      const float* r1 = r0 + 8 * S::kRowPitch;
      const auto slice = [](const float* r, int s) { return *reinterpret_cast<const float4*>(r + 16 * s); };
      float m0 = 0.0f, m1 = 0.0f;
#pragma unroll
      for (int s = 0; s < kSteps; ++s) {
        const float4 x0 = slice(r0, s), x1 = slice(r1, s);
        m0 = fmaxf(m0, fmaxf(fmaxf(fabsf(x0.x), fabsf(x0.y)), fmaxf(fabsf(x0.z), fabsf(x0.w))));
        m1 = fmaxf(m1, fmaxf(fmaxf(fabsf(x1.x), fabsf(x1.y)), fmaxf(fabsf(x1.z), fabsf(x1.w))));
      }
#pragma unroll
      for (int o = 1; o < 4; o <<= 1) {
        m0 = fmaxf(m0, __shfl_xor_sync(0xFFFFFFFFu, m0, o));
        m1 = fmaxf(m1, __shfl_xor_sync(0xFFFFFFFFu, m1, o));
      }
      const int e0 = split_exponent(m0), e1 = split_exponent(m1);
      const float f0 = pow2f(e0), f1 = pow2f(e1);
      float c[8][4] = {};
#pragma unroll
      for (int s = 0; s < kSteps; ++s) {
        const float4 x0 = slice(r0, s), x1 = slice(r1, s);
        const SplitPair p00 = split_f16(x0.x * f0, x0.y * f0), p01 = split_f16(x0.z * f0, x0.w * f0);
        const SplitPair p10 = split_f16(x1.x * f1, x1.y * f1), p11 = split_f16(x1.z * f1, x1.w * f1);
        const uint32_t a_hi[4] = {half2_bits(p00.hi), half2_bits(p10.hi), half2_bits(p01.hi), half2_bits(p11.hi)};
        const uint32_t a_lo[4] = {half2_bits(p00.lo), half2_bits(p10.lo), half2_bits(p01.lo), half2_bits(p11.lo)};
        const bool row_lo = __any_sync(0xFFFFFFFFu, (a_lo[0] | a_lo[1] | a_lo[2] | a_lo[3]) != 0u);
#pragma unroll
        for (int p = 0; p < 4; ++p) {
          uint32_t b_hi[4], b_lo[4];
          const uint32_t at = q_at + 2 * (16 * p * S::kQPitch + 16 * s);
          ldmatrix_x4(b_hi, at);
          if (q_lo) {
            ldmatrix_x4(b_lo, at + kQLo);
            mma_f16(c[2 * p], a_hi, b_lo);
            mma_f16(c[2 * p + 1], a_hi, b_lo + 2);
          }
          if (row_lo) {
            mma_f16(c[2 * p], a_lo, b_hi);
            mma_f16(c[2 * p + 1], a_lo, b_hi + 2);
          }
          mma_f16(c[2 * p], a_hi, b_hi);
          mma_f16(c[2 * p + 1], a_hi, b_hi + 2);
        }
      }
      // c[j][e]: row g (e < 2) or g + 8, head 8j + 2qd + e % 2.
      float s0 = 0.0f, s1 = 0.0f;
#pragma unroll
      for (int j = 0; j < 8; ++j) {
        s0 = fmaf(wh[j][0], fmaxf(c[j][0], 0.0f), s0);
        s0 = fmaf(wh[j][1], fmaxf(c[j][1], 0.0f), s0);
        s1 = fmaf(wh[j][0], fmaxf(c[j][2], 0.0f), s1);
        s1 = fmaf(wh[j][1], fmaxf(c[j][3], 0.0f), s1);
      }
#pragma unroll
      for (int o = 1; o < 4; o <<= 1) {
        s0 += __shfl_xor_sync(0xFFFFFFFFu, s0, o);
        s1 += __shfl_xor_sync(0xFFFFFFFFu, s1, o);
      }
      if (qd == 0) {
        if (row0 + g < n_vis) out[row0 + g] = s0 * pow2f(-e0);
        if (row0 + g + 8 < n_vis) out[row0 + g + 8] = s1 * pow2f(-e1);
      }
    }
    __syncwarp();  // every lane is past its reads of the buffer the next tile's copies take
  }
  cp_async_wait<0>();
}

// Larger score → larger key; NaN as -inf, -0 as +0 (cpu::top_k_desc compares values: -0 == +0, so
// the two tie and go by index).
__device__ __forceinline__ uint32_t score_key(float s) {
  if (isnan(s)) s = -INFINITY;
  if (s == 0.0f) s = 0.0f;
  const uint32_t b = __float_as_uint(s);
  return (b & 0x80000000u) ? ~b : (b | 0x80000000u);
}

// Shared-memory accesses by 32-bit address (cp_async.cuh's shared_address): through a generic
// pointer the top-k's loops rebuilt each key's address from SR_CgaCtaId (ncu, docs/PERF.md session
// 20). The conditional increment is a predicated red in PTX; ptxas still branches around it
// (BSSY/BSYNC per key), but without the generic address's conversion.
__device__ __forceinline__ uint32_t shared_u32(uint32_t addr) {
  uint32_t v;
  asm volatile("ld.shared.u32 %0, [%1];" : "=r"(v) : "r"(addr) : "memory");
  return v;
}
__device__ __forceinline__ uint4 shared_v4(uint32_t addr) {
  uint4 v;
  asm volatile("ld.shared.v4.u32 {%0, %1, %2, %3}, [%4];"
               : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
               : "r"(addr)
               : "memory");
  return v;
}
__device__ __forceinline__ void shared_store_v2_if(uint32_t addr, uint32_t x, uint32_t y, bool p) {
  asm volatile("{\n .reg .pred q;\n setp.ne.u32 q, %3, 0;\n @q st.shared.v2.u32 [%0], {%1, %2};\n}" ::"r"(addr), "r"(x),
               "r"(y), "r"(static_cast<uint32_t>(p))
               : "memory");
}
__device__ __forceinline__ void shared_increment_if(uint32_t addr, bool p) {
  asm volatile("{\n .reg .pred q;\n setp.ne.u32 q, %1, 0;\n @q red.shared.add.u32 [%0], 1;\n}" ::"r"(addr),
               "r"(static_cast<uint32_t>(p))
               : "memory");
}

// k rows of token t: `n` candidates (n > k) of scores + t·stride; selected + t·k gets them.
//
// One block on one SM: the kernel is bound by its instruction issue (ncu, H200, a decode at 41K:
// 82 600 warp instructions for 10 250 candidates in the version with 64-bit indices, a branch per
// key between cached and uncached keys, and four full passes), so every loop over the keys is lean:
// 32-bit indices, the cached keys read four at a time, the rest after them.
// The first pass reads the scores once, keeps the keys of the first key_cap candidates in shared
// memory (a decode's candidates, up to 49 152; later reads of the rest go to L2) and finds the bits
// every key shares (the AND and OR of all keys). The digit passes start below that common prefix
// (a decode's scores lie within a few binades: a first digit of the top 8 bits put nearly every key
// in one or two buckets) and end early once the bucket holding the k-th largest key is taken whole.
// Two barriers per digit pass: the histograms alternate between two buffers, the idle one cleared
// during the pass.
__global__ void __launch_bounds__(kTopkThreads) topk_kernel(const float* scores, int64_t stride, const int32_t* n_rows,
                                                            const int* pos0, int t0, int k, int32_t* selected,
                                                            int key_cap) {
  pdl_wait();  // launched with PDL: nothing before this line (pdl.cuh)
  pdl_trigger();
  extern __shared__ uint4 keys4[];  // [key_cap / 4]
  __shared__ int hist[2][256];
  __shared__ uint32_t warp_and[32], warp_or[32];
  __shared__ uint32_t warp_counts[32];
  __shared__ uint32_t s_prefix;
  __shared__ int s_need, s_whole;
  uint32_t* keys = reinterpret_cast<uint32_t*>(keys4);
  const uint32_t keys_at = shared_address(keys4);
  const int t = blockIdx.x;
  const int n = static_cast<int>(n_rows ? n_rows[t] : visible_rows(pos0, t0, t));  // < 2^31: positions are ints
  if (n <= k) return;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
  const float* sc = scores + static_cast<int64_t>(t) * stride;
  const int cached = n < key_cap ? n : key_cap, quads = cached / 4;
  const auto key_at = [&](int i) { return i < cached ? shared_u32(keys_at + 4 * i) : score_key(sc[i]); };
  // f(key) for every candidate: the cached quads, then the rest (a fixed order per thread).
  const auto for_each_key = [&](auto&& f) {
    for (int q = threadIdx.x; q < quads; q += blockDim.x) {
      const uint4 v = shared_v4(keys_at + 16 * q);
      f(v.x), f(v.y), f(v.z), f(v.w);
    }
    for (int i = 4 * quads + threadIdx.x; i < n; i += blockDim.x) f(key_at(i));
  };
  uint32_t all_and = ~0u, any_or = 0u;
  const bool sc_aligned = (reinterpret_cast<uintptr_t>(sc) & 15u) == 0;
  for (int q = threadIdx.x; q < quads; q += blockDim.x) {
    const float4 v = sc_aligned ? *reinterpret_cast<const float4*>(sc + 4 * q)
                                : make_float4(sc[4 * q], sc[4 * q + 1], sc[4 * q + 2], sc[4 * q + 3]);
    const uint4 key = make_uint4(score_key(v.x), score_key(v.y), score_key(v.z), score_key(v.w));
    keys4[q] = key;
    all_and &= key.x & key.y & key.z & key.w;
    any_or |= key.x | key.y | key.z | key.w;
  }
  for (int i = 4 * quads + threadIdx.x; i < n; i += blockDim.x) {
    const uint32_t key = score_key(sc[i]);
    if (i < cached) keys[i] = key;
    all_and &= key;
    any_or |= key;
  }
  all_and = __reduce_and_sync(0xFFFFFFFFu, all_and);
  any_or = __reduce_or_sync(0xFFFFFFFFu, any_or);
  if (lane == 0) {
    warp_and[warp] = all_and;
    warp_or[warp] = any_or;
  }
  for (int i = threadIdx.x; i < 256; i += blockDim.x) hist[0][i] = 0;
  __syncthreads();
  const uint32_t common_ones = __reduce_and_sync(0xFFFFFFFFu, lane < warps ? warp_and[lane] : ~0u);
  const uint32_t differ = common_ones ^ __reduce_or_sync(0xFFFFFFFFu, lane < warps ? warp_or[lane] : 0u);
  // The decided bits (mask) and their values (prefix): first the common prefix; all equal: every key.
  const int top = differ ? 31 - __clz(differ) : -1;  // the highest bit on which keys differ
  uint32_t mask = top < 0 ? ~0u : top == 31 ? 0u : ~0u << (top + 1);
  uint32_t prefix = common_ones & mask;
  int need = k;  // how many of the keys matching the prefix are still to be taken
  // Digit passes over bits [shift, shift + 8): the first right below the common prefix; a digit
  // reaching into decided bits is harmless (every counted key has their values).
  for (int pass = 0, shift = top < 0 ? -1 : top >= 7 ? top - 7 : 0; shift >= 0; ++pass) {
    int* h = hist[pass & 1];
    const uint32_t h_at = shared_address(h);
    for (int i = threadIdx.x; i < 256; i += blockDim.x) hist[(pass + 1) & 1][i] = 0;
    for_each_key(
        [&](uint32_t key) { shared_increment_if(h_at + 4 * ((key >> shift) & 255u), (key & mask) == prefix); });
    __syncthreads();
    // The bucket holding the need-th largest key: warp 0, lane l owning buckets 255-8l .. 248-8l;
    // the counts above each lane's buckets come from a prefix sum across lanes.
    if (threadIdx.x < 32) {
      int mine = 0;
#pragma unroll
      for (int j = 0; j < 8; ++j) mine += h[255 - 8 * lane - j];
      int above = warp_inclusive_scan(mine, lane) - mine;  // the counts of the lanes before
      if (above < need && above + mine >= need) {
        int b = 255 - 8 * lane;
        while (above + h[b] < need) above += h[b--];
        s_prefix = prefix | (static_cast<uint32_t>(b) << shift);
        s_need = need - above;
        s_whole = h[b] == need - above;
      }
    }
    __syncthreads();
    prefix = s_prefix;  // rewritten only after the next pass's first barrier
    need = s_need;
    mask |= 255u << shift;
    if (s_whole || shift == 0) break;
    shift = shift >= 8 ? shift - 8 : 0;
  }
  // Keys above the threshold (on the decided bits), then the first `need` equal ones in index order:
  // candidate i goes to (keys above before i) + min(equal keys before i, need). A window of
  // 32·kTopkWindowWords candidates at a time, 32 a word: warp w takes a contiguous run of the
  // window's words and writes two bitmaps by ballots (lane l: whether candidate 32j + l lies above
  // the threshold; equal to it), counting both as it goes; after the window's one barrier, lane l of
  // warp w takes word l of the run: the warps' totals before w (one scan of the 32 totals) and a scan
  // over the run's words give the counts before it, and it writes its set bits' candidates in
  // order. (Walking every candidate twice, counting then writing, took ≈ 22 000 of the launch's
  // 42 800 warp instructions at 41K: docs/PERF.md, session 20.)
  __shared__ uint2 window_bits[kTopkWindowWords];
  // Shared addresses passed through a shuffle: ptxas cannot rebuild them from SR_CgaCtaId in the
  // loop then (it did, four instructions a word, for the plain ones).
  const uint32_t lane_keys_at = __shfl_sync(0xFFFFFFFFu, keys_at, 0) + 4 * lane;
  const uint32_t window_bits_at = __shfl_sync(0xFFFFFFFFu, shared_address(window_bits), 0);
  int32_t* out = selected + static_cast<int64_t>(t) * k;
  int gt_done = 0, eq_done = 0;  // in the windows before
  for (int w0 = 0; w0 < n; w0 += 32 * kTopkWindowWords) {
    const int words = min(kTopkWindowWords, (n - w0 + 31) / 32);
    const int per_warp = (words + warps - 1) / warps;  // ≤ 32
    const int first = warp * per_warp, end = min(words, first + per_warp);
    uint32_t counts = 0;  // above | equal << 16 over the run (≤ 2^14 each)
    const auto add_word = [&](int j, uint32_t key, bool in) {
      key &= mask;
      const uint32_t gt = __ballot_sync(0xFFFFFFFFu, in && key > prefix);
      const uint32_t eq = __ballot_sync(0xFFFFFFFFu, in && key == prefix);
      shared_store_v2_if(window_bits_at + 8 * j, gt, eq, lane == 0);
      counts += static_cast<uint32_t>(__popc(gt)) | static_cast<uint32_t>(__popc(eq)) << 16;
    };
    // The run's words of cached keys first, from shared memory alone; then the rest (lanes past n
    // read the last key and count nothing).
    const int cached_end = max(first, min(end, (cached - w0) / 32));
    int j = first;
    for (; j < cached_end; ++j) add_word(j, shared_u32(lane_keys_at + 4 * (w0 + 32 * j)), true);
    for (; j < end; ++j) {
      const int i = w0 + 32 * j + lane;
      add_word(j, key_at(i < n ? i : n - 1), i < n);
    }
    if (lane == 0) warp_counts[warp] = counts;
    __syncthreads();
    // The packed sums stay below 2^31: warp_inclusive_scan's int adds them without a carry between
    // the halves.
    const int run_counts = lane < warps ? static_cast<int>(warp_counts[lane]) : 0;
    const int runs_upto = warp_inclusive_scan(run_counts, lane);
    const int warp_base = __shfl_sync(0xFFFFFFFFu, runs_upto - run_counts, warp);
    const uint32_t window_total = static_cast<uint32_t>(__shfl_sync(0xFFFFFFFFu, runs_upto, 31));
    j = first + lane;
    const uint2 b = j < end ? window_bits[j] : make_uint2(0u, 0u);
    const int mine = __popc(b.x) | __popc(b.y) << 16;
    const uint32_t before = static_cast<uint32_t>(warp_base + warp_inclusive_scan(mine, lane) - mine);
    int gt_at = gt_done + static_cast<int>(before & 0xFFFFu), eq_at = eq_done + static_cast<int>(before >> 16);
    for (uint32_t left = b.x | b.y; left != 0u; left &= left - 1u) {
      const int bit = __ffs(static_cast<int>(left)) - 1;
      const int i = w0 + 32 * j + bit;
      if ((b.x >> bit) & 1u) {
        out[gt_at + min(eq_at, need)] = i;
        ++gt_at;
      } else {
        if (eq_at < need) out[gt_at + eq_at] = i;
        ++eq_at;
      }
    }
    gt_done += static_cast<int>(window_total & 0xFFFFu);
    eq_done += static_cast<int>(window_total >> 16);
    if (w0 + 32 * kTopkWindowWords < n) __syncthreads();  // this window's words read before the next's are written
  }
}

// A block per token; its key cache sized by how many tokens share the GPU.
Status launch_top_k(const float* scores, int64_t stride, const int32_t* n_rows, const int* pos0, int t0, int T, int k,
                    int32_t* selected, cudaStream_t stream) {
  const int64_t cap = T == 1 ? std::min<int64_t>(stride, kTopkCachedAlone) : kTopkCached;
  int device = 0;
  DSV4_CUDA_TRY(cudaGetDevice(&device));
  DSV4_CUDA_TRY(once_per_device(device, [device] {
    return allow_optin_smem(device, reinterpret_cast<const void*>(topk_kernel));
  }));
  const size_t smem = static_cast<size_t>(cap) * sizeof(uint32_t);
  DSV4_CUDA_TRY(launch_pdl(topk_kernel, dim3(T), dim3(kTopkThreads), smem, stream, scores, stride, n_rows, pos0, t0, k,
                           selected, static_cast<int>(cap)));
  return Status();
}

// A block per SM (its shared memory takes most of one) and token, each walking its tiles; fewer
// where the score rows are fewer tiles. (The grid is fixed when a decode graph is captured, so it
// follows the score capacity, not the position.)
template <int kIdh>
Status launch_scores(const IndexerArgs& a, cudaStream_t stream) {
  int device = 0, sms = 0;
  DSV4_CUDA_TRY(cudaGetDevice(&device));
  DSV4_CUDA_TRY(once_per_device(device, [device] {
    return allow_optin_smem(device, reinterpret_cast<const void*>(score_kernel<kIdh>));
  }));
  DSV4_CUDA_TRY(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
  const int64_t tiles = (a.score_cap + kScoreTileRows - 1) / kScoreTileRows;
  const unsigned blocks = static_cast<unsigned>(std::min<int64_t>(tiles, std::max(sms, 1)));
  DSV4_CUDA_TRY(
      launch_pdl(score_kernel<kIdh>, dim3(blocks, a.T), dim3(kScoreThreads), sizeof(ScoreSmem<kIdh>), stream, a));
  return Status();
}

}  // namespace

Status indexer_select(const IndexerArgs& a, cudaStream_t stream) {
  if (a.T <= 0) return Status();
  if (a.IH < 1 || a.IH > kScoreHeads || (a.idh != 32 && a.idh != 64 && a.idh != 128)) {
    return make_error("indexer: unsupported geometry (1..64 heads of 32, 64 or 128 dims)");
  }
  if (reinterpret_cast<uintptr_t>(a.rows) % 16 != 0) return make_error("indexer: rows must be 16-byte aligned");
  DSV4_CUDA_TRY(launch_pdl(prep_kernel, dim3(a.IH, a.T), dim3(128),
                           a.idh * sizeof(float) + (a.n_rot / 2) * sizeof(float2), stream, a));
  if (a.score_cap > 0) {
    switch (a.idh) {
      case 32: DSV4_TRY(launch_scores<32>(a, stream)); break;
      case 64: DSV4_TRY(launch_scores<64>(a, stream)); break;
      default: DSV4_TRY(launch_scores<128>(a, stream)); break;
    }
  }
  DSV4_TRY(launch_top_k(a.scores, a.score_cap, nullptr, a.pos0, a.t0, a.T, a.top_k, a.selected, stream));
  return cuda_status(cudaGetLastError(), "indexer kernels");
}

Status top_k_rows(const float* scores, int64_t stride, const int32_t* n, int T, int k, int32_t* selected,
                  cudaStream_t stream) {
  if (T <= 0) return Status();
  DSV4_TRY(launch_top_k(scores, stride, n, nullptr, 0, T, k, selected, stream));
  return cuda_status(cudaGetLastError(), "top-k kernel");
}

}  // namespace dsv4::cuda
