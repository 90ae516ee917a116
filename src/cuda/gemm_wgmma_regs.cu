// The routed experts' gate/up (IQ2_XXS weights, split mode, grouped only) on tiles whose W is
// decoded straight into the wgmma's A registers: 16 tokens (GemmTile::kWgmmaNarrow and the 16-token
// side of kWgmmaNarrowPair; docs/PERF.md, session 24) and 64 tokens (GemmTile::kWgmma64, the
// 64-token side of both pairs; session 25). ncu of gemm_wgmma.cu's narrow tile at a 128-token
// chunk: its consumers waited for the producers' decode (a fifth of their samples spent spinning on
// the full barrier) and shared memory was 82 % busy, most of it the decoded tile's round trip
// (written by the producers, read back as the MMAs' A operand) and the grid lookups; its 64- and
// 128-token tiles are bound by shared memory too (sessions 9–15: the decoded W tile read by the
// tensor cores once for x_hi and once for x_lo). Here every warp decodes the weights it multiplies:
// no producer warpgroup, no decoded tile, W read from registers.
//
//   tile       kBT tokens × 256 features: four warpgroups, warpgroup g owns features 64g..64g+63
//              (one m64 fragment), each thread two of them (rows r and r + 8 of its warp's 16).
//              (The 64-token tile on two warpgroups, with a temporary a half as the 16-token one,
//              232 registers, ran at 1.4× the producer/consumer tile's time: docs/PERF.md.)
//   k-step     64 columns, two 32-column halves (one IQ2_XXS sub-block each: one scale d/8·(2ls+1)
//              per half and feature). In a half, thread q = lane % 4 decodes grid point q (columns
//              8q..8q+7) of its two rows into the A registers of the half's two k16 slices: f16
//              pair w of the point goes to slice w / 2, pair position q + 4·(w % 2). So the MMAs
//              see the half's columns permuted: word (f16 pair) 4q + w of a half sits at 4w + q.
//              X's rows are stored with the same permutation (a 4 × 4 transpose of 32-bit words
//              per half), so each product pairs the weight and activation of one column.
//   X          the tokens' x_hi rows then their x_lo rows (kXBytes a step), stored into the permuted
//              tile kXAhead steps before the MMAs read it, counted on that step's x_full barrier;
//              every warp arrives on x_empty once its MMAs are done. 16 tokens: every thread moves
//              8 bytes a step through registers, the hi and lo rows are one n32 B operand (each
//              weight read by the tensor cores once per k16). 64 tokens: every thread copies 8
//              words a step by cp.async (a warp one row's 32 words at a time), the hi and lo rows
//              are two n64 B operands.
//   W          raw IQ2_XXS super-blocks (256 columns, four k-steps) by TMA, one stage ahead into a
//              ring of kRawSlots, issued by thread 0; every warp arrives on raw_empty after a
//              stage's last step.
//   numbers    exact code × x products on the tensor cores, summed from zero into a temporary that
//              enters acc by one FFMA with its scale: the split's bound (other bits than
//              gemm_wgmma.cu's tiles, whose slices hold other columns, and than each other).
//              16 tokens: a temporary per half, x_hi and x_lo in two chains added in f32 (as
//              gemm_wgmma_narrow.cuh), scale d/8·(2ls + 1). 64 tokens: the codes times 2ls + 1
//              (≤ 1 333, exact in f16: CodesIQ2_XXS::one_group8_odd), one chain per 256-column
//              block (x_lo then x_hi of each k16 slice), scale d/8: 32 accumulator registers
//              fewer and an FFMA a block instead of a half, so four warpgroups fit 128 registers.
//   pipeline   step t's MMAs are issued, step t + 1 is decoded into the other register set while
//              they run, then step t's scales are applied (64 tokens: at a block's last step; every
//              group is waited for within its step: one left in flight around the loop makes ptxas
//              serialise the wgmma).
// Rows past the tile's end are computed from copies of its last row and never stored; features
// past n_out from TMA's zero rows (scale 0).
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "cuda/cp_async.cuh"
#include "cuda/gemm_codes.cuh"
#include "cuda/gemm_kernel.cuh"
#include "cuda/gemm_launch.h"
#include "cuda/mbarrier.cuh"
#include "cuda/tma_gemm_launch.cuh"
#include "cuda/wgmma.cuh"

