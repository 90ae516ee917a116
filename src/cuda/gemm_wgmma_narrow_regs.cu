// The 16-token tile for the routed experts' gate/up (IQ2_XXS weights, split mode, grouped only;
// GemmTile::kWgmmaNarrow and the 16-token side of kWgmmaNarrowPair) with W decoded straight into
// the wgmma's A registers (docs/PERF.md, session 24). ncu of gemm_wgmma.cu's narrow tile at a
// 128-token chunk: its consumers waited for the producers' decode (a fifth of their samples spent
// spinning on the full barrier) and shared memory was 82 % busy, most of it the decoded tile's
// round trip (written by the producers, read back as the MMAs' A operand) and the grid lookups.
// Here every warp decodes the weights it multiplies: no producer warpgroup, no decoded tile.
//
//   tile       16 tokens × 256 features; four warpgroups, warpgroup g owns features 64g..64g+63
//              (one m64 fragment), each thread two of them (rows r and r + 8 of its warp's 16).
//   k-step     64 columns, two 32-column halves (one IQ2_XXS sub-block each: one scale d/8·(2ls+1)
//              per half and feature). In a half, thread q = lane % 4 decodes grid point q (columns
//              8q..8q+7) of its two rows into the A registers of the half's two k16 slices: f16
//              pair w of the point goes to slice w / 2, pair position q + 4·(w % 2). So the MMAs
//              see the half's columns permuted: word (f16 pair) 4q + w of a half sits at 4w + q.
//              X's rows are stored with the same permutation (a 4 × 4 transpose of 32-bit words
//              per half), so each product pairs the weight and activation of one column.
//   X          the 16 tokens' x_hi rows then their x_lo rows, one n32 B operand (as
//              gemm_wgmma_narrow.cuh's: each weight is read by the tensor cores once per k16).
//              Every thread moves 8 bytes a step: loaded from global one step ahead, stored as two
//              4-byte words into the permuted tile kXAhead steps before the MMAs read it, counted
//              on that step's x_full barrier; every warp arrives on x_empty once its MMAs are done.
//   W          raw IQ2_XXS super-blocks (256 columns, four k-steps) by TMA, one stage ahead into a
//              ring of kRawSlots, issued by thread 0; every warp arrives on raw_empty after a
//              stage's last step.
//   numbers    as gemm_wgmma_narrow.cuh: per half tmp_hi and tmp_lo are chains of exact code × x
//              products from zero over two k16 slices, then acc = fma(scale, tmp_hi + tmp_lo, acc);
//              the slices hold other columns than there, so other bits (the split's bound).
//   pipeline   step t's MMAs are issued, step t + 1 is decoded into the other register set while
//              they run, then step t's scales are applied (every group is waited for within its
//              step: one left in flight around the loop makes ptxas serialise the wgmma).
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
constexpr int kBT = kFewRows, kBF = 256;
constexpr int kThreads = 512;  // four warpgroups
constexpr int kWarps = kThreads / 32;
constexpr int kStepsPerStage = D::kStageElems / kGemmK;  // a raw stage is one super-block: 4 steps
constexpr int kSpan = (D::kMisalign + D::kStageBytes + 15) / 16 * 16;
constexpr int kRawBytes = kBF * kSpan;
constexpr int kRawSlots = 3;  // stage r + 1 goes into the slot of stage r − 2
constexpr int kXSlots = 4;
constexpr int kXAhead = 2;  // X of step t + kXAhead is written during step t
constexpr int kXBytes = 2 * kBT * 128;  // hi rows, then lo rows, 128-byte rows
constexpr int kTableBytes = (D::kTableBytes + 127) / 128 * 128;
// From a 1024-aligned base: X tiles, raw ring, lookup tables, barriers.
constexpr int kRawOffset = kXSlots * kXBytes;
constexpr int kTableOffset = kRawOffset + kRawSlots * kRawBytes;
constexpr int kBarOffset = kTableOffset + kTableBytes;
constexpr int kSmem = 1024 + kBarOffset + (2 * kXSlots + 2 * kRawSlots) * 8;
static_assert(kXBytes == kThreads * 8 && kRawBytes % 128 == 0 && kSmem <= 227 * 1024, "8 bytes of X a thread");
static_assert(kBT == 16 && kBF == 4 * 64, "one m64n32 fragment a warpgroup");
static_assert(kXAhead < kXSlots);

