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
// As it writes the scores, the block counts their bins (indexer_topk.cuh) in shared memory and adds
// them to the token's histogram in IndexerArgs::topk_scratch, where the top-k (indexer_topk.cu)
// starts.
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "cuda/check.h"
#include "cuda/cp_async.cuh"
#include "cuda/device_info.h"
#include "cuda/device_math.cuh"
#include "cuda/f16_split.cuh"
#include "cuda/gemm_kernel.cuh"
#include "cuda/indexer.h"
#include "cuda/indexer_topk.cuh"
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
// in the MMAs' order), the heads' weights, the block's histogram of its scores' bins, then two
// buffers of a row tile as the rows are (f32).
template <int kIdh>
struct ScoreSmem {
  static constexpr int kQPitch = kIdh + 8;     // halves: ldmatrix's 8 rows of 16 bytes in distinct banks
  static constexpr int kRowPitch = kIdh + 16;  // floats: a quarter warp's float4 reads (2 rows) in distinct banks
  __half q[2][kScoreHeads * kQPitch];
  float w[kScoreHeads];
  uint32_t bins[kIndexerScoreBins];
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
  const bool count_bins = a.topk_scratch != nullptr && n_vis >= a.topk_bins_from;
  if (count_bins) {
    for (int i = threadIdx.x; i < kIndexerScoreBins; i += blockDim.x) sm.bins[i] = 0u;
  }

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
  q_lo = __syncthreads_or(q_lo) != 0;  // also: q, the weights and the cleared bins are in shared memory

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
      // Per slice, each accumulator's chain as one order: q_lo·row_hi, q_hi·row_lo, q_hi·row_hi. The lo
      // groups are skipped whole: q_lo is the block's (the tile loop compiled with and without it),
      // row_lo the warp's and slice's (a branch around its eight MMAs). As predicated MMAs they
      // issued with their lo halves zero and waited in the accumulators' chains (ncu, docs/PERF.md
      // session 29).
      float c[8][4] = {};
      const auto mma_slices = [&](auto q_has_lo) {
#pragma unroll
        for (int s = 0; s < kSteps; ++s) {
          const float4 x0 = slice(r0, s), x1 = slice(r1, s);
          const SplitPair p00 = split_f16(x0.x * f0, x0.y * f0), p01 = split_f16(x0.z * f0, x0.w * f0);
          const SplitPair p10 = split_f16(x1.x * f1, x1.y * f1), p11 = split_f16(x1.z * f1, x1.w * f1);
          const uint32_t a_hi[4] = {half2_bits(p00.hi), half2_bits(p10.hi), half2_bits(p01.hi), half2_bits(p11.hi)};
          const uint32_t a_lo[4] = {half2_bits(p00.lo), half2_bits(p10.lo), half2_bits(p01.lo), half2_bits(p11.lo)};
          const bool row_lo = __any_sync(0xFFFFFFFFu, (a_lo[0] | a_lo[1] | a_lo[2] | a_lo[3]) != 0u);
          uint32_t b_hi[4][4];
#pragma unroll
          for (int p = 0; p < 4; ++p) ldmatrix_x4(b_hi[p], q_at + 2 * (16 * p * S::kQPitch + 16 * s));
          if constexpr (decltype(q_has_lo)::value) {
#pragma unroll
            for (int p = 0; p < 4; ++p) {
              uint32_t b_lo[4];
              ldmatrix_x4(b_lo, q_at + 2 * (16 * p * S::kQPitch + 16 * s) + kQLo);
              mma_f16(c[2 * p], a_hi, b_lo);
              mma_f16(c[2 * p + 1], a_hi, b_lo + 2);
            }
          }
          if (row_lo) {
#pragma unroll
            for (int p = 0; p < 4; ++p) {
              mma_f16(c[2 * p], a_lo, b_hi[p]);
              mma_f16(c[2 * p + 1], a_lo, b_hi[p] + 2);
            }
          }
#pragma unroll
          for (int p = 0; p < 4; ++p) {
            mma_f16(c[2 * p], a_hi, b_hi[p]);
            mma_f16(c[2 * p + 1], a_hi, b_hi[p] + 2);
          }
        }
      };
      if (q_lo) {
        mma_slices(std::true_type{});
      } else {
        mma_slices(std::false_type{});
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
        const float v0 = s0 * pow2f(-e0), v1 = s1 * pow2f(-e1);
        const bool in0 = row0 + g < n_vis, in1 = row0 + g + 8 < n_vis;
        if (in0) out[row0 + g] = v0;
        if (in1) out[row0 + g + 8] = v1;
        if (count_bins && in0) atomicAdd(sm.bins + score_bin(score_key(v0)), 1u);
        if (count_bins && in1) atomicAdd(sm.bins + score_bin(score_key(v1)), 1u);
      }
    }
    __syncwarp();  // every lane is past its reads of the buffer the next tile's copies take
  }
  cp_async_wait<0>();
  if (count_bins) {
    __syncthreads();
    add_bins(sm.bins, a.topk_scratch + static_cast<int64_t>(t) * kIndexerTopkScratchWords);
  }
}

