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
//   x      = every lane of a warp reads the same activations from shared memory: the warp loads an
//            item's 256 floats into registers one item ahead (read from global memory as they were
//            decoded, each item's activations were a first touch on the SM and the decode waited
//            on L2) and stages them as fixed-point limbs (below): one broadcast LDS.128 per limb
//            per 16 weights.
// Per 4 weights: one dp4a per limb (4), half a funnel shift, a quarter LDS.128 per limb; per block of
// 32: two I2F and two FFMA. The item loop, staging and both copy paths included: 1 051 PTX
// instructions per 256 weights against 1 639 for the f32 decode this replaced (PRMT + FADD + FFMA per
// weight; MATVEC_NOTES.md).
#pragma once

#include <cmath>
#include <cstdint>

#include "cuda/quant_decode.cuh"
#include "cuda/x_fixed.cuh"

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

// ---- Activations as fixed-point limbs (x_fixed.cuh), staged per warp and item -------------
// An item's 256 activations share one exponent E = xblock_exponent(max |x|, 30): X = round(x/2^E)
// (halves away from zero) lies in [−2^30, 2^30] and is written as 4 signed base-256 limbs
// (x_limb(X, p, 4): three in [−128, 127], the top one in [−64, 64]).
// Error bound: |x − X·2^E| ≤ 2^(E−1) ≤ 2^−30·max|x| per element (the largest X is ≥ 2^29), so every
// element within 2^−6 of the item's largest is exact (x has 24 bits) and an item adds at most
// 2^−30·max|x|·Σ|w_i| to a dot. Three limbs (2^−22) were tried first: the CPU emulation of the
// matvec tests' wide activations (2^±20) against block scales spread over 2^10 missed their bar
// (1e−5 of Σ|w·x|) by up to 1.14×, 3 seeds in 20 (docs/PERF.md, session 5). A block holding ±inf
// or NaN gets the scale NaN: every output it touches is NaN (the CPU's dot is ±inf or NaN there).
constexpr int kQ8XLimbs = 4;
constexpr int kQ8XTopBits = 30;
constexpr int kQ8XWords = kQ8SbElems / 4;  // words per limb plane: word q = elements 4q..4q+3

// The item's exponent and scale from its largest |x| (as bits, NaN above every finite value). E ≥ −127
// keeps 2^−E a float (q8_x_fixed); only items whose largest |x| is below 2^−98 are rounded more
// coarsely than the bound above (to 2^−128).
DSV4_HD int q8_x_exponent(uint32_t max_abs_bits) {
  const int e = xblock_exponent(max_abs_bits, kQ8XTopBits);
  return e > -127 ? e : -127;
}
DSV4_HD float q8_x_scale(uint32_t max_abs_bits) {
  return xblock_scale(max_abs_bits, q8_x_exponent(max_abs_bits));
}

// x_to_fixed(x, E) in three instructions (LOP3, FFMA.RZ, F2I.TRUNC) instead of integer shifts: with
// x·2^−E exact inside the fma, t = rz(x·2^−E ± 0.5) (sign of x) lies between the exact sum and the
// integer trunc of it, so trunc(t) = sign·⌊|x/2^E| + ½⌋ (from 2^23 on, x·2^−E is an integer and t
// is it). `inv` = 2^−E (q8_x_inv). Non-finite x: any value (the item's scale is NaN).
DSV4_HD int32_t q8_x_fixed(float x, float inv) {
#ifdef __CUDA_ARCH__
  const float h = __uint_as_float((__float_as_uint(x) & 0x80000000u) | 0x3F000000u);
  return __float2int_rz(__fmaf_rz(x, inv, h));
#else
  if (!std::isfinite(x)) return 0;
  const double t = static_cast<double>(x) * inv + std::copysign(0.5, static_cast<double>(x));  // exact where it matters
  float f = static_cast<float>(t);
  if (std::fabs(static_cast<double>(f)) > std::fabs(t)) f = std::nextafter(f, 0.0f);  // round toward zero
  return static_cast<int32_t>(f);
#endif
}
DSV4_HD float q8_x_inv(int e) { return pow2f(-e); }

// Limb words of 4 consecutive elements' X: word p holds limb p of X_i in byte i. X + 0x808080 has
// the unsigned digits limb_p + 128 in its three low bytes and the top limb in the high byte, so the
// words are that sum's bytes transposed by PRMT (low three limbs flipped back by XOR 0x80).
DSV4_HD void q8_limb_words(const int32_t (&X)[4], uint32_t (&word)[kQ8XLimbs]) {
  uint32_t y[4];
  DSV4_UNROLL
  for (int i = 0; i < 4; ++i) y[i] = static_cast<uint32_t>(X[i]) + 0x808080u;
  const uint32_t a = prmt(y[0], y[1], 0x5140u), b = prmt(y[2], y[3], 0x5140u);  // bytes 0, 1 interleaved
  const uint32_t c = prmt(y[0], y[1], 0x7362u), e = prmt(y[2], y[3], 0x7362u);  // bytes 2, 3 interleaved
  word[0] = prmt(a, b, 0x5410u) ^ 0x80808080u;
  word[1] = prmt(a, b, 0x7632u) ^ 0x80808080u;
  word[2] = prmt(c, e, 0x5410u) ^ 0x80808080u;
  word[3] = prmt(c, e, 0x7632u);
}
static_assert(kQ8XLimbs == 4, "q8_limb_words writes four limbs");

// The signed quant bytes 4 consecutive codes starting at byte p (even) of the superblock.
template <int p>
DSV4_HD uint32_t q8_quads(const uint32_t (&w)[kQ8SbWords]) {
  static_assert(p % 2 == 0, "quant bytes start at even offsets");
  if constexpr (p % 4 == 0) {
    return w[p / 4];
  } else {
#ifdef __CUDA_ARCH__
    return __funnelshift_r(w[p / 4], w[p / 4 + 1], 16);
#else
    return (w[p / 4] >> 16) | (w[p / 4 + 1] << 16);
#endif
  }
}

