// The split-mode GEMM on Hopper's wgmma (GEMM_NOTES.md, "Sixth version" to "Ninth version"): the
// numbers of gemm_kernel.cuh's split mode — exact integer weight codes (gemm_codes.cuh) times
// x_hi and x_lo on the tensor cores, each 32-column block's four k16 products summed into a
// temporary started at zero, then acc = fma(scale, tmp, acc) in f32 — with the MMAs issued as
// m64n128k16 wgmma from shared memory instead of mma.sync from ldmatrix fragments. One kernel
// source, templated on the codec (CodesQ8_0: dense and grouped; CodesF16: dense, the compressors'
// and the indexer's projections; CodesIQ2_XXS: grouped, the routed experts' gate/up) and on the
// rows: dense (rows [0, n_rows)) or grouped (gemm.h's GroupedGemm: the CTA's (group, row tile)
// found from the offsets as gemm_kernel.cuh does, X rows gathered by x_rows, output rows scattered
// by y_rows).
//
// Tiles (two consumer warpgroups, each one m64n128 fragment: acc and two temporaries of 64 f32
// each per thread): 128 tokens × 128 features per CTA, consumer g owns features 64g..64g+63 and
// all 128 tokens, with W as the MMAs' A operand and X as B (D is features × tokens, so a thread's
// accumulators span two features and it reads two block scales per half-step, where the other
// orientation needs 32: their LDS.128 took a third of the shared-memory wavefronts); or 64 tokens
// × 256 features (grouped only: an expert's rows average 48 at 2048-token chunks, so half the
// 128-token tile would be padding), both consumers on the same 64 tokens, consumer g owns features
// 128g..128g+127 with X as A and W as B, each decoded feature row serving 64 tokens; or 16 tokens
// × 256 features (grouped only, groups of few rows: gemm_wgmma_narrow.cuh has its consumers; the
// 64-token tile's producers), for Q8_0 weights (out_a's groups of few tokens). IQ2_XXS weights take
// gemm_wgmma_regs.cu's kernels on the 64- and 16-token tiles (W decoded into the MMAs' registers).
//
// Warp-specialised (ninth version): producer warpgroups (one on the 128-token tile, two on the
// 64-token one) make W, the last two warpgroups consume, through a
// ring of kStages slots (X hi/lo, the decoded W tile, its scale table), each with a "full" and an
// "empty" mbarrier (mbarrier.cuh). The producer, per 64-column k-step u: waits until slot u is
// empty, one thread asks TMA for the raw weight stage kLead steps ahead (a byte-row tensor map,
// tensor_map.h: one instruction for kBF rows), every thread waits for step u's raw stage, decodes
// its rows of W(u) and their scales into the slot and arrives on full. A consumer: waits for full,
// chain 0 (columns 0-31: hi, lo, hi, lo k16 MMAs) into tmp0, chain 1 (columns 32-63) into tmp1,
// acc += scale·tmp0 once chain 0 is done, acc += scale·tmp1 once chain 1 is, arrives on empty,
// then copies its share of X for step u + kStages into the slot by cp.async, whose landing is the
// rest of that step's full count (one arrival per producer thread + 256 consumer cp.async
// arrivals). Each
// consumer copies half the rows and reads all of them, so it first waits for the slot's empty
// barrier (both consumers done with it).
// Registers move to the consumers (setmaxnreg). The same products, chains and FFMAs in the same
// order per output as the eighth version (GemmWgmma.Grouped* assert that the 128-token tile, with
// its operands swapped, gives the 64-token tile's bits).
// Keeping chain 1 in flight across steps makes ptxas serialise every wgmma (C7514: it cannot
// follow a pending group around the loop's back edge), GEMM_NOTES.md.
// Rows past the tile's end (a group's last tile, the dense last tile) are computed from copies of
// the tile's last row and never stored; features past n_out from zero rows (TMA's fill). A
// fragment that is all padding still has its MMAs issued: a branch around them makes ptxas
// serialise every wgmma (C7518).
// All tiles start on 1024-byte boundaries (the 128-byte swizzle's period).
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <type_traits>

