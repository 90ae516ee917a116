// prefill_attention.h.
//
// Partial kernel, block (split s, token t), 256 threads (8 warps), rows [128s, 128s + nr) of the
// token's list, products on f16 tensor cores with split operands (f16_split.cuh):
//   1. S[h][r] = q[t][h]·row_r over head-dim slabs of 64, in passes of 64 rows (a second pass only
//      where nr > 64; q is re-split per pass): each slab of q and of the rows is scaled
//      per vector by its own power of two (from the slab's max |.|, so no pass over the whole
//      vector comes first), split hi/lo into shared memory, 3 MMAs per product in a chain that
//      starts at zero, then S += chain·2^-(e_h + e_r) (rounded f32 add), scaled;
//   2. softmax statistics per head (max m, sum l of P = e^{S-m}) over the split's rows < nr, in f32;
//      P' = P·2^-b_r (b_r: row r's power of two over its whole length, from the slab maxima) is
//      scaled per head by 2^c_h into [2^14, 2^15) and split hi/lo: P[h][r]·row_r[d] = P'·2^-c_h ·
//      (row_r[d]·2^b_r), the row's factor moved out of the k index of the MMA;
//   3. O[h][d] = 2^-c_h·Σ_r P'[h][r]·(row_r[d]·2^b_r), the head dim in slabs of 64 (rows re-read and
//      split with b_r, B fragments by ldmatrix.trans), one zero-started chain of up to 8 k16 steps
//      per slab (the split's 128 rows), written to the split partials.
// 128-row splits (round 2; 64 before): half the partials written here and read by the combine
// (a CSA token: 5 splits of 128 KB instead of 10); short lists lose little to padding, as a pass
// or k16 step past nr is skipped (HCA: 144-176 rows = a full split and a one-pass one).
// Warp tiles: 16 heads × 32 rows (scores) and 16 heads × 32 dims (P·V), 12 MMAs per k16 step, 8
// on slabs whose rows are exact in f16 (official mode's FP8-simulated nope dims: every lo half is
// zero after the power-of-two scale, found by __syncthreads_or after the split, so hi·lo would add
// exact zeros; the result is the same bits). 16 × 32 rather than 32 × 16: the rows (B) are the
// operand whose lo half drops, so B's columns are the wide side (4 ldmatrix.x4 per 8 MMAs there
// instead of 5).
// The next slab's f32 loads are issued before the current slab's MMAs (registers).
// Geometry: H ≤ 64 heads (fewer are padded with zero queries), hd a multiple of 32 (a last
// half slab is zero-filled).
// Roofline (CSA layer, 4096 tokens × 640 rows, 64 heads, hd 512): 2 × 2 × 64 × 512 × 640 × 4096
// = 344 GFLOP of f32-accurate products = 1.03 TFLOP of f16 MMAs, ≈ 1.6 ms at ≈ 660 TFLOP/s
// (mma.sync's reach on Hopper); each 128-row split reads q (128 KB) twice and its rows (256 KB)
// twice from L2 and writes 128 KB of partials, which the combine reads back (≈ 1.3 ms of DRAM
// traffic per CSA layer at 4 TB/s). Round 1 (64-row splits, 32 × 16 warp tiles, always 3 MMAs;
// H100, ncu, docs/PERF.md session 7): ≈ 165 µs per launch of 204 tokens × 10 splits, ≈ 6× the
// MMA bound: shared memory (L1/TEX 74 % busy, short-scoreboard stalls first: ldmatrix at 256 B per
// MMA plus the split stores) and 4 warps per scheduler, not the tensor cores, L2 (28 %) or DRAM
// (20 %), set the pace. Round 2 (H100, 4-layer chunk profile, same call as round 1's bundle):
// attention stage −17 % (8K prompt's chunk) and −16 % (25K), two thirds of it from the 128-row
// splits' halved partial traffic, a third from the skipped hi·lo MMAs.
// Combine kernel, block (head, token): o = Σ_s e^{m_s-M} o_s / (e^{sink-M} + Σ_s e^{m_s-M} l_s)
// over the token's non-empty splits, then the inverse RoPE at p (§7.10).
#include <cuda_runtime.h>

