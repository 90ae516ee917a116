// The per-lane work of the 2-bit row-tile matvec (matvec_2bit.cu: IQ2_XXS and Q2_K, the routed
// experts' formats) as __host__ __device__ code, so that tests/cuda/cpu/matvec_2bit_emulation_test.cc
// runs the very same staging map and decoding on the CPU.
//
// Why this shape. The tensor-core kernel spends 4.6–6.2 issued instructions per weight on these
// formats and is latency bound (MATVEC_NOTES.md); an SM must take 44 (Q2_K) or 56 (IQ2_XXS) weights
// per clock for 90 % of an H200's copy bandwidth. Like the Q8_0 row-tile kernel (matvec_q8.cuh):
//   tile  = 32 consecutive rows, one per lane, partial sums in registers;
//   item  = kItemWords 32-bit words of each of the tile's rows (Q2_K: one 84-byte block = 21
//           words; IQ2_XXS: two 66-byte blocks = 33 words, the smallest 4-aligned run). The warp
//           copies an item with 4-byte cp.async, one row's run per instruction (rt_copy), into
//           rows of kItemWords words, so lane r reads its row at word r·kItemWords (an odd stride:
//           conflict free);
//   x     = the launch's activation vectors are copied into shared memory once per block (from
//           global memory every item's first reads were L2 misses on the decode's critical path:
//           the first version of this kernel ran at 4–19 % of copy); every lane of a warp reads the
//           same activations (broadcast LDS.128).
// Per weight: PRMT (code byte under the exponent of 2^23), FADD (removes the bias), FFMA; per 4
// weights one or two integer ops pick the codes out. IQ2_XXS: the grid point (8 magnitudes) and
// the 8 sign bits come from two shared-memory tables; the signs are folded into the grid bytes
// (m | 64 with m ≤ 43: v = (m|64) − 2·(m & S) is 64 ± m per byte, no carry between bytes).
// Sums run as several independent chains added pairwise (a warp has little else to overlap with
// their latency). Q2_K: w = d·(sc & 15)·q − dmin·(sc >> 4) per 16 elements, so a 16-group contributes
// d·sc·Σ q·x − dmin·m·Σx; the group sums Σx are the same for every lane of the warp and come from
// the caller (the kernel: lane g sums group g, the others read it with a shuffle).
#pragma once

#include <cstdint>

#include "cuda/quant_decode.cuh"

