// The per-lane work of the Q8_0 row-tile matvec (matvec_q8.cu) as __host__ __device__ code, so
// that tests/cuda/cpu/matvec_q8_emulation_test.cc runs the very same index math and decoding on the
// CPU.
//
// Why this shape. Q8_0 blocks are 34 bytes, so no lane-to-byte map that keeps a warp's global loads
// contiguous also gives every lane a fixed layout. Eight blocks (a "superblock", 256 elements) are
// 272 = 17·16 bytes, and a row of a multiple of 256 elements is a multiple of 16 bytes: with a
// 16-aligned tensor every superblock of every row starts 16-aligned. So:
//   tile   = 32 consecutive rows, one per lane;
//   item   = one superblock of the tile's 32 rows (8 704 bytes): the warp copies it into shared
//            memory with coalesced 16-byte cp.async (tile-chunk c = lane + 32j, j < 17, is chunk
//            c % 17 of row c / 17, which is also where it lands: byte 16c), then lane r reads its
//            row's 17 chunks (bank-conflict free: rows are 68 words apart) and decodes them with
//            offsets known at compile time;
//   x      = every lane of a warp reads the same activations (one broadcast float4 per 4 weights)
//            from shared memory: the warp stages an item's 256 floats there, loaded from global
//            memory into registers one item ahead (read from global memory as they were decoded,
//            each item's activations were a first touch on the SM and the decode waited on L2).
// Per weight: one PRMT (byte under the exponent of 2^23), one FADD (removes 2^23 + 128), one FFMA,
// plus a quarter of an activation load and of an XOR, an eighth of a funnel shift: ≈3.5
// instructions, against 10–18 for the older kernels (MATVEC_NOTES.md).
#pragma once

#include <cstdint>

#include "cuda/quant_decode.cuh"

namespace dsv4::cuda::detail {

constexpr int kQ8SbElems = 256;
constexpr int kQ8SbBytes = 272;
constexpr int kQ8SbWords = kQ8SbBytes / 4;   // 68
constexpr int kQ8SbChunks = kQ8SbBytes / 16;  // 17
constexpr int kQ8TileRows = 32;
constexpr int kQ8ItemBytes = kQ8TileRows * kQ8SbBytes;  // 8 704
constexpr int kQ8Ring = 3;                              // items per warp ring (2 in flight)
constexpr int kQ8MaxWarps = 8;                          // warps per block = warps splitting a row

// Tile-chunk j of `lane` (j < 17): row c / 17 of the tile, 16-byte chunk c % 17 of that row's
// superblock, c = lane + 32j. Its byte offset from the item's first row's superblock.
DSV4_HD int q8_chunk_row(int lane, int j) { return (lane + 32 * j) / kQ8SbChunks; }
DSV4_HD int64_t q8_chunk_offset(int lane, int j, int64_t row_bytes, int last_row) {
  const int c = lane + 32 * j;
  int r = c / kQ8SbChunks;
  if (r > last_row) r = last_row;  // a tile's rows past the matrix re-read its last row
  return r * row_bytes + 16 * (c - (c / kQ8SbChunks) * kQ8SbChunks);
}

// 4 consecutive quant bytes starting at byte p (even) of the superblock, biased by 128 each.
template <int p>
DSV4_HD uint32_t q8_quads(const uint32_t (&w)[kQ8SbWords]) {
  static_assert(p % 2 == 0, "quant bytes start at even offsets");
  uint32_t v;
  if constexpr (p % 4 == 0) {
    v = w[p / 4];
  } else {
#ifdef __CUDA_ARCH__
    v = __funnelshift_r(w[p / 4], w[p / 4 + 1], 16);
#else
    v = (w[p / 4] >> 16) | (w[p / 4 + 1] << 16);
#endif
  }
  return v ^ 0x80808080u;
}

template <int b, class LoadX4>
DSV4_HD float q8_block_dot(const uint32_t (&w)[kQ8SbWords], LoadX4& load_x4) {
  constexpr int o = 34 * b;  // the block's f16 scale sits in one word (o is even)
  const uint32_t dw = w[o / 4];
  const float d = f16_to_f32(o % 4 == 0 ? (dw & 0xFFFFu) : (dw >> 16));
  float s = 0.0f;
  DSV4_UNROLL
  for (int q = 0; q < 8; ++q) {
    const float4 x = load_x4(32 * b + 4 * q);
    uint32_t v = 0;
    // q is a loop variable: dispatch to the compile-time byte offset.
    switch (q) {
      case 0: v = q8_quads<o + 2>(w); break;
      case 1: v = q8_quads<o + 6>(w); break;
      case 2: v = q8_quads<o + 10>(w); break;
      case 3: v = q8_quads<o + 14>(w); break;
      case 4: v = q8_quads<o + 18>(w); break;
      case 5: v = q8_quads<o + 22>(w); break;
      case 6: v = q8_quads<o + 26>(w); break;
      default: v = q8_quads<o + 30>(w); break;
    }
    s = dot4_bytes(v, kMagic + 128.0f, &x.x, s);
  }
  return d * s;
}

// Σ_{i<256} W[i]·x[i] for one superblock (its 272 bytes as 68 little-endian words), x[i] read by
// load_x4(i) (i a multiple of 4). Each block's 32 products are summed in element order, times the
// block's scale, and the 8 blocks added in order.
template <class LoadX4>
DSV4_HD float q8_superblock_dot(const uint32_t (&w)[kQ8SbWords], LoadX4 load_x4) {
  float acc = q8_block_dot<0>(w, load_x4);
  acc += q8_block_dot<1>(w, load_x4);
  acc += q8_block_dot<2>(w, load_x4);
  acc += q8_block_dot<3>(w, load_x4);
  acc += q8_block_dot<4>(w, load_x4);
  acc += q8_block_dot<5>(w, load_x4);
  acc += q8_block_dot<6>(w, load_x4);
  acc += q8_block_dot<7>(w, load_x4);
  return acc;
}

// An item's 256 activations, staged per warp in shared memory: lane copies the float4s at elements
// q8_x_index(lane, j), j < kQ8XChunks (one coalesced 512-byte run per j).
constexpr int kQ8XChunks = kQ8SbElems / (4 * 32);  // 2
DSV4_HD int q8_x_index(int lane, int j) { return 4 * (lane + 32 * j); }

// Per warp: the weight ring and one item's activations; per block: the [2][W][32] partials of
// store_row_tile (row_tile.cuh).
DSV4_HD constexpr int q8_smem_bytes(int warps) {
  return warps * (kQ8Ring * kQ8ItemBytes + kQ8SbElems * 4) + 2 * warps * kQ8TileRows * 4;
}

}  // namespace dsv4::cuda::detail