#include "cuda/attention_rows.cuh"
#include "cuda/check.h"
#include "cuda/device_math.cuh"
#include "cuda/f16_split.cuh"
#include "cuda/once_per_device.h"
#include "cuda/pdl.cuh"
#include "cuda/prefill_attention.h"

namespace dsv4::cuda {

namespace {

using namespace detail;

constexpr int kRows = kPrefillAttnRows;  // rows of a split = k of P·V
constexpr int kTile = 64;                // rows per score pass = N of the score tile
constexpr int kHeads = 64;               // M of both tiles (H ≤ 64, zero-padded)
constexpr int kSlab = 64;                // head dims per slab (k of the scores, n of P·V)
constexpr int kThreads = 256;
constexpr int kPitch = kSlab + 8;        // halves per shared row: 144 B, ldmatrix rows conflict-free
constexpr int kPPitch = kRows + 8;       // halves per row of P': 272 B, conflict-free as well
constexpr int kSPitch = kRows + 4;       // floats per row of the score tile
constexpr int kVecPerPass = kThreads / 16;  // 16 threads load a slab of one vector (a float4 each)
constexpr int kPasses = kHeads / kVecPerPass;
static_assert(kRows == 2 * kTile && kTile == 64 && kHeads == 64 && kSlab == 64,
              "tiling below: two score passes of 64 rows, 4 × 2 warps of 16 × 32");
static_assert(kTile == kHeads, "the loader serves q and a pass's rows with the same passes");

// Shared memory (dynamic). ops holds the scores' four 64 × 64 split operands (q hi, q lo, rows hi,
// rows lo) and then P·V's two 128 × 64 ones (rows hi, lo): 2 blocks per SM fit.
constexpr int kHalfTile = kHeads * kPitch;  // halves of one 64 × 64 split-operand buffer
struct Smem {
  __half ops[4 * kHalfTile];
  float st[kHeads * kSPitch];                       // scores [h][r]
  __half ph[kHeads * kPPitch], pl[kHeads * kPPitch];  // P' [h][r] (P·V: A)
  float inv_a[kHeads], inv_b[kTile];                // this slab's 2^-e of q heads / a pass's rows (scores)
  float inv_c[kHeads];                              // 2^-c_h (P·V)
  int row_exp[kRows];                               // b_r: from the row's max |.| over its whole length
  float stats[kHeads][2];
  const float* rows[kRows];
};
static_assert(2 * sizeof(Smem) + 2048 <= 228 * 1024, "two blocks per SM");

// One slab of 64 vectors × 64 dims in flight: thread (pass p) holds dims 4·(tid & 15).. of vector
// p·16 + tid/16.
struct SlabRegs {
  float4 v[kPasses];
};

template <class VecFn>
__device__ __forceinline__ void slab_fetch(SlabRegs& r, int d0, int hd, VecFn vec) {
  const int d = d0 + 4 * (threadIdx.x & 15);
#pragma unroll
  for (int p = 0; p < kPasses; ++p) {
    const float* src = vec(p * kVecPerPass + (threadIdx.x >> 4));
    r.v[p] = src != nullptr && d < hd ? *reinterpret_cast<const float4*>(src + d) : make_float4(0.f, 0.f, 0.f, 0.f);
  }
}

__device__ __forceinline__ float max_abs4(float4 v) {
  return fmaxf(fmaxf(fabsf(v.x), fabsf(v.y)), fmaxf(fabsf(v.z), fabsf(v.w)));
}

// Returns whether any of the four lo halves is nonzero (±0 counts as zero).
__device__ __forceinline__ bool store_split(__half* hi, __half* lo, int vec, float4 v, float scale) {
  const SplitPair a = split_f16(v.x * scale, v.y * scale), b = split_f16(v.z * scale, v.w * scale);
  const int off = vec * kPitch + 4 * (threadIdx.x & 15);
  const auto bits = [](__half2 h) { return *reinterpret_cast<const uint32_t*>(&h); };
  *reinterpret_cast<uint2*>(hi + off) = make_uint2(bits(a.hi), bits(b.hi));
  *reinterpret_cast<uint2*>(lo + off) = make_uint2(bits(a.lo), bits(b.lo));
  return ((bits(a.lo) | bits(b.lo)) & 0x7FFF7FFFu) != 0;
}

// Splits a fetched slab with each vector's own exponent (the slab's max over 16 lanes); writes
// inv[vec] = 2^-e and returns each pass's slab max (the same in all 16 lanes of the vector).
// Returns whether this thread stored a nonzero lo half.
__device__ __forceinline__ bool slab_split_own(const SlabRegs& r, __half* hi, __half* lo, float* inv,
                                               float (&slab_max)[kPasses]) {
  bool any_lo = false;
#pragma unroll
  for (int p = 0; p < kPasses; ++p) {
    float m = max_abs4(r.v[p]);
#pragma unroll
    for (int o = 8; o > 0; o >>= 1) m = fmaxf(m, __shfl_xor_sync(0xFFFFFFFFu, m, o));
    slab_max[p] = m;
    const int vec = p * kVecPerPass + (threadIdx.x >> 4);
    const int e = split_exponent(m);
    any_lo |= store_split(hi, lo, vec, r.v[p], pow2f(e));
    if ((threadIdx.x & 15) == 0) inv[vec] = pow2f(-e);
  }
  return any_lo;
}

// Splits a fetched slab of rows with the rows' whole-length exponents b_r; returns whether this
// thread stored a nonzero lo half.
__device__ __forceinline__ bool slab_split_given(const SlabRegs& r, __half* hi, __half* lo, const int* exps) {
  bool any_lo = false;
#pragma unroll
  for (int p = 0; p < kPasses; ++p) {
    const int vec = p * kVecPerPass + (threadIdx.x >> 4);
    any_lo |= store_split(hi, lo, vec, r.v[p], pow2f(exps[vec]));
  }
  return any_lo;
}

// A fragments (hi, lo) of the 16 × 16 tile at (row0, k0) of a [m][k] buffer of `pitch` halves.
__device__ __forceinline__ void load_a(uint32_t (&hi)[4], uint32_t (&lo)[4], const __half* bh, const __half* bl,
                                       int row0, int k0, int pitch) {
  const int lane = threadIdx.x & 31;
  const int off = (row0 + (lane & 15)) * pitch + k0 + (lane >> 4) * 8;
  ldmatrix_x4(hi, smem_addr(bh + off));
  ldmatrix_x4(lo, smem_addr(bl + off));
}

__global__ void __launch_bounds__(kThreads, 2) partial_kernel(AttentionArgs a) {
  pdl_wait();  // launched with PDL: nothing before this line (pdl.cuh)
  pdl_trigger();
  extern __shared__ __align__(16) unsigned char smem_raw[];
  Smem& sm = *reinterpret_cast<Smem*>(smem_raw);
  __half* const qh = sm.ops;
  __half* const ql = sm.ops + kHalfTile;
  __half* const kh = sm.ops + 2 * kHalfTile;
  __half* const kl = sm.ops + 3 * kHalfTile;
  __half* const vh = sm.ops;                 // P·V: rows [r][d], r < 128
  __half* const vl = sm.ops + 2 * kHalfTile;
  const int s = blockIdx.x, t = blockIdx.y;
  const AttnRowSet rs = attn_row_set(a, t);
  const int64_t r0 = static_cast<int64_t>(s) * kRows;
  const int64_t left = rs.total() - r0;
  if (left <= 0) return;  // the combine reads only the token's non-empty splits
  const int nr = static_cast<int>(left < kRows ? left : kRows);
  const int n_pass = nr > kTile ? 2 : 1;
  const int H = a.H, hd = a.hd;
  for (int i = threadIdx.x; i < kRows; i += blockDim.x) sm.rows[i] = i < nr ? attn_row_ptr(a, rs, t, r0 + i) : nullptr;
  const float* q = a.q + static_cast<int64_t>(t) * H * hd;
  const auto q_vec = [&](int h) { return h < H ? q + static_cast<int64_t>(h) * hd : nullptr; };
  __syncthreads();

  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int g = lane >> 2, c2 = 2 * (lane & 3);  // C fragment: rows g, g + 8; columns c2, c2 + 1
  const int wm = 16 * (warp & 3), wn = 32 * (warp >> 2);
  // B fragment addressing of two n8 tiles (one ldmatrix.x4; a warp tile's 32 columns take two).
  const int b_n = (lane & 7) + ((lane >> 4) << 3), b_k = ((lane >> 3) & 1) * 8;    // [n][k] buffers
  const int bt_k = (lane & 7) + (((lane >> 3) & 1) << 3), bt_n = (lane >> 4) * 8;  // [k][n] buffers

  // ---- 1. scores, one pass of 64 rows after the other (q re-split per pass) ----
  const int n_slab = (hd + kSlab - 1) / kSlab;
  float acc[4][4] = {};
  float run_max[kPasses] = {};  // this thread's rows' max |.| so far (this pass)
  SlabRegs qr, kr;
  slab_fetch(qr, 0, hd, q_vec);
  slab_fetch(kr, 0, hd, [&](int r) { return sm.rows[r]; });
  for (int it = 0; it < n_pass * n_slab; ++it) {
    const int pass = it >= n_slab ? 1 : 0, d0 = (it - pass * n_slab) * kSlab, pr0 = pass * kTile;
    float slab_max[kPasses];
    slab_split_own(qr, qh, ql, sm.inv_a, slab_max);
    const bool rows_lo = slab_split_own(kr, kh, kl, sm.inv_b, slab_max);
#pragma unroll
    for (int p = 0; p < kPasses; ++p) run_max[p] = fmaxf(run_max[p], slab_max[p]);
    // Rows exact in f16 (official mode's FP8-simulated nope dims): no hi·lo MMAs for this slab.
    const bool rows_exact = !__syncthreads_or(rows_lo);
    if (it + 1 < n_pass * n_slab) {
      const int next_pass = it + 1 >= n_slab ? 1 : 0;
      const int nd = (it + 1 - next_pass * n_slab) * kSlab;
      slab_fetch(qr, nd, hd, q_vec);
      slab_fetch(kr, nd, hd, [&](int r) { return sm.rows[next_pass * kTile + r]; });
    }
    float c[4][4] = {};
#pragma unroll
    for (int k0 = 0; k0 < kSlab; k0 += 16) {
      if (pr0 + wn >= nr) break;  // the warp's rows are all past the list (warp-uniform)
      uint32_t ah[4], al[4], bh[2][4], bl[2][4];
      load_a(ah, al, qh, ql, wm, k0, kPitch);
#pragma unroll
      for (int jj = 0; jj < 2; ++jj) {
        const int boff = (wn + 16 * jj + b_n) * kPitch + k0 + b_k;
        ldmatrix_x4(bh[jj], smem_addr(kh + boff));
        if (!rows_exact) ldmatrix_x4(bl[jj], smem_addr(kl + boff));
      }
#pragma unroll
      for (int j = 0; j < 4; ++j) mma_split(c[j], ah, al, bh[j >> 1] + 2 * (j & 1), bl[j >> 1] + 2 * (j & 1), rows_exact);
    }
#pragma unroll
    for (int j = 0; j < 4; ++j) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int h = wm + g + 8 * (e >> 1), r = wn + 8 * j + c2 + (e & 1);
        acc[j][e] += c[j][e] * sm.inv_a[h] * sm.inv_b[r];
      }
    }
    if (d0 + kSlab >= hd) {  // the pass's last slab: its scores and row exponents are final
      const float scale = static_cast<float>(1.0 / sqrt(static_cast<double>(hd)));
#pragma unroll
      for (int j = 0; j < 4; ++j) {
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const int h = wm + g + 8 * (e >> 1), r = pr0 + wn + 8 * j + c2 + (e & 1);
          sm.st[h * kSPitch + r] = __fmul_rn(acc[j][e], scale);
          acc[j][e] = 0.0f;
        }
      }
      if ((threadIdx.x & 15) == 0) {
#pragma unroll
        for (int p = 0; p < kPasses; ++p) sm.row_exp[pr0 + p * kVecPerPass + (threadIdx.x >> 4)] = split_exponent(run_max[p]);
      }
#pragma unroll
      for (int p = 0; p < kPasses; ++p) run_max[p] = 0.0f;
    }
    __syncthreads();
  }
  // P·V's first slab, in flight during the softmax.
  SlabRegs vr[2];
  slab_fetch(vr[0], 0, hd, [&](int r) { return sm.rows[r]; });
  if (n_pass == 2) slab_fetch(vr[1], 0, hd, [&](int r) { return sm.rows[kTile + r]; });

  // ---- 2. softmax statistics and P' (warp w: heads w, w + 8, ...; lane l: rows l + 32i) ----
  for (int h = warp; h < kHeads; h += kThreads / 32) {
    float sv[4], m = -INFINITY;
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int r = lane + 32 * i;
      sv[i] = r < nr ? sm.st[h * kSPitch + r] : -INFINITY;
      m = fmaxf(m, sv[i]);
    }
    m = warp_max(m);
    float ev[4], l = 0.0f, pmax = 0.0f;
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int r = lane + 32 * i;
      ev[i] = r < nr ? expf(sv[i] - m) : 0.0f;
      l += ev[i];
    }
    l = warp_sum(l);
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int r = lane + 32 * i;
      ev[i] = r < nr ? ev[i] * pow2f(-sm.row_exp[r]) : 0.0f;  // P'
      pmax = fmaxf(pmax, ev[i]);
    }
    const int ch = split_exponent(warp_max(pmax));
    const float f = pow2f(ch);
