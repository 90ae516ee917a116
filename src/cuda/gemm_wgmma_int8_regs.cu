// The int8 GEMM's 16-token tile (GemmTile::kWgmmaNarrow in int8 mode: the routed experts' Q2_K
// down projection for groups of few rows) with the codes decoded straight into the wgmma's A
// registers: no producer warpgroup, no decoded tile in shared memory (GEMM_NOTES.md "Session 27").
// The 16-token tile it replaces (gemm_wgmma_int8.cu's producer/consumer kernel on 16 tokens) ran at
// ≈ 1.35 µs a step of 128 features (H200, a 128-token chunk): its consumers waited for a decode two
// producer warpgroups wrote to shared memory and read back by ldmatrix, and their m64n16 MMAs (one
// a limb and slice) were too few to hide that chain. Here every warp decodes what it multiplies,
// from the raw blocks, in four integer instructions per four codes, and a slice's three limb
// products are one m64n48 MMA (a wgmma costs about the same whether N is 16 or 48: three a slice
// were the launch's floor, docs/PERF.md session 27).
//
//   tile       16 tokens × 256 features: four warpgroups, warpgroup g owns features 64g..64g+63 (one
//              m64 fragment, W is the A operand and a limb plane the B one: D is features × tokens),
//              each thread two feature rows (r and r + 8 of its warp's 16). A CTA runs kTilesPerCta
//              feature tiles of the same rows one after the other.
//   k-step     one Q2_K block (256 columns, 8 k32 slices, one m64n48k32 each: B is the 16 rows of
//              limb plane 0, then of planes 1 and 2), as gemm_wgmma_int8.cu. Slice s is half
//              h = s / 4 (columns 128h..), 2-bit field j = s % 4 of the half's 32 quant bytes: thread
//              q = lane % 4 needs the codes of columns 4q..4q+3 and 16 + 4q.. of the slice (the A
//              fragment's layout), which are field j of quant words q and q + 4 of the half, scaled
//              by the scale nibbles of groups 8h + 2j and 8h + 2j + 1: four consecutive codes are
//              (word >> 2j) & 0x03030303 times the nibble (q ≤ 3, sc ≤ 15: no carries).
//   X          the tile's rows' three limb planes and block records for the whole row (n_in ≤
//              kMaxBlocks · 256), copied once by cp.async at the start, each block counted on its own
//              barrier: every feature tile reads them again from shared memory.
//   W          raw blocks (256 feature rows × 112 bytes) by TMA, kLead steps ahead into a ring of
//              kRawSlots, issued by thread 0; each warp arrives on raw_empty once it has read a step.
//   numbers    gemm_wgmma_int8.cu's, product for product: the same codes, the same exact int32
//              chains started at kCBias, the offsets' f16 MMAs with the same A (the m pairs, built
//              here from the scale bytes as Int8Q2_K::table builds them) and B, int8_block_term in
//              the same order: the same bits (GemmInt8 tests it against the 64-token tile).
// Rows past the tile's end are computed from copies of its last row and never stored; features
// past n_out from TMA's zero rows.
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "cuda/cp_async.cuh"
#include "cuda/gemm_int8_codes.cuh"
#include "cuda/gemm_kernel.cuh"
#include "cuda/gemm_launch.h"
#include "cuda/mbarrier.cuh"
#include "cuda/tma_gemm_launch.cuh"
#include "cuda/wgmma.cuh"

