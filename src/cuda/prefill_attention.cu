// prefill_attention.h.
//
// The kernel's inputs, rows and queries split into f16 halves, come from
// prefill_attention_inputs.cu.
// Partial kernel, block (split s, token t), 256 threads (8 warps), rows [128s, 128s + nr) of the
// token's list, products on f16 tensor cores with split operands (f16_split.cuh); the rows' halves
// come into shared memory by cp.async (a 2-stage ring of 128 rows × one 64-dim slab), no row is
// loaded as f32 or split here:
//   1. S[h][r] = q[t][h]·row_r over head-dim slabs of 64, with q already split (hi/lo of q·2^e_h,
//      one power of two per head: prefill_attention.h) and copied with the rows' slab by cp.async;
//      warpgroup w takes rows 64w.. (the second only where nr > 64) as wgmma m64n64k16 from shared
//      memory (q's slab A, the rows' slab B, both in the 128-byte swizzle); 3 MMAs per product in
//      a chain that starts at zero per slab, added to S by rounded f32 adds (every slab in the same
//      units), then S·2^-e_h·2^-b_r, scaled;
//   2. softmax statistics per head (max m, sum l of P = e^{S-m}) over the split's rows < nr, in f32,
//      on the score accumulators in registers (quad shuffles, the two warpgroups' halves added in
//      shared memory);
//      P' = P·2^-b_r is scaled per head by 2^c_h into [2^14, 2^15) and split hi/lo:
//      P[h][r]·row_r[d] = P'·2^-c_h·(row_r[d]·2^b_r), the row's factor moved out of the k index;
//   3. O[h][d] = 2^-c_h·Σ_r P'[h][r]·(row_r[d]·2^b_r) per slab of 64 dims (the converted rows as
//      they are), warpgroup w taking dims 32w.. of the slab as wgmma m64n32k16 (P' the K-major A,
//      the rows' slab the N-major B), one zero-started chain of 4 or 8 k16 steps (the split's
//      rows), written to the split partials.
// Slabs exact in f16 for all the split's rows (official mode's FP8-simulated nope dims: the OR of
// the rows' lo bits is clear) skip the hi·lo MMAs and their lo copies: the skipped MMA would add
// exact zeros, so the result is the same bits.
// Geometry: H ≤ 64 heads (fewer are padded with zero queries), hd a multiple of 32 up to 1024 (a
// last half slab is zero-filled).
// History (docs/PERF.md, session 7 rounds 1-2, session 8 round 3): per-slab f32 loads and splits
// of q and the rows in this kernel were issue- and barrier-bound (ncu: L1/TEX 74 %, 45 % issue,
// short-scoreboard stalls), 6× the MMA bound; round 3 moved the rows' split to the conversion
// kernel (H100: the CSA partial launch 604 → 402 µs, the attention stage −26 %).
// Combine kernel, block (group of heads, token), a warp per head: o = Σ_s e^{m_s-M} o_s /
// (e^{sink-M} + Σ_s e^{m_s-M} l_s) over the token's non-empty splits, then the inverse RoPE at p
// (§7.10), written as f32, or (AttentionArgs::out16) as out_a's GEMM input: the block is one out_a
// group of the token, whose values wait in shared memory for their largest magnitude, then leave
// as hi/lo f16 scaled by its power of two (gemm.h's conversion, a row factor per group), so that
// the f32 output is never written and converted in a launch of its own (session 14).
#include <cuda_runtime.h>

#include <algorithm>
#include <cstddef>

#include "cuda/attention_rows.cuh"
#include "cuda/check.h"
#include "cuda/cp_async.cuh"
#include "cuda/device_math.cuh"
#include "cuda/f16_rows.cuh"
#include "cuda/f16_split.cuh"
#include "cuda/gemm_kernel.cuh"
#include "cuda/once_per_device.h"
#include "cuda/pdl.cuh"
#include "cuda/prefill_attention.h"
#include "cuda/wgmma.cuh"