#include "cuda/cp_async.cuh"
#include "cuda/gemm_codes.cuh"
#include "cuda/gemm_kernel.cuh"
#include "cuda/gemm_launch.h"
#include "cuda/gemm_wgmma_narrow.cuh"
#include "cuda/mbarrier.cuh"
#include "cuda/tma_gemm_launch.cuh"
#include "cuda/wgmma.cuh"

namespace dsv4::cuda::detail {

namespace {

// The CTA as gemm_kernel.cuh's geometry sees it (its tile sizes and raw-row layout): 8 warps,
// each holding the accumulators of 16 rows × 128 features (its quarter of its consumer's m64n128
// fragment), stacked on the tokens (kTall: 128 × 128) or 4 on the tokens × 2 on the features
// (64 × 256).
template <bool kTall>
struct GemmTileWgmma {
  static constexpr int kWarpsT = kTall ? 8 : 4, kWarpsF = kTall ? 1 : 2, kMT = 1, kNF = 16;
  static constexpr bool kSplit = true;
};
constexpr int kConsumerThreads = 256;
constexpr int kStages = 3;  // X + decoded W + scale-table slots
constexpr int kCPT = 4;     // decoded 16-byte chunks per thread and row: one 32-column half, so one scale

// The three tiles: 128 tokens × 128 features, 64 × 256, and 16 × 256 (gemm_wgmma_narrow.cuh: the
// wide tile's producers, X as one n32 operand of hi rows then lo rows).
enum WgmmaShape : int { kShapeTall, kShapeWide, kShapeNarrow };

template <class D, int kShape>
struct WgmmaGeometry : GemmGeometry<D, GemmTileWgmma<kShape == kShapeTall>> {
  using G = GemmGeometry<D, GemmTileWgmma<kShape == kShapeTall>>;
  static constexpr bool kTall = kShape == kShapeTall, kNarrow = kShape == kShapeNarrow;
  static constexpr int kBT = kNarrow ? 16 : G::kBT;
  static constexpr int kXTile = kBT * 128;  // one of hi / lo
  static constexpr int kXBytes = 2 * kXTile;
  // X rows a consumer thread copies per step (hi and lo), 16 apart: each consumer copies half the
  // tile's rows (the narrow tile: one row of hi or of lo a thread).
  static constexpr int kXRows = kNarrow ? 1 : kBT * 8 / kConsumerThreads;
  // TMA writes a raw stage packed: its row pitch is the copied span (gemm_kernel.cuh's odd pitch,
  // which keeps the mma.sync kernel's cp.async rows conflict-free, is the same for Q8_0 and
  // IQ2_XXS, one unit more for F16).
  static constexpr int kPitch = G::kSpan;
  static constexpr int kRawBytes = G::kBF * kPitch;
  // Producer warpgroups: one on the 128-token tile; two on the 64-token one, which decodes twice
  // the weight rows per token (its IQ2_XXS decode bound the kernel with one).
  static constexpr int kProducerThreads = kTall ? 128 : 256;
  static constexpr int kThreads = kProducerThreads + kConsumerThreads;
  // Registers per thread after setmaxnreg: all of what the launch bounds give (65 536 / kThreads
  // per thread, a multiple of 8 below it) moved to the consumers, which hold 192 f32 of fragments
  // and their X copy offsets; the producers only decode. 384 threads: 56 + 2·224 = 504 (168 each);
  // 512: 48 + 208 = 256 (128 each; the IQ2_XXS producer spills 12 bytes at 48, a consumer more
  // below 208).
  // The narrow tile's consumers hold 80 f32 of fragments: its producers get registers to spare.
  static constexpr int kProducerRegs = kTall ? 56 : kNarrow ? 96 : 48;
  static constexpr int kConsumerRegs = kTall ? 224 : kNarrow ? 160 : 208;
  // Feature rows per decoding thread (two threads a row, one per half), kProducerThreads / 2 apart.
  static constexpr int kDRows = G::kBF * 8 / kCPT / kProducerThreads;
  static_assert(kDRows * kProducerThreads == 2 * G::kBF);
  // Scale table of one stage: per 32-column half, kBF f32 scales (+ 16 of padding, so the two
  // halves' writes fall in different banks); on the 128- and 16-token tiles in feature order, on
  // the 64-token tile in the order a thread reads them: pair index
  // j = f / 8 (feature 8j + 2q + c, q = lane % 4, c = f % 2), float4 (j / 2, q) holds the pairs of
  // j = 2·(j / 2) and 2·(j / 2) + 1, so a thread's 16 pairs are 8 LDS.128 (tab_index(); feature
  // f + 128 sits 128 floats after f, so a consumer's features 128g.. start at float 128g).
  static constexpr int kTabHalf = G::kBF + 16;  // floats
  static constexpr int kTabBytes = 2 * kTabHalf * 4;
  // Raw stages in flight: at step u, after the producer's barrier (every producer thread has
  // decoded step u − 1), the raw stage of step u + kLead goes into the slot of a stage whose last
  // step is at most u − 1: kRR·kSPR ≥ kLead + kSPR.
  static constexpr int raw_stages(int lead) { return (lead + 2 * G::kSPR - 1) / G::kSPR; }
  // From a 1024-aligned base: X slots, W slots, scale tables, raw ring (TMA: 128-aligned), lookup
  // tables, barriers (full, empty, raw).
  static constexpr int kRawOffset = kStages * (kXBytes + G::kWBytes + kTabBytes);
  static constexpr int smem(int lead) {
    return 1024 + kRawOffset + raw_stages(lead) * kRawBytes + G::kTableBytes + (2 * kStages + raw_stages(lead)) * 8;
  }
  static constexpr int kMaxSmem = 227 * 1024;
  // The deepest raw lead (≤ 4 steps) that fits: 4 but for Q8_0 on the 64-token tile (2) and F16 (3).
  static constexpr int kLead = smem(4) <= kMaxSmem ? 4 : smem(3) <= kMaxSmem ? 3 : smem(2) <= kMaxSmem ? 2 : 1;
  static constexpr int kRR = raw_stages(kLead);
  static constexpr int kSmem = smem(kLead);
  static_assert(kNarrow || (G::kBT * G::kBF == 2 * 64 * 128 && G::kXBytes == kXBytes), "two m64n128 consumers");
  static_assert(kSmem <= kMaxSmem);
  static_assert(G::kWBytes % 1024 == 0 && kXBytes % 1024 == 0 && kRawOffset % 128 == 0);
  static_assert(kRawBytes % 128 == 0);
};

// Position of feature f's scale within a half of the scale table.
__device__ __forceinline__ int tab_index(int f) {
  const int j = f >> 3, q = (f >> 1) & 3;
  return (((j >> 1) * 4 + q) << 2) + ((j & 1) << 1) + (f & 1);
}

template <class D, bool kGrouped, int kShape>
__global__ void __launch_bounds__(WgmmaGeometry<D, kShape>::kThreads, 1)
    gemm_wgmma_kernel(__grid_constant__ const GemmLaunch p, __grid_constant__ const CUtensorMap w_map) {
  using G = WgmmaGeometry<D, kShape>;
  constexpr bool kTall = G::kTall;
  constexpr int kBT = G::kBT, kBF = G::kBF, kSPR = G::kSPR, kRR = G::kRR, kPitch = G::kPitch, kLead = G::kLead;
  constexpr int kXBytes = G::kXBytes, kWBytes = G::kWBytes, kRawBytes = G::kRawBytes, kTabHalf = G::kTabHalf;
  constexpr int kXTile = G::kXTile, kXRows = G::kXRows, kDRows = G::kDRows;
  constexpr int kProducerThreads = G::kProducerThreads;
  extern __shared__ uint8_t smem_raw[];
  // Tiles on 1024-byte boundaries (the dynamic allocation is only 16-byte aligned for sure).
  const uint32_t base = (shared_address(smem_raw) + 1023u) & ~1023u;
  uint8_t* const base_ptr = smem_raw + (base - shared_address(smem_raw));
  const uint32_t xs = base;
  const uint32_t ws = xs + kStages * kXBytes;
  uint8_t* const ws_ptr = base_ptr + kStages * kXBytes;
  float* const tab = reinterpret_cast<float*>(ws_ptr + kStages * kWBytes);
  uint8_t* const raw_ptr = base_ptr + G::kRawOffset;
  const uint32_t raw = base + G::kRawOffset;
  uint8_t* const tables = raw_ptr + kRR * kRawBytes;
  const uint32_t full_bar = shared_address(tables + G::kTableBytes), empty_bar = full_bar + kStages * 8;
  const uint32_t raw_bar = empty_bar + kStages * 8;

  int row0, row_end, expert = 0;
  if constexpr (kGrouped) {
    if (!gemm_find_tile(p, blockIdx.y, kBT, &row0, &row_end, &expert)) return;
  } else {
    row0 = blockIdx.y * kBT;
    row_end = p.n_rows;
  }
  const int tile_end = min(row0 + kBT, row_end);
  const int f0 = blockIdx.x * kBF;
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  const int n_steps = p.n_in / kGemmK;

  if (tid == 0) {
    mbar_init_ring(full_bar, kProducerThreads + kConsumerThreads, empty_bar, kConsumerThreads, kStages, raw_bar, kRR);
  }
  if constexpr (D::kTableBytes > 0) D::load_tables(tables, p.iq2_tables);
  __syncthreads();

  if (warp < kProducerThreads / 32) {
    setmaxnreg_dec<G::kProducerRegs>();
    // Raw stage r (kStageElems columns of the kBF rows from f0) into raw slot r % kRR: the
    // 16-aligned span that holds it (rows are multiples of 16 bytes, so every row's stage has the
    // same offset in it), rows past n_out and bytes past a row's end read as zero.
    auto issue_raw = [&](int stage) {
      const uint32_t slot = static_cast<uint32_t>(stage % kRR);
      mbar_arrive_expect_tx(raw_bar + 8 * slot, kRawBytes);
      tma_load_3d(raw + slot * kRawBytes, &w_map, (stage * D::kStageBytes) & ~15, f0, expert, raw_bar + 8 * slot);
    };
    auto issue_raw_for_step = [&](int v) {
      if (v < n_steps && v % kSPR == 0) issue_raw(v / kSPR);
    };

    // Decode of step t into slot s: thread tid writes chunks dchunk..dchunk+3 (32-column half
    // dh = tid % 2) of feature rows tid / 2 + (kProducerThreads / 2)·i (i < kDRows) and that
    // half's scales.
    const int dh = tid & 1, dchunk = dh * kCPT;
    auto decode_row = [&](int t, int s, int i) {
      const int drow = tid / 2 + kProducerThreads / 2 * i;
      const int stage = t / kSPR;
      const int mis = (stage * D::kStageBytes) & 15;
      const uint8_t* row = raw_ptr + (stage % kRR) * kRawBytes + drow * kPitch + mis;
      float* const scale = tab + s * 2 * kTabHalf + dh * kTabHalf + (kTall || G::kNarrow ? drow : tab_index(drow));
      uint8_t* const dst = ws_ptr + s * kWBytes;
      const auto store = [&](int c, uint4 v) { *reinterpret_cast<uint4*>(dst + swz(drow, dchunk + c)) = v; };
      if constexpr (std::is_same_v<D, CodesQ8_0>) {
        // Q8_0 (a stage is the k-step's two blocks, thread h decodes block h): the stage starts
        // 4-aligned (16-aligned rows of 68-byte stages), so block 0 is d0 at word 0 and its
        // codes at bytes 2..33 (straddling words 0..8), block 1 is d1 in the upper half of word 8 and
        // its codes in words 9..16 (aligned). Thread h reads the 9 words 8h..8h+8 of the stage as
        // 32-bit loads (instead of 17 byte pairs), rotated by h (instruction k reads word
        // 8h + (k + h) % 9) so that the two threads of a row fall in different banks (2-way
        // conflicts instead of 4): then code word k is prmt(w[k], w[k+1]) with selector 0x5432
        // (h = 0: bytes 2-5 of the pair) or 0x3210 (h = 1: w[k] itself), and d is the low half of
        // w[0] (h = 0) or the upper half of w[8] (h = 1). Same code words, same f16 conversion as
        // CodesQ8_0::codes8: same bits.
        const uint32_t code_sel = dh ? 0x3210u : 0x5432u, d_sel = dh ? 0x7676u : 0x1010u;
        const uint32_t* src = reinterpret_cast<const uint32_t*>(row) + 8 * dh;
        const uint32_t* src_a = src + dh;          // words k + h, k = 0..7
        const uint32_t* src_b = src + 8 - 8 * dh;  // word (8 + h) % 9
        uint32_t w[9];
#pragma unroll
        for (int k = 0; k < 8; ++k) w[k] = src_a[k];
        w[8] = *src_b;
        *scale = __half2float(__ushort_as_half(static_cast<unsigned short>(__byte_perm(w[0], w[8], d_sel))));
#pragma unroll
        for (int c = 0; c < kCPT; ++c) {
          uint32_t h[4];
          // q + 128 per byte
          bytes_to_f16x2(__byte_perm(w[2 * c], w[2 * c + 1], code_sel) ^ 0x80808080u, kF16x2_1152, h);
          bytes_to_f16x2(__byte_perm(w[2 * c + 1], w[2 * c + 2], code_sel) ^ 0x80808080u, kF16x2_1152, h + 2);
          store(c, make_uint4(h[0], h[1], h[2], h[3]));
        }
      } else {
        // The codec's own decoder on the half's 32 elements (one block scale: kStageElems ≥ 256);
        // all loads before the first store (the compiler cannot tell the tiles apart, and a store in
        // between would keep it from sharing the sub-block header loads between chunks).
        const int e = (t % kSPR) * kGemmK + dchunk * 8;
        uint4 v[kCPT];
        if constexpr (requires { D::codes32(row, e, tables, v); }) {
          *scale = D::codes32(row, e, tables, v);
        } else {
#pragma unroll
          for (int c = 0; c < kCPT; ++c) v[c] = D::codes8(row, e + 8 * c, tables);
          *scale = D::scale(row, e);
        }
#pragma unroll
        for (int c = 0; c < kCPT; ++c) store(c, v[c]);
      }
    };

    if (tid == 0) {
#pragma unroll
      for (int v = 0; v < kLead; ++v) issue_raw_for_step(v);
    }
    for (int u = 0; u < n_steps; ++u) {
      const int s = u % kStages;
      if (u >= kStages) mbar_wait(empty_bar + 8 * s, ((u / kStages) & 1) ^ 1);
      named_barrier_sync<1, kProducerThreads>();  // every producer thread has decoded step u − 1
      if (tid == 0) issue_raw_for_step(u + kLead);
      const int stage = u / kSPR;
      mbar_wait(raw_bar + 8 * (stage % kRR), (stage / kRR) & 1);
#pragma unroll
      for (int i = 0; i < kDRows; ++i) decode_row(u, s, i);
      fence_proxy_async();  // the decoded tile is read by the tensor cores (async proxy)
      mbar_arrive(full_bar + 8 * s);
    }
    return;
  }

  setmaxnreg_inc<G::kConsumerRegs>();
  if constexpr (G::kNarrow) {
    narrow_consumer<G, kStages>(p, WgmmaSlots{xs, ws, tab, full_bar, empty_bar}, tid - kProducerThreads, row0,
                                tile_end, f0, n_steps);
    return;
  }
  // This consumer's features within the tile: 64g.. with all 128 tokens (kTall: W is the A operand,
  // X the B one, so the 64-row fragment runs over features), else 128g.. with all 64 tokens (X is
  // A, W is B).
  const int wg = (warp >> 2) - kProducerThreads / 128, wg_f = kTall ? 64 * wg : 128 * wg;
  const int ctid = tid - kProducerThreads;

  // X copies: chunk (ctid & 7) of rows x_row0 + (ctid & 127) / 8 + 16·i, hi and lo (rows past the
  // tile's end repeat its last row); 32-bit element offsets (gemm.cc checks x rows · x_stride < 2^31).
  const int chunk = ctid & 7, x_row0 = (kTall ? 64 * wg : 32 * wg) + ((ctid & 127) >> 3);
  uint32_t xoff[kXRows];
#pragma unroll
  for (int i = 0; i < kXRows; ++i) {
    xoff[i] = static_cast<uint32_t>(gemm_x_row(p, min(row0 + x_row0 + 16 * i, tile_end - 1)) * p.x_stride + chunk * 8);
  }
  const uint32_t x_dst = static_cast<uint32_t>(swz(x_row0, chunk));
  auto issue_x = [&](int u) {
    const int s = u % kStages;
    const uint32_t dst = xs + s * kXBytes + x_dst;
#pragma unroll
    for (int i = 0; i < kXRows; ++i) gemm_cp_async16(dst + i * 16 * 128, p.x + xoff[i] + u * kGemmK);
#pragma unroll
    for (int i = 0; i < kXRows; ++i) gemm_cp_async16(dst + kXTile + i * 16 * 128, p.x_lo + xoff[i] + u * kGemmK);
    mbar_arrive_on_cp_async(full_bar + 8 * s);
  };
  for (int u = 0; u < kStages && u < n_steps; ++u) issue_x(u);

  // Every row's input factor and output row are read before the first store: a load after a store
  // to y waits for it (the compiler cannot tell y from the row records), so reading them row by row
  // made the epilogue a chain of dependent global round trips (ncu of q_b: 41 % of the consumers'
  // stall samples). Rows past the tile's end read the last row's records and are not stored.
  // kTall: the records of rows 32k + lane of the tile (k < 4), read now, behind the pipeline's fill;
  // the epilogue takes each of its rows' from the lane that holds it.
  float rec_scale[4];
  int rec_out[4];
  if constexpr (kTall) {
#pragma unroll
    for (int k = 0; k < 4; ++k) gemm_row_record(p, row0 + 32 * k + lane, tile_end, &rec_scale[k], &rec_out[k]);
  }

  float acc[64], tmp0[64], tmp1[64];
#pragma unroll
  for (int i = 0; i < 64; ++i) acc[i] = tmp0[i] = tmp1[i] = 0.0f;

  // One 32-column chain: x_hi·codes and x_lo·codes for the two k16 slices of half h, into tmp.
  // w_desc and x_desc describe the slot's W and X hi tiles; a k16 slice is 32 bytes further, the
  // lo tile kXTile bytes (the descriptor's start address is in units of 16 bytes and no shared
  // address carries out of its 14 bits, so offsets add to the descriptor).
  auto chain = [&](float (&tmp)[64], uint64_t x_desc, uint64_t w_desc, int h) {
#pragma unroll
    for (int s = 0; s < 2; ++s) {
      const uint32_t k_units = static_cast<uint32_t>((2 * h + s) * 32 / 16);
      const uint64_t w = w_desc + k_units;
      const uint64_t x_hi = x_desc + k_units, x_lo = x_desc + kXTile / 16 + k_units;
      if constexpr (kTall) {
        wgmma_m64n128k16_f16(tmp, w, x_hi, s > 0);
        wgmma_m64n128k16_f16(tmp, w, x_lo, true);
      } else {
        wgmma_m64n128k16_f16(tmp, x_hi, w, s > 0);
        wgmma_m64n128k16_f16(tmp, x_lo, w, true);
      }
    }
    wgmma_commit();
  };
  // acc += scale·tmp with the scales of half h of slot s. kTall: a thread's accumulators are
  // features 16·(warp % 4) + lane / 4 + 8·(c / 2) of its 64, so two scales (plain feature order in
  // the table), read ahead into d[h]; else features 8j + 2·(lane % 4) + c % 2 of its 128
  // (tab_index order, 8 LDS.128).
  auto scale_add = [&](const float (&tmp)[64], int s, int h, const float (&d)[2][2]) {
    if constexpr (kTall) {
      const float d0 = d[h][0], d1 = d[h][1];
#pragma unroll
      for (int j = 0; j < 16; ++j) {
        acc[4 * j + 0] = fmaf(d0, tmp[4 * j + 0], acc[4 * j + 0]);
        acc[4 * j + 1] = fmaf(d0, tmp[4 * j + 1], acc[4 * j + 1]);
        acc[4 * j + 2] = fmaf(d1, tmp[4 * j + 2], acc[4 * j + 2]);
        acc[4 * j + 3] = fmaf(d1, tmp[4 * j + 3], acc[4 * j + 3]);
      }
      return;
    }
    const float4* sc =
        reinterpret_cast<const float4*>(tab + s * 2 * kTabHalf + h * kTabHalf + wg_f) + (lane & 3);
#pragma unroll
    for (int jj = 0; jj < 8; ++jj) {
      const float4 d4 = sc[4 * jj];  // the pairs of j = 2jj (x, y) and 2jj + 1 (z, w)
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        const int j = 2 * jj + e;
        const float dx = e ? d4.z : d4.x, dy = e ? d4.w : d4.y;
        acc[4 * j + 0] = fmaf(dx, tmp[4 * j + 0], acc[4 * j + 0]);
        acc[4 * j + 1] = fmaf(dy, tmp[4 * j + 1], acc[4 * j + 1]);
        acc[4 * j + 2] = fmaf(dx, tmp[4 * j + 2], acc[4 * j + 2]);
        acc[4 * j + 3] = fmaf(dy, tmp[4 * j + 3], acc[4 * j + 3]);
      }
    }
  };

