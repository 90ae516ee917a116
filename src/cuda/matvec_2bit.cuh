// The per-lane work of the 2-bit row-tile matvec (matvec_2bit.cu: IQ2_XXS and Q2_K, the routed
// experts' formats, and the q4 mix's Q4_K) as __host__ __device__ code, so that
// tests/cuda/cpu/matvec_2bit_emulation_test.cc runs the very same staging map and decoding on the
// CPU. Q4_K differs from the shape below in its staging only (16-byte chunks: Fmt4bQ4K).
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
//   x     = the launch's activation vectors are staged in shared memory once per block (from
//           global memory every item's first reads were L2 misses on the decode's critical path:
//           the first version of this kernel ran at 4–19 % of copy) as fixed-point limbs
//           (x_fixed.cuh; XBlock2b: per 256 elements one 2^E, three int8 limbs per element, the
//           sums the decoders need); every lane of a warp reads the same activations (broadcast
//           LDS.128).
// Integer decode (session 5; the f32 decode, PRMT + FADD + FFMA per weight, left the kernel
// issue bound at ≈ 7 instructions per weight): the weight codes are dotted as bytes with the limbs,
// one dp4a per limb per 4 weights; the 4-bit scales are integer multiplies per 32 (IQ2_XXS) or 16
// (Q2_K) weights; one int→f32 and scale per 256-weight block. IQ2_XXS: the grid point (8
// magnitudes) and the 8 sign bits come from two shared-memory tables. Every grid magnitude is 8,
// 25 or 43, so a grid point is kept as 8 two-bit codes (in nibbles) and a sign pattern as 8 bits
// (at bit 2 of each nibble); their OR selects, per byte, the signed code ±m out of six constant
// bytes (one PRMT per 4 weights; session 7: 4-byte entries are one wavefront per lookup, the
// 8-byte entries of sessions 4-6 took two, and their sign fold made biased bytes 64 ± m whose
// 64·Σlimbs had to be staged and loaded per sub-block). Q2_K:
// w = d·(sc & 15)·q − dmin·(sc >> 4) per 16 elements, so a 16-group contributes d·sc·Σ q·x −
// dmin·m·Σx; the group sums Σx (f32, the same for every lane) are staged with the limbs.
#pragma once

#include <cstdint>
#include <cstring>

#include "cuda/quant_decode.cuh"
#include "cuda/x_fixed.cuh"