namespace dsv4::cuda::detail {

namespace {

using D = CodesIQ2_XXS;
constexpr int kStepsPerStage = D::kStageElems / kGemmK;  // a raw stage is one super-block: 4 steps
constexpr int kSpan = (D::kMisalign + D::kStageBytes + 15) / 16 * 16;
constexpr int kRawSlots = 3;  // stage r + 1 goes into the slot of stage r − 2
constexpr int kXSlots = 4;
constexpr int kXAhead = 2;  // X of step t + kXAhead is written during step t
constexpr int kTableBytes = (D::kTableBytes + 127) / 128 * 128;
constexpr int kThreads = 512, kWarps = kThreads / 32;  // four warpgroups
constexpr int kBF = 256;                               // features a CTA: 64 a warpgroup
constexpr int kRawBytes = kBF * kSpan;
static_assert(kXAhead < kXSlots && kRawBytes % 128 == 0);

template <int kBT>
struct RegsTile {
  static_assert(kBT == kFewRows || kBT == 64, "the 16- and 64-token tiles");
  static constexpr bool kNarrow = kBT == kFewRows;
  static constexpr int kXBytes = 2 * kBT * 128;  // hi rows, then lo rows, 128-byte rows
  // From a 1024-aligned base: X tiles, raw ring, lookup tables, barriers.
  static constexpr int kRawOffset = kXSlots * kXBytes;
  static constexpr int kTableOffset = kRawOffset + kRawSlots * kRawBytes;
  static constexpr int kBarOffset = kTableOffset + kTableBytes;
  static constexpr int kSmem = 1024 + kBarOffset + (2 * kXSlots + 2 * kRawSlots) * 8;
  // A thread's accumulators (kBT / 8 column pairs × its two rows) and a temporary (16 tokens: a
  // half's hi and lo columns of one n32 fragment; 64 tokens: a block's n64 fragment).
  static constexpr int kAcc = kBT / 2, kTmp = kNarrow ? 16 : 32;
  // X rows a warp copies (64 tokens).
  static constexpr int kXRowsPerWarp = 2 * kBT / kWarps;
  static_assert(kXBytes == kThreads * (kNarrow ? 8 : 32), "16 tokens: 8 bytes of X a thread; 64: 8 words");
  static_assert(kSmem <= 227 * 1024);
};

template <int kBT>
__global__ void __launch_bounds__(kThreads, 1)
    gemm_regs_kernel(__grid_constant__ const GemmLaunch p, __grid_constant__ const CUtensorMap w_map) {
  using T = RegsTile<kBT>;
  constexpr int kXBytes = T::kXBytes;
  extern __shared__ uint8_t smem_raw[];
  const uint32_t base = (shared_address(smem_raw) + 1023u) & ~1023u;
  uint8_t* const base_ptr = smem_raw + (base - shared_address(smem_raw));
  const uint32_t xs = base, raw = base + T::kRawOffset;
  const uint8_t* const raw_ptr = base_ptr + T::kRawOffset;
  uint8_t* const tables = base_ptr + T::kTableOffset;
  const uint32_t x_full = base + T::kBarOffset, x_empty = x_full + 8 * kXSlots;
  const uint32_t raw_full = x_empty + 8 * kXSlots, raw_empty = raw_full + 8 * kRawSlots;

  int row0, row_end, expert;
  if (!gemm_find_tile(p, blockIdx.y, kBT, &row0, &row_end, &expert)) return;
  const int tile_end = min(row0 + kBT, row_end);
  const int f0 = blockIdx.x * kBF;
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, q = lane & 3;
  const int n_steps = p.n_in / kGemmK, n_stages = n_steps / kStepsPerStage;

  if (tid == 0) {
    for (int s = 0; s < kXSlots; ++s) {
      mbar_init(x_full + 8 * s, kThreads);
      mbar_init(x_empty + 8 * s, kWarps);
    }
    for (int r = 0; r < kRawSlots; ++r) {
      mbar_init(raw_full + 8 * r, 1);
      mbar_init(raw_empty + 8 * r, kWarps);
    }
    mbar_init_fence();
  }
  D::load_tables(tables, p.iq2_tables);
  __syncthreads();

  auto issue_raw = [&](int stage) {
    const uint32_t slot = static_cast<uint32_t>(stage % kRawSlots);
    mbar_arrive_expect_tx(raw_full + 8 * slot, kRawBytes);
    tma_load_3d(raw + slot * kRawBytes, &w_map, (stage * D::kStageBytes) & ~15, f0, expert, raw_full + 8 * slot);
  };
  if (tid == 0) issue_raw(0);

  // X: word w of chunk c (16 bytes) of a row goes to chunk 4·(c / 4) + w, word c % 4, of the
  // permuted row, which is the 128-byte swizzle's chunk (that ^ row % 8). Rows 0..kBT − 1 are x_hi,
  // kBT..2kBT − 1 x_lo; rows past the tile's end repeat its last row. 32-bit element offsets
  // (gemm.cc checks x rows · x_stride < 2^31).
  // 16 tokens: thread tid moves words 2·(tid % 2) and + 1 of chunk (tid / 2) % 8 of tile row
  // tid / 16 through registers, loaded one step before it is stored.
  const int xrow = tid >> 4;
  const uint32_t xoff = static_cast<uint32_t>(
      gemm_x_row(p, min(row0 + (xrow & (kBT - 1)), tile_end - 1)) * p.x_stride + ((tid >> 1) & 7) * 8 + 4 * (tid & 1));
  auto load_x = [&](int u) {
    const __half* const x = (xrow >= kBT ? p.x_lo : p.x) + xoff + static_cast<uint32_t>(u) * kGemmK;
    return u < n_steps ? *reinterpret_cast<const uint2*>(x) : make_uint2(0, 0);
  };
  auto store_x = [&](int u, const uint2& v) {
    const int s = u % kXSlots, r7 = xrow & 7;
    const int c = (tid >> 1) & 7, c0 = (c & 4) + 2 * (tid & 1);
    uint8_t* const dst = base_ptr + s * kXBytes + xrow * 128 + 4 * (c & 3);
    *reinterpret_cast<uint32_t*>(dst + ((c0 ^ r7) << 4)) = v.x;
    *reinterpret_cast<uint32_t*>(dst + (((c0 + 1) ^ r7) << 4)) = v.y;
    // Before the arrival: the tile is read by the tensor cores (async proxy), the readers acquire
    // it through the barrier.
    fence_proxy_async();
    mbar_arrive(x_full + 8 * s);
  };
  // 64 tokens: warp w copies tile rows 8w..8w + 7, a row's 32 words (lane l word l) by one
  // coalesced 4-byte cp.async each, straight to their permuted places; each thread's arrival counts
  // when its copies have landed, and the readers fence the async proxy after the barrier. (Through
  // registers, each thread loading a half-row in 8-byte pieces, the loads touched 32 sectors a
  // warp instruction and their latency was the kernel's largest stall: ncu, docs/PERF.md session 25.)
  constexpr int kXRows = T::kNarrow ? 1 : T::kXRowsPerWarp;
  uint32_t xrow_off[kXRows];  // bytes (< 2^32: x rows · x_stride < 2^31 elements)
  const uint32_t x_lane_off = ((((lane >> 4) * 4 + (lane & 3)) << 4) | (4 * ((lane >> 2) & 3)));
  if constexpr (!T::kNarrow) {
#pragma unroll
    for (int i = 0; i < kXRows; ++i) {
      const int r = kXRows * warp + i;
      xrow_off[i] = 2u * static_cast<uint32_t>(gemm_x_row(p, min(row0 + (r & (kBT - 1)), tile_end - 1)) * p.x_stride);
    }
  }
  auto copy_x = [&](int u) {
    const int s = u % kXSlots;
    // One 64-bit address a step, a 32-bit byte offset a row (a 64-bit add: two instructions).
    const uint8_t* const x = reinterpret_cast<const uint8_t*>((kXRows * warp >= kBT ? p.x_lo : p.x) +
                                                              static_cast<uint32_t>(u) * kGemmK + 2 * lane);
    uint8_t* const rows = base_ptr + s * kXBytes + kXRows * warp * 128;
    static_assert(kXRows % 8 == 0 || T::kNarrow, "a warp's first row is a swizzle period's first");
#pragma unroll
    for (int i = 0; i < kXRows; ++i) cp_async4(rows + i * 128 + (x_lane_off ^ ((i & 7) << 4)), x + xrow_off[i]);
    mbar_arrive_on_cp_async(x_full + 8 * s);
  };
  uint2 x_next;
  if constexpr (T::kNarrow) {
#pragma unroll
    for (int u = 0; u < kXAhead; ++u) store_x(u, load_x(u));
    x_next = load_x(kXAhead);
  } else {
#pragma unroll
    for (int u = 0; u < kXAhead; ++u) copy_x(u);
  }

  // This thread's feature rows within the tile (rows r and r + 8 of its warp's 16).
  const int frow = 64 * (warp >> 2) + 16 * (warp & 3) + (lane >> 2);
  const uint8_t* const grid = tables + 16 * D::grid_copy();

  // Decode of step t into a (the A registers of its four k16 slices) and d (the scales, [half][row]):
  // row i, half h, grid point q into slices 2h and 2h + 1. The rows' d/8 are read once a stage.
  float d8[2] = {0.0f, 0.0f};
  auto decode = [&](int t, uint32_t (&a)[4][4], float (&d)[2][2]) {
    const int stage = t / kStepsPerStage;
    const uint8_t* const rows =
        raw_ptr + (stage % kRawSlots) * kRawBytes + frow * kSpan + ((stage * D::kStageBytes) & 15);
    if (t % kStepsPerStage == 0) {
      // Called during step t − 1, after this thread's X stores of step t − 1 + kXAhead waited for
      // every warp's MMAs of step t − 1 + kXAhead − kXSlots = t − 3, so every warp has decoded step
      // t − 2 and finished stage − 2: its slot takes stage + 1.
      if (tid == 0 && stage + 1 < n_stages) {
        const int reused = stage + 1 - kRawSlots;  // the stage whose slot stage + 1 takes
        if (reused >= 0) mbar_wait(raw_empty + 8 * (reused % kRawSlots), (reused / kRawSlots) & 1);
        issue_raw(stage + 1);
      }
      mbar_wait(raw_full + 8 * (stage % kRawSlots), (stage / kRawSlots) & 1);
#pragma unroll
      for (int i = 0; i < 2; ++i) d8[i] = D::block_d8(rows + 8 * i * kSpan);
    }
#pragma unroll
    for (int i = 0; i < 2; ++i) {
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const int e = (t % kStepsPerStage) * kGemmK + 32 * h;
        uint4 v;
        if constexpr (T::kNarrow) {
          float odd;
          v = D::one_group8(rows + 8 * i * kSpan, e, q, grid, tables, &odd);
          d[h][i] = d8[i] * odd;
        } else {
          v = D::one_group8_odd(rows + 8 * i * kSpan, e, q, grid, tables);
          d[h][i] = d8[i];
        }
        a[2 * h][i] = v.x;
        a[2 * h][2 + i] = v.y;
        a[2 * h + 1][i] = v.z;
        a[2 * h + 1][2 + i] = v.w;
      }
    }
    if (t % kStepsPerStage == kStepsPerStage - 1) {
      __syncwarp();
      if (lane == 0) mbar_arrive(raw_empty + 8 * (stage % kRawSlots));
    }
  };

