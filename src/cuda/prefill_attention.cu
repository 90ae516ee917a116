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
// The split form's combine: prefill_attention_combine.cu.
// Whole tokens (AttentionArgs::whole_tokens, long chunks): the partial kernel's block (token t)
// takes the token's splits in turn and keeps the combine's sums as it goes, O·α + o_s·β and
// L·α + l_s·β at the running max (from the sink), O in `out` (each thread re-reads only what it
// stored itself); the last split's P·V finishes the token (the denominator, the inverse RoPE) and,
// with out16, the block converts the token's groups from out as the combine does. No partials and
// no combine launch: at an 8 192-token chunk the combine was ≈ 4.6 % of the chunk (session 26).
#include <cuda_runtime.h>

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
  // Whole tokens (AttentionArgs::whole_tokens): per head the running max M (from the sink) and
  // denominator L over the splits so far, the factors of this split (O·alpha + o_s·beta), the
  // output's largest magnitude (float bits: non-negative floats order as integers) and, per group
  // of out16_group heads, its power of two.
  float run_m[kHeads], run_l[kHeads], alpha[kHeads], beta[kHeads], group_f[kHeads];
  unsigned abs_max[kHeads];
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

// A whole token's out_a f16 input (AttentionArgs::out16), as the combine writes it: per group of
// out16_group heads the power of two of its largest magnitude, then hi (and lo) f16 of o·2^s from
// the token's f32 values in out_t. head_abs: the largest magnitudes of this thread's final values
// of heads h0 and h0 + 8.
__device__ __forceinline__ void finish_whole_token_f16(const AttentionArgs& a, Smem& sm, int t, const float* out_t,
                                                       int h0, int lane, const float (&head_abs)[2]) {
  const int H = a.H, hd = a.hd, gh = a.out16_group, n_groups = H / gh;
#pragma unroll
  for (int i = 0; i < 2; ++i) {
    float m = head_abs[i];
    m = fmaxf(m, __shfl_xor_sync(0xFFFFFFFFu, m, 1));
    m = fmaxf(m, __shfl_xor_sync(0xFFFFFFFFu, m, 2));
    if ((lane & 3) == 0 && h0 + 8 * i < H) atomicMax(&sm.abs_max[h0 + 8 * i], __float_as_uint(m));
  }
  __syncthreads();  // every head's maxima, and its values in out (global, written by this block)
  if (threadIdx.x < n_groups) {
    float m = 0.0f;
    for (int i = 0; i < gh; ++i) m = fmaxf(m, __uint_as_float(sm.abs_max[threadIdx.x * gh + i]));
    const int shift = row_shift(m);
    a.out16_scale[static_cast<int64_t>(t) * n_groups + threadIdx.x] = pow2f(-shift);
    sm.group_f[threadIdx.x] = pow2f(shift);
  }
  __syncthreads();  // the groups' factors
  const int64_t at = static_cast<int64_t>(t) * H * hd;
  // kConvertBatch float4 loads of a thread in flight at once: one at a time, each waited its L2
  // latency while this block's MMAs stood idle (the pass cost what a combine launch does).
  constexpr int kConvertBatch = 8;
  for (int c0 = 4 * threadIdx.x; c0 < H * hd; c0 += kConvertBatch * 4 * kThreads) {  // hd: a multiple of 32
    float4 v[kConvertBatch];
#pragma unroll
    for (int b = 0; b < kConvertBatch; ++b) {
      const int c = c0 + b * 4 * kThreads;
      if (c < H * hd) v[b] = *reinterpret_cast<const float4*>(out_t + c);
    }
#pragma unroll
    for (int b = 0; b < kConvertBatch; ++b) {
      const int c = c0 + b * 4 * kThreads;
      if (c >= H * hd) break;
      store_scaled_f16x4(v[b], sm.group_f[c / (gh * hd)], a.out16 + at + c,
                         a.out16_lo ? a.out16_lo + at + c : nullptr);
    }
  }
}

