// The per-lane work of the Q8_0 row-tile matvec (matvec_q8.cu) as __host__ __device__ code, so
// that tests/cuda/cpu/matvec_q8_emulation_test.cc runs the very same index math and decoding on the
// CPU (with the warp's mma emulated from the PTX fragment layout).
//
// Why this shape. Q8_0 blocks are 34 bytes, so no lane-to-byte map that keeps a warp's global loads
// contiguous also gives every lane a fixed layout. Eight blocks (a "superblock", 256 elements) are
// 272 = 17·16 bytes, and a row of a multiple of 256 elements is a multiple of 16 bytes: with a
// 16-aligned tensor every superblock of every row starts 16-aligned. So:
//   tile   = 32 consecutive rows;
//   item   = one superblock of the tile's 32 rows (8 704 bytes): the warp copies it into shared
//            memory with coalesced 16-byte cp.async (tile-chunk c = lane + 32j, j < 17, is chunk
//            c % 17 of row c / 17, which is also where it lands: byte 16c);
//   decode = int8 tensor cores (session 7; the dp4a decode before issued ≈ 780 instructions per
//            item and lane on a long dependent chain): two row groups of 16 rows × 8 blocks = 16
//            mma.m16n8k32 (s8·s8 → s32) per item, A = the weight codes as they are, B = the
//            activations' four fixed-point limbs (below) as columns 0–3. Every product and every
//            32-element sum is an exact integer; per block and row the lane folds its two limb
//            sums into one int32 and adds it times the block's d (I2F + FFMA).
//   x      = each warp loads an item's 256 floats into registers one item ahead (read from global
//            memory as they were decoded, each item's activations were a first touch on the SM)
//            and stages them as limb planes in shared memory; lanes read their B fragments there.
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

// ---- The decode on tensor cores ----
// Fragment layout (PTX ISA, mma.m16n8k32 .s8): lane = 4g + c. A (16×32, row): a0 = A[g][4c..4c+3],
// a1 = A[g+8][4c..], a2 = A[g][16+4c..], a3 = A[g+8][16+4c..]. B (32×8, col): b0 = B[4c..4c+3][g],
// b1 = B[16+4c..][g]. C (16×8): c0 = C[g][2c], c1 = C[g][2c+1], c2 = C[g+8][2c], c3 = C[g+8][2c+1].
// Lane 4g + c works on rows g + 16·rg and g + 8 + 16·rg of the tile (row group rg = 0, 1).
// The k order inside a block is ours to choose (the same for A and B), and is chosen so that every
// A word is one aligned word of the staged row: a block pair (blocks 2m, 2m+1) is 68 bytes = words
// P[0..16] of the row (P = row + 17m), with the even block's d in P[0].lo, its codes 0, 1 in
// P[0].hi, 2..29 in P[1..7], 30, 31 in P[8].lo; the odd block's d in P[8].hi, its codes in P[9..16].
//   odd block:  k-slots 4c.. hold codes 4c..4c+3 (P[9+c]), 16+4c.. codes 16+4c.. (P[13+c]);
//   even block: k-slots 4c.. hold codes 2+4c..5+4c (P[1+c]), 16+4c.. codes 18+4c..21+4c (P[5+c]),
//               except lane c = 3: codes 30, 31, 0, 1 (P[8].lo and P[0].hi, one PRMT).
// B column n < 4 is limb n (lanes with g ≥ 4 repeat the limbs of g − 4: columns 4–7 are ignored),
// so lane c = 0 gets C_0, C_1 and lane c = 1 gets C_2, C_3 of its two rows: it folds them into
// I = C_even + 2^8·C_odd (exact: |C_p| ≤ 2^19) and adds d·I in f32 over the item's 8 blocks in block
// order; the lanes c = 1 weigh their sums 2^16 (q8_limb_weight) and the two lanes' row sums are
// added at the unit's end (matvec_q8.cu). Lanes c = 2, 3 compute the same as c = 0, 1 and are ignored,
// except for a token pair: there lanes g ≥ 4 read the second token's limb planes (kQ8PairWords on),
// so columns 4–7 are its limbs and lanes c = 2, 3 fold its sums exactly as c = 0, 1 fold the first's.
constexpr int kQ8XPlaneWords = kQ8XWords + 8;  // limb planes 72 words apart: B loads of the 4 planes hit distinct banks
constexpr int kQ8RowWords = kQ8SbWords;        // a staged row's superblock: 68 words

