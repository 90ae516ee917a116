// The split-mode GEMM on Hopper's wgmma (GEMM_NOTES.md, "Sixth version" and "Seventh version"):
// the numbers of gemm_kernel.cuh's split mode — exact integer weight codes (gemm_codes.cuh) times
// x_hi and x_lo on the tensor cores, each 32-column block's four k16 products summed into a
// temporary started at zero, then acc = fma(scale, tmp, acc) in f32 — with the MMAs issued as
// m64n128k16 wgmma from shared memory instead of mma.sync from ldmatrix fragments. One kernel
// source, templated on the codec (CodesQ8_0: dense and grouped; CodesIQ2_XXS: grouped, the routed
// experts' gate/up) and on the rows: dense (rows [0, n_rows)) or grouped (gemm.h's GroupedGemm:
// the CTA's (group, row tile) found from the offsets as gemm_kernel.cuh does, X rows gathered by
// x_rows, output rows scattered by y_rows).
//
// Tiles (two warpgroups, 256 threads, each warpgroup one m64n128 fragment: acc and two temporaries
// of 64 f32 each per thread): 128 tokens × 128 features per CTA, warpgroup g owns tokens
// 64g..64g+63 and all 128 features; or 64 tokens × 256 features (grouped only: an expert's rows
// average 48 at 2048-token chunks, so half the 128-token tile would be padding), both warpgroups
// on the same 64 tokens, warpgroup g owns features 128g..128g+127, each decoded feature row serving
// 64 tokens instead of 128. Every thread also copies and decodes (no producer warps: the MMAs are
// asynchronous, so the decode of step t+1 runs while the tensor cores work on step t). Per
// 64-column k-step t:
//   wait for cp.async group t (X hi/lo of step t, the raw stage first decoded at t + 1),
//   fence.proxy.async (the tensor cores read through the async proxy what cp.async and the decoder
//   wrote), barrier, issue cp.async group t + kAhead; chain 0 (columns 0-31: hi, lo, hi, lo k16
//   MMAs) into tmp0, commit, chain 1 (columns 32-63) into tmp1, commit; decode W(t + 1) and its
//   scales; wait for chain 0, acc += scale·tmp0; wait for chain 1, acc += scale·tmp1.
// Every MMA of step t has completed before the barrier of step t + 1, so the buffers need no more
// ordering than gemm_kernel.cuh's, with its buffer counts (GemmGeometry: 3 X buffers and 3 raw
// stages for Q8_0, 4 and 2 for IQ2_XXS whose raw stage serves 4 k-steps; 2 decoded W buffers with
// their scale tables) and cp.async schedule (kSX − 1 groups in flight). Keeping chain 1
// in flight across the barrier (the tensor pipe idles there) makes ptxas serialise every wgmma
// (C7514: it cannot follow a pending group around the loop's back edge), GEMM_NOTES.md.
// Rows past the tile's end (a group's last tile, the dense last tile) are computed from copies of
// the tile's last row and never stored. A warpgroup whose 64 rows are all past the end still issues its
// MMAs: a branch around them makes ptxas serialise every wgmma of the kernel (C7518, "WG.DP in
// divergent path").
// All tiles start on 1024-byte boundaries (the 128-byte swizzle's period).
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <type_traits>

#include "cuda/gemm_codes.cuh"
#include "cuda/gemm_kernel.cuh"
#include "cuda/gemm_launch.h"
#include "cuda/wgmma.cuh"

