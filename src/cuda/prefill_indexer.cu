// prefill_indexer.h.
//
// Rows kernel (once per layer, a block per 64-row tile): every row the chunk's tokens rank → hi/lo
// f16 of row·2^e_r (f16_split.cuh: e_r puts the row's largest |.| in [2^14, 2^15)), written as the
// tile's operand images in the score kernel's shared-memory layout, 2^-e_r per row, and a flag per
// tile for a nonzero lo half (FP4-simulated rows, official mode, have none).
// Score kernel, block = four consecutive tokens (a warpgroup each) × every row any of them ranks,
// 512 threads:
//   1. the tokens' queries (64 heads × idh each) are split into shared memory once, each head
//      scaled by its own power of two 2^e_q the same way;
//   2. per tile of 64 rows (two stages, copied by cp.async as they are): a warpgroup's wgmma
//      m64n64k16 chain over all idh dims from zero, C[h][r] = Σ (q_lo·k_hi + q_hi·k_lo where lo
//      halves are nonzero) + q_hi·k_hi, so S[h][r] = C·2^-e_q·2^-e_r;
//   3. score[t][r] = 2^-e_r·Σ_h (w_h·2^-e_q)·max(0, C[h][r]) (the powers of two commute with the
//      ReLU and are exact scalings), in registers: a thread's two heads, halving exchanges over the
//      8 lanes of a row group, the 4 warps through shared memory; [tokens × heads × rows] is
//      never stored.
// Accuracy: hi + lo carries 22 bits of each value relative to its vector's largest, the dropped
// lo·lo is ≤ 2^-22 of it per product, and the tensor cores truncate the chain's running f32 sum at
// each of its idh/16 (official mode) to 3·idh/16 (plain) MMAs, ≤ 2^-23 of it each, toward zero
// (f16_split.cuh): at idh 128 the score error is ≲ 2^-18·Σ_h |w_h|·|q_h|·|k|, which only moves
// near-ties of the top-k, as the f32 SIMT sum of the decode path (indexer.cu) does. Official
// mode's FP4 values are exact in f16 after the scale unless a block is 2^24 below its vector's
// largest, so only the chain's sums round.
// Roofline (CSA layer, 8192 tokens at 8192..16384: 3072 rows a token on average): 206 G products,
// 1.6 M m64n64k16 wgmma a warpgroup-tile each (32 tensor cycles): ≈ 0.4 ms on 132 SMs.
#include <cuda_runtime.h>

#include <algorithm>

#include "cuda/check.h"
#include "cuda/cp_async.cuh"
#include "cuda/device_math.cuh"
#include "cuda/f16_split.cuh"
#include "cuda/once_per_device.h"
#include "cuda/pdl.cuh"
#include "cuda/prefill_indexer.h"
#include "cuda/wgmma.cuh"

