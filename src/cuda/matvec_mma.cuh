// The per-lane work of the tensor-core matvec kernel (matvec_mma.cu) for the block formats Q8_0,
// Q4_K, Q2_K and IQ2_XXS, as __host__ __device__ code: tests/cuda/cpu/mma_emulation_test.cc runs
// it on the CPU with an emulated mma, lane by lane.
//
// The product is y = W·x with W's integer codes taken as they are and x made exact integers:
//  * x in blocks of kXBlock = 256: scaled by a power of two 2^E so that the largest magnitude lies
//    in [2^29, 2^30), rounded to int32 X (exact for every element within 2^6 of the block's
//    largest; smaller ones are rounded to 2^-30 of it, far below f32 rounding of the dot), and
//    split into four signed int8 limbs, X = Σ_p limb_p·256^p;
//  * one mma.m16n8k32 (s8·s8 → s32) multiplies 16 weight rows × 32 codes by the four limbs of 32
//    activations (B columns 0–3; columns 4–7 repeat them and are ignored): every product and every
//    sum inside a 32-element chunk is exact;
//  * the int32 results are scaled in f32 by the weight scales and 2^(E + 8p) and added in a fixed
//    order. So the result is deterministic and at least as accurate as an f32 dot.
//
// Fragment layout (PTX ISA, mma.m16n8k32 .s8): lane = 4g + c. A (16×32, row): a0 = A[g][4c..4c+3],
// a1 = A[g+8][4c..], a2 = A[g][16+4c..], a3 = A[g+8][16+4c..]. B (32×8, col): b0 = B[4c..4c+3][g],
// b1 = B[16+4c..][g]. C (16×8): c0 = C[g][2c], c1 = C[g][2c+1], c2 = C[g+8][2c], c3 = C[g+8][2c+1].
// The k order inside a chunk is ours to choose (the same for A and B): k-slots 4c..4c+3 hold
// elements 8c..8c+3 and k-slots 16+4c.. hold 8c+4..8c+7, so lane c works on 8 consecutive
// elements of rows g and g+8, and B is lane c's 8 consecutive limb bytes.
#pragma once

#include <cstdint>

#include "cuda/matvec_fast.cuh"
#include "cuda/quant_decode.cuh"
#include "cuda/x_fixed.cuh"