namespace dsv4::cuda::detail {

namespace {

constexpr int kBT = kFewRows;                          // tokens a CTA
constexpr int kThreads = 512, kWarps = kThreads / 32;  // four warpgroups
constexpr int kBF = 256;                               // features a tile: 64 a warpgroup
constexpr int kTilesPerCta = 2;
constexpr int kBlockBytes = Int8Q2_K::kStageBytes;  // one Q2_K block
constexpr int kSpan = kInt8RawSpan;                  // raw bytes a row and step
constexpr int kRawBytes = kBF * kSpan;
constexpr int kRawSlots = 4;
constexpr int kLead = 2;  // step t + kLead goes into the slot of step t + kLead − kRawSlots
static_assert(kLead <= kRawSlots - 2, "thread 0 waits only for steps every warp has long finished");
// X of block b: 128-column half h at b·kXBytes + 3h·kLimbHalf, limb l's 16 swizzled 128-byte rows
// kLimbHalf apart in it (one 48-row B operand, 1024-aligned); the rows' records of block b at
// kRecOffset + b·kRecBytes.
constexpr int kLimbHalf = kBT * 128;
constexpr int kXBytes = kInt8Limbs * 2 * kLimbHalf;
constexpr int kRecBytes = kBT * kInt8RecordBytes;
constexpr int kMaxBlocks = kInt8NarrowMaxIn / kInt8Block;  // flash's routed down projection: 2048
constexpr int kRecOffset = kMaxBlocks * kXBytes;
constexpr int kRawOffset = kRecOffset + kMaxBlocks * kRecBytes;
constexpr int kBarOffset = kRawOffset + kRawSlots * kRawBytes;
constexpr int kSmem = 1024 + kBarOffset + (kMaxBlocks + 2 * kRawSlots) * 8;
static_assert(kSmem <= 227 * 1024 && kXBytes % 1024 == 0 && kRawOffset % 128 == 0 && kRawBytes % 128 == 0);
// X chunks (16 bytes) a block: the limb rows (16 a row and plane), then the records (5 a row).
constexpr int kLimbChunks = kInt8Limbs * kBT * 16, kRecChunks = kInt8RecordBytes / 16;
static_assert(kLimbChunks == kThreads + kThreads / 2 && kLimbChunks + kBT * kRecChunks <= 2 * kThreads);

// Word k of a staged block (4-aligned).
__device__ __forceinline__ uint32_t block_word(const uint8_t* block, int k) {
  return reinterpret_cast<const uint32_t*>(block)[k];
}

// f16 pair p of one feature row's offset A fragment: {m_2p, m_2p+1}, the high nibbles of scale
// bytes 2p and 2p + 1 (sc_word: the scale word holding them; odd: p odd), as Int8Q2_K::table.
__device__ __forceinline__ uint32_t m_pair(uint32_t sc_word, bool odd) {
  return hsub2_bits(prmt((sc_word >> 4) & 0x0F0F0F0Fu, 0x64646464u, odd ? 0x4342u : 0x4140u), kF16x2_1024);
}

__global__ void __launch_bounds__(kThreads, 1)
    gemm_int8_regs_kernel(__grid_constant__ const GemmLaunch p, __grid_constant__ const CUtensorMap w_map) {
  extern __shared__ uint8_t smem_raw[];
  const uint32_t base = (shared_address(smem_raw) + 1023u) & ~1023u;
  uint8_t* const base_ptr = smem_raw + (base - shared_address(smem_raw));
  const uint32_t raw = base + kRawOffset;
  const uint8_t* const raw_ptr = base_ptr + kRawOffset;
  const uint32_t x_full = base + kBarOffset, raw_full = x_full + 8 * kMaxBlocks;
  const uint32_t raw_empty = raw_full + 8 * kRawSlots;

  int row0, row_end, expert;
  if (!gemm_find_tile(p, blockIdx.y, kBT, &row0, &row_end, &expert)) return;
  const int tile_end = min(row0 + kBT, row_end);
  const int f0 = blockIdx.x * kTilesPerCta * kBF;
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, q = lane & 3;
  const int n_blocks = p.n_in / kInt8Block;
  // Steps u of the CTA: block u % n_blocks of feature tile u / n_blocks.
  const int n_total = min(kTilesPerCta, (p.n_out - f0 + kBF - 1) / kBF) * n_blocks;

  if (tid == 0) {
    for (int b = 0; b < n_blocks; ++b) mbar_init(x_full + 8 * b, kThreads);
    for (int r = 0; r < kRawSlots; ++r) {
      mbar_init(raw_full + 8 * r, 1);
      mbar_init(raw_empty + 8 * r, kWarps);
    }
    mbar_init_fence();
  }
  __syncthreads();

  auto issue_raw = [&](int u) {
    const uint32_t slot = static_cast<uint32_t>(u % kRawSlots);
    mbar_arrive_expect_tx(raw_full + 8 * slot, kRawBytes);
    tma_load_3d(raw + slot * kRawBytes, &w_map, ((u % n_blocks) * kBlockBytes) & ~15, f0 + u / n_blocks * kBF,
                expert, raw_full + 8 * slot);
  };
  if (tid == 0) {
    for (int u = 0; u < kLead && u < n_total; ++u) issue_raw(u);
  }

  // X: chunk tid of every block (a limb row chunk of planes 0-1), and chunk tid + kThreads (plane
  // 2, or a record chunk) where there is one; rows past the tile's end repeat its last row. Offsets
  // in 32 bits (gemm.cc checks x rows · x_stride < 2^31).
  {
    auto src_row = [&](int r) { return gemm_x_row(p, min(row0 + r, tile_end - 1)); };
    auto limb_chunk = [&](int idx, uint32_t* dst, const int8_t** src) {
      const int l = idx / (kBT * 16), r = (idx / 16) % kBT, c = idx % 16;
      *dst = static_cast<uint32_t>((3 * (c / 8) + l) * kLimbHalf + swz(r, c % 8));
      *src = p.x_limbs + l * p.x_plane + static_cast<uint32_t>(src_row(r) * p.x_stride + 16 * c);
    };
    uint32_t dst0, dst1 = 0;
    const int8_t* src0;
    const int8_t* src1 = nullptr;
    const uint8_t* rec_src = nullptr;
    limb_chunk(tid, &dst0, &src0);
    const int idx1 = tid + kThreads;
    if (idx1 < kLimbChunks) {
      limb_chunk(idx1, &dst1, &src1);
    } else if (idx1 < kLimbChunks + kBT * kRecChunks) {
      const int r = (idx1 - kLimbChunks) / kRecChunks, c = (idx1 - kLimbChunks) % kRecChunks;
      dst1 = static_cast<uint32_t>(kRecOffset + r * kInt8RecordBytes + 16 * c);
      rec_src = p.x_records + static_cast<uint32_t>(src_row(r) * n_blocks * kInt8RecordBytes + 16 * c);
    }
    for (int b = 0; b < n_blocks; ++b) {
      gemm_cp_async16(base + b * kXBytes + dst0, src0 + b * kInt8Block);
      if (src1) gemm_cp_async16(base + b * kXBytes + dst1, src1 + b * kInt8Block);
      if (rec_src) gemm_cp_async16(base + b * kRecBytes + dst1, rec_src + b * kInt8RecordBytes);
      mbar_arrive_on_cp_async(x_full + 8 * b);
    }
  }

  // This thread's feature rows within the tile (rows r and r + 8 of its warp's 16) and its
  // outputs: acc[4j + c] = D[feature fa + 8·(c / 2)][token 8j + 2q + c % 2].
  const int fa = 16 * warp + (lane >> 2);
  float acc[8];
  int32_t ch[8 * kInt8Limbs];  // limb l's chain: ch[8l + 4j + c] (D columns 16l + 8j + 2q + c % 2)
#pragma unroll
  for (int i = 0; i < 8; ++i) acc[i] = 0.0f;
  // The records' B fragments for the offsets: row lane % 8, 16-byte chunk lane / 8 (matrices 0-1
  // the hi group sums, 2-3 the lo ones).
  const uint32_t rec_lane = static_cast<uint32_t>((lane & 7) * kInt8RecordBytes + 16 * (lane >> 3));

  // Step u's raw words (per row i: the scale words, bytes 0-15; quant words q and q + 4 of each half,
  // bytes 16..79; d and dmin, bytes 80-83). (Loaded for step u + 1 while step u's MMAs ran, they
  // gained nothing: docs/PERF.md session 27.)
  struct RawWords {
    uint32_t sc[2][4], qs[2][2][2], dd[2];
  };
  auto load_raw = [&](int u, RawWords& w) {
    const int slot = u % kRawSlots;
    if (tid == 0 && u + kLead < n_total) {
      const int reused = u + kLead - kRawSlots;  // the step whose slot step u + kLead takes
      if (reused >= 0) mbar_wait(raw_empty + 8 * (reused % kRawSlots), (reused / kRawSlots) & 1);
      issue_raw(u + kLead);
    }
    mbar_wait(raw_full + 8 * slot, (u / kRawSlots) & 1);
    const uint8_t* const rows =
        raw_ptr + slot * kRawBytes + fa * kSpan + (((u % n_blocks) * kBlockBytes) & 15);
#pragma unroll
    for (int i = 0; i < 2; ++i) {
      const uint8_t* const row = rows + 8 * i * kSpan;
#pragma unroll
      for (int k = 0; k < 4; ++k) w.sc[i][k] = block_word(row, k);
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        w.qs[i][h][0] = block_word(row, 4 + 8 * h + q);
        w.qs[i][h][1] = block_word(row, 8 + 8 * h + q);
      }
      w.dd[i] = block_word(row, 20);
    }
  };
  // Step u's A registers (a[s][i + 2·sel]: row i's codes of columns 16·sel + 4q.. of slice s), the
  // offsets' A fragment (m pairs q and q + 4 of rows fa and fa + 8), the rows' d and dmin·2^12; then
  // the raw slot is released.
  struct Decoded {
    uint32_t a[8][4], am[4];
    float d[2], dm[2];
  };
  auto decode = [&](int u, RawWords& w, Decoded& r) {
    const bool odd = (q & 1) != 0;
    r.am[0] = m_pair((q & 2) ? w.sc[0][1] : w.sc[0][0], odd);
    r.am[1] = m_pair((q & 2) ? w.sc[1][1] : w.sc[1][0], odd);
    r.am[2] = m_pair((q & 2) ? w.sc[0][3] : w.sc[0][2], odd);
    r.am[3] = m_pair((q & 2) ? w.sc[1][3] : w.sc[1][2], odd);
#pragma unroll
    for (int i = 0; i < 2; ++i) {
#pragma unroll
      for (int k = 0; k < 4; ++k) w.sc[i][k] &= 0x0F0F0F0Fu;  // the scales (the high nibbles were the m)
    }
#pragma unroll
    for (int h = 0; h < 2; ++h) {
#pragma unroll
      for (int j = 0; j < 4; ++j) {
#pragma unroll
        for (int i = 0; i < 2; ++i) {
#pragma unroll
          for (int sel = 0; sel < 2; ++sel) {
            const int g = 8 * h + 2 * j + sel;  // the scale group
            const uint32_t scale = __byte_perm(w.sc[i][g >> 2], 0, 0x4440 | (g & 3));
            r.a[4 * h + j][i + 2 * sel] = ((w.qs[i][h][sel] >> (2 * j)) & 0x03030303u) * scale;
          }
        }
      }
    }
#pragma unroll
    for (int i = 0; i < 2; ++i) {
      r.d[i] = f16_to_f32(static_cast<uint16_t>(w.dd[i]));
      r.dm[i] = f16_to_f32(static_cast<uint16_t>(w.dd[i] >> 16)) * kInt8SumUnit;
    }
    __syncwarp();
    if (lane == 0) mbar_arrive(raw_empty + 8 * (u % kRawSlots));
  };