  for (int t = 0; t < n_steps; ++t) {
    const int s = t % kStages;
    const uint32_t phase = (t / kStages) & 1;
    mbar_wait(full_bar + 8 * s, phase);
    fence_proxy_async();  // X landed through cp.async (generic proxy), read by the tensor cores
    const uint64_t x_desc = wgmma_desc_sw128(xs + s * kXBytes);
    const uint64_t w_desc = wgmma_desc_sw128(ws + s * kWBytes + wg_f * 128);
    // kTall: this thread's two scales of each half, read now so that the FFMAs after each chain do
    // not wait for them (they did: a shared load behind the MMAs' operand reads).
    float d[2][2];
    if constexpr (kTall) {
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const float* sc = tab + s * 2 * kTabHalf + h * kTabHalf + wg_f + 16 * (warp & 3) + (lane >> 2);
        d[h][0] = sc[0];
        d[h][1] = sc[8];
      }
    }
    wgmma_fence_operands(tmp0);
    wgmma_fence_operands(tmp1);
    wgmma_fence();
    chain(tmp0, x_desc, w_desc, 0);
    chain(tmp1, x_desc, w_desc, 1);
    wgmma_wait<1>();
    wgmma_fence_operands(tmp0);
    scale_add(tmp0, s, 0, d);
    wgmma_wait<0>();
    wgmma_fence_operands(tmp1);
    scale_add(tmp1, s, 1, d);
    mbar_arrive(empty_bar + 8 * s);
    if (t + kStages < n_steps) {
      // Both consumers read all of X: the slot is free once both are done with it.
      mbar_wait(empty_bar + 8 * s, phase);
      issue_x(t + kStages);
    }
  }