#pragma unroll
    for (int i = 0; i < 4; i += 2) {
      const SplitPair v = split_f16(ev[i] * f, ev[i + 1] * f);
      const int r = lane + 32 * i;
      sm.ph[h * kPPitch + r] = __low2half(v.hi);
      sm.pl[h * kPPitch + r] = __low2half(v.lo);
      sm.ph[h * kPPitch + r + 32] = __high2half(v.hi);
      sm.pl[h * kPPitch + r + 32] = __high2half(v.lo);
    }
    if (lane == 0) {
      sm.stats[h][0] = m;
      sm.stats[h][1] = l;
      sm.inv_c[h] = pow2f(-ch);
    }
  }

  // ---- 3. O = P·V per slab of 64 dims, k over the split's 128 rows ----
  const int64_t part = static_cast<int64_t>(t) * H * a.splits + s;  // + h·splits
  for (int d0 = 0; d0 < hd; d0 += kSlab) {
    __syncthreads();  // P' written (first slab); the previous slab's MMAs done
    bool rows_lo = slab_split_given(vr[0], vh, vl, sm.row_exp);
    if (n_pass == 2) rows_lo |= slab_split_given(vr[1], vh + kTile * kPitch, vl + kTile * kPitch, sm.row_exp + kTile);
    const bool rows_exact = !__syncthreads_or(rows_lo);
    if (d0 + kSlab < hd) {
      slab_fetch(vr[0], d0 + kSlab, hd, [&](int r) { return sm.rows[r]; });
      if (n_pass == 2) slab_fetch(vr[1], d0 + kSlab, hd, [&](int r) { return sm.rows[kTile + r]; });
    }
    float c[4][4] = {};
#pragma unroll
    for (int k0 = 0; k0 < kRows; k0 += 16) {
      if (k0 >= nr) break;  // rows past the list have P' = 0
      uint32_t ah[4], al[4], bh[2][4], bl[2][4];
      load_a(ah, al, sm.ph, sm.pl, wm, k0, kPPitch);
#pragma unroll
      for (int jj = 0; jj < 2; ++jj) {
        const int boff = (k0 + bt_k) * kPitch + wn + 16 * jj + bt_n;
        ldmatrix_x4_trans(bh[jj], smem_addr(vh + boff));
        if (!rows_exact) ldmatrix_x4_trans(bl[jj], smem_addr(vl + boff));
      }
#pragma unroll
      for (int j = 0; j < 4; ++j) mma_split(c[j], ah, al, bh[j >> 1] + 2 * (j & 1), bl[j >> 1] + 2 * (j & 1), rows_exact);
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
              make_float2(c[j][2 * half] * f, c[j][2 * half + 1] * f);
        }
      }
    }
  }
  for (int h = threadIdx.x; h < H; h += blockDim.x) {
    reinterpret_cast<float2*>(a.part_ml)[part + static_cast<int64_t>(h) * a.splits] =
        make_float2(sm.stats[h][0], sm.stats[h][1]);
  }
}