// A block per SM (its shared memory takes most of one) and token, each walking its tiles; fewer
// where the score rows are fewer tiles. (The grid is fixed when a decode graph is captured, so it
// follows the score capacity, not the position.)
template <int kIdh>
Status launch_scores(const IndexerArgs& a, cudaStream_t stream) {
  int device = 0;
  DSV4_CUDA_TRY(cudaGetDevice(&device));
  DSV4_CUDA_TRY(once_per_device(device, [device] {
    return allow_optin_smem(device, reinterpret_cast<const void*>(score_kernel<kIdh>));
  }));
  const int sms = device_info().sms;
  const int64_t tiles = (a.score_cap + kScoreTileRows - 1) / kScoreTileRows;
  const unsigned blocks = static_cast<unsigned>(std::min<int64_t>(tiles, std::max(sms, 1)));
  DSV4_CUDA_TRY(
      launch_pdl(score_kernel<kIdh>, dim3(blocks, a.T), dim3(kScoreThreads), sizeof(ScoreSmem<kIdh>), stream, a));
  return Status();
}

Status check_args(const IndexerArgs& a) {
  if (a.IH < 1 || a.IH > kScoreHeads || (a.idh != 32 && a.idh != 64 && a.idh != 128)) {
    return make_error("indexer: unsupported geometry (1..64 heads of 32, 64 or 128 dims)");
  }
  if (reinterpret_cast<uintptr_t>(a.rows) % 16 != 0 || reinterpret_cast<uintptr_t>(a.topk_scratch) % 16 != 0) {
    return make_error("indexer: rows and top-k scratch must be 16-byte aligned");
  }
  return Status();
}

}  // namespace

Status indexer_queries(const IndexerArgs& a, cudaStream_t stream) {
  if (a.T <= 0) return Status();
  DSV4_TRY(check_args(a));
  DSV4_CUDA_TRY(launch_pdl(prep_kernel, dim3(a.IH, a.T), dim3(128),
                           a.idh * sizeof(float) + (a.n_rot / 2) * sizeof(float2), stream, a));
  return cuda_status(cudaGetLastError(), "indexer query kernel");
}

Status indexer_rank(const IndexerArgs& a, cudaStream_t stream) {
  if (a.T <= 0) return Status();
  DSV4_TRY(check_args(a));
  if (a.score_cap > 0) {
    switch (a.idh) {
      case 32: DSV4_TRY(launch_scores<32>(a, stream)); break;
      case 64: DSV4_TRY(launch_scores<64>(a, stream)); break;
      default: DSV4_TRY(launch_scores<128>(a, stream)); break;
    }
  }
  DSV4_TRY(launch_top_k(a.scores, a.score_cap, nullptr, a.pos0, a.t0, a.T, a.top_k, a.topk_scratch, a.topk_bins_from,
                        a.selected, stream));
  return cuda_status(cudaGetLastError(), "indexer kernels");
}

Status indexer_select(const IndexerArgs& a, cudaStream_t stream) {
  DSV4_TRY(indexer_queries(a, stream));
  return indexer_rank(a, stream);
}

}  // namespace dsv4::cuda
