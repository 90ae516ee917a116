// The int8 GEMM (gemm.h's int8 mode, GEMM_NOTES.md "Fifth version" and "Tenth version") on Hopper's
// wgmma: the numbers of gemm_int8.cu — Q2_K weights as int8 codes q·sc, activations as three int8
// limbs with one power of two per (row, 256-block), each limb's products summed exactly in an
// int32 chain through the block (started at kCBias so that it reads as a float), the offsets
// dmin·Σ_g m_g·S_g from two f16 MMAs of the rows' group sums, and per block and output
// int8_block_term — with the limb products issued as m64n64k32 s8 wgmma (the codes from
// registers, the limbs from shared memory) instead of mma.sync. Grouped only (the routed experts'
// down projection), warp-specialised as gemm_wgmma.cu:
//   tile       64 tokens × 128 features (groups of few rows take gemm_wgmma_int8_regs.cu's 16-token
//              tile: the same products and f32 steps per output, so the same bits); two consumer warpgroups,
//              consumer g owns features 64g..64g+63 (W is the A operand, a limb plane the B one: D
//              is features × tokens, so a thread's outputs are two features and it reads two d and
//              dmin per block), three s32 chains (m64n64) and one f32 accumulator per thread (128
//              registers), and the A fragments of one block (32). A CTA runs
//              kTilesPerCta feature tiles of the same rows one after the other through one ring.
//   k-step     one Q2_K block (256 columns, 8 k32 slices): a slot holds the three limb planes of the
//              64 rows (two 128-column halves each), the decoded codes of the 128 features (two
//              halves), the rows' 80-byte block records and the features' 48-byte block records.
//   producer   one warpgroup: per step it waits until the slot is empty, one thread asks TMA for the
//              raw block kLead steps ahead (a byte-row tensor map, as gemm_wgmma.cu), then every
//              thread decodes one half (128 columns) of two feature rows from aligned 16-byte
//              loads (decode_block_half), the half-0 threads also the feature records
//              (Int8Q2_K::table), then arrives on full.
//   consumers  wait for full, load their codes' A fragments (ldmatrix: each serves the three limbs
//              from registers), reset the chains to kCBias, issue the step's 24 wgmma (8 k32 slices
//              × 3 limbs, one commit), load the offsets' A fragments and the feature scales
//              meanwhile, wait, then per n8 token column: the offsets by two mma.sync m16n8k16
//              (A = the features' m codes, B = the rows' hi / lo group sums by ldmatrix; the
//              mma.sync C layout is the wgmma D layout of that column) and int8_block_term into
//              acc. Then they arrive on empty and, once both have (each copies half the rows that
//              both read), copy
//              the X limbs and records of the step kStages ahead by cp.async, counted on full by
//              cp.async.mbarrier.arrive.noinc.
// Every code × limb product and block sum is exact, so the chains hold gemm_int8.cu's integers;
// the offsets come from the same f16 products summed by another MMA shape, and every f32 step
// after them is the same: the result agrees with gemm_int8.cu to f32 rounding of the offset sums
// (GemmInt8 tests both against the double reference with the bound gemm.h states).
// Rows past the tile's end are computed from copies of its last row and never stored; features
// past n_out from TMA's zero rows. Weight rows must be multiples of 16 bytes (TMA): Q2_K n_in a
// multiple of 1024.
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <type_traits>

#include "cuda/cp_async.cuh"
#include "cuda/gemm_int8_codes.cuh"
#include "cuda/gemm_kernel.cuh"
#include "cuda/gemm_launch.h"
#include "cuda/mbarrier.cuh"
#include "cuda/tma_gemm_launch.cuh"
#include "cuda/wgmma.cuh"