namespace dsv4::cuda::detail {

constexpr int k2bTileRows = 32;
constexpr int k2bMaxWarps = 8;        // warps splitting a row (= warps per group)
constexpr int k2bMaxBlockWarps = 16;  // warps per block (groups of W warps, matvec_2bit.cu)

// The IQ2_XXS tables as the kernel keeps them in shared memory, 16 copies interleaved (entry i of
// copy c at i·16 + c): lane l reads copy l & 15, so the warp's random 8-byte lookups fall on
// distinct bank pairs per half-warp and take the minimum 2 wavefronts. With one copy they took
// ≈4–5 (32 random 8-byte reads over 16 bank pairs), and shared memory was what the IQ2_XXS launch
// waited on (ncu: L1/TEX throughput 73–80 %, DRAM 11 %).
constexpr int kIq2TableCopies = 16;
struct Iq2RowTables {
  uint2 grid[256 * kIq2TableCopies];   // grid point: each magnitude byte m as m | 64
  uint2 signs[128 * kIq2TableCopies];  // 0xFF in each byte whose element is negated (ksigns_iq2xs expanded)
};

DSV4_HD uint2 iq2_grid_entry(uint64_t g) {
  const uint64_t v = g | 0x4040404040404040ull;
  return make_uint2(static_cast<uint32_t>(v), static_cast<uint32_t>(v >> 32));
}
DSV4_HD uint2 iq2_sign_entry(uint32_t s) {
  uint32_t lo = 0, hi = 0;
  for (int b = 0; b < 4; ++b) {
    if ((s >> b) & 1u) lo |= 0xFFu << (8 * b);
    if ((s >> (4 + b)) & 1u) hi |= 0xFFu << (8 * b);
  }
  return make_uint2(lo, hi);
}

// 64 ± m per byte from a grid word (bytes m | 64) and a sign mask (0xFF where negated).
DSV4_HD uint32_t iq2_signed_bytes(uint32_t g, uint32_t s) {
  const uint32_t t = g & s & 0x3F3F3F3Fu;
  return g - t - t;
}

struct Fmt2bQ2K {
  static constexpr int kItemElems = 256, kItemWords = 21, kRing = 4;
  static constexpr bool kGroupSums = true;
};
struct Fmt2bIQ2 {
  static constexpr int kItemElems = 512, kItemWords = 33, kRing = 2;
  static constexpr bool kGroupSums = false;
};

// The staging map: copy j of `lane` moves one word of the tile's item to word row·kItemWords +
// word of the buffer. Copies j < 32: row j, word lane (lanes < kItemWords): each is one coalesced
// run of a row. Copy 32 (IQ2_XXS's 33-word items only): word 32 of row lane. Rows past the matrix
// re-read its last row. Returns false for an idle lane.
template <int kItemWords>
DSV4_HD bool rt_copy(int lane, int j, int last_row, int& row, int& word) {
  static_assert(kItemWords <= 33, "one copy per lane beyond the 32 rows' runs");
  if (j < 32) {
    row = j;
    word = lane;
  } else {
    row = lane;
    word = 32;
  }
  if (row > last_row) row = last_row;
  return word < kItemWords;
}
template <int kItemWords>
DSV4_HD constexpr int rt_copies() {
  return kItemWords > 32 ? 33 : 32;
}

// Σ W[i]·x[i] over one Q2_K block (its 84 bytes as 21 words, w[k] the k-th), x[i] read by load_x4(i) (i a multiple
// of 4) and group_sum(g) = Σ_{i<16} x[16g + i] in element order. Per 16-group in element order:
// acc += (d·sc)·Σ q·x (Σ q·x as ((x0..3 + x4..7) + (x8..11 + x12..15)), each quarter in element
// order), then acc −= (dmin·m)·Σx.
template <class Words, class LoadX4, class GroupSum>
DSV4_HD float q2k_block_dot(const Words& w, LoadX4& load_x4, GroupSum& group_sum) {
  const float2 dm = f16x2_to_f32(w[20]);
  float acc = 0.0f;
  DSV4_UNROLL
  for (int h = 0; h < 2; ++h) {
    DSV4_UNROLL
    for (int j = 0; j < 4; ++j) {
      DSV4_UNROLL
      for (int u = 0; u < 2; ++u) {
        const int g = 8 * h + 2 * j + u;  // elements 128h + 32j + 16u .. +15
        // Four independent chains of 4 products (latency: one warp per row tile has little else
        // to overlap), added pairwise.
        float part[4];
        DSV4_UNROLL
        for (int t = 0; t < 4; ++t) {
          const uint32_t n = (w[4 + 8 * h + 4 * u + t] >> (2 * j)) & 0x03030303u;
          const float4 x = load_x4(128 * h + 32 * j + 16 * u + 4 * t);
          const float xs[4] = {x.x, x.y, x.z, x.w};
          part[t] = dot4_bytes(n, kMagic, xs, 0.0f);
        }
        const float sqx = (part[0] + part[1]) + (part[2] + part[3]);
        const uint32_t sc = (w[g / 4] >> (8 * (g % 4))) & 0xFFu;
        acc = fmaf(dm.x * small_to_f32(sc & 15u), sqx, acc);
        acc = fmaf(-(dm.y * small_to_f32(sc >> 4)), group_sum(g), acc);
      }
    }
  }
  return acc;
}

// Σ over one IQ2_XXS sub-block of 32 elements: a0 = its 4 grid indices, a1 = 4×7 sign-index bits
// and the 4-bit scale; d the block's scale. (d·(0.5 + ls)·0.25)·Σ_k (±m_k)·x_k, the sum as
// ((g0 + g1) + (g2 + g3)) over the four 8-element grid points, each in element order.
// `copy` is the lane's table copy (lane & 15).
template <class LoadX4>
DSV4_HD float iq2_sub_dot(uint32_t a0, uint32_t a1, float d, const Iq2RowTables& t, int copy, LoadX4& load_x4,
                          int e0) {
  float part[4];
  DSV4_UNROLL
  for (int g = 0; g < 4; ++g) {
    const uint2 grid = t.grid[((a0 >> (8 * g)) & 0xFFu) * kIq2TableCopies + copy];
    const uint2 sign = t.signs[((a1 >> (7 * g)) & 127u) * kIq2TableCopies + copy];
    const float4 x0 = load_x4(e0 + 8 * g), x1 = load_x4(e0 + 8 * g + 4);
    const float xs0[4] = {x0.x, x0.y, x0.z, x0.w}, xs1[4] = {x1.x, x1.y, x1.z, x1.w};
    part[g] = dot4_bytes(iq2_signed_bytes(grid.y, sign.y), kMagic + 64.0f, xs1,
                         dot4_bytes(iq2_signed_bytes(grid.x, sign.x), kMagic + 64.0f, xs0, 0.0f));
  }
  const float sum = (part[0] + part[1]) + (part[2] + part[3]);
  // (0.5 + ls)·0.25 exactly, from 2^23 + ls in one fused step.
  const float db = d * fmaf(bits_to_f32(0x4B000000u | (a1 >> 28)), 0.25f, -2097151.875f);
  return db * sum;
}

DSV4_HD uint32_t funnel16(uint32_t lo, uint32_t hi) {
#ifdef __CUDA_ARCH__
  return __funnelshift_r(lo, hi, 16);
#else
  return (lo >> 16) | (hi << 16);
#endif
}

// Σ W[i]·x[i] over two IQ2_XXS blocks (132 bytes as 33 words, w[k] the k-th): block 0 at byte 0 (d, then its
// sub-blocks at bytes 2 + 8s: half-word aligned), block 1 at byte 66 (d in the top half of word
// 16, sub-blocks word aligned from word 17). Sub-blocks added in order, block 0 then block 1.
// The sub-block loops are unrolled four times, not fully: fully unrolled, the compiler hoists all 512
// activation loads and the kernel needs 254 registers (one 8-warp block per SM).
template <class Words, class LoadX4>
DSV4_HD float iq2_item_dot(const Words& w, const Iq2RowTables& t, int copy, LoadX4& load_x4) {
  float acc = 0.0f;
  const float d0 = f16_to_f32(w[0] & 0xFFFFu), d1 = f16_to_f32(w[16] >> 16);
#ifdef __CUDA_ARCH__
#pragma unroll 4
#endif
  for (int s = 0; s < 8; ++s) {
    const uint32_t lo = w[2 * s], mid = w[2 * s + 1], hi = w[2 * s + 2];
    acc += iq2_sub_dot(funnel16(lo, mid), funnel16(mid, hi), d0, t, copy, load_x4, 32 * s);
  }
#ifdef __CUDA_ARCH__
#pragma unroll 4
#endif
  for (int s = 0; s < 8; ++s) acc += iq2_sub_dot(w[17 + 2 * s], w[18 + 2 * s], d1, t, copy, load_x4, 256 + 32 * s);
  return acc;
}

template <class Fmt>
DSV4_HD constexpr int rt_item_bytes() {
  return k2bTileRows * Fmt::kItemWords * 4;
}
// Shared memory of a block of `warps` warps (all its groups): the IQ2_XXS tables, the launch's
// activations (x_floats: every x vector of the launch, a multiple of 4), the warps' rings, the
// groups' reduction buffers.
template <class Fmt>
DSV4_HD constexpr int64_t rt_smem_bytes(int warps, int64_t x_floats) {
  return (Fmt::kGroupSums ? 0 : static_cast<int64_t>(sizeof(Iq2RowTables))) + 4 * x_floats +
         warps * Fmt::kRing * rt_item_bytes<Fmt>() + 2 * warps * k2bTileRows * 4;
}

}  // namespace dsv4::cuda::detail