namespace dsv4::cuda {

namespace {

using namespace detail;

constexpr int kRows = kPrefillAttnRows;  // rows of a split = k of P·V
constexpr int kTile = 64;                // rows per score pass = N of the score tile
constexpr int kHeads = 64;               // M of both tiles (H ≤ 64, zero-padded)
constexpr int kSlab = kPrefillAttnSlab;  // head dims per slab (k of the scores, n of P·V)
constexpr int kThreads = 256;
constexpr int kCombineHeads = 8;         // most heads per combine block (a warp each); f32 output takes 8
constexpr int kCombineMaxValues = 16384;  // f16 output: a group's values held in shared memory (64 KB)
constexpr int kCombineBatch = 2;          // splits whose partials a lane loads at once, for two dims
constexpr int kChunks = kSlab / 8;       // 16-byte copies per row and slab (hi or lo)
static_assert(kRows == 2 * kTile && kTile == 64 && kHeads == 64 && kSlab == 64,
              "tiling below: two warpgroups, 64 rows each for the scores and 32 dims each for P·V");
static_assert(kRows * kChunks % kThreads == 0 && kHeads * kChunks % kThreads == 0 && kThreads / kChunks % 8 == 0,
              "the row and query copies deal evenly over the threads, in rows of one swizzle phase");

// Shared memory (dynamic, from a 1024-byte boundary), by phase. Scores: a 2-stage ring of the
// rows' slabs (hi then lo, 128 rows each) with q's slab (hi then lo, 64 heads). Softmax and P·V: P'
// (the scores stay in the MMAs' accumulators) and P·V's 2-stage ring of row slabs. 2 blocks per SM
// fit. q's slab, the row slabs and P' are 64-element rows of 128 bytes in wgmma's 128-byte swizzle
// (element d of row r at sw128_half(r, d), wgmma.cuh): the MMAs' operands as they are.
constexpr int kHalfTile = kHeads * kSlab;  // halves of one 64-row split-operand buffer
constexpr int kSlabBuf = 4 * kHalfTile;    // halves of one row slab: hi [128][64], lo [128][64]
constexpr int kStage = kSlabBuf + 2 * kHalfTile;  // a score stage: the row slab, then q's hi [64][64], lo
// Byte offsets in a score stage, in descriptor units (16 bytes: a descriptor's address field).
constexpr uint64_t kRowsLoDesc = kRows * kSlab * 2 / 16, kQHiDesc = kSlabBuf * 2 / 16,
                   kQLoDesc = (kSlabBuf + kHalfTile) * 2 / 16, kStageDesc = kStage * 2 / 16;
// P' as P·V's K-major A: head h's rows r in atom r / 64.
__device__ __forceinline__ int p_at(int h, int r) { return (r >> 6) * kHalfTile + sw128_half(h, r & 63); }
struct Smem {
  union {
    __half stage[2][kStage];  // scores
    struct {
      __half buf0[kSlabBuf];
      __half ph[2 * kHalfTile], pl[2 * kHalfTile];  // P' [h][r] (P·V's A: two 64-row atoms, p_at)
      __half buf1[kSlabBuf];
    } pv;
  };
  float inv_a[kHeads];        // 2^-e_h of the query heads (scores)
  float inv_b[kRows];         // 2^-b_r: the rows' power of two
  float inv_c[kHeads];        // 2^-c_h (P·V)
  float red[3][2][kHeads];    // per warpgroup and head: the scores' max, Σ P, max P'
  float stats[kHeads][2];
  const __half* rows[kRows];  // the split's converted rows
  unsigned lo_mask;           // OR of the rows' slab masks
};
static_assert(2 * (sizeof(Smem) + 1024) + 2048 <= 228 * 1024, "two blocks per SM");
static_assert(offsetof(Smem, pv.buf1) % 1024 == 0 && kSlabBuf * 2 % 1024 == 0 && kStage * 2 % 1024 == 0 &&
                  kHalfTile * 2 % 1024 == 0,
              "operand buffers on swizzle periods");

// Index of the converted row of list entry i (prefill_attention.h's layout).
__device__ __forceinline__ int64_t converted_row(const AttentionArgs& a, const AttnRowSet& r, int t, int64_t i,
                                                 int chunk) {
  if (i < r.n_raw) {
    const int64_t q = r.lo + i;
    return q < r.chunk0 ? q % a.window : a.window + (q - r.chunk0);
  }
  const int64_t c = i - r.n_raw;
  const int64_t idx = r.indexed ? a.selected[static_cast<int64_t>(a.t0 + t) * a.top_k + c] : c;
  return a.window + chunk + idx;
}

// A thread's share of every slab copy, the same in each slab: rows tid/8 + 32k of the split
// (k < 4) and query heads tid/8 + 32k (k < 2, hi and lo), each at the 16-byte chunk tid % 8 of the
// slab. Entries past the list (rows ≥ nr, heads ≥ H) and dims past hd come in as zeros (P·V's k
// index runs over whole k16 steps and the scores' over the whole slab: no garbage may meet a zero);
// their pointers are the first row's or head's, never read.
constexpr int kRowCopies = kRows * kChunks / kThreads, kHeadCopies = kHeads * kChunks / kThreads;
struct SlabCopies {
  const __half* row[kRowCopies];  // the rows' hi halves at the chunk
  const __half* q[kHeadCopies];   // the heads' hi halves at the chunk
  int dst;                        // halves: the chunk's swizzled place in row tid/8 (+ k·32 rows)
  int dim;                        // the chunk's first dim in the slab
  unsigned rows_in, heads_in;     // bit k: entry k is in the list
};

__device__ __forceinline__ SlabCopies slab_copies(const Smem& sm, int nr, const __half* q16, int H, int hd) {
  SlabCopies c;
  const int first = threadIdx.x / kChunks;
  c.dim = 8 * (threadIdx.x % kChunks);
  c.dst = sw128_half(first, c.dim);  // (first + 32k) % 8 == first % 8: the same swizzle for every k
  c.rows_in = c.heads_in = 0u;
#pragma unroll
  for (int k = 0; k < kRowCopies; ++k) {
    const int r = first + k * (kThreads / kChunks);
    c.row[k] = sm.rows[r < nr ? r : 0] + c.dim;
    c.rows_in |= (r < nr ? 1u : 0u) << k;
  }
#pragma unroll
  for (int k = 0; k < kHeadCopies; ++k) {
    const int h = first + k * (kThreads / kChunks);
    c.q[k] = q16 + static_cast<int64_t>(h < H ? h : 0) * 2 * hd + c.dim;
    c.heads_in |= (h < H ? 1u : 0u) << k;
  }
  return c;
}

// Slab d0 .. d0 + 63 of the split's rows into a buffer [hi 128 × 64][lo 128 × 64] (swizzled) by
// cp.async (the caller commits). exact: the lo halves are not read, so not copied.
__device__ __forceinline__ void copy_slab(__half* buf, const SlabCopies& c, int d0, int hd, bool exact) {
  const bool dims = d0 + c.dim < hd;
#pragma unroll
  for (int k = 0; k < kRowCopies; ++k) {
    __half* dst = buf + c.dst + k * (kThreads / kChunks) * kSlab;
    const bool in = dims && ((c.rows_in >> k) & 1u);
    cp_async16_or_zero(dst, c.row[k] + d0, in);
    if (!exact) cp_async16_or_zero(dst + kRows * kSlab, c.row[k] + hd + d0, in);
  }
}

// The same slab of the token's split queries into [hi 64 × 64][lo 64 × 64] (swizzled).
__device__ __forceinline__ void copy_q_slab(__half* buf, const SlabCopies& c, int d0, int hd) {
  const bool dims = d0 + c.dim < hd;
#pragma unroll
  for (int k = 0; k < kHeadCopies; ++k) {
    __half* dst = buf + c.dst + k * (kThreads / kChunks) * kSlab;
    const bool in = dims && ((c.heads_in >> k) & 1u);
    cp_async16_or_zero(dst, c.q[k] + d0, in);
    cp_async16_or_zero(dst + kHalfTile, c.q[k] + hd + d0, in);
  }
}

__global__ void __launch_bounds__(kThreads, 2) partial_kernel(AttentionArgs a, PrefillAttnRows cr) {
  pdl_wait();  // launched with PDL: nothing before this line (pdl.cuh)
  pdl_trigger();
  extern __shared__ __align__(16) uint8_t smem_raw[];
  Smem& sm = *reinterpret_cast<Smem*>(smem_align_1024(smem_raw));
  const int s = blockIdx.x, t = blockIdx.y;
  const AttnRowSet rs = attn_row_set(a, t);
  const int64_t r0 = static_cast<int64_t>(s) * kRows;
  const int64_t left = rs.total() - r0;
  if (left <= 0) return;  // the combine reads only the token's non-empty splits
  const int nr = static_cast<int>(left < kRows ? left : kRows);
  const int n_pass = nr > kTile ? 2 : 1;
  const int H = a.H, hd = a.hd;
  if (threadIdx.x == 0) sm.lo_mask = 0u;
  __syncthreads();
  if (threadIdx.x < kRows) {
    const int i = threadIdx.x;
    unsigned mask = 0u;
    float inv = 0.0f;
    const __half* row = nullptr;
    if (i < nr) {
      const int64_t ci = converted_row(a, rs, t, r0 + i, cr.chunk);
      const int2 m = cr.meta[ci];
      row = cr.rows + ci * 2 * hd;
      inv = pow2f(-m.x);
      mask = static_cast<unsigned>(m.y);
    }
    sm.rows[i] = row;
    sm.inv_b[i] = inv;
    mask = __reduce_or_sync(0xFFFFFFFFu, mask);
    if ((threadIdx.x & 31) == 0 && mask != 0u) atomicOr(&sm.lo_mask, mask);
  } else if (threadIdx.x < kRows + kHeads) {
    const int h = threadIdx.x - kRows;
    sm.inv_a[h] = h < H ? pow2f(-a.q_exp[static_cast<int64_t>(t) * H + h]) : 0.0f;
  }
  const __half* q16 = reinterpret_cast<const __half*>(a.q) + static_cast<int64_t>(t) * H * 2 * hd;
  __syncthreads();
  const unsigned lo_mask = sm.lo_mask;
  // Slabs whose lo halves are zero in all the split's rows (official mode's FP8-simulated nope
  // dims): no hi·lo MMAs, no lo copies.
  const auto exact = [&](int d0) { return ((lo_mask >> (d0 / kSlab)) & 1u) == 0u; };

  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int g = lane >> 2, c2 = 2 * (lane & 3);  // C fragment: rows g, g + 8; columns c2, c2 + 1
  const int wm = 16 * (warp & 3), wn = 32 * (warp >> 2);

  // ---- 1. scores, slab after slab, the rows' and q's halves together through the ring;
  // warpgroup w: rows 64w.. of the split (m64n64 wgmma: the 64 heads × its 64 rows), one chain per
  // slab from zero, added to acc in the units of q·2^e_h and row·2^b_r ----
  const int n_slab = (hd + kSlab - 1) / kSlab;
  // The warpgroup as a broadcast value, which the compiler knows is warp-uniform: the MMA
  // descriptors derived from it can live in uniform registers (no R2UR per wgmma).
  const int wg = __shfl_sync(0xFFFFFFFFu, warp >> 2, 0);
  const bool wg_rows = wg < n_pass;  // its rows hold list entries (warpgroup-uniform)
  const SlabCopies copies = slab_copies(sm, nr, q16, H, hd);
  const auto copy_stage = [&](int sl) {
    __half* stage = sm.stage[sl & 1];
    copy_slab(stage, copies, sl * kSlab, hd, exact(sl * kSlab));
    copy_q_slab(stage + kSlabBuf, copies, sl * kSlab, hd);
    cp_async_commit();
  };
  // Descriptors are the stage's plus byte offsets / 16 (the address field, no carry: < 256 KB).
  const uint64_t stage0 = wgmma_desc_sw128(shared_address(sm.stage[0]));
  float acc[32] = {};
  copy_stage(0);
  for (int sl = 0; sl < n_slab; ++sl) {
    if (sl + 1 < n_slab) {
      copy_stage(sl + 1);
      cp_async_wait<1>();
    } else {
      cp_async_wait<0>();
    }
    fence_proxy_async();  // the copies → wgmma
    __syncthreads();  // this slab's rows and q landed (every thread's copies)
    if (wg_rows) {
      // The slab's k16 slices are 32 bytes apart in the 128-byte rows; A is q, B the rows.
      const uint64_t kh = stage0 + (sl & 1) * kStageDesc + wg * (kTile * kSlab * 2 / 16);
      const uint64_t qh = stage0 + (sl & 1) * kStageDesc + kQHiDesc, ql = stage0 + (sl & 1) * kStageDesc + kQLoDesc;
      float c[32];
      const auto descs = [&](int k) { return SplitDescs{qh + 2 * k, ql + 2 * k, kh + 2 * k, kh + kRowsLoDesc + 2 * k}; };
      const auto mma = [](float (&d)[32], uint64_t x, uint64_t y, bool acc) { wgmma_m64n64k16_f16(d, x, y, acc); };
      if (exact(sl * kSlab)) {
        wgmma_split_chain<kSlab / 16, true, false>(c, descs, mma);
      } else {
        wgmma_split_chain<kSlab / 16, true, true>(c, descs, mma);
      }
#pragma unroll
      for (int i = 0; i < 32; ++i) acc[i] += c[i];
    }
    __syncthreads();  // the slab's MMAs done: its stage is free
  }
  // P·V's first slab, in flight during the softmax (its buffer held the scores' first stage).
  copy_slab(sm.pv.buf0, copies, 0, hd, exact(0));
  cp_async_commit();

  // ---- 2. softmax statistics and P', from the score accumulators: a thread holds heads
  // wm + g and wm + g + 8, rows 64·wg + 8j + c2 (+1), j < 8 (c[4j + e], wgmma.cuh); a head's 128
  // rows are the 4 lanes of a quad in each warpgroup, whose partial max and sums meet in shared
  // memory ----
  const float scale = static_cast<float>(1.0 / sqrt(static_cast<double>(hd)));
  const int h0 = wm + g;
  const float ia[2] = {sm.inv_a[h0], sm.inv_a[h0 + 8]};
  float mx[2] = {-INFINITY, -INFINITY};
#pragma unroll
  for (int j = 0; j < 8; ++j) {
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const int r = wg * kTile + 8 * j + c2 + (e & 1);
      const float v = r < nr ? __fmul_rn(acc[4 * j + e] * ia[e >> 1] * sm.inv_b[r], scale) : -INFINITY;
      acc[4 * j + e] = v;
      mx[e >> 1] = fmaxf(mx[e >> 1], v);
    }
  }
#pragma unroll
  for (int i = 0; i < 2; ++i) {
    mx[i] = fmaxf(mx[i], __shfl_xor_sync(0xFFFFFFFFu, mx[i], 1));
    mx[i] = fmaxf(mx[i], __shfl_xor_sync(0xFFFFFFFFu, mx[i], 2));
    if ((lane & 3) == 0) sm.red[0][wg][h0 + 8 * i] = mx[i];
  }
  __syncthreads();  // the warpgroups' maxima
  float m[2], l[2] = {0.0f, 0.0f}, pm[2] = {0.0f, 0.0f};
#pragma unroll
  for (int i = 0; i < 2; ++i) m[i] = fmaxf(sm.red[0][0][h0 + 8 * i], sm.red[0][1][h0 + 8 * i]);
#pragma unroll
  for (int j = 0; j < 8; ++j) {
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const int r = wg * kTile + 8 * j + c2 + (e & 1);
      const float p = r < nr ? expf(acc[4 * j + e] - m[e >> 1]) : 0.0f;
      l[e >> 1] += p;
      acc[4 * j + e] = p * sm.inv_b[r];  // P' (inv_b is 0 past the list)
      pm[e >> 1] = fmaxf(pm[e >> 1], acc[4 * j + e]);
    }
  }
#pragma unroll
  for (int i = 0; i < 2; ++i) {
    l[i] += __shfl_xor_sync(0xFFFFFFFFu, l[i], 1);
    l[i] += __shfl_xor_sync(0xFFFFFFFFu, l[i], 2);
    pm[i] = fmaxf(pm[i], __shfl_xor_sync(0xFFFFFFFFu, pm[i], 1));
    pm[i] = fmaxf(pm[i], __shfl_xor_sync(0xFFFFFFFFu, pm[i], 2));
    if ((lane & 3) == 0) {
      sm.red[1][wg][h0 + 8 * i] = l[i];
      sm.red[2][wg][h0 + 8 * i] = pm[i];
    }
  }
  __syncthreads();  // the warpgroups' sums and P' maxima
#pragma unroll
  for (int i = 0; i < 2; ++i) {
    const int h = h0 + 8 * i;
    const int ch = split_exponent(fmaxf(sm.red[2][0][h], sm.red[2][1][h]));
    const float f = pow2f(ch);
#pragma unroll
    for (int j = 0; j < 8; ++j) {
      const SplitPair v = split_f16(acc[4 * j + 2 * i] * f, acc[4 * j + 2 * i + 1] * f);
      const int at = p_at(h, wg * kTile + 8 * j + c2);  // rows c2, c2 + 1: one f16 pair
      *reinterpret_cast<uint32_t*>(sm.pv.ph + at) = half2_bits(v.hi);
      *reinterpret_cast<uint32_t*>(sm.pv.pl + at) = half2_bits(v.lo);
    }
    if (wg == 0 && (lane & 3) == 0) {
      sm.stats[h][0] = m[i];
      sm.stats[h][1] = sm.red[1][0][h] + sm.red[1][1][h];
      sm.inv_c[h] = pow2f(-ch);
    }
  }

