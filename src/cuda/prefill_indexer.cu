// prefill_indexer.h.
//
// Score kernel, block = two consecutive tokens × every row either of them ranks, 256 threads:
//   1. both tokens' queries (2 × 64 heads × idh) are split into shared memory once: each 32-dim
//      slab of each vector (one FP4 block in official mode) scaled by its own power of two
//      (f16_split.cuh: max |.| in [2^14, 2^15)) and split hi/lo in f16;
//   2. per tile of 64 rows: the rows are split the same way (row, slab), then warp (token, 16 rows)
//      computes S[h][r] for all 64 heads (4 m16 tiles × 2 n8 tiles): per slab one chain of two
//      k16 steps that starts at zero (hi·hi, plus lo·hi / hi·lo where a lo half is nonzero), added
//      to the f32 totals as S += (chain·2^-e_q)·2^-e_r (rounded);
//   3. score[t][r] = Σ_h w_h·max(0, S[h][r]) in registers (each lane's 8 heads, then a shuffle sum
//      over the warp's 8 head groups); [tokens × heads × rows] is never stored.
// Exactness: an FP4-simulated slab is e2m1·2^s (values with ≤ 2 significant bits, max/min
// nonzero ≤ 12), so after its own power-of-two scale every value is exact in f16 (lo = 0: the
// block-uniform __syncthreads_or flags drop those MMAs, the same result) and every product is a
// multiple of > 2^20 with |Σ| < 32·2^30: the chain is the exact slab dot product; the only
// roundings are the four f32 adds per (head, row). Plain mode (f32 inputs): hi + lo carries 22
// bits, the dropped lo·lo is ≤ 2^-22 of |q_slab|·|k_slab| per product, and the chain (≤ 6 MMAs of
// 16 products from zero) truncates within ≈ 2^-23 of its magnitude: the score error is
// ≲ 2^-21·Σ_h |w_h|·Σ_slab |q_h,slab|·|k_slab|, the order of the f32 SIMT sum this replaced.
// Roofline (CSA layer, 4096 tokens × ≈ 1000 rows × 64 heads × 128 dims): 8.4 M m16n8k16 MMAs in
// official mode (one per k16 step; plain mode three), ≈ 0.1 ms at mma.sync's reach; shared-memory
// reads 5 ldmatrix.x4 per 8 MMAs; the rows are re-read from L2 once per token pair (as f32,
// ≈ 1 GB per layer at the 8K prompt's second chunk).
#include <cuda_runtime.h>

#include <algorithm>

#include "cuda/check.h"
#include "cuda/cp_async.cuh"
#include "cuda/device_math.cuh"
#include "cuda/f16_split.cuh"
#include "cuda/once_per_device.h"
#include "cuda/pdl.cuh"
#include "cuda/prefill_indexer.h"