// Element (of 32) of block b that lane c's k-slot 4c + i (half 0) or 16 + 4c + i (half 1) holds.
DSV4_HD int q8_k_element(int b, int c, int half, int i) {
  if (b % 2) return 16 * half + 4 * c + i;
  return (2 + 16 * half + 4 * c + i) % 32;
}

// Lane's B fragment of block b: limb g & 3 of its k-slots' elements, from the padded limb planes
// (word q of plane p = elements 4q..4q+3 of limb p). Even blocks' element groups start 2 bytes into
// a word: one PRMT of two words (lane 3's second group wraps around to the block's first word).
template <int b>
DSV4_HD void q8_b_fragment(const uint32_t* planes, int lane, uint32_t (&bf)[2]) {
  const int c = lane & 3;
  const uint32_t* p = planes + ((lane >> 2) & 3) * kQ8XPlaneWords + 8 * b;
  if constexpr (b % 2) {
    bf[0] = p[c];
    bf[1] = p[4 + c];
  } else {
    bf[0] = prmt(p[c], p[c + 1], 0x5432u);
    bf[1] = prmt(p[4 + c], p[(5 + c) & 7], 0x5432u);
  }
}

// The PRMT selector of lane c's second even-block A word: P[5+c] as it is, or for c = 3 codes 30, 31
// (P[8].lo) then 0, 1 (P[0].hi).
DSV4_HD uint32_t q8_even_sel(int lane) { return (lane & 3) == 3 ? 0x7610u : 0x3210u; }

// A fragments and scales of block pair m for the lane's rows r0 (A row g) and r1 (A row g + 8),
// each the 68 staged words of its row: ae/ao for the even/odd block, de/dd their d per row.
template <int m>
DSV4_HD void q8_a_fragments(const uint32_t* r0, const uint32_t* r1, int lane, uint32_t sel, uint32_t (&ae)[4],
                            uint32_t (&ao)[4], float (&de)[2], float (&dd)[2]) {
  const int c = lane & 3;
  const uint32_t* rows[2] = {r0 + 17 * m, r1 + 17 * m};
  DSV4_UNROLL
  for (int h = 0; h < 2; ++h) {
    const uint32_t* P = rows[h];
    const uint32_t p0 = P[0], p8 = P[8];
    ae[h] = P[1 + c];
    ae[2 + h] = prmt(P[5 + c], p0, sel);
    ao[h] = P[9 + c];
    ao[2 + h] = P[13 + c];
    de[h] = f16_to_f32(p0 & 0xFFFFu);
    dd[h] = f16_to_f32(p8 >> 16);
  }
}

// Adds one mma's result into the lane's two row sums: s[h] += d[h]·(C_2c + 2^8·C_2c+1) of row h.
DSV4_HD void q8_fold(const int32_t (&cr)[4], const float (&d)[2], float (&s)[2]) {
  s[0] = fmaf(d[0], static_cast<float>(cr[0] + 256 * cr[1]), s[0]);
  s[1] = fmaf(d[1], static_cast<float>(cr[2] + 256 * cr[3]), s[1]);
}

// The weight of a lane's sums: 1 for limbs 0, 1 (c even), 2^16 for limbs 2, 3 (c odd).
DSV4_HD float q8_limb_weight(int lane) { return (lane & 1) ? 65536.0f : 1.0f; }

// Token pairs (ExpertMatvec::pair_stride): the second token's limb planes follow the first's at this
// offset in words, so that the B loads of lanes g ≥ 4 (the second token's columns 4–7) land 4 banks
// beside those of lanes g − 4: conflict free.
constexpr int kQ8PairWords = kQ8XLimbs * kQ8XPlaneWords + 4;
// The words of a warp's staged activation limbs: one item's, or a token pair's.
DSV4_HD constexpr int q8_xbuf_words(bool pair) { return pair ? 2 * kQ8PairWords : kQ8XLimbs * kQ8XPlaneWords; }

// Per warp: the weight ring and one item's activation limbs (a token pair's: both tokens'); per
// block: the [2][W][32] partials of store_row_tile (row_tile.cuh).
DSV4_HD constexpr int q8_smem_bytes(int warps, bool pair = false) {
  return warps * (kQ8Ring * kQ8ItemBytes + q8_xbuf_words(pair) * 4) + 2 * warps * kQ8TileRows * 4;
}

}  // namespace dsv4::cuda::detail