namespace dsv4::cuda {

namespace {

using namespace detail;

constexpr int kTokens = 4;     // tokens per block (share the row tiles): a warpgroup each
constexpr int kHeads = 64;     // M (IH ≤ 64, zero-padded)
constexpr int kRows = 64;      // rows per tile = N of the MMAs
constexpr int kThreads = 512;  // score kernel: kTokens warpgroups
constexpr int kRowThreads = 256;  // rows kernel
constexpr int kAtomHalves = 64 * 64;  // a 128-byte-swizzled atom (wgmma.cuh): 64 rows × 64 dims (8 KB)
static_assert(kThreads == kTokens * 128 && kHeads == kRows, "a warpgroup per token; one atom shape for q and rows");

// Operand images (wgmma.cuh's K-major 128-byte-swizzled layout): a 64-row matrix of kIdh dims is
// kAtoms atoms of 64 dims, element (r, d) in atom d / 64 at sw128_half(r, d % 64).
template <int kIdh>
struct Image {
  static constexpr int kAtoms = (kIdh + 63) / 64;  // idh 32 fills half of its one atom
  static constexpr int kHalves = kAtoms * kAtomHalves;
  __device__ static int at(int r, int d) { return (d >> 6) * kAtomHalves + sw128_half(r, d & 63); }
};

// Shared memory of the score kernel (after a 1024-byte alignment): per token q's hi and lo
// images, two stages of a row tile's hi and lo images, then the f32 tables.
template <int kIdh>
struct Smem {
  using I = Image<kIdh>;
  __half q[kTokens][2][I::kHalves];
  __half k[2][2][I::kHalves];
  float inv_q[kTokens][kHeads];  // 2^-e_q of (token, head)
  float inv_k[2][kRows];         // 2^-e_r of (stage, row)
  float w[kTokens][kHeads];      // w[t][h]/sqrt(idh·IH)·2^-e_q, 0 for padded heads
  float part[kTokens][4][kRows];  // a warp's sum over its 16 heads, per row of the tile
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
// vector with its own power of two: halves (v, d..d + 3) at hi/lo + Image::at(v, d), the inverse
// power at inv[v]; kIdh / 4 consecutive lanes hold a vector (a float4 each). All loads are issued
// before the first shuffle. Returns whether this thread stored a nonzero lo half.
template <int kIdh, int kBlockThreads, class VecFn>
__device__ __forceinline__ bool split_vectors(__half* hi, __half* lo, float* inv, VecFn vec) {
  using I = Image<kIdh>;
  constexpr int kLanes = kIdh / 4;  // per vector
  constexpr int kTasks = kRows * kLanes;
  static_assert(kTasks % kBlockThreads == 0 && kLanes <= 32, "every warp runs the same number of shuffles");
  constexpr int kIters = kTasks / kBlockThreads;
  float4 x[kIters];
#pragma unroll
  for (int i = 0; i < kIters; ++i) {
    const int j = static_cast<int>(threadIdx.x) + i * kBlockThreads;
    const float* src = vec(j / kLanes);
    x[i] = src != nullptr ? *reinterpret_cast<const float4*>(src + 4 * (j % kLanes)) : make_float4(0.f, 0.f, 0.f, 0.f);
  }
  bool any_lo = false;
#pragma unroll
  for (int i = 0; i < kIters; ++i) {
    const int j = static_cast<int>(threadIdx.x) + i * kBlockThreads;
    const int v = j / kLanes, d = 4 * (j % kLanes);
    float m = fmaxf(fmaxf(fabsf(x[i].x), fabsf(x[i].y)), fmaxf(fabsf(x[i].z), fabsf(x[i].w)));
#pragma unroll
    for (int o = kLanes / 2; o > 0; o >>= 1) m = fmaxf(m, __shfl_xor_sync(0xFFFFFFFFu, m, o));
    const int e = split_exponent(m);
    const float sc = pow2f(e);
    const SplitPair p0 = split_f16(x[i].x * sc, x[i].y * sc), p1 = split_f16(x[i].z * sc, x[i].w * sc);
    *reinterpret_cast<uint2*>(hi + I::at(v, d)) = make_uint2(half2_bits(p0.hi), half2_bits(p1.hi));
    *reinterpret_cast<uint2*>(lo + I::at(v, d)) = make_uint2(half2_bits(p0.lo), half2_bits(p1.lo));
    any_lo |= ((half2_bits(p0.lo) | half2_bits(p1.lo)) & 0x7FFF7FFFu) != 0;  // ±0 counts as zero
    if (d == 0) inv[v] = pow2f(-e);
  }
  return any_lo;
}

// One halving exchange of the score epilogue: lanes with `bit` set keep v[kHalf..2·kHalf), the
// others v[0..kHalf), each adding what its partner lane held of its half.
template <int kHalf>
__device__ __forceinline__ void halve(float (&v)[16], int lane, int bit) {
  const bool upper = (lane & bit) != 0;
#pragma unroll
  for (int i = 0; i < kHalf; ++i) {
    const float keep = upper ? v[i + kHalf] : v[i], give = upper ? v[i] : v[i + kHalf];
    v[i] = keep + __shfl_xor_sync(0xFFFFFFFFu, give, bit);
  }
}

// Row conversion: block b splits rows 64b.. of every row a's last token ranks (rows past them
// zero) into tile b of rows.rows (its hi image, then its lo image) and rows.inv, and sets
// rows.tile_lo[b].
template <int kIdh>
__global__ void __launch_bounds__(kRowThreads) rows_kernel(IndexerArgs a, PrefillIndexRows rows) {
  pdl_wait();  // launched with PDL: nothing before this line (pdl.cuh)
  pdl_trigger();
  using I = Image<kIdh>;
  const int64_t row0 = static_cast<int64_t>(blockIdx.x) * kRows, n = visible_rows(a, a.T - 1);
  if (row0 >= n) return;
  const int64_t nr = n - row0;
  const float* src = a.rows + row0 * kIdh;
  __half* const dst = rows.rows + static_cast<int64_t>(blockIdx.x) * 2 * I::kHalves;
  const bool any_lo = split_vectors<kIdh, kRowThreads>(dst, dst + I::kHalves, rows.inv + row0, [=](int r) {
    return r < nr ? src + static_cast<int64_t>(r) * kIdh : nullptr;
  });
  const bool tile_lo = __syncthreads_or(any_lo);
  if (threadIdx.x == 0) rows.tile_lo[blockIdx.x] = tile_lo;
}

__device__ __forceinline__ void warpgroup_barrier(int id) { asm volatile("bar.sync %0, 128;\n" ::"r"(id) : "memory"); }

// Score kernel: block = kTokens tokens (warpgroup g: token t_first + g) × every row any of them
// ranks, in tiles of 64 rows through two stages copied by cp.async (the tile after the next is
// asked for once every warpgroup is done with its stage).
template <int kIdh>
__global__ void __launch_bounds__(kThreads, 1) score_kernel(IndexerArgs a, int32_t* n_rows, PrefillIndexRows rows) {
  pdl_wait();  // launched with PDL: nothing before this line (pdl.cuh)
  pdl_trigger();
  using I = Image<kIdh>;
  using S = Smem<kIdh>;
  extern __shared__ __align__(16) uint8_t smem_raw[];
  S& sm = *reinterpret_cast<S*>(smem_align_1024(smem_raw));
  const int t_first = blockIdx.x * kTokens;
  const int wg = static_cast<int>(threadIdx.x) >> 7, warp = (threadIdx.x >> 5) & 3, lane = threadIdx.x & 31;
  // This warpgroup's token's rows (0: it does not rank), the block's most, and bit k set where
  // token k ranks (a mask, not an array: run-time indices would put an array in local memory).
  int64_t nv = 0, n_max = 0;
  unsigned ranks = 0u;
#pragma unroll
  for (int k = 0; k < kTokens; ++k) {
    const int t = t_first + k;
    const int64_t v = t < a.T ? visible_rows(a, t) : 0;
    const int64_t ranked = v > a.top_k ? v : 0;
    if (threadIdx.x == 0 && t < a.T) n_rows[t] = static_cast<int32_t>(ranked);
    if (k == wg) nv = ranked;
    n_max = ranked > n_max ? ranked : n_max;
    ranks |= ranked > 0 ? 1u << k : 0u;
  }
  if (n_max == 0) return;
  bool any_q_lo = false;
#pragma unroll 1
  for (int k = 0; k < kTokens; ++k) {
    const int t = t_first + k;
    const float* q = a.q + static_cast<int64_t>(t) * a.IH * kIdh;
    const int n_heads = (ranks >> k) & 1u ? a.IH : 0;  // a token that does not rank: zeros
    any_q_lo |= split_vectors<kIdh, kThreads>(sm.q[k][0], sm.q[k][1], sm.inv_q[k], [=](int h) {
      return h < n_heads ? q + static_cast<int64_t>(h) * kIdh : nullptr;
    });
  }
  __syncthreads();  // inv_q
  const float w_scale = static_cast<float>(1.0 / sqrt(static_cast<double>(a.idh * a.IH)));
  if (threadIdx.x < kTokens * kHeads) {
    const int k = threadIdx.x / kHeads, h = threadIdx.x % kHeads;
    const int t = t_first + k;
    const bool used = ((ranks >> k) & 1u) != 0 && h < a.IH;
    sm.w[k][h] = used ? __fmul_rn(a.w[static_cast<int64_t>(t) * a.IH + h], w_scale) * sm.inv_q[k][h] : 0.0f;
  }

  // Tile copies: its hi image (and its lo image where the tile has a nonzero lo half), its scales.
  constexpr int kImageChunks = I::kHalves / 8, kInvChunks = kRows / 4;
  static_assert(kImageChunks % kThreads == 0 && kInvChunks <= kThreads, "the copies deal evenly");
  const auto issue_tile = [&](int64_t row0, int stage) {
    const int64_t tile = row0 / kRows;
    const bool lo = rows.tile_lo[tile] != 0;
    const __half* src = rows.rows + tile * 2 * I::kHalves;
#pragma unroll
    for (int i = 0; i < kImageChunks / kThreads; ++i) {
      const int c = static_cast<int>(threadIdx.x) + i * kThreads;
      cp_async16(sm.k[stage][0] + 8 * c, src + 8 * c);
      if (lo) cp_async16(sm.k[stage][1] + 8 * c, src + I::kHalves + 8 * c);
    }
    if (threadIdx.x < kInvChunks) {
      cp_async16(sm.inv_k[stage] + 4 * threadIdx.x, rows.inv + row0 + 4 * threadIdx.x);
    }
    cp_async_commit();
    return lo;
  };
  bool k_lo = issue_tile(0, 0);
  const bool q_lo = __syncthreads_or(any_q_lo);

  // This thread's accumulators (wgmma.cuh's m64n64 layout): heads h0 = 16·warp + lane / 4 and
  // h0 + 8, rows 8j + 2·(lane % 4) + c % 2 of the tile.
  const int h0 = 16 * warp + (lane >> 2), r0 = 2 * (lane & 3);
  float* const out = a.scores + static_cast<int64_t>(t_first + wg) * a.score_cap;
  const uint32_t q_hi = shared_address(sm.q[wg][0]), q_lo_img = shared_address(sm.q[wg][1]);
  int stage = 0;
  for (int64_t row0 = 0; row0 < n_max; row0 += kRows, stage ^= 1) {
    const bool next_lo = row0 + kRows < n_max ? issue_tile(row0 + kRows, stage ^ 1) : false;
    if (row0 + kRows >= n_max) cp_async_commit();  // an empty group: the wait below counts alike
    cp_async_wait<1>();
    fence_proxy_async();  // cp.async and q's stores → wgmma
    __syncthreads();
    if (row0 < nv) {
      const uint32_t k_hi = shared_address(sm.k[stage][0]), k_lo_img = shared_address(sm.k[stage][1]);
      // The tile's chain over all idh dims (k16 slice k: atom k / 4, 32 bytes apart inside its
      // 128-byte rows); A is q, B the rows.
      float acc[32];
      const auto descs = [&](int k) {
        const uint32_t off = static_cast<uint32_t>((k >> 2) * kAtomHalves * 2 + (k & 3) * 32);
        return SplitDescs{wgmma_desc_sw128(q_hi + off), wgmma_desc_sw128(q_lo_img + off), wgmma_desc_sw128(k_hi + off),
                          wgmma_desc_sw128(k_lo_img + off)};
      };
      const auto mma = [](float (&d)[32], uint64_t x, uint64_t y, bool acc) { wgmma_m64n64k16_f16(d, x, y, acc); };
      constexpr int kSteps = kIdh / 16;
      if (q_lo && k_lo) {
        wgmma_split_chain<kSteps, true, true>(acc, descs, mma);
      } else if (q_lo) {
        wgmma_split_chain<kSteps, true, false>(acc, descs, mma);
      } else if (k_lo) {
        wgmma_split_chain<kSteps, false, true>(acc, descs, mma);
      } else {
        wgmma_split_chain<kSteps, false, false>(acc, descs, mma);
      }
      // v[2j + c] = this thread's two heads at row 8j + r0 + c, weighted (w·2^-e_q) after the
      // ReLU; then summed over the 8 lanes of a row group by halving exchanges (lane bits 4, 3, 2
      // in turn), so that lane l holds rows 8·(l / 4) + r0 + c summed over the warp's 16 heads.
      const float w0 = sm.w[wg][h0], w1 = sm.w[wg][h0 + 8];
      float v[16];
#pragma unroll
      for (int j = 0; j < 8; ++j) {
#pragma unroll
        for (int c = 0; c < 2; ++c) {
          v[2 * j + c] = fmaf(w1, fmaxf(acc[4 * j + 2 + c], 0.0f), w0 * fmaxf(acc[4 * j + c], 0.0f));
        }
      }
      halve<8>(v, lane, 16);
      halve<4>(v, lane, 8);
      halve<2>(v, lane, 4);
      *reinterpret_cast<float2*>(&sm.part[wg][warp][8 * (lane >> 2) + r0]) = make_float2(v[0], v[1]);
      warpgroup_barrier(1 + wg);
      const int r = static_cast<int>(threadIdx.x & 127);
      if (r < kRows && row0 + r < nv) {
        const float sum = ((sm.part[wg][0][r] + sm.part[wg][1][r]) + sm.part[wg][2][r]) + sm.part[wg][3][r];
        out[row0 + r] = sum * sm.inv_k[stage][r];
      }
    }
    __syncthreads();  // every warpgroup is done with this stage and with part
    k_lo = next_lo;
  }
}

template <int kIdh>
Status launch_scores(const IndexerArgs& a, int32_t* n_rows, const PrefillIndexRows& rows, cudaStream_t stream) {
  int device = 0;
  DSV4_CUDA_TRY(cudaGetDevice(&device));
  DSV4_CUDA_TRY(once_per_device(device, [] {
    return cudaFuncSetAttribute(score_kernel<kIdh>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                static_cast<int>(sizeof(Smem<kIdh>) + 1024));
  }));
  const unsigned blocks = static_cast<unsigned>((a.T + kTokens - 1) / kTokens);
  DSV4_CUDA_TRY(
      launch_pdl(score_kernel<kIdh>, dim3(blocks), dim3(kThreads), sizeof(Smem<kIdh>) + 1024, stream, a, n_rows, rows));
  return Status();
}

}  // namespace

bool prefill_indexer_supported(int IH, int idh) {
  return IH >= 1 && IH <= kHeads && (idh == 32 || idh == 64 || idh == 128);
}

int64_t prefill_indexer_row_capacity(int64_t score_cap) {
  return (std::max<int64_t>(score_cap, 0) + kRows - 1) / kRows * kRows;
}
int64_t prefill_indexer_row_halves(int64_t capacity, int idh) { return capacity * 2 * ((idh + 63) / 64 * 64); }

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
    case 32: DSV4_CUDA_TRY(launch_pdl(rows_kernel<32>, grid, dim3(kRowThreads), 0, stream, a, rows)); break;
    case 64: DSV4_CUDA_TRY(launch_pdl(rows_kernel<64>, grid, dim3(kRowThreads), 0, stream, a, rows)); break;
    default: DSV4_CUDA_TRY(launch_pdl(rows_kernel<128>, grid, dim3(kRowThreads), 0, stream, a, rows)); break;
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