  // 16 tokens: a temporary a half (tmp0, tmp1); 64 tokens: tmp0 takes a block's four steps.
  float acc[T::kAcc], tmp0[T::kTmp], tmp1[T::kNarrow ? T::kTmp : 1];
#pragma unroll
  for (int e = 0; e < T::kAcc; ++e) acc[e] = 0.0f;
#pragma unroll
  for (int e = 0; e < T::kTmp; ++e) tmp0[e] = 0.0f;
#pragma unroll
  for (float& v : tmp1) v = 0.0f;
  // acc[4j + c] += scale(row c / 2)·(the temporary's products): token 8j + 2q + c % 2 (16 tokens:
  // tmp_hi + tmp_lo, its lo column is pair j + 2).
  auto scale_add = [&](const float (&tmp)[T::kTmp], const float (&d)[2]) {
#pragma unroll
    for (int e = 0; e < T::kAcc; ++e) {
      const float products = T::kNarrow ? tmp[e] + tmp[e + 8] : tmp[e];
      acc[e] = fmaf(d[(e & 3) >> 1], products, acc[e]);
    }
  };
  // Half h's MMAs into tmp, slices 2h and 2h + 1 (B descriptors advance 32 bytes a k16 slice); 16
  // tokens from zero, 64 tokens x_lo then x_hi rows of each slice, from zero where `first`.
  auto half_mmas = [&](float (&tmp)[T::kTmp], const uint32_t (&a)[4][4], int h, uint64_t x_desc, bool first) {
    if constexpr (T::kNarrow) {
      wgmma_m64n32k16_f16_ra(tmp, a[2 * h], x_desc + 4 * h, false);
      wgmma_m64n32k16_f16_ra(tmp, a[2 * h + 1], x_desc + 4 * h + 2, true);
    } else {
      const uint64_t lo_desc = x_desc + (kBT * 128 >> 4);  // the lo rows, 8 swizzle periods on
      wgmma_m64n64k16_f16_ra(tmp, a[2 * h], lo_desc + 4 * h, !first);
      wgmma_m64n64k16_f16_ra(tmp, a[2 * h], x_desc + 4 * h, true);
      wgmma_m64n64k16_f16_ra(tmp, a[2 * h + 1], lo_desc + 4 * h + 2, true);
      wgmma_m64n64k16_f16_ra(tmp, a[2 * h + 1], x_desc + 4 * h + 2, true);
    }
  };
  // Step t: X of step t + kXAhead stored, step t's MMAs issued with a, step t + 1 decoded into
  // a_next meanwhile, then step t's scales applied (64 tokens: at its block's last step).
  auto step = [&](int t, const uint32_t (&a)[4][4], const float (&d)[2][2], uint32_t (&a_next)[4][4],
                  float (&d_next)[2][2]) {
    const int s = t % kXSlots;
    if (t + kXAhead < n_steps) {
      const int u = t + kXAhead;
      if (u >= kXSlots) mbar_wait(x_empty + 8 * (u % kXSlots), ((u / kXSlots) & 1) ^ 1);
      if constexpr (T::kNarrow) {
        store_x(u, x_next);
        x_next = load_x(u + 1);
      } else {
        copy_x(u);
      }
    }
    mbar_wait(x_full + 8 * s, (t / kXSlots) & 1);
    if constexpr (!T::kNarrow) fence_proxy_async();  // X landed through cp.async (generic proxy)
    const uint64_t x_desc = wgmma_desc_sw128(xs + s * kXBytes);
    wgmma_fence_operands(tmp0);
    wgmma_fence_operands(tmp1);
    wgmma_fence();
    if constexpr (T::kNarrow) {
      half_mmas(tmp0, a, 0, x_desc, true);
      half_mmas(tmp1, a, 1, x_desc, true);
    } else {
      half_mmas(tmp0, a, 0, x_desc, t % kStepsPerStage == 0);
      half_mmas(tmp0, a, 1, x_desc, false);
    }
    wgmma_commit();
    if (t + 1 < n_steps) decode(t + 1, a_next, d_next);
    wgmma_wait<0>();
    wgmma_fence_operands(tmp0);
    wgmma_fence_operands(tmp1);
    __syncwarp();
    if (lane == 0) mbar_arrive(x_empty + 8 * s);
    if constexpr (T::kNarrow) {
      scale_add(tmp0, d[0]);
      scale_add(tmp1, d[1]);
    } else if (t % kStepsPerStage == kStepsPerStage - 1) {
      scale_add(tmp0, d[0]);
    }
  };