__global__ void __launch_bounds__(kThreads, 1)
    gemm_narrow_regs_kernel(__grid_constant__ const GemmLaunch p, __grid_constant__ const CUtensorMap w_map) {
  extern __shared__ uint8_t smem_raw[];
  const uint32_t base = (shared_address(smem_raw) + 1023u) & ~1023u;
  uint8_t* const base_ptr = smem_raw + (base - shared_address(smem_raw));
  const uint32_t xs = base, raw = base + kRawOffset;
  const uint8_t* const raw_ptr = base_ptr + kRawOffset;
  uint8_t* const tables = base_ptr + kTableOffset;
  const uint32_t x_full = base + kBarOffset, x_empty = x_full + 8 * kXSlots;
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

  // X: thread tid moves words 2·(tid % 2) and + 1 of chunk c = (tid / 2) % 8 (half c / 4, grid
  // point c % 4) of tile row tid / 16 (rows 0-15 x_hi, 16-31 x_lo; rows past the tile's end repeat
  // its last row), loaded one step before it is stored. Word w of chunk c goes to chunk
  // 4·(c / 4) + w, word c % 4, of the permuted row.
  const int xrow = tid >> 4, xchunk = (tid >> 1) & 7, xword = 2 * (tid & 1);
  // 32-bit element offsets (gemm.cc checks x rows · x_stride < 2^31).
  const bool xlo = xrow >= kBT;
  const uint32_t xoff = static_cast<uint32_t>(gemm_x_row(p, min(row0 + (xrow & (kBT - 1)), tile_end - 1)) * p.x_stride +
                                              xchunk * 8 + 2 * xword);
  auto load_x = [&](int u) {
    const __half* const x = (xlo ? p.x_lo : p.x) + xoff + static_cast<uint32_t>(u) * kGemmK;
    return u < n_steps ? *reinterpret_cast<const uint2*>(x) : make_uint2(0, 0);
  };
  auto store_x = [&](int u, const uint2& v) {
    const int s = u % kXSlots;
    uint8_t* const dst = base_ptr + s * kXBytes + xrow * 128 + 4 * (xchunk & 3);
    const int c0 = (xchunk & 4) + xword, r7 = xrow & 7;
    *reinterpret_cast<uint32_t*>(dst + ((c0 ^ r7) << 4)) = v.x;
    *reinterpret_cast<uint32_t*>(dst + (((c0 + 1) ^ r7) << 4)) = v.y;
    // Before the arrival: the tile is read by the tensor cores (async proxy), the readers acquire
    // it through the barrier.
    fence_proxy_async();
    mbar_arrive(x_full + 8 * s);
  };
#pragma unroll
  for (int u = 0; u < kXAhead; ++u) store_x(u, load_x(u));
  uint2 x_next = load_x(kXAhead);

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
        float odd;
        const int e = (t % kStepsPerStage) * kGemmK + 32 * h;
        const uint4 v = D::one_group8(rows + 8 * i * kSpan, e, q, grid, tables, &odd);
        d[h][i] = d8[i] * odd;
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

  float acc[8], tmp0[16], tmp1[16];
#pragma unroll
  for (int e = 0; e < 8; ++e) acc[e] = 0.0f;
#pragma unroll
  for (int e = 0; e < 16; ++e) tmp0[e] = tmp1[e] = 0.0f;
  // acc[4j + c] += scale(row c / 2)·(tmp_hi + tmp_lo): token 8j + 2q + c % 2, j < 2 (its lo column
  // is pair j + 2).
  auto scale_add = [&](const float (&tmp)[16], const float (&d)[2]) {
#pragma unroll
    for (int j = 0; j < 2; ++j) {
#pragma unroll
      for (int c = 0; c < 4; ++c) {
        acc[4 * j + c] = fmaf(d[c >> 1], tmp[4 * j + c] + tmp[4 * (j + 2) + c], acc[4 * j + c]);
      }
    }
  };
  // Step t: X of step t + kXAhead stored, step t's MMAs issued with a, step t + 1 decoded into
  // a_next meanwhile, then step t's scales applied.
  auto step = [&](int t, const uint32_t (&a)[4][4], const float (&d)[2][2], uint32_t (&a_next)[4][4],
                  float (&d_next)[2][2]) {
    const int s = t % kXSlots;
    if (t + kXAhead < n_steps) {
      const int u = t + kXAhead;
      if (u >= kXSlots) mbar_wait(x_empty + 8 * (u % kXSlots), ((u / kXSlots) & 1) ^ 1);
      store_x(u, x_next);
      x_next = load_x(u + 1);
    }
    mbar_wait(x_full + 8 * s, (t / kXSlots) & 1);
    const uint64_t x_desc = wgmma_desc_sw128(xs + s * kXBytes);
    wgmma_fence_operands(tmp0);
    wgmma_fence_operands(tmp1);
    wgmma_fence();
    wgmma_m64n32k16_f16_ra(tmp0, a[0], x_desc, false);
    wgmma_m64n32k16_f16_ra(tmp0, a[1], x_desc + 2, true);
    wgmma_m64n32k16_f16_ra(tmp1, a[2], x_desc + 4, false);
    wgmma_m64n32k16_f16_ra(tmp1, a[3], x_desc + 6, true);
    wgmma_commit();
    if (t + 1 < n_steps) decode(t + 1, a_next, d_next);
    wgmma_wait<0>();
    wgmma_fence_operands(tmp0);
    wgmma_fence_operands(tmp1);
    __syncwarp();
    if (lane == 0) mbar_arrive(x_empty + 8 * s);
    scale_add(tmp0, d[0]);
    scale_add(tmp1, d[1]);
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
  float rec_scale[4];
  int rec_out[4];
#pragma unroll
  for (int k = 0; k < 4; ++k) {
    gemm_row_record(p, row0 + 8 * (k >> 1) + 2 * q + (k & 1), tile_end, &rec_scale[k], &rec_out[k]);
  }
#pragma unroll
  for (int j = 0; j < 2; ++j) {
#pragma unroll
    for (int c = 0; c < 4; ++c) {
      const int f = f0 + frow + 8 * (c >> 1), k = 2 * j + (c & 1);
      if (row0 + 8 * j + 2 * q + (c & 1) < tile_end && f < p.n_out) {
        p.y[static_cast<int64_t>(rec_out[k]) * p.y_stride + f] = acc[4 * j + c] * rec_scale[k];
      }
    }
  }
}

}  // namespace

cudaError_t launch_gemm_narrow_regs(const GemmLaunch& l, cudaStream_t stream) {
  if (l.type != gguf::TensorType::IQ2_XXS || !l.offsets || !l.x_lo || l.x_limbs ||
      (l.tails != GemmTails::kAll && l.tails != GemmTails::kOnlyFew) || l.n_in % (2 * D::kStageElems) != 0) {
    return cudaErrorInvalidValue;
  }
  const int64_t slots = gemm_grouped_slots(l, kBT);
  return launch_tma_gemm<gemm_narrow_regs_kernel>(l, stream, kThreads, kSmem, kSpan, kBF, kBF, slots);
}

}  // namespace dsv4::cuda::detail