__global__ void __launch_bounds__(kThreads, 2) partial_kernel(AttentionArgs a, PrefillAttnRows cr) {
  pdl_wait();  // launched with PDL: nothing before this line (pdl.cuh)
  pdl_trigger();
  extern __shared__ __align__(16) uint8_t smem_raw[];
  Smem& sm = *reinterpret_cast<Smem*>(smem_align_1024(smem_raw));
  const int t = blockIdx.y;
  const AttnRowSet rs = attn_row_set(a, t);
  const int n_split = static_cast<int>((rs.total() + kRows - 1) / kRows);
  const bool whole = a.whole_tokens;
  // Whole tokens: every split of the token in turn, else split blockIdx.x alone (the combine reads
  // only the token's non-empty splits).
  const int s_first = whole ? 0 : static_cast<int>(blockIdx.x);
  const int s_end = whole ? n_split : (static_cast<int>(blockIdx.x) < n_split ? s_first + 1 : s_first);
  const int H = a.H, hd = a.hd;
  if (whole && threadIdx.x < kHeads) {
    const int h = threadIdx.x;
    sm.run_m[h] = h < H ? a.sinks[h] : 0.0f;  // the sink's e^{sink-M} starts L at 1
    sm.run_l[h] = 1.0f;
    sm.abs_max[h] = 0u;
  } else if (threadIdx.x >= kRows && threadIdx.x < kRows + kHeads) {  // the token's, for all its splits
    const int h = threadIdx.x - kRows;
    sm.inv_a[h] = h < H ? pow2f(-a.q_exp[static_cast<int64_t>(t) * H + h]) : 0.0f;
  }
  const __half* q16 = reinterpret_cast<const __half*>(a.q) + static_cast<int64_t>(t) * H * 2 * hd;
  float* const out_t = a.out + static_cast<int64_t>(t) * H * hd;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int g = lane >> 2, c2 = 2 * (lane & 3);  // C fragment: rows g, g + 8; columns c2, c2 + 1
  const int wm = 16 * (warp & 3), wn = 32 * (warp >> 2);
  float head_abs[2] = {0.0f, 0.0f};  // whole tokens: the final values' largest magnitudes (heads h0, h0 + 8)
  for (int s = s_first; s < s_end; ++s) {
    const bool last = s + 1 == s_end;
    const int64_t r0 = static_cast<int64_t>(s) * kRows;
    const int64_t left = rs.total() - r0;
    const int nr = static_cast<int>(left < kRows ? left : kRows);
    const int n_pass = nr > kTile ? 2 : 1;
    if (threadIdx.x == 0) sm.lo_mask = 0u;
    __syncthreads();  // (a later split: every thread is past the previous split's P·V)
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
    }
    __syncthreads();
    const unsigned lo_mask = sm.lo_mask;
    // Slabs whose lo halves are zero in all the split's rows (official mode's FP8-simulated nope
    // dims): no hi·lo MMAs, no lo copies.
    const auto exact = [&](int d0) { return ((lo_mask >> (d0 / kSlab)) & 1u) == 0u; };

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
        const auto descs = [&](int k) {
          return SplitDescs{qh + 2 * k, ql + 2 * k, kh + 2 * k, kh + kRowsLoDesc + 2 * k};
        };
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
        const float l_s = sm.red[1][0][h] + sm.red[1][1][h];
        if (whole) {
          // The combine's sums taken split by split: O·alpha + o_s·beta, L·alpha + l_s·beta at the new
          // max (for a token of one split the combine's very operations, so the same bits).
          const float m_old = sm.run_m[h], m_new = fmaxf(m_old, m[i]);
          const float al = expf(m_old - m_new), be = expf(m[i] - m_new);
          sm.run_m[h] = m_new;
          sm.run_l[h] = __fadd_rn(__fmul_rn(sm.run_l[h], al), __fmul_rn(l_s, be));
          sm.alpha[h] = al;
          sm.beta[h] = be;
        } else {
          sm.stats[h][0] = m[i];
          sm.stats[h][1] = l_s;
        }
        sm.inv_c[h] = pow2f(-ch);
      }
    }

    // ---- 3. O = P·V per slab of 64 dims, k over the split's 128 rows ----
    const int64_t part = static_cast<int64_t>(t) * H * a.splits + s;  // + h·splits
    const uint64_t buf0 = wgmma_desc_sw128(shared_address(sm.pv.buf0));
    const uint64_t buf1 = wgmma_desc_sw128(shared_address(sm.pv.buf1));
    const uint64_t ph = wgmma_desc_sw128(shared_address(sm.pv.ph)), pl = wgmma_desc_sw128(shared_address(sm.pv.pl));
    // Whole tokens past their first split: the running O of the thread's outputs in slab d0 (its
    // own stores of the previous split), loaded a slab ahead, in flight across the barriers, the
    // copies' wait and the MMAs.
    float2 run[2][4];
    const auto load_run = [&](int d0) {
      if (!whole || s == s_first) return;
#pragma unroll
      for (int half = 0; half < 2; ++half) {
        const int h = wm + g + 8 * half;
#pragma unroll
        for (int j = 0; j < 4; ++j) {
          const int d = d0 + wn + 8 * j + c2;
          if (h < H && d < hd) run[half][j] = *reinterpret_cast<const float2*>(out_t + h * hd + d);
        }
      }
    };
    load_run(0);
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
      const auto mma = [](float (&d)[16], uint64_t x, uint64_t y, bool acc) {
        wgmma_m64n32k16_f16<true>(d, x, y, acc);
      };
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
        if (!whole) {
#pragma unroll
          for (int j = 0; j < 4; ++j) {
            const int d = d0 + wn + 8 * j + c2;
            if (d < hd) {
              *reinterpret_cast<float2*>(a.part_o + (part + static_cast<int64_t>(h) * a.splits) * hd + d) =
                  make_float2(c[4 * j + 2 * half] * f, c[4 * j + 2 * half + 1] * f);
            }
          }
          continue;
        }
        const float al = sm.alpha[h], be = sm.beta[h], den = sm.run_l[h];