namespace dsv4::cuda::detail {

constexpr int kMmaWarps = 16;
constexpr int kMmaThreads = kMmaWarps * 32;
constexpr int kMmaRows = 16;  // rows of a unit: the m16 of the mma
constexpr int kMmaBufs = 3;   // ring buffers per warp: two items in flight while one is decoded
constexpr int kXBlock = 256;  // activations sharing one power-of-two scale
constexpr int kChunk = 32;    // the k of one mma
constexpr int kXLimbs = 4;

// Shared-memory layout of the converted activations of the n_xvec vectors a launch reads
// (one, or one per slot): limbs by 32-element chunk ([chunk][limb][32 bytes]), per 256-block
// the eight floats {2^E, 2^(E+8), 2^(E+16), 2^(E+24), 0, 0, 0, 0} (lane c reads pair c: lanes 2
// and 3 hold the repeated columns and weigh them 0), and for the K-quants the f32 sum of every 16
// consecutive activations (the per-group minimum terms).
struct XLayout {
  int n_in;
  int n_xvec;
  int chunks;   // per vector
  int xblocks;  // per vector
  bool sums;
  DSV4_HD int limb_bytes() const { return n_xvec * chunks * kXLimbs * kChunk; }
  DSV4_HD int scale_bytes() const { return n_xvec * xblocks * 8 * 4; }
  DSV4_HD int sum_bytes() const { return sums ? n_xvec * (n_in / 16) * 4 : 0; }
  DSV4_HD int bytes() const { return limb_bytes() + scale_bytes() + sum_bytes(); }
};
DSV4_HD XLayout make_xlayout(int n_in, int n_xvec, bool sums) {
  XLayout l;
  l.n_in = n_in;
  l.n_xvec = n_xvec;
  l.chunks = (n_in + kChunk - 1) / kChunk;
  l.xblocks = (n_in + kXBlock - 1) / kXBlock;
  l.sums = sums;
  return l;
}

// ---- the emulated mma (tests) and the lane's B fragment ----

// Lane c's B fragment for chunk `chunk` of vector v: its 8 consecutive limb bytes of limb g & 3.
DSV4_HD uint2 b_fragment(const uint8_t* limbs, const XLayout& xl, int v, int chunk, int lane) {
  const int g = lane >> 2, c = lane & 3;
  return *reinterpret_cast<const uint2*>(limbs + ((static_cast<int64_t>(v) * xl.chunks + chunk) * kXLimbs + (g & 3)) * kChunk + 8 * c);
}

// ---- the formats ----
// Each format decodes one stage of a unit's 16 rows: kStageBlocks weight blocks, each of
// kMmas chunks of 32. Per lane (rows g and g+8):
//   State            what the lane keeps over a block (integer sums, scales)
//   begin(s, rows, blk, lane)          block start: load the scales
//   build(s, rows, blk, m, lane, a, c) A fragment and accumulator input of mma m
//   after(s, rows, blk, m, lane, c, xs, acc)  consume the mma's result
//   end(s, rows, blk, lane, xs, xsum, acc)     block end: scaled sums into acc[0] (row g), acc[1]
// `rows` points at rows g and g+8 of the stage in shared memory (at their true byte offsets);
// `xs` is lane c's pair of limb weights for the 256-block; `xsum` the block's 16-group sums.

constexpr int32_t kCBias = 0x4B400000;  // 1.5·2^23: int32 sums below 2^22 read as floats
constexpr float kCBiasF = 12582912.0f;

DSV4_HD float biased_to_f32(int32_t c) { return bits_to_f32(static_cast<uint32_t>(c)) - kCBiasF; }

// Loads 8 bytes at a 2-aligned address as two words (three aligned loads and a funnel shift).
DSV4_HD uint2 ld8_2aligned(const uint8_t* p) {
  const uintptr_t a = reinterpret_cast<uintptr_t>(p);
  const uint32_t* w = reinterpret_cast<const uint32_t*>(a & ~uintptr_t{3});
  const uint32_t sh = static_cast<uint32_t>(a & 3) * 8;
  const uint64_t lo = (static_cast<uint64_t>(w[1]) << 32) | w[0];
  const uint64_t hi = (static_cast<uint64_t>(w[2]) << 32) | w[1];
  return make_uint2(static_cast<uint32_t>(lo >> sh), static_cast<uint32_t>(hi >> sh));
}

struct RowPair {
  const uint8_t* r[2];  // rows g and g+8 (r[1] may repeat r[0] past the unit's last row)
};

// Q8_0: a block is one chunk. A = the 32 int8 codes; per mma: acc += d·Σ_p C_p·2^(E+8p).
struct MmaQ8_0 {
  using Fmt = FmtQ8_0;
  static constexpr int kStageBlocks = 4, kMmas = 1;
  static constexpr bool kSums = false;
  struct State {};
  DSV4_HD static void begin(State&, const RowPair&, int, int) {}
  DSV4_HD static void build(State&, const RowPair& rows, int blk, int, int lane, uint32_t (&a)[4], int32_t (&c)[4]) {
    const int cc = lane & 3;
    const uint2 q0 = ld8_2aligned(rows.r[0] + 34 * blk + 2 + 8 * cc);
    const uint2 q1 = ld8_2aligned(rows.r[1] + 34 * blk + 2 + 8 * cc);
    a[0] = q0.x;
    a[1] = q1.x;
    a[2] = q0.y;
    a[3] = q1.y;
    c[0] = c[1] = c[2] = c[3] = kCBias;
  }
  DSV4_HD static void after(State&, const RowPair& rows, int blk, int, int, const int32_t (&c)[4], float2 xs,
                            float (&acc)[2]) {
    for (int h = 0; h < 2; ++h) {
      const float d = f16_to_f32(*reinterpret_cast<const uint16_t*>(rows.r[h] + 34 * blk));
      const float t = fmaf(biased_to_f32(c[2 * h + 1]), xs.y, biased_to_f32(c[2 * h]) * xs.x);
      acc[h] = fmaf(d, t, acc[h]);
    }
  }
  DSV4_HD static void end(State&, const RowPair&, int, int, float2, const float*, float (&)[2]) {}
};

// Q4_K: mma m = sub-block m (32 nibbles, scale sc_m, min mn_m). The integer sums Σ_m sc_m·C_m
// stay exact over the block; at its end acc += d·Σ_p(...)·2^(E+8p) − dmin·Σ_m mn_m·Σx_m, lane c
// taking the minimum terms of sub-blocks c and c + 4.
struct MmaQ4_K {
  using Fmt = FmtQ4_K;
  static constexpr int kStageBlocks = 1, kMmas = 8;
  static constexpr bool kSums = true;
  struct State {
    uint4 h[2];  // the two rows' first 16 bytes: d|dmin, scales
    int32_t s[4];
  };
  DSV4_HD static uint32_t scale(const uint4& h, int sb) {
    const int sh = 8 * (sb & 3);
    return sb < 4 ? (h.y >> sh) & 63u : ((h.w >> sh) & 15u) | ((h.y >> sh >> 2) & 48u);
  }
  DSV4_HD static uint32_t min(const uint4& h, int sb) {
    const int sh = 8 * (sb & 3);
    return sb < 4 ? (h.z >> sh) & 63u : ((h.w >> sh >> 4) & 15u) | ((h.z >> sh >> 2) & 48u);
  }
  DSV4_HD static void begin(State& s, const RowPair& rows, int blk, int) {
    s.h[0] = *reinterpret_cast<const uint4*>(rows.r[0] + 144 * blk);
    s.h[1] = *reinterpret_cast<const uint4*>(rows.r[1] + 144 * blk);
    s.s[0] = s.s[1] = s.s[2] = s.s[3] = 0;
  }
  DSV4_HD static void build(State&, const RowPair& rows, int blk, int m, int lane, uint32_t (&a)[4], int32_t (&c)[4]) {
    const int cc = lane & 3, p = m >> 1, sh = 4 * (m & 1);
    const uint2 q0 = *reinterpret_cast<const uint2*>(rows.r[0] + 144 * blk + 16 + 32 * p + 8 * cc);
    const uint2 q1 = *reinterpret_cast<const uint2*>(rows.r[1] + 144 * blk + 16 + 32 * p + 8 * cc);
    a[0] = (q0.x >> sh) & 0x0F0F0F0Fu;
    a[1] = (q1.x >> sh) & 0x0F0F0F0Fu;
    a[2] = (q0.y >> sh) & 0x0F0F0F0Fu;
    a[3] = (q1.y >> sh) & 0x0F0F0F0Fu;
    c[0] = c[1] = c[2] = c[3] = 0;
  }
  DSV4_HD static void after(State& s, const RowPair&, int, int m, int, const int32_t (&c)[4], float2,
                            float (&)[2]) {
    const int32_t sc0 = static_cast<int32_t>(scale(s.h[0], m)), sc1 = static_cast<int32_t>(scale(s.h[1], m));
    s.s[0] += sc0 * c[0];
    s.s[1] += sc0 * c[1];
    s.s[2] += sc1 * c[2];
    s.s[3] += sc1 * c[3];
  }
  DSV4_HD static void end(State& s, const RowPair&, int, int lane, float2 xs, const float* xsum, float (&acc)[2]) {
    const int cc = lane & 3;
    // Sub-block sb covers the 16-groups 2sb and 2sb + 1.
    const float x_lo = xsum[2 * cc] + xsum[2 * cc + 1], x_hi = xsum[2 * cc + 8] + xsum[2 * cc + 9];
    for (int h = 0; h < 2; ++h) {
      const float2 dm = f16x2_to_f32(s.h[h].x);
      const float t = fmaf(static_cast<float>(s.s[2 * h + 1]), xs.y, static_cast<float>(s.s[2 * h]) * xs.x);
      const float mins = fmaf(small_to_f32(min(s.h[h], cc + 4)), x_hi, small_to_f32(min(s.h[h], cc)) * x_lo);
      acc[h] = fmaf(dm.x, t, fmaf(-dm.y, mins, acc[h]));
    }
  }
};

// Q2_K: mma m = (half m/4, bit plane m%4): 32 codes of two 16-groups; lane c's 8 codes lie in one
// group, so its A bytes are q·sc (≤ 45) and the block's eight mmas accumulate in one exact C.
// At the block end acc += d·Σ_p C_p·2^(E+8p) − dmin·Σ_g (sc_g >> 4)·Σx_g, lane c taking the
// minimum terms of groups 4c..4c+3.
struct MmaQ2_K {
  using Fmt = FmtQ2_K;
  static constexpr int kStageBlocks = 2, kMmas = 8;
  static constexpr bool kSums = true;
  struct State {
    int32_t c[4];
  };
  DSV4_HD static void begin(State& s, const RowPair&, int, int) { s.c[0] = s.c[1] = s.c[2] = s.c[3] = kCBias; }
  DSV4_HD static void build(State& s, const RowPair& rows, int blk, int m, int lane, uint32_t (&a)[4], int32_t (&c)[4]) {
    const int cc = lane & 3, half = m >> 2, j = m & 3;
    for (int h = 0; h < 2; ++h) {
      const uint8_t* b = rows.r[h] + 84 * blk;
      const uint32_t sc = b[8 * half + 2 * j + (cc >> 1)] & 15u;
      const uint32_t* q = reinterpret_cast<const uint32_t*>(b + 16 + 32 * half + 8 * cc);
      a[h] = ((q[0] >> (2 * j)) & 0x03030303u) * sc;
      a[2 + h] = ((q[1] >> (2 * j)) & 0x03030303u) * sc;
    }
    for (int i = 0; i < 4; ++i) c[i] = s.c[i];
  }
  DSV4_HD static void after(State& s, const RowPair&, int, int, int, const int32_t (&c)[4], float2, float (&)[2]) {
    for (int i = 0; i < 4; ++i) s.c[i] = c[i];
  }
  DSV4_HD static void end(State& s, const RowPair& rows, int blk, int lane, float2 xs, const float* xsum,
                          float (&acc)[2]) {
    const int cc = lane & 3;
    for (int h = 0; h < 2; ++h) {
      const uint8_t* b = rows.r[h] + 84 * blk;
      const float2 dm = f16x2_to_f32(*reinterpret_cast<const uint32_t*>(b + 80));
      const uint32_t mn = (*reinterpret_cast<const uint32_t*>(b + 4 * cc) >> 4) & 0x0F0F0F0Fu;
      const float mins = dot4_bytes(mn, kMagic, xsum + 4 * cc, 0.0f);
      const float t = fmaf(biased_to_f32(s.c[2 * h + 1]), xs.y, biased_to_f32(s.c[2 * h]) * xs.x);
      acc[h] = fmaf(dm.x, t, fmaf(-dm.y, mins, acc[h]));
    }
  }
};

// IQ2_XXS: mma m = sub-block m; lane c's 8 codes are grid entry (byte c of a0) with the signs of
// ksigns[(a1 >> 7c) & 127], made signed bytes ±(8, 25, 43). The sub-block scale 2·ls + 1 is applied
// to the exact integer sums; at the block end acc += d/8 · Σ_p(...)·2^(E+8p).
struct MmaIQ2_XXS {
  using Fmt = FmtIQ2_XXS;
  static constexpr int kStageBlocks = 2, kMmas = 8;
  static constexpr bool kSums = false;
  struct State {
    int32_t s[4];
    const uint8_t* tables;
  };
  DSV4_HD static void begin(State& s, const RowPair&, int, int) { s.s[0] = s.s[1] = s.s[2] = s.s[3] = 0; }
  // Bytes of m negated where S has 0xFF: (m ^ S) + 1 in those bytes (m ≥ 8, so no carries).
  DSV4_HD static uint32_t apply_signs(uint32_t m, uint32_t sign_mask) {
    return (m ^ sign_mask) + (sign_mask & 0x01010101u);
  }
  DSV4_HD static void build(State& s, const RowPair& rows, int blk, int m, int lane, uint32_t (&a)[4], int32_t (&c)[4]) {
    const int cc = lane & 3;
    for (int h = 0; h < 2; ++h) {
      const uint8_t* sub = rows.r[h] + 66 * blk + 2 + 8 * m;
      const uint32_t a1 = *reinterpret_cast<const uint16_t*>(sub + 4) |
                          (uint32_t{*reinterpret_cast<const uint16_t*>(sub + 6)} << 16);
      const uint2 grid = reinterpret_cast<const uint2*>(s.tables)[sub[cc]];
      const uint32_t signs = s.tables[2048 + ((a1 >> (7 * cc)) & 127u)];
      a[h] = apply_signs(grid.x, FmtIQ2_XXS::sign_mask4(signs & 15u));
      a[2 + h] = apply_signs(grid.y, FmtIQ2_XXS::sign_mask4(signs >> 4));
    }
    c[0] = c[1] = c[2] = c[3] = 0;
  }
  DSV4_HD static void after(State& s, const RowPair& rows, int blk, int m, int, const int32_t (&c)[4], float2,
                            float (&)[2]) {
    for (int h = 0; h < 2; ++h) {
      const uint8_t* sub = rows.r[h] + 66 * blk + 2 + 8 * m;
      const int32_t k = 2 * static_cast<int32_t>(sub[7] >> 4) + 1;
      s.s[2 * h] += k * c[2 * h];
      s.s[2 * h + 1] += k * c[2 * h + 1];
    }
  }
  DSV4_HD static void end(State& s, const RowPair& rows, int blk, int, float2 xs, const float*, float (&acc)[2]) {
    for (int h = 0; h < 2; ++h) {
      const float d = f16_to_f32(*reinterpret_cast<const uint16_t*>(rows.r[h] + 66 * blk)) * 0.125f;
      const float t = fmaf(static_cast<float>(s.s[2 * h + 1]), xs.y, static_cast<float>(s.s[2 * h]) * xs.x);
      acc[h] = fmaf(d, t, acc[h]);
    }
  }
};

// ---- the work split (as in matvec_fast.cuh, with units of 16 rows) ----

template <class M>
struct MmaGeometry {
  static constexpr int kStageElems = M::kStageBlocks * M::Fmt::kBlockElems;
  static constexpr int kStageBytes = M::kStageBlocks * M::Fmt::kBlockBytes;
  static constexpr int kRowStride = (kStageBytes + 15 + 15) / 16 * 16;
  static constexpr int kBufBytes = kMmaRows * kRowStride;
};

struct MmaParams {
  const uint8_t* w;
  const uint8_t* w_end;
  int64_t row_bytes;
  int64_t slab_bytes;
  const int32_t* experts;
  const float* x;
  int64_t x_stride;
  const float* scale;
  float* y;
  const void* tables;
  int n_in;
  int n_out;
  int n_slots;
  int n_xvec;        // activation vectors: 1 (shared x) or n_slots
  int wpr;           // W: warps per group, 1–16
  int n_row_groups;  // ⌈n_out / 16⌉
  int n_units;
  int n_groups;
};

template <class M, bool kSum>
struct MmaWarp
    : WarpSchedule<MmaParams, kSum, kMmaRows, kMmaWarps, MmaGeometry<M>::kStageElems, MmaGeometry<M>::kStageBytes> {
  using G = MmaGeometry<M>;
  using S = WarpSchedule<MmaParams, kSum, kMmaRows, kMmaWarps, G::kStageElems, G::kStageBytes>;
  using S::S;
  using S::p;
  using S::slot_of;
  using S::stage_of;
  using S::stage_offset;
  using S::last_of_slot;
  DSV4_HD int stage_blocks(int st) const {
    const int left = p.n_in / M::Fmt::kBlockElems - st * M::kStageBlocks;
    return left < M::kStageBlocks ? left : M::kStageBlocks;
  }
  // Lane l copies row l % 16 of item i: its 16-byte chunks l / 16, l / 16 + 2, ...
  template <class Copy>
  DSV4_HD void issue(const FastUnit& un, int i, int lane, uint8_t* dst, Copy copy) const {
    const int r = lane & 15;
    if (r >= un.rows) return;
    const int st = stage_of(i);
    const int nbytes = stage_blocks(st) * M::Fmt::kBlockBytes;
    const int64_t off = stage_offset(un, slot_of(un, i), st) + r * p.row_bytes;
    const uint8_t* first = p.w + (off & ~int64_t{15});
    const int nchunks = static_cast<int>((off & 15) + nbytes + 15) >> 4;
    uint8_t* d = dst + r * G::kRowStride;
    for (int c = lane >> 4; c < nchunks; c += 2) {
      const int64_t left = p.w_end - (first + 16 * c);
      if (left >= 16) {
        copy(d + 16 * c, first + 16 * c, 16);
      } else if (left > 0) {
        copy(d + 16 * c, first + 16 * c, static_cast<int>(left));
      }
    }
  }
  // Rows g and g+8 of item i in its buffer (a missing row g+8 reads row g: its results are dropped).
  DSV4_HD RowPair rows(const FastUnit& un, int i, int lane, const uint8_t* buf) const {
    const int g = lane >> 2;
    const int64_t off = stage_offset(un, slot_of(un, i), stage_of(i));
    const int r1 = g + 8 < un.rows ? g + 8 : g;
    RowPair rp;
    rp.r[0] = buf + g * G::kRowStride + ((off + g * p.row_bytes) & 15);
    rp.r[1] = buf + r1 * G::kRowStride + ((off + r1 * p.row_bytes) & 15);
    return rp;
  }
  DSV4_HD int xvec_of(const FastUnit& un, int i) const { return p.x_stride ? slot_of(un, i) : 0; }
  DSV4_HD float slot_scale(const FastUnit& un, int i) const {
    if (!p.scale) return 1.0f;
#ifdef __CUDA_ARCH__
    return __ldg(p.scale + slot_of(un, i));
#else
    return p.scale[slot_of(un, i)];
#endif
  }
  DSV4_HD int64_t output_index(const FastUnit& un, int r) const {
    return kSum ? un.row0 + r : static_cast<int64_t>(un.slot) * p.n_out + un.row0 + r;
  }
};

}  // namespace dsv4::cuda::detail