  uint32_t a0[4][4], a1[4][4];
  float d0[2][2], d1[2][2];
  decode(0, a0, d0);
  for (int t = 0; t < n_steps; t += 2) {  // n_steps is even (IQ2_XXS n_in: a multiple of 2048)
    step(t, a0, d0, a1, d1);
    step(t + 1, a1, d1, a0, d0);
  }

  // The records of this thread's tokens 8·(k / 2) + 2q + k % 2, all read before the first store (a
  // load after a store to y would wait for it).
  constexpr int kPairs = kBT / 8;  // column pairs j of the accumulators
  float rec_scale[2 * kPairs];
  int rec_out[2 * kPairs];
#pragma unroll
  for (int k = 0; k < 2 * kPairs; ++k) {
    gemm_row_record(p, row0 + 8 * (k >> 1) + 2 * q + (k & 1), tile_end, &rec_scale[k], &rec_out[k]);
  }
#pragma unroll
  for (int j = 0; j < kPairs; ++j) {
#pragma unroll
    for (int c = 0; c < 4; ++c) {
      const int f = f0 + frow + 8 * (c >> 1), k = 2 * j + (c & 1);
      if (row0 + 8 * j + 2 * q + (c & 1) < tile_end && f < p.n_out) {
        p.y[static_cast<int64_t>(rec_out[k]) * p.y_stride + f] = acc[4 * j + c] * rec_scale[k];
      }
    }
  }
}

template <int kBT>
cudaError_t launch_regs(const GemmLaunch& l, cudaStream_t stream) {
  using T = RegsTile<kBT>;
  const int64_t slots = gemm_grouped_slots(l, kBT);
  return launch_tma_gemm<gemm_regs_kernel<kBT>>(l, stream, kThreads, T::kSmem, kSpan, kBF, kBF, slots);
}

}  // namespace

cudaError_t launch_gemm_wgmma_regs(const GemmLaunch& l, cudaStream_t stream) {
  const bool narrow = l.tile == GemmKernelTile::kWgmmaNarrow, wide = l.tile == GemmKernelTile::kWgmma64;
  const bool tails_fit = l.tails == GemmTails::kAll || (narrow && l.tails == GemmTails::kOnlyFew) ||
                         (wide && (l.tails == GemmTails::kOnlyShort || l.tails == GemmTails::kSkipFew));
  if (l.type != gguf::TensorType::IQ2_XXS || !l.offsets || !l.x_lo || l.x_limbs || !(narrow || wide) ||
      !tails_fit || l.n_in % (2 * D::kStageElems) != 0) {
    return cudaErrorInvalidValue;
  }
  return narrow ? launch_regs<kFewRows>(l, stream) : launch_regs<64>(l, stream);
}

}  // namespace dsv4::cuda::detail