// Block b of the superblock against the staged limbs: C_p = Σ code·limb_p (exact: |C_p| ≤
// 32·128·128 = 2^19), recombined as 2^16·(C_2 + 2^8·C_3) + (C_0 + 2^8·C_1) (each half an int32 below
// 2^28, converted with one rounding, the sum rounded once) and added to acc times the block's scale d.
// load_limbs(p, k) returns words 4k..4k+3 of limb plane p.
template <int b, class LoadLimbs>
DSV4_HD float q8_block_dot(const uint32_t (&w)[kQ8SbWords], LoadLimbs& load_limbs, float acc) {
  constexpr int o = 34 * b;  // the block's f16 scale sits in one word (o is even)
  const uint32_t dw = w[o / 4];
  const float d = f16_to_f32(o % 4 == 0 ? (dw & 0xFFFFu) : (dw >> 16));
  int32_t c[kQ8XLimbs] = {0, 0, 0, 0};
  DSV4_UNROLL
  for (int h = 0; h < 2; ++h) {
    uint4 l[kQ8XLimbs];
    DSV4_UNROLL
    for (int p = 0; p < kQ8XLimbs; ++p) l[p] = load_limbs(p, 2 * b + h);
    uint32_t v[4];
    // The code words at compile-time byte offsets.
    if (h == 0) {
      v[0] = q8_quads<o + 2>(w), v[1] = q8_quads<o + 6>(w), v[2] = q8_quads<o + 10>(w), v[3] = q8_quads<o + 14>(w);
    } else {
      v[0] = q8_quads<o + 18>(w), v[1] = q8_quads<o + 22>(w), v[2] = q8_quads<o + 26>(w), v[3] = q8_quads<o + 30>(w);
    }
    DSV4_UNROLL
    for (int p = 0; p < kQ8XLimbs; ++p) {
      c[p] = dp4a_s8s8(v[3], l[p].w, dp4a_s8s8(v[2], l[p].z, dp4a_s8s8(v[1], l[p].y, dp4a_s8s8(v[0], l[p].x, c[p]))));
    }
  }
  const float f = fmaf(static_cast<float>(c[2] + c[3] * 256), 65536.0f, static_cast<float>(c[0] + c[1] * 256));
  return fmaf(d, f, acc);
}

// Σ_{i<256} W[i]·X[i] for one superblock (its 272 bytes as 68 little-endian words) in units of the
// item's 2^E: the 8 blocks' d·Σ in order (the caller multiplies by the item's scale).
template <class LoadLimbs>
DSV4_HD float q8_superblock_dot(const uint32_t (&w)[kQ8SbWords], LoadLimbs load_limbs) {
  float acc = q8_block_dot<0>(w, load_limbs, 0.0f);
  acc = q8_block_dot<1>(w, load_limbs, acc);
  acc = q8_block_dot<2>(w, load_limbs, acc);
  acc = q8_block_dot<3>(w, load_limbs, acc);
  acc = q8_block_dot<4>(w, load_limbs, acc);
  acc = q8_block_dot<5>(w, load_limbs, acc);
  acc = q8_block_dot<6>(w, load_limbs, acc);
  return q8_block_dot<7>(w, load_limbs, acc);
}

// An item's 256 activations, staged per warp in shared memory: lane copies the float4s at elements
// q8_x_index(lane, j), j < kQ8XChunks (one coalesced 512-byte run per j).
constexpr int kQ8XChunks = kQ8SbElems / (4 * 32);  // 2
DSV4_HD int q8_x_index(int lane, int j) { return 4 * (lane + 32 * j); }

// max |x| of the lane's staged values, as bits (the warp's maximum of these is the item's).
DSV4_HD uint32_t q8_lane_max_abs(const float4 (&v)[kQ8XChunks]) {
  uint32_t m = 0;
  DSV4_UNROLL
  for (int j = 0; j < kQ8XChunks; ++j) {
    const float e[4] = {v[j].x, v[j].y, v[j].z, v[j].w};
    DSV4_UNROLL
    for (int i = 0; i < 4; ++i) {
#ifdef __CUDA_ARCH__
      const uint32_t a = __float_as_uint(e[i]) & 0x7FFFFFFFu;
#else
      uint32_t a;
      memcpy(&a, &e[i], 4);
      a &= 0x7FFFFFFFu;
#endif
      m = a > m ? a : m;
    }
  }
  return m;
}
// The lane's limb words of an item with exponent e: words[j][p] is word lane + 32j of limb plane p.
DSV4_HD void q8_stage_lane(const float4 (&v)[kQ8XChunks], int e, uint32_t (&words)[kQ8XChunks][kQ8XLimbs]) {
  const float inv = q8_x_inv(e);
  DSV4_UNROLL
  for (int j = 0; j < kQ8XChunks; ++j) {
    const int32_t X[4] = {q8_x_fixed(v[j].x, inv), q8_x_fixed(v[j].y, inv), q8_x_fixed(v[j].z, inv),
                          q8_x_fixed(v[j].w, inv)};
    q8_limb_words(X, words[j]);
  }
}

// Per warp: the weight ring and one item's activation limbs; per block: the [2][W][32] partials of
// store_row_tile (row_tile.cuh).
DSV4_HD constexpr int q8_smem_bytes(int warps) {
  return warps * (kQ8Ring * kQ8ItemBytes + kQ8XLimbs * kQ8XWords * 4) + 2 * warps * kQ8TileRows * 4;
}

}  // namespace dsv4::cuda::detail