namespace dsv4::cuda {

namespace {

using namespace detail;

constexpr int kTokens = 2;    // tokens per block (share the row tiles)
constexpr int kHeads = 64;    // M (IH ≤ 64, zero-padded)
constexpr int kRows = 64;     // rows per tile
constexpr int kSlab = 32;     // dims per power-of-two scale and per MMA chain (an FP4 block)
constexpr int kThreads = 256; // 8 warps: (token, 16 rows) each
static_assert(kThreads / 32 == kTokens * (kRows / 16), "warp tiles");

template <int kIdh>
struct Smem {
  static constexpr int kPitch = kIdh + 8;  // halves per row: rows 16 B apart mod 128, ldmatrix conflict-free
  static constexpr int kSlabs = kIdh / kSlab;
  __half qh[kTokens * kHeads * kPitch], ql[kTokens * kHeads * kPitch];
  __half kh[kRows * kPitch], kl[kRows * kPitch];
  float inv_q[kTokens * kHeads * kSlabs];  // 2^-e of (token·64 + head, slab)
  float inv_k[kRows * kSlabs];             // 2^-e of (row, slab)
  float w[kTokens][kHeads];                // w[t][h]/sqrt(idh·IH), 0 for padded heads
};

__device__ __forceinline__ int64_t visible_rows(const IndexerArgs& a, int t) {
  return (static_cast<int64_t>(*a.pos0) + a.t0 + t + 1) / 4;
}

// q[t][h] = FP4_SIM(Hadamard(RoPE(q[t][h], p))) in place (official mode), for tokens that rank.
// One block per token, 8 warps, a head per warp at a time (heads warp, warp + 8, ...), the head's
// kIdh values in registers: element i = 32·e + lane sits in register e of `lane` (kE = kIdh/32).
// Per element the same operations in the same order as rope_shared + hadamard_fp4_shared (and so
// as indexer.cu's prep, which the test compares bit for bit):
//   RoPE: pair j = elements (base + 2j, base + 2j + 1), base = idh − 2·n_pairs even, so a pair is
//     lanes (2m, 2m + 1) of one register; the partner by __shfl_xor 1, then rope_pair on (x0, x1)
//     with the angles of rope_cos_sin (computed once per token into shared memory);
//   Hadamard stage h (1, 2, ..., idh/2 in that order): partner i ^ h; h < 32 is lane ^ h (__shfl_xor
//     h), h ≥ 32 register e ^ (h/32) of the same lane; the lower index keeps fl(a + b), the upper
//     fl(a − b) with a the lower's value; then fl(x·fl32(1/sqrt(idh)));
//   FP4: block b of 32 is register b across the warp: amax = warp_max(|x|), fp4_sim_value.
template <int kIdh>
__global__ void __launch_bounds__(256) prep_kernel(IndexerArgs a) {
  pdl_wait();  // launched with PDL: nothing before this line (pdl.cuh)
  pdl_trigger();
  constexpr int kE = kIdh / 32, kWarps = 8, kMaxHeads = kHeads / kWarps;
  __shared__ float2 cs[kIdh / 2];
  const int t = blockIdx.x;
  if (visible_rows(a, t) <= a.top_k) return;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int64_t pos = static_cast<int64_t>(*a.pos0) + a.t0 + t;
  float* const q = a.q + static_cast<int64_t>(t) * a.IH * kIdh;
  float x[kMaxHeads][kE];
#pragma unroll
  for (int k = 0; k < kMaxHeads; ++k) {
    const int h = warp + kWarps * k;
#pragma unroll
    for (int e = 0; e < kE; ++e) x[k][e] = h < a.IH ? q[h * kIdh + 32 * e + lane] : 0.0f;
  }
  const int n_pairs = a.n_rot / 2, base = kIdh - 2 * n_pairs;
  rope_angles_shared(cs, n_pairs, a.omega, pos);
  __syncthreads();
  float c[kE], s[kE];
  bool rot[kE];
#pragma unroll
  for (int e = 0; e < kE; ++e) {
    const int i = 32 * e + lane;
    rot[e] = i >= base;
    const float2 cse = rot[e] ? cs[(i - base) >> 1] : make_float2(1.0f, 0.0f);
    c[e] = cse.x;
    s[e] = cse.y;
  }
  const bool upper = (lane & 1) != 0;
  const float scale = static_cast<float>(1.0 / sqrt(static_cast<double>(kIdh)));
#pragma unroll
  for (int k = 0; k < kMaxHeads; ++k) {
    const int h = warp + kWarps * k;
    if (h >= a.IH) break;  // warp-uniform
    float* v = x[k];
#pragma unroll
    for (int e = 0; e < kE; ++e) {
      const float other = __shfl_xor_sync(0xFFFFFFFFu, v[e], 1);
      float p[2] = {upper ? other : v[e], upper ? v[e] : other};
      rope_pair(p, 2, 1, 0, c[e], s[e], false);
      if (rot[e]) v[e] = upper ? p[1] : p[0];
    }
    if (!a.sim) {
#pragma unroll
      for (int e = 0; e < kE; ++e) q[h * kIdh + 32 * e + lane] = v[e];
      continue;
    }
#pragma unroll
    for (int hs = 1; hs < 32 && hs < kIdh; hs <<= 1) {
      const bool hi = (lane & hs) != 0;
#pragma unroll
      for (int e = 0; e < kE; ++e) {
        const float other = __shfl_xor_sync(0xFFFFFFFFu, v[e], hs);
        v[e] = hi ? __fsub_rn(other, v[e]) : __fadd_rn(v[e], other);
      }
    }
#pragma unroll
    for (int he = 1; he < kE; he <<= 1) {
#pragma unroll
      for (int e = 0; e < kE; ++e) {
        if ((e & he) != 0) continue;
        const float lo = v[e], up = v[e + he];
        v[e] = __fadd_rn(lo, up);
        v[e + he] = __fsub_rn(lo, up);
      }
    }
#pragma unroll
    for (int e = 0; e < kE; ++e) {
      const float y = __fmul_rn(v[e], scale);
      const float amax = warp_max(fabsf(y));
      q[h * kIdh + 32 * e + lane] = fp4_sim_value(y, amax);
    }
  }
}

// Splits kRows vectors of kIdh floats (vec(i): its address, nullptr = zeros) into hi/lo, each
// (vector, slab) with its own power of two, vector v's halves at v·kPitchOut; 8 lanes hold a slab
// (a float4 each). All loads are issued before the first shuffle. Returns whether this thread
// stored a nonzero lo half.
template <int kIdh, int kPitchOut, class VecFn>
__device__ __forceinline__ bool split_vectors(__half* hi, __half* lo, float* inv, VecFn vec) {
  using S = Smem<kIdh>;
  constexpr int kTasks = kRows * S::kSlabs * 8;
  static_assert(kTasks % kThreads == 0, "every warp runs the same number of shuffles");
  constexpr int kIters = kTasks / kThreads;
  float4 x[kIters];
#pragma unroll
  for (int i = 0; i < kIters; ++i) {
    const int j = static_cast<int>(threadIdx.x) + i * kThreads;
    const float* src = vec(j / (8 * S::kSlabs));
    x[i] = src != nullptr ? *reinterpret_cast<const float4*>(src + 4 * (j % (8 * S::kSlabs)))
                          : make_float4(0.f, 0.f, 0.f, 0.f);
  }
  bool any_lo = false;
#pragma unroll
  for (int i = 0; i < kIters; ++i) {
    const int j = static_cast<int>(threadIdx.x) + i * kThreads;
    const int v = j / (8 * S::kSlabs), d = 4 * (j % (8 * S::kSlabs));
    float m = fmaxf(fmaxf(fabsf(x[i].x), fabsf(x[i].y)), fmaxf(fabsf(x[i].z), fabsf(x[i].w)));
#pragma unroll
    for (int o = 4; o > 0; o >>= 1) m = fmaxf(m, __shfl_xor_sync(0xFFFFFFFFu, m, o));
    const int e = split_exponent(m);
    const float sc = pow2f(e);
    const SplitPair p0 = split_f16(x[i].x * sc, x[i].y * sc), p1 = split_f16(x[i].z * sc, x[i].w * sc);
    *reinterpret_cast<uint2*>(hi + v * kPitchOut + d) = make_uint2(half2_bits(p0.hi), half2_bits(p1.hi));
    *reinterpret_cast<uint2*>(lo + v * kPitchOut + d) = make_uint2(half2_bits(p0.lo), half2_bits(p1.lo));
    any_lo |= ((half2_bits(p0.lo) | half2_bits(p1.lo)) & 0x7FFF7FFFu) != 0;  // ±0 counts as zero
    if ((j & 7) == 0) inv[v * S::kSlabs + d / kSlab] = pow2f(-e);
  }
  return any_lo;
}

// Row conversion: block b splits rows 64b.. of every row a's last token ranks (rows past them
// zero) into rows.rows (hi then lo, a row 2·kIdh halves) and rows.inv, and sets rows.tile_lo[b].
template <int kIdh>
__global__ void __launch_bounds__(kThreads) rows_kernel(IndexerArgs a, PrefillIndexRows rows) {
  pdl_wait();  // launched with PDL: nothing before this line (pdl.cuh)
  pdl_trigger();
  const int64_t row0 = static_cast<int64_t>(blockIdx.x) * kRows, n = visible_rows(a, a.T - 1);
  if (row0 >= n) return;
  const int64_t nr = n - row0;
  const float* src = a.rows + row0 * kIdh;
  __half* const dst = rows.rows + row0 * 2 * kIdh;
  const bool any_lo = split_vectors<kIdh, 2 * kIdh>(dst, dst + kIdh, rows.inv + row0 * (kIdh / kSlab), [=](int r) {
    return r < nr ? src + static_cast<int64_t>(r) * kIdh : nullptr;
  });
  const bool tile_lo = __syncthreads_or(any_lo);
  if (threadIdx.x == 0) rows.tile_lo[blockIdx.x] = tile_lo;
}

template <int kIdh>
__global__ void __launch_bounds__(kThreads, 2) score_kernel(IndexerArgs a, int32_t* n_rows, PrefillIndexRows rows) {
  pdl_wait();  // launched with PDL: nothing before this line (pdl.cuh)
  pdl_trigger();
  using S = Smem<kIdh>;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  S& sm = *reinterpret_cast<S*>(smem_raw);
  const int t_first = blockIdx.x * kTokens;
  int64_t n_vis[kTokens];
  int64_t n_max = 0;
#pragma unroll
  for (int k = 0; k < kTokens; ++k) {
    const int t = t_first + k;
    const int64_t nv = t < a.T ? visible_rows(a, t) : 0;
    n_vis[k] = nv > a.top_k ? nv : 0;  // 0: the token does not rank
    if (threadIdx.x == 0 && t < a.T) n_rows[t] = static_cast<int32_t>(n_vis[k]);
    n_max = n_vis[k] > n_max ? n_vis[k] : n_max;
  }
  if (n_max == 0) return;
  const float w_scale = static_cast<float>(1.0 / sqrt(static_cast<double>(a.idh * a.IH)));
  for (int i = threadIdx.x; i < kTokens * kHeads; i += kThreads) {
    const int k = i / kHeads, h = i % kHeads;
    sm.w[k][h] = n_vis[k] > 0 && h < a.IH ? __fmul_rn(a.w[static_cast<int64_t>(t_first + k) * a.IH + h], w_scale) : 0.0f;
  }
  static_assert(kHeads == kRows, "one splitter serves the queries and the rows");
  bool any_q_lo = false;
#pragma unroll
  for (int k = 0; k < kTokens; ++k) {
    const float* q = a.q + static_cast<int64_t>(t_first + k) * a.IH * kIdh;
    const int n_heads = n_vis[k] > 0 ? a.IH : 0;  // a token that does not rank: zeros
    any_q_lo |= split_vectors<kIdh, S::kPitch>(sm.qh + k * kHeads * S::kPitch, sm.ql + k * kHeads * S::kPitch,
                                    sm.inv_q + k * kHeads * S::kSlabs, [=](int h) {
                                      return h < n_heads ? q + static_cast<int64_t>(h) * kIdh : nullptr;
                                    });
  }
  const bool q_lo = __syncthreads_or(any_q_lo);

  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int g = lane >> 2, c2 = 2 * (lane & 3);  // C fragment: heads g, g + 8; rows c2, c2 + 1
  const int tok = warp / (kRows / 16), wn = 16 * (warp % (kRows / 16));
  const int64_t nv = tok == 0 ? n_vis[0] : n_vis[1];
  static_assert(kTokens == 2, "nv above");
  float* const out = a.scores + static_cast<int64_t>(t_first + tok) * a.score_cap;
  // ldmatrix lane addresses: A = q [head][dim] (rows lane & 15, k half lane >> 4), B = rows
  // [row][dim] (two n8 tiles: rows (lane & 7) + 8·(lane >> 4), k half (lane >> 3) & 1).
  const int a_off = (tok * kHeads + (lane & 15)) * S::kPitch + (lane >> 4) * 8;
  const int b_off = (wn + (lane & 7) + ((lane >> 4) << 3)) * S::kPitch + ((lane >> 3) & 1) * 8;
  const uint32_t qh = smem_addr(sm.qh + a_off), ql = smem_addr(sm.ql + a_off);
  const uint32_t kh = smem_addr(sm.kh + b_off), kl = smem_addr(sm.kl + b_off);
  constexpr uint32_t kMTileBytes = 16 * S::kPitch * sizeof(__half);

  // The tile's split rows by cp.async: 16-byte chunk c of row r (kIdh / 8 a half), hi then lo
  // where the tile has a nonzero lo half, and its rows' inverse scales (4 a chunk).
  constexpr int kRowChunks = kIdh / 8, kInvChunks = kRows * S::kSlabs / 4;
  static_assert(kRows * kRowChunks % kThreads == 0 && kInvChunks <= kThreads, "the copies deal evenly");
  for (int64_t row0 = 0; row0 < n_max; row0 += kRows) {
    __syncthreads();  // the previous tile's fragments are read
    const bool k_lo = rows.tile_lo[row0 / kRows] != 0;
    const __half* src = rows.rows + row0 * 2 * kIdh;
#pragma unroll
    for (int i = 0; i < kRows * kRowChunks / kThreads; ++i) {
      const int j = static_cast<int>(threadIdx.x) + i * kThreads, r = j / kRowChunks, c = j % kRowChunks;
      cp_async16(sm.kh + r * S::kPitch + 8 * c, src + r * 2 * kIdh + 8 * c);
      if (k_lo) cp_async16(sm.kl + r * S::kPitch + 8 * c, src + r * 2 * kIdh + kIdh + 8 * c);
    }
    if (threadIdx.x < kInvChunks) {
      cp_async16(sm.inv_k + 4 * threadIdx.x, rows.inv + row0 * S::kSlabs + 4 * threadIdx.x);
    }
    cp_async_commit();
    cp_async_wait<0>();
    __syncthreads();
    if (row0 + wn >= nv) continue;  // no row of this warp is visible to its token (or it does not rank)
    float acc[4][2][4] = {};
#pragma unroll 1  // one slab's chain at a time: unrolled, the slabs' fragments spill at 128 registers
    for (int s = 0; s < S::kSlabs; ++s) {
      float chain[4][2][4] = {};
#pragma unroll
      for (int kk = 0; kk < kSlab; kk += 16) {
        const uint32_t koff = (s * kSlab + kk) * sizeof(__half);
        uint32_t bh[4], bl[4];
        ldmatrix_x4(bh, kh + koff);
        if (k_lo) ldmatrix_x4(bl, kl + koff);
#pragma unroll
        for (int i = 0; i < 4; ++i) {
          uint32_t ah[4], al[4];
          ldmatrix_x4(ah, qh + i * kMTileBytes + koff);
          if (q_lo) ldmatrix_x4(al, ql + i * kMTileBytes + koff);
#pragma unroll
          for (int j = 0; j < 2; ++j) {  // the small terms before the large (f16_split.cuh)
            if (q_lo) mma_f16(chain[i][j], al, bh + 2 * j);
            if (k_lo) mma_f16(chain[i][j], ah, bl + 2 * j);
            mma_f16(chain[i][j], ah, bh + 2 * j);
          }
        }
      }
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const float sq0 = sm.inv_q[(tok * kHeads + 16 * i + g) * S::kSlabs + s];
        const float sq1 = sm.inv_q[(tok * kHeads + 16 * i + g + 8) * S::kSlabs + s];
#pragma unroll
        for (int j = 0; j < 2; ++j) {
          const float sk0 = sm.inv_k[(wn + 8 * j + c2) * S::kSlabs + s];
          const float sk1 = sm.inv_k[(wn + 8 * j + c2 + 1) * S::kSlabs + s];
          acc[i][j][0] = fmaf(chain[i][j][0] * sq0, sk0, acc[i][j][0]);
          acc[i][j][1] = fmaf(chain[i][j][1] * sq0, sk1, acc[i][j][1]);
          acc[i][j][2] = fmaf(chain[i][j][2] * sq1, sk0, acc[i][j][2]);
          acc[i][j][3] = fmaf(chain[i][j][3] * sq1, sk1, acc[i][j][3]);
        }
      }
    }
    // ReLU per head, then the (signed) head weight: this lane's 8 heads, then the 8 head groups.
#pragma unroll
    for (int j = 0; j < 2; ++j) {
#pragma unroll
      for (int c = 0; c < 2; ++c) {
        float sc = 0.0f;
#pragma unroll
        for (int i = 0; i < 4; ++i) {
          sc = fmaf(sm.w[tok][16 * i + g], fmaxf(acc[i][j][c], 0.0f), sc);
          sc = fmaf(sm.w[tok][16 * i + g + 8], fmaxf(acc[i][j][2 + c], 0.0f), sc);
        }
#pragma unroll
        for (int o = 4; o < 32; o <<= 1) sc += __shfl_xor_sync(0xFFFFFFFFu, sc, o);
        const int64_t r = row0 + wn + 8 * j + c2 + c;
        if (g == 0 && r < nv) out[r] = sc;
      }
    }
  }
}

template <int kIdh>
Status launch_scores(const IndexerArgs& a, int32_t* n_rows, const PrefillIndexRows& rows, cudaStream_t stream) {
  int device = 0;
  DSV4_CUDA_TRY(cudaGetDevice(&device));
  DSV4_CUDA_TRY(once_per_device(device, [] {
    return cudaFuncSetAttribute(score_kernel<kIdh>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                static_cast<int>(sizeof(Smem<kIdh>)));
  }));
  const unsigned blocks = static_cast<unsigned>((a.T + kTokens - 1) / kTokens);
  DSV4_CUDA_TRY(
      launch_pdl(score_kernel<kIdh>, dim3(blocks), dim3(kThreads), sizeof(Smem<kIdh>), stream, a, n_rows, rows));
  return Status();
}

}  // namespace