  // ---- 3. O = P·V per slab of 64 dims, k over the split's 128 rows ----
  const int64_t part = static_cast<int64_t>(t) * H * a.splits + s;  // + h·splits
  const uint64_t buf0 = wgmma_desc_sw128(shared_address(sm.pv.buf0));
  const uint64_t buf1 = wgmma_desc_sw128(shared_address(sm.pv.buf1));
  const uint64_t ph = wgmma_desc_sw128(shared_address(sm.pv.ph)), pl = wgmma_desc_sw128(shared_address(sm.pv.pl));
  for (int sl = 0; sl < n_slab; ++sl) {
    const int d0 = sl * kSlab;
    __syncthreads();  // P' written (first slab); the previous slab's MMAs done
    if (sl + 1 < n_slab) {
      copy_slab((sl & 1) ? sm.pv.buf0 : sm.pv.buf1, copies, d0 + kSlab, hd, exact(d0 + kSlab));
      cp_async_commit();
      cp_async_wait<1>();
    } else {
      cp_async_wait<0>();
    }
    fence_proxy_async();  // P' and the copies → wgmma
    __syncthreads();  // this slab's rows landed
    // Warpgroup w: dims 32w.. of the slab (m64n32: the 64 heads × its 32 dims, the rows as K, as
    // many k16 steps as the split has rows; rows past the list have P' = 0). A is P' (a k16 step
    // 32 bytes further in its rows, atom k / 4), B the value rows stored N-major (a k16 step is 16
    // rows, 2 KB, further; the warpgroup's dims 64 bytes into each 128-byte row).
    const uint64_t vh = ((sl & 1) ? buf1 : buf0) + 64 * wg / 16;
    float c[16];
    const auto descs = [&](int k) {
      const uint64_t a_off = ((k >> 2) * kHalfTile * 2 + (k & 3) * 32) / 16, b_off = k * 16 * kSlab * 2 / 16;
      return SplitDescs{ph + a_off, pl + a_off, vh + b_off, vh + kRowsLoDesc + b_off};
    };
    const auto mma = [](float (&d)[16], uint64_t x, uint64_t y, bool acc) { wgmma_m64n32k16_f16<true>(d, x, y, acc); };
    constexpr int kShort = kTile / 16, kLong = kRows / 16;
    if (exact(d0)) {
      if (nr > kTile) wgmma_split_chain<kLong, true, false>(c, descs, mma);
      else wgmma_split_chain<kShort, true, false>(c, descs, mma);
    } else {
      if (nr > kTile) wgmma_split_chain<kLong, true, true>(c, descs, mma);
      else wgmma_split_chain<kShort, true, true>(c, descs, mma);
    }
#pragma unroll
    for (int half = 0; half < 2; ++half) {
      const int h = wm + g + 8 * half;
      if (h >= H) continue;
      const float f = sm.inv_c[h];
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        const int d = d0 + wn + 8 * j + c2;
        if (d < hd) {
          *reinterpret_cast<float2*>(a.part_o + (part + static_cast<int64_t>(h) * a.splits) * hd + d) =
              make_float2(c[4 * j + 2 * half] * f, c[4 * j + 2 * half + 1] * f);
        }
      }
    }
  }
  for (int h = threadIdx.x; h < H; h += blockDim.x) {
    reinterpret_cast<float2*>(a.part_ml)[part + static_cast<int64_t>(h) * a.splits] =
        make_float2(sm.stats[h][0], sm.stats[h][1]);
  }
}