namespace dsv4::cuda::detail {

constexpr int k2bTileRows = 32;
constexpr int k2bMaxWarps = 8;        // warps splitting a row (= warps per group)
constexpr int k2bMaxBlockWarps = 16;  // warps per block (groups of W warps, matvec_2bit.cu)

// The virtual block (RowTileSchedule's vblock) of group g of block b in a grid of `grid` blocks:
// groups dealt block-fastest, so with per-slot units numbered tile-major and a grid that is a
// multiple of the slots (the experts: 132 blocks, 6 slots) every group of a block takes the same
// slot, and the block stages (with the fused SwiGLU, computes) one slot's activations, not G.
DSV4_HD constexpr int rt2_vblock(int b, int g, int grid) { return g * grid + b; }

// The slot and tile of a group's units k = 0, 1, ... as the 2-bit kernel's RowTileSchedule deals
// them (unit u = vblock + k·vgrid; per slot tile-major: slot u mod n_slots, tile u / n_slots;
// summed: tile u mod n_tiles), stepped from unit to unit without a division. At the experts'
// decode shapes every unit is one item per warp, and the schedule's divisions by the run-time
// slot count (≈ 20 instructions each, 3-4 per item) were a sizeable part of a down item's ≈ 830.
template <bool kSum>
struct UnitCursor {
  int q, r, dq, dr, d;
  DSV4_HD UnitCursor(int vblock, int vgrid, int n_slots, int n_tiles)
      : q(vblock / (kSum ? n_tiles : n_slots)), r(vblock % (kSum ? n_tiles : n_slots)),
        dq(vgrid / (kSum ? n_tiles : n_slots)), dr(vgrid % (kSum ? n_tiles : n_slots)), d(kSum ? n_tiles : n_slots) {}
  DSV4_HD int slot() const { return kSum ? 0 : r; }  // summed: every slot (the item's, RowTileSchedule::item_slot)
  DSV4_HD int tile() const { return kSum ? r : q; }
  DSV4_HD void next() {
    q += dq;
    r += dr;
    if (r >= d) {
      r -= d;
      ++q;
    }
  }
};

// The IQ2_XXS tables as the kernel keeps them in shared memory: one 32-bit entry per grid point
// and per sign pattern, 32 copies interleaved (entry i of copy c at i·32 + c). Lane l reads copy
// l, so the warp's random lookups fall on 32 distinct banks: one wavefront. (Sessions 4-6: 8-byte
// entries in 16 copies, two wavefronts per lookup; with one copy ≈4–5, and shared memory was what
// the IQ2_XXS launch waited on: ncu L1/TEX throughput 73–80 %, MIO throttle 3.3 cycles per issue.)
constexpr int kIq2TableCopies = 32;
struct Iq2RowTables {
  uint32_t grid[256 * kIq2TableCopies];   // nibble k: the code of magnitude k (8, 25, 43 → 0, 1, 2)
  uint32_t signs[128 * kIq2TableCopies];  // 4 at nibble k where element k is negated (ksigns_iq2xs)
};

DSV4_HD uint32_t iq2_grid_entry(uint64_t g) {
  uint32_t e = 0;
  for (int k = 0; k < 8; ++k) {
    const uint32_t m = static_cast<uint32_t>(g >> (8 * k)) & 0xFFu;
    e |= (m > 25u ? 2u : m > 8u ? 1u : 0u) << (4 * k);
  }
  return e;
}
DSV4_HD uint32_t iq2_sign_entry(uint32_t s) {
  uint32_t e = 0;
  for (int k = 0; k < 8; ++k) e |= ((s >> k) & 1u) << (4 * k + 2);
  return e;
}

// A lane's copy of one IQ2_XXS table: entry i at byte i·128 from `at`, so a lookup is one LEA onto
// the lane base (and, for a grid index, one PRMT that extracts the index byte). On the device `at`
// is a 32-bit shared address the compiler cannot see through: knowing it as table + 4·copy, NVVM
// rewrites the address as ((i·32 | copy)·4) + table, and ptxas keeps the table's address in a
// register: 3-4 instructions per lookup (session 7 round 1's SASS: 127 IMAD.IADD per item).
struct Iq2LaneTable {
#ifdef __CUDA_ARCH__
  uint32_t at;
  __device__ explicit Iq2LaneTable(const uint32_t* entry0) {
    const uint32_t a = static_cast<uint32_t>(__cvta_generic_to_shared(entry0));
    asm("mov.b32 %0, %1;" : "=r"(at) : "r"(a));
  }
  __device__ uint32_t operator[](uint32_t i) const {
    uint32_t v;
    asm("ld.shared.u32 %0, [%1];" : "=r"(v) : "r"(at + (i << 7)));
    return v;
  }
#else
  const uint8_t* at;
  explicit Iq2LaneTable(const uint32_t* entry0) : at(reinterpret_cast<const uint8_t*>(entry0)) {}
  uint32_t operator[](uint32_t i) const {
    uint32_t v;
    std::memcpy(&v, at + (i << 7), sizeof(v));
    return v;
  }
#endif
};

// The signed codes ±m (int8) of elements 0–3 of a grid entry ORed with a sign entry (elements
// 4–7: the OR shifted down 16): PRMT picks byte (code + 4·negated) of {8, 25, 43, 0, −8, −25,
// −43, 0}; the nibbles are ≤ 6, so PRMT's sign-replicate bit 3 is never set.
DSV4_HD uint32_t iq2_signed_codes(uint32_t sel) { return prmt(0x002B1908u, 0x00D5E7F8u, sel); }

// The decoders call between(step) at the start of each of their kDecodeSteps steps: the kernel
// issues the next item's copies there, a part at a time (matvec_2bit.cu); nothing on the CPU.
struct NoBetween {
  DSV4_HD void operator()(int) const {}
};

// kRing: item i is decoded while item i + 1 is copied, its copies spread over the decode's
// kDecodeSteps steps (session 7: issued in one burst, 21–33 LDGSTS per lane per item, and the
// Q2_K ring's 3 items at once, they stalled the warps on the LSU queue: ncu LG throttle).
// kRowWords: a row's words in the ring buffer. Items of 4-byte words (kChunks16 false: their rows
// are not 16-byte aligned in memory) are copied word by word (rt_copy) into rows an odd number of
// words apart, so that lane r reading word r·kRowWords + w is conflict free.
struct Fmt2bQ2K {
  static constexpr int kItemElems = 256, kItemWords = 21, kRowWords = 21, kRing = 2, kDecodeSteps = 4;
  static constexpr bool kTables = false, kChunks16 = false;
};
struct Fmt2bIQ2 {
  static constexpr int kItemElems = 512, kItemWords = 33, kRowWords = 33, kRing = 2, kDecodeSteps = 16;
  static constexpr bool kTables = true;  // the IQ2_XXS grid and sign tables in shared memory
  static constexpr bool kChunks16 = false;
};
// Q4_K (flash-q4's experts) on the same kernel. A 144-byte block is nine 16-byte chunks, 16-byte
// aligned in memory: copied a chunk at a time (rt_chunk) into rows 36 words apart and read by the
// lanes 16 bytes at a time (a quarter-warp's eight rows then fall on distinct banks). Word by word,
// its 36 words straddled 128-byte lines and four tail copies a lane touched 32 rows each: 4.4
// shared wavefronts a copy, half of the launch's (ncu, docs/PERF.md session 32).
struct Fmt4bQ4K {
  static constexpr int kItemElems = 256, kItemWords = 36, kRowWords = 36, kRing = 2, kDecodeSteps = 4;
  static constexpr bool kTables = false, kChunks16 = true;
};

// The staging map: copy j of `lane` moves one word of the tile's item to word row·kRowWords + word
// of the buffer. Copies j < 32: row j, word lane (lanes < kItemWords): each is one coalesced run of
// a row. Copies 32 .. kItemWords − 1 (items of more than 32 words): word j of row lane. Rows past
// the matrix re-read its last row. Returns false for an idle lane.
template <int kItemWords>
DSV4_HD bool rt_copy(int lane, int j, int last_row, int& row, int& word) {
  static_assert(kItemWords <= 64, "32 rows' runs, then at most 32 words a lane");
  if (j < 32) {
    row = j;
    word = lane;
  } else {
    row = lane;
    word = j;
  }
  if (row > last_row) row = last_row;
  return word < kItemWords;
}
template <int kItemWords>
DSV4_HD constexpr int rt_copies() {
  return kItemWords > 32 ? kItemWords : 32;
}

// The staging map of a kChunks16 format: chunk j (< rt_chunks) of the tile's item is 16-byte chunk
// j mod c of row j / c (c chunks a row), copied to byte 16·j of the buffer (rows kRowWords words
// apart: c·16 bytes); lane l takes j = l, l + 32, ... Rows past the matrix re-read its last row.
template <class Fmt>
DSV4_HD constexpr int rt_chunks() {
  return k2bTileRows * Fmt::kItemWords / 4;
}
template <class Fmt>
DSV4_HD void rt_chunk(int j, int last_row, int& row, int& chunk) {
  static_assert(Fmt::kChunks16 && Fmt::kItemWords % 4 == 0 && Fmt::kRowWords == Fmt::kItemWords,
                "whole 16-byte chunks, rows packed");
  constexpr int kPerRow = Fmt::kItemWords / 4;
  row = j / kPerRow;
  chunk = j - row * kPerRow;
  if (row > last_row) row = last_row;
}

// ---- Activations as fixed-point limbs (x_fixed.cuh), staged once per block -------------------
// Three limbs (top_bits 22): the block's largest |X| in [2^21, 2^22], every element rounded to
// ≤ 2^(E−1) ≤ 2^-22 of the block's largest |x|; on a dot Σ_i |w_i|·2^(E−1) per block, about
// 2^-23·√256 ≈ 1e-6 of Σ|w·x| for random signs, ≤ 6e-5 of it if every rounding had the same sign
// and one element dominated its block (the matvec tests' tolerance is 1e-5 of Σ|w·x| on Gaussian
// x, the whole-model bar 1e-3). Four limbs (top_bits 30, exact beyond f32's own rounding) also
// work with kXLimbs2b = 4 and were measured (H100, docs/PERF.md session 5 run 2): 7-11 % slower
// per launch, the same whole-model results.
constexpr int kXLimbs2b = 3;
constexpr int kXTopBits2b = 8 * kXLimbs2b - 2;  // the last limb in [−64, 64]
constexpr int kXBlock2b = 256;  // elements per scale: one Q2_K block, one IQ2_XXS block

// One staged 256-element block of a launch's activations (shared memory; 848 bytes with 3 limbs).
struct alignas(16) XBlock2b {
  uint32_t limbs[kXLimbs2b][64];  // limb p of elements 4k..4k+3 in word k (element 4k + i in byte i)
  float gsum[16];  // Q2_K, Q4_K: Σx of each 16-group (f32: 8 elements in order, then the halves)
  float scale;     // 2^E; NaN when the block holds ±inf or NaN (as the f32 dot)
  float pad[3];
};
static_assert(sizeof(XBlock2b) % 16 == 0, "16-byte loads of every block");
static_assert(kXLimbs2b == 3 || kXLimbs2b == 4, "three limbs (measured fastest) or four (exact)");

// Lane `lane`'s part of staging one block: its elements x[0..7] = 8·lane.. (in element order),
// `e` the block's exponent (xblock_exponent of the block's largest |x|, kXTopBits2b). Writes its
// two limb words per limb and returns its 8 elements' f32 sum in order.
struct XLaneStage {
  uint32_t words[kXLimbs2b][2];
  float sum8;
};
DSV4_HD XLaneStage xblock_lane_stage(const float (&x)[8], int e) {
  XLaneStage s{};
  DSV4_UNROLL
  for (int k = 0; k < 8; ++k) {
    const int32_t X = x_to_fixed(x[k], e);
    DSV4_UNROLL
    for (int p = 0; p < kXLimbs2b; ++p) {
      const int32_t l = x_limb(X, p, kXLimbs2b);
      s.words[p][k >> 2] |= (static_cast<uint32_t>(l) & 0xFFu) << (8 * (k & 3));
    }
  }
  s.sum8 = x[0];
  DSV4_UNROLL
  for (int k = 1; k < 8; ++k) s.sum8 += x[k];
  return s;
}

// Σ_p A[p]·256^p as a float (the limbs' integer sums recombined; each term rounded once).
DSV4_HD float limb_sums_to_f32(const int32_t (&A)[kXLimbs2b]) {
  float v = static_cast<float>(A[kXLimbs2b - 1]);
  DSV4_UNROLL
  for (int p = kXLimbs2b - 2; p >= 0; --p) v = fmaf(v, 256.0f, static_cast<float>(A[p]));
  return v;
}

// A staged block's 16 group sums: four broadcast 16-byte loads.
DSV4_HD void load_group_sums(const XBlock2b& xb, float (&gsum)[16]) {
  DSV4_UNROLL
  for (int i = 0; i < 4; ++i) {
    const float4 v = reinterpret_cast<const float4*>(xb.gsum)[i];
    gsum[4 * i] = v.x, gsum[4 * i + 1] = v.y, gsum[4 * i + 2] = v.z, gsum[4 * i + 3] = v.w;
  }
}

// Σ W[i]·x[i] over one Q2_K block (its 84 bytes as 21 words, w[k] the k-th) against staged block
// xb. w = d·(sc & 15)·q − dmin·(sc >> 4) per 16-group g = 8h + 2j + u (elements 16g..16g+15,
// codes in words w[4 + 8h + 4u + t] at bits 2j of each byte). The codes are not shifted down:
// w & (0x03030303 << 2j) holds q·4^j per byte (≤ 192: dp4a reads them unsigned), and the
// groups of each j are summed apart and recombined as Σ_j 4^(3−j)·A_j = 64·Σ_g (sc_g & 15)·Σ q·limb:
//   |A_j,p| ≤ 4 groups · 15 · 16 · 192 · 128 < 2^25, |64·Σ| ≤ 64 · 16 · 15 · 16 · 3 · 128 < 2^27.
// result = (d/64)·(Σ_p 64·A_p·256^p)·2^E − dmin·Σ_g (sc_g >> 4)·Σx_g, the min sum in the loop's
// (h, u, j) order.
template <class Words, class Between = NoBetween>
DSV4_HD float q2k_block_dot(const Words& w, const XBlock2b& xb, Between between = {}) {
  const float2 dm = f16x2_to_f32(w[20]);
  uint32_t scales[4], mins_q[4];
  DSV4_UNROLL
  for (int i = 0; i < 4; ++i) {
    const uint32_t v = w[i];
    scales[i] = v & 0x0F0F0F0Fu;
    mins_q[i] = (v >> 4) & 0x0F0F0F0Fu;
  }
  float gsum[16];
  load_group_sums(xb, gsum);
  int32_t A[4][kXLimbs2b] = {};
  float mins = 0.0f;
  DSV4_UNROLL
  for (int h = 0; h < 2; ++h) {
    DSV4_UNROLL
    for (int u = 0; u < 2; ++u) {
      between(2 * h + u);
      uint32_t q[4];
      DSV4_UNROLL
      for (int t = 0; t < 4; ++t) q[t] = w[4 + 8 * h + 4 * u + t];
      DSV4_UNROLL
      for (int j = 0; j < 4; ++j) {
        const int g = 8 * h + 2 * j + u;
        const uint32_t mask = 0x03030303u << (2 * j);
        const int32_t sc = static_cast<int32_t>(prmt(scales[g / 4], 0u, 0x4440u | (g % 4)));
        DSV4_UNROLL
        for (int p = 0; p < kXLimbs2b; ++p) {
          const uint4 l = reinterpret_cast<const uint4*>(xb.limbs[p])[g];
          const int32_t D = dp4a_u8s8(q[3] & mask, l.w,
                                      dp4a_u8s8(q[2] & mask, l.z, dp4a_u8s8(q[1] & mask, l.y, dp4a_u8s8(q[0] & mask, l.x, 0))));
          A[j][p] += sc * D;
        }
        const float m = bits_to_f32(prmt(mins_q[g / 4], 0x4B000000u, 0x7440u | (g % 4))) - kMagic;
        mins = fmaf(m, gsum[g], mins);
      }
    }
  }
  int32_t S[kXLimbs2b];
  DSV4_UNROLL
  for (int p = 0; p < kXLimbs2b; ++p) S[p] = 64 * A[0][p] + 16 * A[1][p] + 4 * A[2][p] + A[3][p];
  // d·Σ first, then 2^E: scaled first, Σ·2^E can overflow where the block's dot does not.
  return fmaf(dm.x * 0.015625f * limb_sums_to_f32(S), xb.scale, -(dm.y * mins));
}

// Adds (2·ls + 1)·Σ (±m_k)·limb_p(x_k) over one IQ2_XXS sub-block s of staged block xb to A[p]:
// its 4 grid indices are bytes kOff..kOff + 3 of {g_hi:g_lo} (block 0's sub-blocks are half-word
// aligned: kOff = 2 reads them across two words without a funnel shift), a1 = 4×7 sign-index bits
// and the 4-bit scale ls. Each 8-element grid point is read as signed bytes ±m
// (iq2_signed_codes), so the chain sums ±m·limb exactly. Bounds: |Σ ±m·limb| ≤ 32·43·128 < 2^18,
// times 31, times 8 sub-blocks < 2^26: int32 throughout.
// `grid` and `signs`: the lane's copies of the tables (Iq2LaneTable: a grid lookup is PRMT + LEA
// + LDS, a sign lookup at most SHF + LOP3 + LEA + LDS; session 7 round 1 spent SHF + LOP3 + IADD
// on every one).
template <int kOff>
DSV4_HD void iq2_sub_accumulate(uint32_t g_lo, uint32_t g_hi, uint32_t a1, const Iq2LaneTable& grid,
                                const Iq2LaneTable& signs, const XBlock2b& xb, int s, int32_t (&A)[kXLimbs2b]) {
  static_assert(kIq2TableCopies * sizeof(uint32_t) == 128, "an entry's copies span 128 bytes");
  static_assert(kOff == 0 || kOff == 2, "word or half-word aligned sub-blocks");
  int32_t D[kXLimbs2b] = {};
  uint4 l[kXLimbs2b][2];
  DSV4_UNROLL
  for (int p = 0; p < kXLimbs2b; ++p) {
    l[p][0] = reinterpret_cast<const uint4*>(xb.limbs[p])[2 * s];
    l[p][1] = reinterpret_cast<const uint4*>(xb.limbs[p])[2 * s + 1];
  }
  DSV4_UNROLL
  for (int g = 0; g < 4; ++g) {
    const int byte = kOff + g;  // of {g_hi:g_lo}: one word's byte, zero-extended
    const uint32_t gi = prmt(byte < 4 ? g_lo : g_hi, 0u, 0x4440u | (byte & 3));
    const uint32_t sel = grid[gi] | signs[(a1 >> (7 * g)) & 0x7Fu];
    const uint32_t v0 = iq2_signed_codes(sel), v1 = iq2_signed_codes(sel >> 16);
    DSV4_UNROLL
    for (int p = 0; p < kXLimbs2b; ++p) {
      const uint4& q = l[p][g / 2];
      D[p] = dp4a_s8s8(v1, g % 2 ? q.w : q.y, dp4a_s8s8(v0, g % 2 ? q.z : q.x, D[p]));
    }
  }
  const int32_t k = static_cast<int32_t>(2 * (a1 >> 28) + 1);
  DSV4_UNROLL
  for (int p = 0; p < kXLimbs2b; ++p) A[p] += k * D[p];
}

DSV4_HD uint32_t funnel16(uint32_t lo, uint32_t hi) {
#ifdef __CUDA_ARCH__
  return __funnelshift_r(lo, hi, 16);
#else
  return (lo >> 16) | (hi << 16);
#endif
}

// Σ W[i]·x[i] over two IQ2_XXS blocks (132 bytes as 33 words, w[k] the k-th) against staged
// blocks xb[0], xb[1]: block 0 at byte 0 (d, then its sub-blocks at bytes 2 + 8s: half-word
// aligned), block 1 at byte 66 (d in the top half of word 16, sub-blocks word aligned from word
// 17). Per block d·(2ls+1)/8·Σ ±m·x = ((d/8)·Σ_p A_p·256^p)·2^E; block 0 then block 1.
template <class Words, class Between = NoBetween>
DSV4_HD float iq2_item_dot(const Words& w, const Iq2RowTables& t, int copy, const XBlock2b* xb, Between between = {}) {
  int32_t A0[kXLimbs2b] = {}, A1[kXLimbs2b] = {};
  const Iq2LaneTable grid(t.grid + copy), signs(t.signs + copy);
  DSV4_UNROLL
  for (int s = 0; s < 8; ++s) {
    between(s);
    const uint32_t lo = w[2 * s], mid = w[2 * s + 1], hi = w[2 * s + 2];
    iq2_sub_accumulate<2>(lo, mid, funnel16(mid, hi), grid, signs, xb[0], s, A0);
  }
  DSV4_UNROLL
  for (int s = 0; s < 8; ++s) {
    between(8 + s);
    iq2_sub_accumulate<0>(w[17 + 2 * s], 0u, w[18 + 2 * s], grid, signs, xb[1], s, A1);
  }
  const float d0 = f16_to_f32(w[0] & 0xFFFFu) * 0.125f, d1 = f16_to_f32(w[16] >> 16) * 0.125f;
  return fmaf(d1 * limb_sums_to_f32(A1), xb[1].scale, (d0 * limb_sums_to_f32(A0)) * xb[0].scale);
}

// Σ_t (q[t] & mask)·limbs of 32 elements (words t of a then b), one dp4a chain in word order.
DSV4_HD int32_t nibbles_dot(const uint32_t (&q)[8], uint32_t mask, uint4 a, uint4 b) {
  const uint32_t l[8] = {a.x, a.y, a.z, a.w, b.x, b.y, b.z, b.w};
  int32_t D = 0;
  DSV4_UNROLL
  for (int t = 0; t < 8; ++t) D = dp4a_u8s8(q[t] & mask, l[t], D);
  return D;
}

// Σ W[i]·x[i] over one Q4_K block (its 144 bytes as nine 16-byte quads, w4[k] the k-th; word
// 4k + i is w4[k]'s i-th) against staged block xb: d and dmin in word 0, the packed 6-bit scales
// and mins in words 1..3 (q4_k_scale_min), the codes in words 4..35: word 4 + 8j + t holds
// elements 64j + 4t.. (sub-block 2j) in its low nibbles and 64j + 32 + 4t.. (sub-block 2j + 1) in
// its high ones. w = d·sc·q − dmin·mn per sub-block of 32, so a sub-block adds d·sc·Σ q·x −
// dmin·mn·Σx. The high nibbles are dotted in place (16·q per byte, ≤ 240: dp4a reads them
// unsigned) and the low ones' scales taken 16-fold to match:
//   A_p = Σ_j 16·sc_2j·Σ q·limb_p + sc_2j+1·Σ 16q·limb_p, |A_p| ≤ 8 · 63 · 32 · 240 · 128 < 2^29.
// result = (d/16)·(Σ_p A_p·256^p)·2^E − dmin·Σ_s mn_s·Σx_s, the mins in sub-block order, Σx_s the
// staged group sums of its two 16-element halves added in order.
template <class Between = NoBetween>
DSV4_HD float q4k_block_dot(const uint4* w4, const XBlock2b& xb, Between between = {}) {
  const uint4 head = w4[0];
  const float2 dm = f16x2_to_f32(head.x);
  const uint32_t s0 = head.y, s1 = head.z, s2 = head.w;
  // Bytes k of these: sub-block k's scale and min (k < 4), sub-block 4 + k's (hi).
  const uint32_t sc_lo = s0 & 0x3F3F3F3Fu, mn_lo = s1 & 0x3F3F3F3Fu;
  const uint32_t sc_hi = (s2 & 0x0F0F0F0Fu) | ((s0 >> 2) & 0x30303030u);
  const uint32_t mn_hi = ((s2 >> 4) & 0x0F0F0F0Fu) | ((s1 >> 2) & 0x30303030u);
  float gsum[16];
  load_group_sums(xb, gsum);
  int32_t A[kXLimbs2b] = {};
  float mins = 0.0f;
  DSV4_UNROLL
  for (int j = 0; j < 4; ++j) {
    between(j);
    const uint4 qa = w4[1 + 2 * j], qb = w4[2 + 2 * j];
    const uint32_t q[8] = {qa.x, qa.y, qa.z, qa.w, qb.x, qb.y, qb.z, qb.w};
    // Sub-blocks 2j and 2j + 1: bytes (2j) & 3 and (2j + 1) & 3 of the lo or hi words.
    const uint32_t sc4 = j < 2 ? sc_lo : sc_hi, mn4 = j < 2 ? mn_lo : mn_hi;
    const uint32_t byte_lo = (2 * j) & 3, byte_hi = (2 * j + 1) & 3;
    const int32_t k_lo = 16 * static_cast<int32_t>(prmt(sc4, 0u, 0x4440u | byte_lo));
    const int32_t k_hi = static_cast<int32_t>(prmt(sc4, 0u, 0x4440u | byte_hi));
    DSV4_UNROLL
    for (int p = 0; p < kXLimbs2b; ++p) {
      const uint4* l = reinterpret_cast<const uint4*>(xb.limbs[p]) + 4 * j;
      A[p] += k_lo * nibbles_dot(q, 0x0F0F0F0Fu, l[0], l[1]) + k_hi * nibbles_dot(q, 0xF0F0F0F0u, l[2], l[3]);
    }
    const float m_lo = bits_to_f32(prmt(mn4, 0x4B000000u, 0x7440u | byte_lo)) - kMagic;
    const float m_hi = bits_to_f32(prmt(mn4, 0x4B000000u, 0x7440u | byte_hi)) - kMagic;
    mins = fmaf(m_lo, gsum[4 * j] + gsum[4 * j + 1], mins);
    mins = fmaf(m_hi, gsum[4 * j + 2] + gsum[4 * j + 3], mins);
  }
  // d·Σ first, then 2^E: scaled first, Σ·2^E can overflow where the block's dot does not.
  return fmaf(dm.x * 0.0625f * limb_sums_to_f32(A), xb.scale, -(dm.y * mins));
}

template <class Fmt>
DSV4_HD constexpr int rt_item_bytes() {
  return k2bTileRows * Fmt::kRowWords * 4;
}
// Shared memory of a block of `warps` warps (all its groups): the IQ2_XXS tables, the launch's
// activations as staged blocks (x_floats: every x vector of the launch, a multiple of 256), the
// warps' rings, the groups' reduction buffers, and with swiglu_rows the row sums of a round of W
// units per group that wait for their SwiGLU (matvec_2bit.cu).
template <class Fmt>
DSV4_HD constexpr int64_t rt_smem_bytes(int warps, int64_t x_floats, bool swiglu_rows = false) {
  return (Fmt::kTables ? static_cast<int64_t>(sizeof(Iq2RowTables)) : 0) +
         x_floats / kXBlock2b * static_cast<int64_t>(sizeof(XBlock2b)) +
         warps * Fmt::kRing * rt_item_bytes<Fmt>() + (swiglu_rows ? 3 : 2) * warps * k2bTileRows * 4;
}

}  // namespace dsv4::cuda::detail