bool prefill_indexer_supported(int IH, int idh) {
  return IH >= 1 && IH <= kHeads && (idh == 32 || idh == 64 || idh == 128);
}

int64_t prefill_indexer_row_capacity(int64_t score_cap) { return (std::max<int64_t>(score_cap, 0) + kRows - 1) / kRows * kRows; }

Status prefill_indexer_rows(const IndexerArgs& a, const PrefillIndexRows& rows, cudaStream_t stream) {
  if (a.T <= 0) return Status();
  if (!prefill_indexer_supported(a.IH, a.idh)) return make_error("prefill indexer: unsupported geometry");
  if (rows.capacity <= 0 || rows.capacity % kRows != 0 || rows.capacity < prefill_indexer_row_capacity(a.score_cap)) {
    return make_error("prefill indexer: row scratch smaller than the score capacity");
  }
  // Every tile the score capacity can hold; those past the launch's rows (its last token's
  // position is on the device) return at once.
  const dim3 grid(static_cast<unsigned>(prefill_indexer_row_capacity(a.score_cap) / kRows));
  switch (a.idh) {
    case 32: DSV4_CUDA_TRY(launch_pdl(rows_kernel<32>, grid, dim3(kThreads), 0, stream, a, rows)); break;
    case 64: DSV4_CUDA_TRY(launch_pdl(rows_kernel<64>, grid, dim3(kThreads), 0, stream, a, rows)); break;
    default: DSV4_CUDA_TRY(launch_pdl(rows_kernel<128>, grid, dim3(kThreads), 0, stream, a, rows)); break;
  }
  return cuda_status(cudaGetLastError(), "prefill indexer rows");
}