// Every split the combine reads holds at least one row, so l_s ≥ 1 and m_s is finite.
__global__ void combine_kernel(AttentionArgs a) {
  pdl_wait();  // launched with PDL: nothing before this line (pdl.cuh)
  pdl_trigger();
  extern __shared__ __align__(16) float smem[];
  float* o = smem;         // [hd]
  float* w = smem + a.hd;  // [splits]
  __shared__ float scratch[32];
  const int h = blockIdx.x, t = blockIdx.y;
  const int n_split = static_cast<int>((attn_row_set(a, t).total() + kRows - 1) / kRows);
  const int64_t base = (static_cast<int64_t>(t) * a.H + h) * a.splits;
  const float2* ml = reinterpret_cast<const float2*>(a.part_ml) + base;
  const float sink = a.sinks[h];
  float m_local = -INFINITY;
  for (int s = threadIdx.x; s < n_split; s += blockDim.x) m_local = fmaxf(m_local, ml[s].x);
  const float M = fmaxf(sink, block_max(m_local, scratch));
  float den_local = 0.0f;
  for (int s = threadIdx.x; s < n_split; s += blockDim.x) {
    const float2 v = ml[s];
    const float e = expf(v.x - M);
    w[s] = e;
    den_local += v.y * e;
  }
  const float den = expf(sink - M) + block_sum(den_local, scratch);
  for (int d = 4 * threadIdx.x; d < a.hd; d += 4 * blockDim.x) {  // hd is a multiple of 32
    float4 acc = make_float4(0.f, 0.f, 0.f, 0.f);
#pragma unroll 8
    for (int s = 0; s < n_split; ++s) {
      const float4 v = *reinterpret_cast<const float4*>(a.part_o + (base + s) * a.hd + d);
      acc = make_float4(fmaf(v.x, w[s], acc.x), fmaf(v.y, w[s], acc.y), fmaf(v.z, w[s], acc.z), fmaf(v.w, w[s], acc.w));
    }
    *reinterpret_cast<float4*>(o + d) = make_float4(acc.x / den, acc.y / den, acc.z / den, acc.w / den);
  }
  const int64_t pos = static_cast<int64_t>(*a.pos0) + a.t0 + t;
  rope_shared(o, a.hd, a.n_rot / 2, a.omega, pos, true);
  float* out = a.out + (static_cast<int64_t>(t) * a.H + h) * a.hd;
  for (int d = threadIdx.x; d < a.hd; d += blockDim.x) out[d] = o[d];
}

}  // namespace