// Combine, block (group of gh heads, token), a warp per head. Every split the combine reads holds
// at least one row, so l_s ≥ 1 and m_s is finite. With a.out16 the group's gh·hd outputs wait in
// shared memory for their largest magnitude, then leave as hi (and lo) f16 of o·2^s.
// 64 registers (4 blocks of 8 warps an SM) with the batch's loads in flight.
__global__ void __launch_bounds__(32 * kCombineHeads, 4) combine_kernel(AttentionArgs a, int gh) {
  pdl_wait();  // launched with PDL: nothing before this line (pdl.cuh)
  pdl_trigger();
  extern __shared__ __align__(16) float smem[];
  const bool f16 = a.out16 != nullptr;
  float* vals = smem;                          // [gh][hd] (f16 output only)
  float* w = smem + (f16 ? gh * a.hd : 0);     // [gh][splits]: e^{m_s-M}
  __shared__ float group_max[kCombineHeads];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int g = blockIdx.x, t = blockIdx.y, h = g * gh + warp, hd = a.hd;
  const AttnRowSet rs = attn_row_set(a, t);
  const int n_split = static_cast<int>((rs.total() + kRows - 1) / kRows);
  float m_abs = 0.0f;
  if (h < a.H) {
    const int64_t base = (static_cast<int64_t>(t) * a.H + h) * a.splits;
    const float2* ml = reinterpret_cast<const float2*>(a.part_ml) + base;
    float* wh = w + warp * a.splits;
    const float sink = a.sinks[h];
    float m_local = -INFINITY;
    for (int s = lane; s < n_split; s += 32) m_local = fmaxf(m_local, ml[s].x);
    const float M = fmaxf(sink, warp_max(m_local));
    float den_local = 0.0f;
    for (int s = lane; s < n_split; s += 32) {
      const float2 v = ml[s];
      const float e = expf(v.x - M);
      wh[s] = e;
      den_local += v.y * e;
    }
    const float den = expf(sink - M) + warp_sum(den_local);
    __syncwarp();  // the weights visible to the warp
    const int rot0 = hd - a.n_rot;
    const auto finish = [&](int d, float4 acc) {
      float4 o = make_float4(acc.x / den, acc.y / den, acc.z / den, acc.w / den);
      if (d >= rot0) {  // §7.10 at p, two whole pairs: rot0 and d are even
        float c, sn;
        rope_cos_sin(a.omega[(d - rot0) / 2], rs.pos, &c, &sn);
        const float2 p0 = rope_rotated(o.x, o.y, c, sn, true);
        rope_cos_sin(a.omega[(d - rot0) / 2 + 1], rs.pos, &c, &sn);
        const float2 p1 = rope_rotated(o.z, o.w, c, sn, true);
        o = make_float4(p0.x, p0.y, p1.x, p1.y);
      }
      if (f16) {
        *reinterpret_cast<float4*>(vals + warp * hd + d) = o;
        m_abs = fmaxf(m_abs, fmaxf(fmaxf(fabsf(o.x), fabsf(o.y)), fmaxf(fabsf(o.z), fabsf(o.w))));
      } else {
        *reinterpret_cast<float4*>(a.out + (static_cast<int64_t>(t) * a.H + h) * hd + d) = o;
      }
    };
    const auto add = [](float4 acc, float4 v, float w) {
      return make_float4(fmaf(v.x, w, acc.x), fmaf(v.y, w, acc.y), fmaf(v.z, w, acc.z), fmaf(v.w, w, acc.w));
    };
    // Two of the lane's dims (d, d + 128) at a time and their splits kCombineBatch at a time, all
    // the loads in flight before the first add (a loop of one load and its adds waited a memory
    // latency per split: a CSA token has 5, a sliding one 1); each dim's adds in split order.
    for (int d = 4 * lane; d < hd; d += 256) {  // hd is a multiple of 32
      const bool second = d + 128 < hd;
      float4 acc[2] = {make_float4(0.f, 0.f, 0.f, 0.f), make_float4(0.f, 0.f, 0.f, 0.f)};
      for (int s0 = 0; s0 < n_split; s0 += kCombineBatch) {
        float4 v[2][kCombineBatch];
#pragma unroll
        for (int k = 0; k < kCombineBatch; ++k) {
          if (s0 + k < n_split) {
            const float* p = a.part_o + (base + s0 + k) * hd + d;
            v[0][k] = *reinterpret_cast<const float4*>(p);
            if (second) v[1][k] = *reinterpret_cast<const float4*>(p + 128);
          }
        }
#pragma unroll
        for (int k = 0; k < kCombineBatch; ++k) {
          if (s0 + k < n_split) {
            acc[0] = add(acc[0], v[0][k], wh[s0 + k]);
            if (second) acc[1] = add(acc[1], v[1][k], wh[s0 + k]);
          }
        }
      }
      finish(d, acc[0]);
      if (second) finish(d + 128, acc[1]);
    }
  }
  if (!f16) return;
  m_abs = warp_max(m_abs);
  if (lane == 0) group_max[warp] = m_abs;
  __syncthreads();  // the group's values and maxima
  float m = 0.0f;
  for (int i = 0; i < gh; ++i) m = fmaxf(m, group_max[i]);
  const int shift = row_shift(m);
  if (threadIdx.x == 0) a.out16_scale[static_cast<int64_t>(t) * (a.H / gh) + g] = pow2f(-shift);
  const float f = pow2f(shift);
  const int64_t at = static_cast<int64_t>(t) * a.H * hd + static_cast<int64_t>(g) * gh * hd;
  for (int c = 4 * threadIdx.x; c < gh * hd; c += 4 * blockDim.x) {
    const float4 v = *reinterpret_cast<const float4*>(vals + c);
    const float e[4] = {v.x * f, v.y * f, v.z * f, v.w * f};
    __align__(8) __half hi[4], lo[4];
#pragma unroll
    for (int k = 0; k < 4; ++k) {
      hi[k] = f16_hi(e[k]);
      lo[k] = f16_lo(e[k], hi[k]);
    }
    *reinterpret_cast<uint2*>(a.out16 + at + c) = *reinterpret_cast<const uint2*>(hi);
    if (a.out16_lo) *reinterpret_cast<uint2*>(a.out16_lo + at + c) = *reinterpret_cast<const uint2*>(lo);
  }
}

}  // namespace