  // Step u: block u % n_blocks of feature tile u / n_blocks.
  for (int u = 0; u < n_total; ++u) {
    RawWords raw_words;
    Decoded cur;
    load_raw(u, raw_words);
    decode(u, raw_words, cur);
    const int blk = u % n_blocks, tile = u / n_blocks;
    const uint32_t xb = base + blk * kXBytes, rb = base + kRecOffset + blk * kRecBytes;
    // Block blk's X: landed and fenced once, in the first tile.
    if (tile == 0) {
      mbar_wait(x_full + 8 * blk, 0);
      fence_proxy_async();  // the limbs landed through cp.async (generic proxy), read by the tensor cores
    }
#pragma unroll
    for (int32_t& c : ch) c = kCBias;
    wgmma_fence_operands(ch);
#pragma unroll
    for (auto& a : cur.a) wgmma_fence_operands(a);
    wgmma_fence();
    const uint32_t x_lo = wgmma_desc_sw128_lo(xb);
#pragma unroll
    for (int k = 0; k < 8; ++k) {
      wgmma_m64n48k32_s8_ra(ch, cur.a[k], wgmma_desc_sw128_at(x_lo, 3 * (k >> 2) * kLimbHalf + (k & 3) * 32));
    }
    wgmma_commit();
    // Meanwhile the records' B fragments; then per n8 token column the offsets and the terms.
    const uint8_t* const rec = base_ptr + kRecOffset + blk * kRecBytes;
    uint32_t bf[2][4];
    ldmatrix_x4(bf[0], rb + rec_lane);
    ldmatrix_x4(bf[1], rb + rec_lane + 8 * kInt8RecordBytes);
    wgmma_wait<0>();
    wgmma_fence_operands(ch);
#pragma unroll
    for (int j = 0; j < 2; ++j) {
      float o[4];
      mma_f16_zero(o, cur.am, bf[j]);
      mma_f16(o, cur.am, bf[j] + 2);
      const float* e2 = reinterpret_cast<const float*>(rec + (8 * j + 2 * q) * kInt8RecordBytes + 64);
      const float e[2] = {e2[0], e2[kInt8RecordBytes / 4]};
#pragma unroll
      for (int c = 0; c < 4; ++c) {
        acc[4 * j + c] = int8_block_term(acc[4 * j + c], ch[4 * j + c], ch[8 + 4 * j + c], ch[16 + 4 * j + c], o[c],
                                         cur.d[c >> 1], cur.dm[c >> 1], e[c & 1]);
      }
    }
    if (blk == n_blocks - 1) {
      const int f = f0 + tile * kBF + fa;
#pragma unroll
      for (int j = 0; j < 2; ++j) {
#pragma unroll
        for (int c = 0; c < 2; ++c) {
          const int r = row0 + 8 * j + 2 * q + c;
          if (r >= tile_end) continue;
          float* yrow = p.y + static_cast<int64_t>(gemm_y_row(p, r)) * p.y_stride;
          if (f < p.n_out) yrow[f] = acc[4 * j + c];
          if (f + 8 < p.n_out) yrow[f + 8] = acc[4 * j + 2 + c];
        }
      }
#pragma unroll
      for (int i = 0; i < 8; ++i) acc[i] = 0.0f;
    }
  }
}

}  // namespace

// l.tile kWgmmaNarrow, l.tails kAll or kOnlyFew, n_in ≤ kInt8NarrowMaxIn.
cudaError_t launch_gemm_wgmma_int8_regs(const GemmLaunch& l, cudaStream_t stream) {
  if (!l.x_limbs || !l.x_records || !l.offsets || l.type != gguf::TensorType::Q2_K || l.row_bytes % 16 != 0 ||
      l.slab_bytes % 16 != 0 || l.tile != GemmKernelTile::kWgmmaNarrow || l.n_in > kInt8NarrowMaxIn ||
      (l.tails != GemmTails::kAll && l.tails != GemmTails::kOnlyFew)) {
    return cudaErrorInvalidValue;
  }
  return launch_tma_gemm<gemm_int8_regs_kernel>(l, stream, kThreads, kSmem, kSpan, kBF, kTilesPerCta * kBF,
                                                gemm_grouped_slots(l, kBT));
}

}  // namespace dsv4::cuda::detail