  // acc[4j + c] is D[16·(warp % 4) + lane / 4 + 8·(c / 2)][8j + 2·(lane % 4) + c % 2] of the
  // consumer's m64n128 fragment: D[feature][token] on the 128-token tile, D[token][feature] on the
  // 64-token one.
  const int frag_row = 16 * (warp & 3) + (lane >> 2), frag_col = 2 * (lane & 3);
  if constexpr (kTall) {
    const int f = f0 + wg_f + frag_row;
    float scale[16][2];
    int out[16][2];
#pragma unroll
    for (int j = 0; j < 16; ++j) {
#pragma unroll
      for (int c = 0; c < 2; ++c) {
        const int src = 8 * (j & 3) + frag_col + c;
        scale[j][c] = __shfl_sync(0xffffffffu, rec_scale[j >> 2], src);
        out[j][c] = __shfl_sync(0xffffffffu, rec_out[j >> 2], src);
      }
    }
#pragma unroll
    for (int j = 0; j < 16; ++j) {
#pragma unroll
      for (int c = 0; c < 2; ++c) {
        if (row0 + 8 * j + frag_col + c >= tile_end) continue;
        float* yrow = p.y + static_cast<int64_t>(out[j][c]) * p.y_stride;
        if (f < p.n_out) yrow[f] = acc[4 * j + c] * scale[j][c];
        if (f + 8 < p.n_out) yrow[f + 8] = acc[4 * j + 2 + c] * scale[j][c];
      }
    }
  } else {
    const bool pairs = (reinterpret_cast<uintptr_t>(p.y) & 7) == 0 && (p.y_stride & 1) == 0;
    float scale[2];
    int out[2];
#pragma unroll
    for (int h = 0; h < 2; ++h) gemm_row_record(p, row0 + frag_row + 8 * h, tile_end, &scale[h], &out[h]);
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      if (row0 + frag_row + 8 * h >= tile_end) continue;
      float* yrow = p.y + static_cast<int64_t>(out[h]) * p.y_stride;
#pragma unroll
      for (int j = 0; j < 16; ++j) {
        const int f = f0 + wg_f + 8 * j + frag_col;
        const float v0 = acc[4 * j + 2 * h] * scale[h], v1 = acc[4 * j + 2 * h + 1] * scale[h];
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

template <class D, bool kGrouped, int kShape = kShapeTall>
cudaError_t launch_wgmma(const GemmLaunch& l, cudaStream_t stream) {
  using G = WgmmaGeometry<D, kShape>;
  const int64_t slots = kGrouped ? gemm_grouped_slots(l, G::kBT) : (l.n_rows + G::kBT - 1) / G::kBT;
  return launch_tma_gemm<gemm_wgmma_kernel<D, kGrouped, kShape>>(l, stream, G::kThreads, G::kSmem, G::kSpan, G::kBF,
                                                                 G::kBF, slots);
}

// The tails modes pair the 128-token tile (all but short tails) with the 64-token one (those),
// and the 64-token tile (groups of more than kFewRows rows) with the 16-token one (the others).
bool tails_fit(GemmKernelTile tile, GemmTails tails) {
  switch (tails) {
    case GemmTails::kAll: return true;
    case GemmTails::kSkipShort: return tile == GemmKernelTile::kWgmma;
    case GemmTails::kOnlyShort:
    case GemmTails::kSkipFew: return tile == GemmKernelTile::kWgmma64;
    case GemmTails::kOnlyFew: return tile == GemmKernelTile::kWgmmaNarrow;
  }
  return false;
}

}  // namespace

cudaError_t launch_gemm_wgmma(const GemmLaunch& l, cudaStream_t stream) {
  if (!l.x_lo || l.x_limbs || (!l.offsets && (l.x_rows || l.y_rows))) return cudaErrorInvalidValue;
  const bool grouped = l.offsets != nullptr;
  const bool tall = l.tile == GemmKernelTile::kWgmma, narrow = l.tile == GemmKernelTile::kWgmmaNarrow;
  if (!tall && ((l.tile != GemmKernelTile::kWgmma64 && !narrow) || !grouped)) return cudaErrorInvalidValue;
  if (l.tails != GemmTails::kAll && (!grouped || !tails_fit(l.tile, l.tails))) return cudaErrorInvalidValue;
  switch (l.type) {
    case gguf::TensorType::Q8_0:
      if (!grouped) return launch_wgmma<CodesQ8_0, false>(l, stream);
      return tall     ? launch_wgmma<CodesQ8_0, true>(l, stream)
             : narrow ? launch_wgmma<CodesQ8_0, true, kShapeNarrow>(l, stream)
                      : launch_wgmma<CodesQ8_0, true, kShapeWide>(l, stream);
    case gguf::TensorType::F16:
      if (grouped) return cudaErrorInvalidValue;
      return launch_wgmma<CodesF16, false>(l, stream);
    case gguf::TensorType::IQ2_XXS:
      if (!grouped) return cudaErrorInvalidValue;
      return tall ? launch_wgmma<CodesIQ2_XXS, true>(l, stream) : launch_gemm_wgmma_regs(l, stream);
    default: return cudaErrorInvalidValue;
  }
}

static_assert(WgmmaGeometry<CodesQ8_0, kShapeNarrow>::kBT == kFewRows,
              "GemmTails::kOnlyFew takes a group as one 16-token tile");

int gemm_wgmma_tile_rows(GemmKernelTile tile) {
  return tile == GemmKernelTile::kWgmma     ? WgmmaGeometry<CodesQ8_0, kShapeTall>::kBT
         : tile == GemmKernelTile::kWgmma64 ? WgmmaGeometry<CodesQ8_0, kShapeWide>::kBT
                                            : WgmmaGeometry<CodesQ8_0, kShapeNarrow>::kBT;
}

}  // namespace dsv4::cuda::detail