int prefill_attention_splits(int64_t max_rows) { return static_cast<int>((max_rows + kRows - 1) / kRows); }

bool prefill_attention_f16_output_supported(int group, int hd) {
  return group >= 1 && group <= kCombineHeads && int64_t{group} * hd <= kCombineMaxValues;
}

bool prefill_attention_supported(int H, int hd) {
  return H >= 1 && H <= kHeads && hd >= 32 && hd % 32 == 0 && hd <= kPrefillAttnMaxHeadDim;
}

Status prefill_attention(const AttentionArgs& a, const PrefillAttnRows& rows, cudaStream_t stream) {
  if (a.T <= 0) return Status();
  if (!prefill_attention_supported(a.H, a.hd)) return make_error("prefill attention: unsupported geometry");
  if (a.splits <= 0 || a.splits > 65535 || a.T > 65535) return make_error("prefill attention: bad launch shape");
  if (rows.rows == nullptr || rows.meta == nullptr || a.t0 + a.T > rows.chunk) {
    return make_error("prefill attention: the tokens' rows were not converted (prefill_attention_rows)");
  }
  if (a.q == nullptr || a.q_exp == nullptr) {
    return make_error("prefill attention: no split queries (prefill_attention_split_queries, q_kv_finish's q_exp)");
  }
  const bool f16 = a.out16 != nullptr;
  if (f16 && (a.out16_scale == nullptr || !prefill_attention_f16_output_supported(a.out16_group, a.hd) ||
              a.H % a.out16_group != 0)) {
    return make_error("prefill attention: bad f16 output (scale, group of heads)");
  }
  int device = 0;
  DSV4_CUDA_TRY(cudaGetDevice(&device));
  DSV4_CUDA_TRY(once_per_device(device, [] {
    return cudaFuncSetAttribute(partial_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                static_cast<int>(sizeof(Smem) + 1024));
  }));
  // The combine's shared memory is sized at run time (hd, the split count): all the device allows.
  DSV4_CUDA_TRY(once_per_device(device, [device] {
    return allow_optin_smem(device, reinterpret_cast<const void*>(combine_kernel));
  }));
  DSV4_CUDA_TRY(launch_pdl(partial_kernel, dim3(a.splits, a.T), dim3(kThreads), sizeof(Smem) + 1024, stream, a, rows));
  const int gh = f16 ? a.out16_group : std::min(a.H, kCombineHeads);
  const size_t combine_smem = static_cast<size_t>(gh) * ((f16 ? a.hd : 0) + a.splits) * sizeof(float);
  DSV4_CUDA_TRY(launch_pdl(combine_kernel, dim3((a.H + gh - 1) / gh, a.T), dim3(32 * gh), combine_smem, stream, a, gh));
  return cuda_status(cudaGetLastError(), "prefill attention kernels");
}

}  // namespace dsv4::cuda