namespace dsv4::cuda::detail {

namespace {

using D8 = Int8Q2_K;
constexpr int kBF = 128;  // features per tile: two consumers × the M of 64
// Feature tiles per CTA, one after the other over the same rows: a tile is only n_in / 256 steps
// (8 at flash's 2048), so a CTA per tile spent much of its time filling and draining the ring
// (one 224 KB CTA per SM: nothing overlaps its prologue and epilogue).
constexpr int kTilesPerCta = 4;
constexpr int kConsumerThreads = 256;
// The roles: one producer warpgroup, registers after setmaxnreg the launch's 168 per thread (65 536
// / 384, a multiple of 8 below it) moved to the consumers, which hold 128 of chains and accumulators
// and 32 of A fragments; the producer only decodes (no spill at 40; two producer warpgroups spilled
// and ran 14 % slower, docs/PERF.md session 25).
constexpr int kBT = 64;  // tokens a CTA
constexpr int kProducerThreads = 128;
constexpr int kThreads = kProducerThreads + kConsumerThreads;
constexpr int kLaunchRegs = 168, kProducerRegs = 40, kConsumerRegs = 232;
static_assert(kProducerThreads * kProducerRegs + kConsumerThreads * kConsumerRegs <= kThreads * kLaunchRegs);
static_assert(kLaunchRegs * kThreads <= 65536);
constexpr int kStages = 2;  // slots of one Q2_K block each
constexpr int kLead = 2;    // raw blocks TMA runs ahead of the decode
// Raw slots: at step u, after the producers' barrier (all have decoded step u − 1), block u + kLead
// goes into the slot of block u − 1.
constexpr int kRR = kLead + 1;
constexpr int kSpan = kInt8RawSpan;
constexpr int kWHalf = kBF * 128;                     // the codes of one 128-column half
constexpr int kWBytes = 2 * kWHalf;
constexpr int kTabBytes = kBF * kInt8TableWords * 4;  // the features' block records
constexpr int kRawBytes = kBF * kSpan;
static_assert(kRawBytes % 128 == 0, "TMA on 128-byte boundaries");

// The shared-memory layout of a CTA.
constexpr int kLimbHalf = kBT * 128;                 // one limb plane, one 128-column half
constexpr int kXBytes = kInt8Limbs * 2 * kLimbHalf;  // limb l, half h at (2l + h)·kLimbHalf
constexpr int kRecBytes = kBT * kInt8RecordBytes;    // the rows' block records
constexpr int kSlotBytes = (kXBytes + kWBytes + kRecBytes + kTabBytes + 1023) / 1024 * 1024;
constexpr int kRawOffset = kStages * kSlotBytes;
constexpr int kSmem = 1024 + kRawOffset + kRR * kRawBytes + (2 * kStages + kRR) * 8;
static_assert(kSmem <= 227 * 1024);
static_assert(kXBytes % 1024 == 0 && kWBytes % 1024 == 0, "tiles on 1024-byte boundaries");

// A 16-byte shared load by asm: plain ones are narrowed by the compiler to the words used, 32-bit
// loads with 4-way bank conflicts at the raw rows' pitch.
__device__ __forceinline__ uint4 lds128(const uint8_t* p) {
  uint4 v;
  asm volatile("ld.shared.v4.u32 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
               : "r"(shared_address(p)));
  return v;
}

// Whether 16-byte unit k of the raw row holds a word decode_block_half<kM, kDH> reads.
template <int kM, int kDH>
__device__ constexpr bool unit_needed(int k) {
  const int scales = kM + 2 * kDH, quants = kM + 4 + 8 * kDH;
  return (k >= scales / 4 && k <= (scales + 1) / 4) || (k >= quants / 4 && k <= (quants + 7) / 4);
}

// Half kDH (columns 128·kDH..) of one feature row's block: the raw row (16-aligned) holds the
// block from word kM on (kM = its misalignment / 4, the same for every row of a step). The words
// come as aligned 16-byte loads (each loaded once, before any store), the eight 16-element chunks
// go to the row's swizzled code tile; the kDH = 0 thread also writes the feature record.
template <int kM, int kDH>
__device__ __forceinline__ void decode_block_half(const uint8_t* row, uint8_t* codes, int drow, float* rec) {
  constexpr int kUnits = (kM + 4 + 8 * kDH + 7) / 4 + 1;
  uint4 unit[kUnits];
#pragma unroll
  for (int k = 0; k < kUnits; ++k) {
    if (unit_needed<kM, kDH>(k)) unit[k] = lds128(row + 16 * k);
  }
  auto word = [&](int k) {
    const uint4& v = unit[k >> 2];
    return (k & 3) == 0 ? v.x : (k & 3) == 1 ? v.y : (k & 3) == 2 ? v.z : v.w;
  };
  uint32_t qs[8];
#pragma unroll
  for (int i = 0; i < 8; ++i) qs[i] = word(kM + 4 + 8 * kDH + i);  // block bytes 16 + 32·kDH..
  const uint32_t sc[2] = {word(kM + 2 * kDH), word(kM + 2 * kDH + 1)};  // scale bytes 8·kDH..
#pragma unroll
  for (int c = 0; c < 8; ++c) {
    // chunk c: elements 128·kDH + 16c.., 2-bit field c / 2 of quant bytes 16·(c % 2).., scale
    // byte 8·kDH + c
    *reinterpret_cast<uint4*>(codes + swz(drow, c)) =
        D8::codes16_words(qs + 4 * (c & 1), sc[c >> 2] >> (8 * (c & 3)), c >> 1);
  }
  if constexpr (kDH == 0) D8::table(row + 4 * kM, rec);
}

__global__ void __launch_bounds__(kThreads, 1)
    gemm_wgmma_int8_kernel(__grid_constant__ const GemmLaunch p, __grid_constant__ const CUtensorMap w_map) {
  constexpr int kNJ = kBT / 8;  // n8 token columns of a consumer's fragments
  extern __shared__ uint8_t smem_raw[];
  const uint32_t base = (shared_address(smem_raw) + 1023u) & ~1023u;
  uint8_t* const base_ptr = smem_raw + (base - shared_address(smem_raw));
  uint8_t* const raw_ptr = base_ptr + kRawOffset;
  const uint32_t raw = base + kRawOffset;
  const uint32_t full_bar = raw + kRR * kRawBytes, empty_bar = full_bar + kStages * 8;
  const uint32_t raw_bar = empty_bar + kStages * 8;

  int row0, row_end, expert;
  if (!gemm_find_tile(p, blockIdx.y, kBT, &row0, &row_end, &expert)) return;
  const int tile_end = min(row0 + kBT, row_end);
  const int f0 = blockIdx.x * kTilesPerCta * kBF;
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  const int n_steps = p.n_in / kInt8Block;  // per feature tile
  // Steps u of the CTA: block u % n_steps of feature tile u / n_steps (features f0 + 128·tile..).
  const int n_total = min(kTilesPerCta, (p.n_out - f0 + kBF - 1) / kBF) * n_steps;

  if (tid == 0) {
    mbar_init_ring(full_bar, kProducerThreads + kConsumerThreads, empty_bar, kConsumerThreads, kStages, raw_bar, kRR);
  }
  __syncthreads();

  if (warp < kProducerThreads / 32) {
    setmaxnreg_dec<kProducerRegs>();
    // Step u's raw block (block u % n_steps of feature tile u / n_steps, in every row: rows are
    // multiples of 16 bytes, so all share its misalignment) into raw slot u % kRR; rows past n_out
    // and bytes past a row's end read as zero.
    auto issue_raw = [&](int u) {
      const uint32_t slot = static_cast<uint32_t>(u % kRR);
      const int b = u % n_steps;
      mbar_arrive_expect_tx(raw_bar + 8 * slot, kRawBytes);
      tma_load_3d(raw + slot * kRawBytes, &w_map, (b * D8::kStageBytes) & ~15, f0 + u / n_steps * kBF, expert,
                  raw_bar + 8 * slot);
    };
    if (tid == 0) {
      for (int u = 0; u < kLead && u < n_total; ++u) issue_raw(u);
    }
    // Warps 0-1 decode half 0 (columns 0..127), warps 2-3 half 1, each thread feature rows
    // tid % 64 and tid % 64 + 64 (consecutive rows in a warp: conflict-free 16-byte loads).
    constexpr int kRowPasses = 256 / kProducerThreads;
    const int dh = (warp >> 1) & 1, drow0 = tid & 63;
    for (int u = 0; u < n_total; ++u) {
      const int s = u % kStages;
      if (u >= kStages) mbar_wait(empty_bar + 8 * s, ((u / kStages) & 1) ^ 1);
      named_barrier_sync<1, kProducerThreads>();  // every producer thread has decoded step u − 1
      if (tid == 0 && u + kLead < n_total) issue_raw(u + kLead);
      mbar_wait(raw_bar + 8 * (u % kRR), (u / kRR) & 1);
      uint8_t* const slot = base_ptr + s * kSlotBytes;
      uint8_t* const codes = slot + kXBytes + dh * kWHalf;
      float* const tab = reinterpret_cast<float*>(slot + kXBytes + kWBytes + kRecBytes);
      const uint8_t* const raw_rows = raw_ptr + (u % kRR) * kRawBytes;
      auto decode = [&](auto m) {
        constexpr int kM = decltype(m)::value;
#pragma unroll
        for (int i = 0; i < kRowPasses; ++i) {
          const int drow = drow0 + 64 * i;
          const uint8_t* row = raw_rows + drow * kSpan;
          if (dh == 0) {
            decode_block_half<kM, 0>(row, codes, drow, tab + drow * kInt8TableWords);
          } else {
            decode_block_half<kM, 1>(row, codes, drow, nullptr);
          }
        }
      };
      switch ((((u % n_steps) * D8::kStageBytes) & 15) >> 2) {
        case 0: decode(std::integral_constant<int, 0>{}); break;
        case 1: decode(std::integral_constant<int, 1>{}); break;
        case 2: decode(std::integral_constant<int, 2>{}); break;
        default: decode(std::integral_constant<int, 3>{}); break;
      }
      fence_proxy_async();  // the codes are read by the tensor cores (async proxy)
      mbar_arrive(full_bar + 8 * s);
    }
    return;
  }

  setmaxnreg_inc<kConsumerRegs>();
  const int ctid = tid - kProducerThreads, wg = (warp >> 2) - kProducerThreads / 128, cw = warp & 3;

  // X copies: 16-byte chunk xc of each limb's row (half xc / 8) of rows xr + 16i (i < kBT / 16;
  // rows past the tile's end repeat its last row); records: chunk idx % 5 of row idx / 5 for idx =
  // ctid and ctid + 256 below 5·kBT (one thread a chunk: two copies of one chunk in flight are a
  // write-write race to racecheck). Offsets in 32 bits (gemm.cc checks x rows · x_stride < 2^31).
  constexpr int kXPasses = kBT / 16;
  auto src_row = [&](int r) { return gemm_x_row(p, min(r, tile_end - 1)); };
  const int xc = ctid & 15, xr = ctid >> 4;
  uint32_t xoff[kXPasses];
#pragma unroll
  for (int i = 0; i < kXPasses; ++i) {
    xoff[i] = static_cast<uint32_t>(src_row(row0 + xr + 16 * i) * p.x_stride + xc * 16);
  }
  const uint32_t x_dst = static_cast<uint32_t>((xc >> 3) * kLimbHalf + swz(xr, xc & 7));
  constexpr int kRecChunks = kInt8RecordBytes / 16;
  const int n_blocks = n_steps;
  uint32_t rec_off[2], rec_dst[2];
#pragma unroll
  for (int i = 0; i < 2; ++i) {
    const int idx = min(ctid + kConsumerThreads * i, kBT * kRecChunks - 1);  // clamped: threads past it copy nothing
    const int r = idx / kRecChunks, c = idx % kRecChunks;
    rec_off[i] = static_cast<uint32_t>(src_row(row0 + r) * n_blocks * kInt8RecordBytes + 16 * c);
    rec_dst[i] = static_cast<uint32_t>(kXBytes + kWBytes + r * kInt8RecordBytes + 16 * c);
  }
  // The limbs and records of block b into slot s.
  auto issue_x = [&](int s, int b) {
    const uint32_t slot = base + s * kSlotBytes;
#pragma unroll
    for (int l = 0; l < kInt8Limbs; ++l) {
      const int8_t* plane = p.x_limbs + l * p.x_plane + b * kInt8Block;
#pragma unroll
      for (int i = 0; i < kXPasses; ++i) {
        gemm_cp_async16(slot + 2 * l * kLimbHalf + x_dst + i * 16 * 128, plane + xoff[i]);
      }
    }
    const uint8_t* recs = p.x_records + b * kInt8RecordBytes;
    static_assert(kBT * kRecChunks >= kConsumerThreads, "every consumer thread copies a first chunk");
    gemm_cp_async16(slot + rec_dst[0], recs + rec_off[0]);
    if (ctid + kConsumerThreads < kBT * kRecChunks) gemm_cp_async16(slot + rec_dst[1], recs + rec_off[1]);
    mbar_arrive_on_cp_async(full_bar + 8 * s);
  };
  static_assert(kStages <= 4, "n_steps ≥ 4: the first kStages steps are blocks 0..kStages−1 of tile 0");
  for (int u = 0; u < kStages && u < n_total; ++u) issue_x(u, u);

  // This thread's outputs: features fa and fa + 8 of the CTA's 128 (rows of its warp's m16 slab),
  // tokens 8j + 2q + c (j < kNJ, c < 2) of the kBT; ch[l] is limb l's chain.
  const int q = lane & 3, fa = 64 * wg + 16 * cw + (lane >> 2);
  float acc[4 * kNJ];
  int32_t ch[kInt8Limbs][4 * kNJ];
#pragma unroll
  for (int i = 0; i < 4 * kNJ; ++i) acc[i] = 0.0f;
  // The warp's A fragments (its 16 feature rows of the codes) come by ldmatrix: lane row
  // 16·cw + lane % 16, 16-byte chunk 2·slice + lane / 16, swizzled by the row.
  const uint32_t a_row = static_cast<uint32_t>((64 * wg + 16 * cw + (lane & 15)) * 128);

  // Step t is block blk of feature tile tile (counters: the divisions by n_steps were on the chain).
  int blk = 0, tile = 0;
  for (int t = 0; t < n_total; ++t) {
    const int s = t % kStages;
    const uint32_t phase = (t / kStages) & 1;
    const uint32_t slot = base + s * kSlotBytes;
    mbar_wait(full_bar + 8 * s, phase);
    fence_proxy_async();  // the limbs landed through cp.async (generic proxy), read by the tensor cores
    uint32_t a[8][4];
#pragma unroll
    for (int k = 0; k < 8; ++k) {
      const uint32_t chunk = static_cast<uint32_t>(2 * (k & 3) + (lane >> 4)) ^ static_cast<uint32_t>(lane & 7);
      ldmatrix_x4(a[k], slot + kXBytes + (k >> 2) * kWHalf + a_row + (chunk << 4));
    }
#pragma unroll
    for (int l = 0; l < kInt8Limbs; ++l) {
#pragma unroll
      for (int i = 0; i < 4 * kNJ; ++i) ch[l][i] = kCBias;
      wgmma_fence_operands(ch[l]);
    }
    wgmma_fence();
    // The step's 24 products (8 k32 slices × 3 limbs), one commit group. (Two m64n32 groups whose
    // block ends overlapped the other's MMAs were 4–6 % slower: twice the wgmma instructions.)
#pragma unroll
    for (int k = 0; k < 8; ++k) {
      const uint32_t x = slot + (k >> 2) * kLimbHalf + (k & 3) * 32;
#pragma unroll
      for (int l = 0; l < kInt8Limbs; ++l) wgmma_m64n64k32_s8_ra(ch[l], a[k], wgmma_desc_sw128(x + 2 * l * kLimbHalf));
    }
    wgmma_commit();
    // Meanwhile: the offsets' A fragment (m code pairs of features fa, fa + 8: words q and q + 4 of
    // their records, the row-major m16k16 layout), d and dmin·2^12.
    const uint8_t* slot_ptr = base_ptr + s * kSlotBytes;
    const float* tab = reinterpret_cast<const float*>(slot_ptr + kXBytes + kWBytes + kRecBytes);
    const float* ta = tab + fa * kInt8TableWords;
    const float* tb = ta + 8 * kInt8TableWords;
    const uint32_t am[4] = {__float_as_uint(ta[2 + q]), __float_as_uint(tb[2 + q]), __float_as_uint(ta[6 + q]),
                            __float_as_uint(tb[6 + q])};
    const float d[2] = {ta[0], tb[0]}, dm[2] = {ta[1], tb[1]};
    const uint8_t* rec = slot_ptr + kXBytes + kWBytes;
    const uint32_t rec_a = slot + kXBytes + kWBytes + (lane & 7) * kInt8RecordBytes + 16 * (lane >> 3);
    // The block end: per n8 token column the offsets (B = the rows' hi group sums, matrices 0 and 1,
    // and lo, 2 and 3) and int8_block_term. Column j + 1's records are asked for before column j's
    // MMAs (the asm statements keep their order, so the loads would otherwise wait for them).
    wgmma_wait<0>();
#pragma unroll
    for (int l = 0; l < kInt8Limbs; ++l) wgmma_fence_operands(ch[l]);
    uint32_t b[2][4];
    ldmatrix_x4(b[0], rec_a);
#pragma unroll
    for (int j = 0; j < kNJ; ++j) {
      if (j + 1 < kNJ) ldmatrix_x4(b[(j + 1) & 1], rec_a + 8 * (j + 1) * kInt8RecordBytes);
      float o[4];
      mma_f16_zero(o, am, b[j & 1]);
      mma_f16(o, am, b[j & 1] + 2);
      const float* e2 = reinterpret_cast<const float*>(rec + (8 * j + 2 * q) * kInt8RecordBytes + 64);
      const float e[2] = {e2[0], e2[kInt8RecordBytes / 4]};
#pragma unroll
      for (int c = 0; c < 4; ++c) {
        acc[4 * j + c] = int8_block_term(acc[4 * j + c], ch[0][4 * j + c], ch[1][4 * j + c], ch[2][4 * j + c],
                                         o[c], d[c >> 1], dm[c >> 1], e[c & 1]);
      }
    }
    mbar_arrive(empty_bar + 8 * s);
    if (t + kStages < n_total) {
      // Both consumers read all rows: the slot is free once both are done with it.
      mbar_wait(empty_bar + 8 * s, phase);
      issue_x(s, blk + kStages < n_steps ? blk + kStages : blk + kStages - n_steps);
    }
    if (blk == n_steps - 1) {
      // The tile's last block: acc[4j + c] is D[feature fa + 8·(c / 2)][token 8j + 2q + c % 2].
      const int f = f0 + tile * kBF + fa;
#pragma unroll
      for (int j = 0; j < kNJ; ++j) {
#pragma unroll
        for (int c = 0; c < 2; ++c) {
          const int r = row0 + 8 * j + 2 * q + c;
          if (r >= tile_end) continue;
          const int out = gemm_y_row(p, r);
          float* yrow = p.y + static_cast<int64_t>(out) * p.y_stride;
          if (f < p.n_out) yrow[f] = acc[4 * j + c];
          if (f + 8 < p.n_out) yrow[f + 8] = acc[4 * j + 2 + c];
        }
      }
#pragma unroll
      for (int i = 0; i < 4 * kNJ; ++i) acc[i] = 0.0f;
      blk = 0;
      ++tile;
    } else {
      ++blk;
    }
  }
}

}  // namespace

// l.tile kWgmma: 64 tokens a CTA (with l.tails kAll, or kSkipFew beside its 16-token partner);
// kWgmmaNarrow: gemm_wgmma_int8_regs.cu's 16-token tile (kAll or kOnlyFew).
cudaError_t launch_gemm_wgmma_int8(const GemmLaunch& l, cudaStream_t stream) {
  if (l.tile == GemmKernelTile::kWgmmaNarrow) return launch_gemm_wgmma_int8_regs(l, stream);
  if (!l.x_limbs || !l.x_records || !l.offsets || l.type != gguf::TensorType::Q2_K || l.row_bytes % 16 != 0 ||
      l.slab_bytes % 16 != 0 || l.tile != GemmKernelTile::kWgmma ||
      (l.tails != GemmTails::kAll && l.tails != GemmTails::kSkipFew)) {
    return cudaErrorInvalidValue;
  }
  return launch_tma_gemm<gemm_wgmma_int8_kernel>(l, stream, kThreads, kSmem, kSpan, kBF, kTilesPerCta * kBF,
                                                 gemm_grouped_slots(l, kBT));
}

int gemm_wgmma_int8_tile_rows(GemmKernelTile tile) {
  return tile == GemmKernelTile::kWgmmaNarrow ? kFewRows : kBT;
}

}  // namespace dsv4::cuda::detail