namespace dsv4::cuda::detail {

namespace {

// The CTA as gemm_kernel.cuh's geometry sees it: 8 warps, each holding the accumulators of
// 16 rows × 128 features (its quarter of its warpgroup's m64n128 fragment), stacked on the tokens
// (kTall: 128 × 128) or 4 on the tokens × 2 on the features (64 × 256).
template <bool kTall>
struct GemmTileWgmma {
  static constexpr int kWarpsT = kTall ? 8 : 4, kWarpsF = kTall ? 1 : 2, kMT = 1, kNF = 16;
  static constexpr bool kSplit = true;
};
constexpr int kThreads = kGemmThreads;
constexpr int kWB = 2;     // decoded W buffers (and scale tables)
constexpr int kCPT = 4;    // decoded 16-byte chunks per thread and row: one 32-column half, so one scale
constexpr int kLanes = 8;  // threads per raw row (kChunks ≤ 8)

template <class D, bool kTall>
struct WgmmaGeometry : GemmGeometry<D, GemmTileWgmma<kTall>> {
  using G = GemmGeometry<D, GemmTileWgmma<kTall>>;
  static constexpr int kAhead = G::kSX - 1;  // cp.async groups in flight
  static constexpr int kChunks = G::kSpan / 16;
  static constexpr int kXTile = G::kBT * 128;  // one of hi / lo
  static constexpr int kXRows = G::kBT / 32;   // X rows per thread per tile
  // Feature rows per decoding thread (two threads a row, one per half), 128 apart.
  static constexpr int kDRows = G::kBF * 8 / kCPT / kThreads;
  static constexpr int kRawPasses = G::kBF * kLanes / kThreads;
  // Scale table of one W buffer: per 32-column half, kBF f32 scales (+ 16 of padding, so the two
  // halves' writes fall in different banks) in the order a thread reads them: pair index
  // j = f / 8 (feature 8j + 2q + c, q = lane % 4, c = f % 2), float4 (j / 2, q) holds the pairs of
  // j = 2·(j / 2) and 2·(j / 2) + 1, so a thread's 16 pairs are 8 LDS.128 (tab_index(); feature
  // f + 128 sits 128 floats after f, so a warpgroup's features 128g.. start at float 128g).
  static constexpr int kTabHalf = G::kBF + 16;  // floats
  static constexpr int kTabBytes = 2 * kTabHalf * 4;
  // Tiles from a 1024-aligned base: X buffers, W buffers, raw stages, scale tables, lookup tables.
  static constexpr int kSmem = 1024 + G::kSX * G::kXBytes + kWB * G::kWBytes + G::kRR * G::kRawBytes +
                               kWB * kTabBytes + G::kTableBytes;
  static_assert(G::kBT * G::kBF == 2 * 64 * 128 && G::kXBytes == 2 * kXTile, "two m64n128 warpgroups");
  static_assert(kSmem <= 227 * 1024);
  static_assert(kChunks <= kLanes);
};

// Position of feature f's scale within a half of the scale table.
__device__ __forceinline__ int tab_index(int f) {
  const int j = f >> 3, q = (f >> 1) & 3;
  return (((j >> 1) * 4 + q) << 2) + ((j & 1) << 1) + (f & 1);
}

__device__ __forceinline__ void fence_proxy_async() {
  asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
}

template <class D, bool kGrouped, bool kTall>
__global__ void __launch_bounds__(kThreads, 1) gemm_wgmma_kernel(__grid_constant__ const GemmLaunch p) {
  using G = WgmmaGeometry<D, kTall>;
  constexpr int kBT = G::kBT, kBF = G::kBF, kSX = G::kSX, kSPR = G::kSPR, kRR = G::kRR, kPitch = G::kPitch;
  constexpr int kAhead = G::kAhead, kXBytes = G::kXBytes, kWBytes = G::kWBytes, kRawBytes = G::kRawBytes;
  constexpr int kXTile = G::kXTile, kXRows = G::kXRows, kDRows = G::kDRows, kTabHalf = G::kTabHalf;
  extern __shared__ uint8_t smem_raw[];
  // Tiles on 1024-byte boundaries (the dynamic allocation is only 16-byte aligned for sure).
  const uint32_t base = (smem_addr(smem_raw) + 1023u) & ~1023u;
  uint8_t* const base_ptr = smem_raw + (base - smem_addr(smem_raw));
  const uint32_t xs = base;
  const uint32_t ws = xs + kSX * kXBytes;
  const uint32_t raw = ws + kWB * kWBytes;
  uint8_t* const ws_ptr = base_ptr + kSX * kXBytes;
  uint8_t* const raw_ptr = ws_ptr + kWB * kWBytes;
  float* const tab = reinterpret_cast<float*>(raw_ptr + kRR * kRawBytes);
  uint8_t* const tables = reinterpret_cast<uint8_t*>(tab + kWB * 2 * kTabHalf);

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
  const uint8_t* const wexp = p.w + expert * p.slab_bytes;
  const uint32_t row_bytes = static_cast<uint32_t>(p.row_bytes);  // slabs < 4 GiB (gemm.cc)
  const int n_steps = p.n_in / kGemmK;
  // The X row of sorted row r (clamped, as gemm.h documents).
  auto src_row = [&](int r) { return kGrouped && p.x_rows ? min(max(p.x_rows[r], 0), p.x_count - 1) : r; };

  // X copies: chunk (tid & 7) of rows (tid >> 3) + 32·i, hi and lo (rows past the tile's end
  // repeat its last row); 32-bit element offsets (gemm.cc checks x rows · x_stride < 2^31).
  const int chunk = tid & 7, row_base = tid >> 3;
  uint32_t xoff[kXRows];
#pragma unroll
  for (int i = 0; i < kXRows; ++i) {
    xoff[i] = static_cast<uint32_t>(src_row(min(row0 + row_base + 32 * i, tile_end - 1)) * p.x_stride + chunk * 8);
  }
  const uint32_t x_dst = static_cast<uint32_t>(swz(row_base, chunk));

  const int raw_c = tid % kLanes, raw_r = tid / kLanes;
  auto issue_raw = [&](int stage) {
    if (raw_c >= G::kChunks) return;
    const uint32_t at = (stage % kRR) * kRawBytes + raw_r * kPitch + 16 * raw_c;
    gemm_copy_raw_rows<G::kRawPasses, kThreads / kLanes, true>(raw + at, raw_ptr + at, kPitch, wexp, row_bytes,
                                                              static_cast<uint32_t>(stage * D::kStageBytes),
                                                              f0 + raw_r, p.n_out, raw_c, p.w_end);
  };
  auto issue_group = [&](int u) {
    if (u < n_steps) {
      const uint32_t dst = xs + (u % kSX) * kXBytes + x_dst;
#pragma unroll
      for (int i = 0; i < kXRows; ++i) gemm_cp_async16(dst + i * 32 * 128, p.x + xoff[i] + u * kGemmK);
#pragma unroll
      for (int i = 0; i < kXRows; ++i) gemm_cp_async16(dst + kXTile + i * 32 * 128, p.x_lo + xoff[i] + u * kGemmK);
      if (u == 0) issue_raw(0);
      if ((u + 1) % kSPR == 0 && u + 1 < n_steps) issue_raw((u + 1) / kSPR);
    }
    gemm_cp_commit();
  };

  // Decode of step t: thread tid writes chunks dchunk..dchunk+3 (32-column half dh = tid % 2) of
  // feature rows drow + 128·i (i < kDRows) and that half's scales.
  const int dh = tid & 1, dchunk = dh * kCPT;
  uint32_t drow_mis[kDRows];
#pragma unroll
  for (int i = 0; i < kDRows; ++i) {
    drow_mis[i] = static_cast<uint32_t>(reinterpret_cast<uintptr_t>(wexp)) +
                  static_cast<uint32_t>(min(f0 + tid / 2 + 128 * i, p.n_out - 1)) * row_bytes;
  }
  auto decode_row = [&](int t, int i) {
    const int drow = tid / 2 + 128 * i;
    const int stage = t / kSPR;
    const int mis = static_cast<int>((drow_mis[i] + static_cast<uint32_t>(stage * D::kStageBytes)) & 15u);
    const uint8_t* row = raw_ptr + (stage % kRR) * kRawBytes + drow * kPitch + mis;
    float* const scale = tab + (t % kWB) * 2 * kTabHalf + dh * kTabHalf + tab_index(drow);
    uint8_t* const dst = ws_ptr + (t % kWB) * kWBytes;
    const auto store = [&](int c, uint4 v) { *reinterpret_cast<uint4*>(dst + swz(drow, dchunk + c)) = v; };
    if constexpr (std::is_same_v<D, CodesQ8_0>) {
      // Q8_0 (a stage is the k-step's two blocks, thread h decodes block h): the stage starts
      // 4-aligned (16-aligned weights, rows of 68-byte stages), so block 0 is d0 at word 0 and its
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
#pragma unroll
      for (int c = 0; c < kCPT; ++c) v[c] = D::codes8(row, e + 8 * c, tables);
      *scale = D::scale(row, e);
#pragma unroll
      for (int c = 0; c < kCPT; ++c) store(c, v[c]);
    }
  };
  auto decode = [&](int t) {
#pragma unroll
    for (int i = 0; i < kDRows; ++i) decode_row(t, i);
  };

  // This warpgroup's first token and feature within the tile.
  const int wg = warp >> 2, wg_t = kTall ? 64 * wg : 0, wg_f = kTall ? 0 : 128 * wg;
  float acc[64], tmp0[64], tmp1[64];
#pragma unroll
  for (int i = 0; i < 64; ++i) acc[i] = tmp0[i] = tmp1[i] = 0.0f;

  // One 32-column chain: x_hi·codes and x_lo·codes for the two k16 slices of half h, into tmp.
  auto chain = [&](float (&tmp)[64], uint32_t xa, uint32_t wb, int h) {
#pragma unroll
    for (int s = 0; s < 2; ++s) {
      const uint32_t k_bytes = static_cast<uint32_t>((2 * h + s) * 32);
      const uint64_t b = wgmma_desc_sw128(wb + k_bytes);
      wgmma_m64n128k16_f16(tmp, wgmma_desc_sw128(xa + k_bytes), b, s > 0);
      wgmma_m64n128k16_f16(tmp, wgmma_desc_sw128(xa + kXTile + k_bytes), b, true);
    }
    wgmma_commit();
  };
  // acc += scale·tmp with the scales of half h of step t (feature 8j + 2·(lane % 4) + c % 2).
  auto scale_add = [&](const float (&tmp)[64], int t, int h) {
    const float4* sc =
        reinterpret_cast<const float4*>(tab + (t % kWB) * 2 * kTabHalf + h * kTabHalf + wg_f) + (lane & 3);
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

  if constexpr (D::kTableBytes > 0) D::Fmt::load_tables(tables, p.iq2_tables);
#pragma unroll
  for (int u = 0; u < kAhead; ++u) issue_group(u);
  gemm_cp_wait<kAhead - 1>();
  __syncthreads();
  decode(0);
  for (int t = 0; t < n_steps; ++t) {
    gemm_cp_wait<kAhead - 1>();
    fence_proxy_async();
    __syncthreads();
    issue_group(t + kAhead);
    const uint32_t xa = xs + (t % kSX) * kXBytes + wg_t * 128;
    const uint32_t wb = ws + (t % kWB) * kWBytes + wg_f * 128;
    wgmma_fence_operands(tmp0);
    wgmma_fence_operands(tmp1);
    wgmma_fence();
    chain(tmp0, xa, wb, 0);
    chain(tmp1, xa, wb, 1);
    if (t + 1 < n_steps) decode(t + 1);
    wgmma_wait<1>();
    wgmma_fence_operands(tmp0);
    scale_add(tmp0, t, 0);
    wgmma_wait<0>();
    wgmma_fence_operands(tmp1);
    scale_add(tmp1, t, 1);
  }

  // acc[4j + c]: row 16·(warp % 4) + lane / 4 + 8·(c / 2) of the warpgroup's 64, feature
  // 8j + 2·(lane % 4) + c % 2 of its 128.
  const bool pairs = (reinterpret_cast<uintptr_t>(p.y) & 7) == 0 && (p.y_stride & 1) == 0;
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    const int r = row0 + wg_t + 16 * (warp & 3) + (lane >> 2) + 8 * h;
    if (r >= tile_end) continue;
    const float scale = p.x_scale ? p.x_scale[src_row(r)] : 1.0f;
    const int out = kGrouped && p.y_rows ? min(max(p.y_rows[r], 0), p.y_count - 1) : r;
    float* yrow = p.y + static_cast<int64_t>(out) * p.y_stride;
#pragma unroll
    for (int j = 0; j < 16; ++j) {
      const int f = f0 + wg_f + 8 * j + 2 * (lane & 3);
      const float v0 = acc[4 * j + 2 * h] * scale, v1 = acc[4 * j + 2 * h + 1] * scale;
      if (pairs && f + 1 < p.n_out) {
        *reinterpret_cast<float2*>(yrow + f) = make_float2(v0, v1);
      } else {
        if (f < p.n_out) yrow[f] = v0;
        if (f + 1 < p.n_out) yrow[f + 1] = v1;
      }
    }
  }
}

template <class D, bool kGrouped, bool kTall = true>
cudaError_t launch_wgmma(const GemmLaunch& l, cudaStream_t stream) {
  using G = WgmmaGeometry<D, kTall>;
  constexpr int kSmem = G::kSmem, kBT = G::kBT, kBF = G::kBF;
  int device = 0;
  cudaError_t e = cudaGetDevice(&device);
  if (e == cudaSuccess) {
    e = once_per_device(device, [] {
      return cudaFuncSetAttribute(gemm_wgmma_kernel<D, kGrouped, kTall>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                  kSmem);
    });
  }
  if (e != cudaSuccess) return e;
  // Grouped: each group adds at most one partial tile (gemm_kernel.cuh's grid).
  const int64_t slots = (l.n_rows + kBT - 1) / kBT + (kGrouped ? l.n_groups : 0);
  if (slots > 65535) return cudaErrorInvalidConfiguration;
  const dim3 grid((l.n_out + kBF - 1) / kBF, static_cast<unsigned>(slots));
  gemm_wgmma_kernel<D, kGrouped, kTall><<<grid, kThreads, kSmem, stream>>>(l);
  return cudaGetLastError();
}

}  // namespace

cudaError_t launch_gemm_wgmma(const GemmLaunch& l, cudaStream_t stream) {
  if (!l.x_lo || l.x_limbs || (!l.offsets && (l.x_rows || l.y_rows))) return cudaErrorInvalidValue;
  const bool grouped = l.offsets != nullptr;
  if (!grouped && !l.large) return cudaErrorInvalidValue;
  switch (l.type) {
    case gguf::TensorType::Q8_0:
      if (!grouped) return launch_wgmma<CodesQ8_0, false>(l, stream);
      return l.large ? launch_wgmma<CodesQ8_0, true>(l, stream) : launch_wgmma<CodesQ8_0, true, false>(l, stream);
    case gguf::TensorType::IQ2_XXS:
      if (!grouped) return cudaErrorInvalidValue;
      return l.large ? launch_wgmma<CodesIQ2_XXS, true>(l, stream) : launch_wgmma<CodesIQ2_XXS, true, false>(l, stream);
    default: return cudaErrorInvalidValue;
  }
}

int gemm_wgmma_tile_rows(bool large) { return large ? 128 : 64; }

}  // namespace dsv4::cuda::detail