int prefill_attention_splits(int64_t max_rows) { return static_cast<int>((max_rows + kRows - 1) / kRows); }

bool prefill_attention_supported(int H, int hd) { return H >= 1 && H <= kHeads && hd >= 32 && hd % 32 == 0; }

Status prefill_attention(const AttentionArgs& a, cudaStream_t stream) {
  if (a.T <= 0) return Status();
  if (!prefill_attention_supported(a.H, a.hd)) return make_error("prefill attention: unsupported geometry");
  if (a.splits <= 0 || a.splits > 65535 || a.T > 65535) return make_error("prefill attention: bad launch shape");
  int device = 0;
  DSV4_CUDA_TRY(cudaGetDevice(&device));
  DSV4_CUDA_TRY(once_per_device(device, [] {
    return cudaFuncSetAttribute(partial_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                static_cast<int>(sizeof(Smem)));
  }));
  DSV4_CUDA_TRY(launch_pdl(partial_kernel, dim3(a.splits, a.T), dim3(kThreads), sizeof(Smem), stream, a));
  const size_t combine_smem = static_cast<size_t>(a.hd + a.splits) * sizeof(float);
  if (combine_smem > 48 * 1024) {
    DSV4_CUDA_TRY(cudaFuncSetAttribute(combine_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                       static_cast<int>(combine_smem)));
  }
  DSV4_CUDA_TRY(launch_pdl(combine_kernel, dim3(a.H, a.T), dim3(128), combine_smem, stream, a));
  return cuda_status(cudaGetLastError(), "prefill attention kernels");
}

}  // namespace dsv4::cuda