Status prefill_indexer_select(const IndexerArgs& a, int32_t* n_rows, const PrefillIndexRows& rows,
                              cudaStream_t stream) {
  if (a.T <= 0) return Status();
  if (!prefill_indexer_supported(a.IH, a.idh)) return make_error("prefill indexer: unsupported geometry");
  if (a.T > 65535) return make_error("prefill indexer: too many tokens for one launch");
  if (a.score_cap <= 0) return make_error("prefill indexer: no score capacity");
  if (a.n_rot < 0 || a.n_rot > a.idh) return make_error("prefill indexer: bad rope width");
  if (rows.capacity < prefill_indexer_row_capacity(a.score_cap)) {
    return make_error("prefill indexer: row scratch smaller than the score capacity");
  }
  const dim3 prep_grid(static_cast<unsigned>(a.T)), prep_block(256);
  switch (a.idh) {
    case 32:
      DSV4_CUDA_TRY(launch_pdl(prep_kernel<32>, prep_grid, prep_block, 0, stream, a));
      DSV4_TRY(launch_scores<32>(a, n_rows, rows, stream));
      break;
    case 64:
      DSV4_CUDA_TRY(launch_pdl(prep_kernel<64>, prep_grid, prep_block, 0, stream, a));
      DSV4_TRY(launch_scores<64>(a, n_rows, rows, stream));
      break;
    default:
      DSV4_CUDA_TRY(launch_pdl(prep_kernel<128>, prep_grid, prep_block, 0, stream, a));
      DSV4_TRY(launch_scores<128>(a, n_rows, rows, stream));
      break;
  }
  DSV4_TRY(cuda_status(cudaGetLastError(), "prefill indexer kernels"));
  return top_k_rows(a.scores, a.score_cap, n_rows, a.T, a.top_k, a.selected, stream);
}

}  // namespace dsv4::cuda