#pragma unroll
        for (int j = 0; j < 4; ++j) {
          const int d = d0 + wn + 8 * j + c2;
          if (d >= hd) continue;
          float2 o = make_float2(__fmul_rn(c[4 * j + 2 * half] * f, be), __fmul_rn(c[4 * j + 2 * half + 1] * f, be));
          if (s > s_first) o = make_float2(fmaf(run[half][j].x, al, o.x), fmaf(run[half][j].y, al, o.y));
          if (last) {  // the combine's finish: the denominator, then §7.10 at p on the pair (d, d + 1)
            o = make_float2(o.x / den, o.y / den);
            if (d >= hd - a.n_rot) {
              float cs, sn;
              rope_cos_sin(a.omega[(d - (hd - a.n_rot)) / 2], rs.pos, &cs, &sn);
              o = rope_rotated(o.x, o.y, cs, sn, true);
            }
            head_abs[half] = fmaxf(head_abs[half], fmaxf(fabsf(o.x), fabsf(o.y)));
          }
          *reinterpret_cast<float2*>(out_t + h * hd + d) = o;
        }
      }
      if (sl + 1 < n_slab) load_run(d0 + kSlab);
    }
    if (!whole) {
      for (int h = threadIdx.x; h < H; h += blockDim.x) {
        reinterpret_cast<float2*>(a.part_ml)[part + static_cast<int64_t>(h) * a.splits] =
            make_float2(sm.stats[h][0], sm.stats[h][1]);
      }
    }
  }
  if (whole && a.out16 != nullptr) finish_whole_token_f16(a, sm, t, out_t, wm + g, lane, head_abs);
}

}  // namespace

int prefill_attention_splits(int64_t max_rows) { return static_cast<int>((max_rows + kRows - 1) / kRows); }

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
  if (a.whole_tokens && a.out == nullptr) return make_error("prefill attention: whole tokens keep their sums in out");
  int device = 0;
  DSV4_CUDA_TRY(cudaGetDevice(&device));
  DSV4_CUDA_TRY(once_per_device(device, [] {
    return cudaFuncSetAttribute(partial_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                static_cast<int>(sizeof(Smem) + 1024));
  }));
  if (a.whole_tokens) {
    DSV4_CUDA_TRY(launch_pdl(partial_kernel, dim3(1, a.T), dim3(kThreads), sizeof(Smem) + 1024, stream, a, rows));
    return cuda_status(cudaGetLastError(), "prefill attention kernel");
  }
  DSV4_CUDA_TRY(launch_pdl(partial_kernel, dim3(a.splits, a.T), dim3(kThreads), sizeof(Smem) + 1024, stream, a, rows));
  DSV4_CUDA_TRY(cudaGetLastError());
  return prefill_attention_combine(a, stream);
}

}  // namespace dsv4::cuda
