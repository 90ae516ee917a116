// hc.h: the collapse, the one-token kernels and the short chunks' hc_post and partial sums. The
// mixer's partial sums of a chunk (one record per token and column block of kHcDimsPerBlock dims)
// come out of hc_post or a pass of their own: hc_chunk.cu's token-per-lane kernel from
// kHcTokenLaneMinTokens tokens on, the dim-per-lane kernels below for shorter chunks. The
// finishing kernel runs ⌈D/256⌉ blocks per token at decode (one per token for prefill chunks);
// each sums the token's records (from L2) in the same fixed order, derives the gates and the RMS
// factor of the collapse from them, and writes its 256 dims; block 0 also writes the pre and post
// gates and the comb logits. The 4×4 Sinkhorn of those logits (20 dependent
// iterations, ≈ 3 µs, the longest chain of a collapse) is a one-warp kernel of its own, hc_comb, so
// that the forward can run it beside the sub-layer (only the sub-layer's hc_post reads comb). The
// gate and Sinkhorn arithmetic repeats cpu/hc.cc operation by operation (no contraction), so the
// coefficients match the CPU's up to the mixer sums' rounding.
//
// One-token steps fuse hc_post with the collapse after it (hc_post_collapse): one dim (its four
// columns of the mixer, loaded before griddepcontrol.wait: weights) per thread in blocks of 256
// dims, one thread-block cluster per token; the records are reduced over the block (warp
// reduce-scatter, warps in order) and exchanged through distributed shared memory instead of
// global scratch and a second launch.
//
// Every sum has a fixed order that depends only on D (records: column blocks in four runs, runs in
// order; the fused kernel: warps, then blocks in rank order), never on the grid's schedule or the
// device.
//
// Roofline: the mixer reads 0.8 MB and the streams 64 KB per token: ~0.3 µs at HBM bandwidth;
// these kernels are latency-bound at decode (a few µs each).
#include <cooperative_groups.h>
#include <cuda_runtime.h>

#include "cuda/check.h"
#include "cuda/device_math.cuh"
#include "cuda/hc.h"
#include "cuda/hc_kernel.cuh"
#include "cuda/once_per_device.h"
#include "cuda/pdl.cuh"
#include "cuda/warp_scatter.cuh"

namespace dsv4::cuda {

namespace {

using namespace detail;

// The thread's four columns h·D + d of the mixer, wc[k][h] (zeros past D). One branch on the type
// outside the loads, so that all 4·M loads are in flight together (a switch per element would
// split them into one round trip each).
template <gguf::TensorType kType, int M>
__device__ __forceinline__ void load_columns_as(float (&wc)[M][kHcStreams], const uint8_t* w, int64_t row_bytes,
                                                int64_t D, int64_t d) {
#pragma unroll
  for (int k = 0; k < M; ++k) {
#pragma unroll
    for (int h = 0; h < kHcStreams; ++h) wc[k][h] = weight_elem(kType, w + k * row_bytes, h * D + d);
  }
}

template <int M>
__device__ __forceinline__ void load_columns(float (&wc)[M][kHcStreams], gguf::TensorType type, const uint8_t* w,
                                             int64_t row_bytes, int64_t D, int64_t d, bool live) {
  if (!live) type = gguf::TensorType::I32;  // not a mixer type (hc_check_mixer): the zeros below
  switch (type) {
    case gguf::TensorType::F32: load_columns_as<gguf::TensorType::F32>(wc, w, row_bytes, D, d); break;
    case gguf::TensorType::F16: load_columns_as<gguf::TensorType::F16>(wc, w, row_bytes, D, d); break;
    case gguf::TensorType::BF16: load_columns_as<gguf::TensorType::BF16>(wc, w, row_bytes, D, d); break;
    case gguf::TensorType::Q8_0: load_columns_as<gguf::TensorType::Q8_0>(wc, w, row_bytes, D, d); break;
    default:
#pragma unroll
      for (int k = 0; k < M; ++k) {
#pragma unroll
        for (int h = 0; h < kHcStreams; ++h) wc[k][h] = 0.0f;
      }
  }
}

// The block's record (hc.h): Σ over its columns c of W[k][c]·X[c] (k < M; per thread the four
// streams in order, then the warp's reduce-scatter in f32, the warps added in double) and
// G[h][j] = Σ_d X[h][d]·X[j][d] (products exact in double), handed entry by entry to
// emit(e, value) (e < hc_record_size(M)). xs holds the thread's dim of the four streams.
template <int M, int kBlockThreads, class Emit>
__device__ __forceinline__ void reduce_record(const float (&wc)[M][kHcStreams], const float (&xs)[kHcStreams],
                                              Emit&& emit) {
  constexpr int N = pow2_at_least(M);
  constexpr int W = kBlockThreads / 32;
  __shared__ float red_m[W][N];
  __shared__ double red_g[W][kHcGram];
  float acc[N];
#pragma unroll
  for (int k = 0; k < N; ++k) {
    acc[k] = 0.0f;
    if (k < M) {
#pragma unroll
      for (int h = 0; h < kHcStreams; ++h) acc[k] = fmaf(wc[k][h], xs[h], acc[k]);
    }
  }
  double gram[kHcGram];
#pragma unroll
  for (int i = 0; i < kHcGram; ++i) {
    gram[i] = static_cast<double>(xs[i / kHcStreams]) * static_cast<double>(xs[i % kHcStreams]);
  }
  const float m = warp_reduce_scatter(acc);
  const double g = warp_reduce_scatter(gram);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (lane % (32 / N) == 0) red_m[warp][reduce_scatter_index(lane, N)] = m;
  if (lane % (32 / kHcGram) == 0) red_g[warp][reduce_scatter_index(lane, kHcGram)] = g;
  __syncthreads();
  for (int e = threadIdx.x; e < M + kHcGram; e += kBlockThreads) {
    double sum = e < M ? static_cast<double>(red_m[0][e]) : red_g[0][e - M];
#pragma unroll
    for (int wi = 1; wi < W; ++wi) sum += e < M ? static_cast<double>(red_m[wi][e]) : red_g[wi][e - M];
    emit(e, sum);
  }
}

// §5.3 as cpu::sinkhorn, on lanes 0..15 of one warp: lane 4j + k holds C[j][k]. Every row and
// column sum adds its four terms in the CPU's order (index ascending), so the result is the
// CPU's bit for bit; lanes 16..31 only take part in the shuffles.
__device__ float sinkhorn4_lane(float z, float eps, int iters) {
  const int lane = threadIdx.x & 31;
  const int j = (lane >> 2) & 3, k = lane & 3;
  auto at = [](float v, int src) { return __shfl_sync(0xFFFFFFFFu, v, src); };
  auto row_sum = [&](float v) {
    return __fadd_rn(__fadd_rn(__fadd_rn(at(v, 4 * j), at(v, 4 * j + 1)), at(v, 4 * j + 2)), at(v, 4 * j + 3));
  };
  auto col_sum = [&](float v) { return __fadd_rn(__fadd_rn(__fadd_rn(at(v, k), at(v, 4 + k)), at(v, 8 + k)), at(v, 12 + k)); };
  const float m = fmaxf(fmaxf(at(z, 4 * j), at(z, 4 * j + 1)), fmaxf(at(z, 4 * j + 2), at(z, 4 * j + 3)));
  const float e = exp_f32(__fsub_rn(z, m));
  float c = __fadd_rn(__fdiv_rn(e, row_sum(e)), eps);
  c = __fdiv_rn(c, __fadd_rn(col_sum(c), eps));
  for (int it = 1; it < iters; ++it) {
    c = __fdiv_rn(c, __fadd_rn(row_sum(c), eps));
    c = __fdiv_rn(c, __fadd_rn(col_sum(c), eps));
  }
  return c;
}

// hc_comb: token blockIdx.x's comb logits in mix, replaced by their Sinkhorn projection.
__global__ void __launch_bounds__(32) hc_comb_kernel(float* __restrict__ mix, float eps, int iters) {
  pdl_wait();  // the logits come from the collapse before (pdl.cuh)
  pdl_trigger();
  float* comb = mix + static_cast<int64_t>(blockIdx.x) * kHcMixSize + 2 * kHcStreams;
  const int lane = threadIdx.x;
  const float c = sinkhorn4_lane(comb[lane & 15], eps, iters);
  if (lane < 16) comb[lane] = c;
}

// The collapse's per-lane constants (weights: loaded before griddepcontrol.wait). Lanes 0..3 of
// a warp make the pre (or head) gates, lanes 4..7 the post gates; thread 4j + k of the mix block
// makes the comb logit of C[j][k].
struct GateLane {
  float gate_scale, gate_base, comb_scale, comb_base;
};

template <bool kHead>
__device__ __forceinline__ GateLane load_gate_lane(const float* scale, const float* base) {
  constexpr int n = kHcStreams;
  const int lane = threadIdx.x & 31;
  GateLane g;
  g.gate_scale = kHead || lane < n ? scale[0] : scale[1];
  g.gate_base = lane < (kHead ? n : 2 * n) ? base[lane] : 0.0f;
  g.comb_scale = kHead ? 0.0f : scale[2];
  g.comb_base = kHead ? 0.0f : base[2 * n + (lane & 15)];
  return g;
}

struct CollapseParams {
  const float* scale;  // [3] (pre) or [1] (head)
  const float* base;   // [M]
  const float* norm;   // [D]
  float rms_eps, hc_eps;
  float* mix;  // [T][kHcMixSize] (pre only): pre | post | comb logits
  float* out;  // [T][D]
};

// The collapse of one token from its summed record (sums: the M mixer sums, then the Gram
// matrix): the gates g_h and the RMS factor rn of u = Σ_h g_h·X[h], with ‖u‖² = Σ_hj g_h·g_j·G[h][j].
// The block with mix_block set writes the token's pre and post gates and the comb logits
// (pre only; hc_comb projects them). Every thread of the block calls it (warp shuffles).
struct Collapse {
  float g[kHcStreams];
  float rn;
};

template <int M, bool kHead>
__device__ __forceinline__ Collapse collapse_from_sums(const double* sums, const GateLane& gl, int64_t D,
                                                       const CollapseParams& p, int t, bool mix_block) {
  constexpr int n = kHcStreams;
  float* mix_t = kHead ? nullptr : p.mix + static_cast<int64_t>(t) * kHcMixSize;
  constexpr int n_gates = kHead ? n : 2 * n;
  const int lane = threadIdx.x & 31;
  const double* G = sums + M;
  // cpu::hc_flat_rms_scale: Σ X² over the 4·D values (the Gram matrix's trace), double mean, rounded once.
  const double ss_x = ((G[0] + G[5]) + G[10]) + G[15];
  const float r = static_cast<float>(1.0 / sqrt(ss_x / static_cast<double>(n * D) + static_cast<double>(p.rms_eps)));
  auto logit = [&](int k) { return __fmul_rn(static_cast<float>(sums[k]), r); };
  if constexpr (!kHead) {
    if (mix_block && threadIdx.x < 16) {
      mix_t[2 * n + threadIdx.x] = __fadd_rn(__fmul_rn(logit(2 * n + threadIdx.x), gl.comb_scale), gl.comb_base);
    }
  }
  float gate = 0.0f;
  if (lane < n_gates) {
    const float sig = sigmoid_f32(__fadd_rn(__fmul_rn(logit(lane), gl.gate_scale), gl.gate_base));
    gate = lane < n ? __fadd_rn(sig, p.hc_eps) : __fmul_rn(2.0f, sig);
  }
  if (!kHead && mix_block && threadIdx.x < n_gates) mix_t[threadIdx.x] = gate;
  Collapse c;
  double gd[n];
#pragma unroll
  for (int h = 0; h < n; ++h) {
    c.g[h] = __shfl_sync(0xFFFFFFFFu, gate, h);
    gd[h] = c.g[h];
  }
  double ss_u = 0.0;
#pragma unroll
  for (int h = 0; h < n; ++h) {
    double row = 0.0;
#pragma unroll
    for (int j = 0; j < n; ++j) row += gd[j] * G[h * n + j];
    ss_u += gd[h] * row;
  }
  c.rn = static_cast<float>(1.0 / sqrt(ss_u / static_cast<double>(D) + static_cast<double>(p.rms_eps)));
  return c;
}

// cpu::hc_weighted_sum, then cpu::rms_norm's (u·r)·w.
__device__ __forceinline__ float collapsed(const Collapse& c, const float (&v)[kHcStreams], float w) {
  const float u = __fadd_rn(__fadd_rn(__fadd_rn(__fmul_rn(c.g[0], v[0]), __fmul_rn(c.g[1], v[1])), __fmul_rn(c.g[2], v[2])),
                            __fmul_rn(c.g[3], v[3]));
  return __fmul_rn(__fmul_rn(u, c.rn), w);
}

// Blocks of the finishing kernel: 256 dims per block at decode (one per thread), a whole row per
// block for chunks of kFinishRowTokens tokens or more (every block re-sums its token's records, a
// cost worth paying only for latency); the blocks of a token compute the same bits either way.
// The records are summed by kSumRuns runs of consecutive column blocks (one thread per run and
// record entry), then the runs in order.
constexpr int kFinishThreads = 256;
constexpr int kFinishRowTokens = 16;
constexpr int kSumRuns = 4;
static_assert(kSumRuns * hc_record_size(kHcMix) <= kFinishThreads, "a thread per run and record entry");

// Token blockIdx.y, dims [span·blockIdx.x, +span): the gates from the records, then
// out = RMSNorm_w(Σ_h g_h·X[h]).
template <int M, bool kHead>
__global__ void __launch_bounds__(kFinishThreads) hc_finish_kernel(const float* __restrict__ x, const double* __restrict__ partial,
                                                                   int S, int64_t D, int64_t span, CollapseParams p) {
  constexpr int P = hc_record_size(M);
  __shared__ double runs[kSumRuns][P];
  __shared__ double sums[P];
  const int t = blockIdx.y;
  const int64_t d0 = static_cast<int64_t>(blockIdx.x) * span + threadIdx.x;
  const int64_t end = min(D, static_cast<int64_t>(blockIdx.x) * span + span);
  const bool live = d0 < end;
  const float w0 = live ? p.norm[d0] : 0.0f;  // weights before the wait (pdl.cuh)
  const GateLane gl = load_gate_lane<kHead>(p.scale, p.base);
  pdl_wait();
  pdl_trigger();
  const float* xt = x + static_cast<int64_t>(t) * kHcStreams * D;
  float xs[kHcStreams];
#pragma unroll
  for (int h = 0; h < kHcStreams; ++h) xs[h] = live ? xt[h * D + d0] : 0.0f;
  if (threadIdx.x < kSumRuns * P) {
    const int run = threadIdx.x / P, k = threadIdx.x % P;
    const int len = (S + kSumRuns - 1) / kSumRuns, s0 = run * len, s1 = min(S, s0 + len);
    const double* r = partial + static_cast<int64_t>(t) * S * P + k;
    double v = 0.0;
#pragma unroll 16
    for (int s = s0; s < s1; ++s) v += r[s * P];
    runs[run][k] = v;
  }
  __syncthreads();
  if (threadIdx.x < P) {
    double v = runs[0][threadIdx.x];
#pragma unroll
    for (int run = 1; run < kSumRuns; ++run) v += runs[run][threadIdx.x];
    sums[threadIdx.x] = v;
  }
  __syncthreads();
  const Collapse c = collapse_from_sums<M, kHead>(sums, gl, D, p, t, blockIdx.x == 0);
  float* ot = p.out + static_cast<int64_t>(t) * D;
  if (live) ot[d0] = collapsed(c, xs, w0);
  for (int64_t d = d0 + kFinishThreads; d < end; d += kFinishThreads) {
    float v[kHcStreams];
#pragma unroll
    for (int h = 0; h < kHcStreams; ++h) v[h] = xt[h * D + d];
    ot[d] = collapsed(c, v, p.norm[d]);
  }
}

// X'[k][d] of token t for dim d (hc_post_value), into xs and the new state. Every operand is loaded
// before the first add, the parts kPostPartsInFlight at a time: a loop of load-then-add waited one
// L2 round trip per part (the decode's FFN collapse has 6 routed parts and the shared one). Loading
// the mixing coefficients in the same round trip costs registers (185 against 128) and was still
// the faster decode step (docs/PERF.md, session 22).
constexpr int kPostPartsInFlight = 8;
__device__ __forceinline__ void post_dim(const PostParams& p, int t, int64_t D, int64_t d, float (&xs)[kHcStreams]) {
  const float* g = p.mix + static_cast<int64_t>(t) * kHcMixSize;
  float gates[kHcMixSize - kHcStreams];  // post, then comb (hc_post_value's operands)
#pragma unroll
  for (int i = 0; i < kHcMixSize - kHcStreams; ++i) gates[i] = g[kHcStreams + i];
  const float* xt = p.x + static_cast<int64_t>(t) * kHcStreams * D;
  float xin[kHcStreams];
#pragma unroll
  for (int j = 0; j < kHcStreams; ++j) xin[j] = xt[j * D + d];
  const float extra = p.f_extra ? p.f_extra[static_cast<int64_t>(t) * D + d] : 0.0f;
  const float* parts = p.f + static_cast<int64_t>(t) * p.n_parts * D + d;
  float fv = 0.0f;
  for (int i0 = 0; i0 < p.n_parts; i0 += kPostPartsInFlight) {
    float v[kPostPartsInFlight];
#pragma unroll
    for (int j = 0; j < kPostPartsInFlight; ++j) v[j] = i0 + j < p.n_parts ? parts[(i0 + j) * D] : 0.0f;
#pragma unroll
    for (int j = 0; j < kPostPartsInFlight; ++j) {
      if (i0 + j < p.n_parts) fv = i0 + j == 0 ? v[j] : __fadd_rn(fv, v[j]);  // part 0 as it is: −0 stays −0
    }
  }
  if (p.f_extra) fv = __fadd_rn(fv, extra);
  hc_post_value(gates, gates + kHcStreams, fv, xin, xs);
  float* ot = p.out + static_cast<int64_t>(t) * kHcStreams * D;
#pragma unroll
  for (int k = 0; k < kHcStreams; ++k) ot[k * D + d] = xs[k];
}

// Short chunks (fewer than kHcTokenLaneMinTokens tokens; hc_chunk.cu dispatches): a column block
// of one token per CTA of kHcDimsPerBlock threads, a dim (its four columns of the mixer, loaded
// before griddepcontrol.wait) per thread, the record reduced over the block as the fused kernel
// does (warp reduce-scatter in f32, warps added in double). Every CTA of the launch runs at once,
// where the token-per-lane kernel would run a warp's dependent chain per stage: 3-4 µs against
// 7-14 µs from 1 to 16 tokens (docs/PERF.md, session 13). A token's records in a short chunk
// differ from a long chunk's in their last bits (another order of the same sums).
constexpr int kShortThreads = kHcDimsPerBlock;
static_assert(kShortThreads % 32 == 0, "whole warps");

// The grid is tokens × column blocks, the token fastest: the SMs work through one column block's
// tokens together and keep its mixer columns (12 KB) in L1 (docs/PERF.md, session 12).
__device__ __forceinline__ int block_token() { return static_cast<int>(blockIdx.x); }
__device__ __forceinline__ int64_t block_first_dim() { return static_cast<int64_t>(blockIdx.y) * kHcDimsPerBlock; }
dim3 column_block_grid(int T, int64_t D) {
  return dim3(static_cast<unsigned>(T), static_cast<unsigned>(hc_column_blocks(D)));
}

// The block's record into its place: token-major, the column blocks in order (hc_finish's read).
template <int M>
__device__ __forceinline__ void store_record(const float (&wc)[M][kHcStreams], const float (&xs)[kHcStreams],
                                             double* partial) {
  double* record = partial + (static_cast<int64_t>(blockIdx.x) * gridDim.y + blockIdx.y) * hc_record_size(M);
  reduce_record<M, kShortThreads>(wc, xs, [&](int e, double v) { record[e] = v; });
}

template <int M>
__global__ void __launch_bounds__(kShortThreads) hc_partial_kernel(const float* __restrict__ x, MixerParams w,
                                                                   int64_t D, double* __restrict__ partial) {
  const int64_t d = block_first_dim() + threadIdx.x;
  const bool live = d < D;
  float wc[M][kHcStreams];
  load_columns<M>(wc, w.type, w.w, w.row_bytes, D, d, live);  // weights: before the wait (pdl.cuh)
  pdl_wait();
  pdl_trigger();
  const float* xt = x + static_cast<int64_t>(block_token()) * kHcStreams * D;
  float xs[kHcStreams];
#pragma unroll
  for (int h = 0; h < kHcStreams; ++h) xs[h] = live ? xt[h * D + d] : 0.0f;
  store_record<M>(wc, xs, partial);
}

// X' = post ⊗ f + Cᵀ·X for the block's dims; with M > 0 also the next mixer's record.
template <int M>
__global__ void __launch_bounds__(kShortThreads) hc_post_kernel(PostParams p, int64_t D, MixerParams next,
                                                                double* __restrict__ partial) {
  const int64_t d = block_first_dim() + threadIdx.x;
  const bool live = d < D;
  float wc[M > 0 ? M : 1][kHcStreams];
  if constexpr (M > 0) load_columns<M>(wc, next.type, next.w, next.row_bytes, D, d, live);  // weights: before the wait
  pdl_wait();
  pdl_trigger();
  float xs[kHcStreams] = {0.0f, 0.0f, 0.0f, 0.0f};
  if (live) post_dim(p, block_token(), D, d, xs);
  if constexpr (M > 0) store_record<M>(wc, xs, partial);
}

// hc_post and the next collapse for token blockIdx.y, one cluster of ⌈D/256⌉ blocks per token
// (hc.h): each block pushes its record into slot (its rank) of every block's shared memory, a
// cluster barrier, then every block sums the slots in rank order (the same bits in every block)
// and collapses its own dims from the X' it holds. A block may write into another's shared memory
// only once that block runs: every block arrives on the cluster barrier as it starts and waits on
// that phase just before its writes (long satisfied by then). After the second barrier no block
// touches another's shared memory, so none waits for the others before exiting. The kernel
// overwrites the mixing coefficients it reads (p.mix == c.mix in the forward): every thread of
// the cluster has consumed its reads of them (X' feeds the record) before the barrier, and the
// mix block writes only after it.
constexpr int kFusedThreads = 256;
constexpr int kMaxClusterBlocks = 16;  // non-portable cluster size: 16 SMs of one GPC
static_assert(kMaxClusterBlocks * kFusedThreads == kHcPostCollapseMaxDims, "one dim per thread");

template <int M, bool kHead>
__global__ void __launch_bounds__(kFusedThreads) hc_post_collapse_kernel(PostParams p, int64_t D, MixerParams next,
                                                                         CollapseParams c) {
  constexpr int P = hc_record_size(M);
  __shared__ double slots[kMaxClusterBlocks][P];
  __shared__ double sums[P];
  namespace cg = cooperative_groups;
  const cg::cluster_group cluster = cg::this_cluster();
  const int t = blockIdx.y;
  const unsigned rank = cluster.block_rank(), blocks = cluster.num_blocks();
  const int64_t d = static_cast<int64_t>(blockIdx.x) * kFusedThreads + threadIdx.x;
  const bool live = d < D;
  asm volatile("barrier.cluster.arrive.relaxed.aligned;\n" ::: "memory");  // this block runs
  float wc[M][kHcStreams];
  load_columns<M>(wc, next.type, next.w, next.row_bytes, D, d, live);  // weights: before the wait
  const float w_norm = live ? c.norm[d] : 0.0f;
  const GateLane gl = load_gate_lane<kHead>(c.scale, c.base);
  pdl_wait();
  pdl_trigger();
  float xs[kHcStreams] = {0.0f, 0.0f, 0.0f, 0.0f};
  if (live) post_dim(p, t, D, d, xs);
  asm volatile("barrier.cluster.wait.aligned;\n" ::: "memory");  // every block of the cluster runs
  reduce_record<M, kFusedThreads>(wc, xs, [&](int e, double v) {
    for (unsigned b = 0; b < blocks; ++b) cluster.map_shared_rank(&slots[0][0], b)[rank * P + e] = v;
  });
  cluster.sync();
  if (threadIdx.x < P) {
    double v = slots[0][threadIdx.x];
    for (unsigned b = 1; b < blocks; ++b) v += slots[b][threadIdx.x];
    sums[threadIdx.x] = v;
  }
  __syncthreads();
  const Collapse col = collapse_from_sums<M, kHead>(sums, gl, D, c, t, rank == 0);
  if (live) c.out[static_cast<int64_t>(t) * D + d] = collapsed(col, xs, w_norm);
}

constexpr int kEmbedThreads = 1024;

__global__ void embed_kernel(gguf::TensorType type, const uint8_t* __restrict__ w, int64_t row_bytes, int64_t D,
                             const int32_t* __restrict__ tokens, float* __restrict__ x) {
  pdl_wait();  // launched with PDL: nothing before this line (pdl.cuh)
  pdl_trigger();
  const int t = blockIdx.x;
  const uint8_t* row = w + static_cast<int64_t>(tokens[t]) * row_bytes;
  float* xt = x + static_cast<int64_t>(t) * kHcStreams * D;
  for (int64_t d = threadIdx.x; d < D; d += blockDim.x) {
    const float v = weight_elem(type, row, d);
#pragma unroll
    for (int h = 0; h < kHcStreams; ++h) xt[h * D + d] = v;
  }
}

CollapseParams collapse_params(const HcPreArgs& a) {
  return CollapseParams{a.scale, a.base, a.norm, a.rms_eps, a.hc_eps, a.mix, a.out};
}

PostParams post_params(const HcPostArgs& a) { return PostParams{a.x, a.f, a.n_parts, a.f_extra, a.mix, a.out}; }

template <int M, bool kHead>
Status launch_finish(const HcPreArgs& a, cudaStream_t stream) {
  DSV4_TRY(hc_check_mixer(a.fn, M, kHcStreams * a.D));
  if (a.T <= 0) return Status();
  if (!kHead && !a.mix) return make_error("hc_pre: no buffer for the mixing coefficients");
  const int64_t row = (a.D + kFinishThreads - 1) / kFinishThreads * kFinishThreads;
  const int64_t span = a.T >= kFinishRowTokens ? row : kFinishThreads;
  const int blocks = static_cast<int>((a.D + span - 1) / span);
  DSV4_CUDA_TRY(launch_pdl(hc_finish_kernel<M, kHead>, dim3(blocks, a.T), dim3(kFinishThreads), 0, stream, a.x,
                           a.partial, hc_column_blocks(a.D), a.D, span, collapse_params(a)));
  return cuda_status(cudaGetLastError(), "hc finish kernel");
}

template <int M, bool kHead>
Status launch_post_collapse(const HcPostArgs& post, const HcPreArgs& next, cudaStream_t stream) {
  DSV4_TRY(hc_check_mixer(next.fn, M, kHcStreams * post.D));
  if (!kHead && !next.mix) return make_error("hc_post_collapse: no buffer for the mixing coefficients");
  const auto kernel = hc_post_collapse_kernel<M, kHead>;
  // Once per device and kernel: clusters of more than the portable 8 blocks.
  int device = 0;
  DSV4_CUDA_TRY(cudaGetDevice(&device));
  DSV4_CUDA_TRY(once_per_device(
      device, [kernel] { return cudaFuncSetAttribute(kernel, cudaFuncAttributeNonPortableClusterSizeAllowed, 1); }));
  const unsigned blocks = static_cast<unsigned>((post.D + kFusedThreads - 1) / kFusedThreads);
  DSV4_CUDA_TRY(launch_pdl_cluster(kernel, dim3(blocks, post.T), dim3(kFusedThreads), blocks, 0, stream,
                                   post_params(post), post.D, MixerParams{next.fn.type, next.fn.data, next.fn.row_bytes},
                                   collapse_params(next)));
  return cuda_status(cudaGetLastError(), "hc_post_collapse kernel");
}

template <int M>
Status launch_short_partials(const float* x, const DeviceTensor& fn, int T, int64_t D, double* partial,
                             cudaStream_t stream) {
  DSV4_CUDA_TRY(launch_pdl(hc_partial_kernel<M>, column_block_grid(T, D), dim3(kShortThreads), 0, stream, x,
                           MixerParams{fn.type, fn.data, fn.row_bytes}, D, partial));
  return cuda_status(cudaGetLastError(), "hc partial kernel");
}

template <int M>
Status launch_short_post(const HcPostArgs& a, cudaStream_t stream) {
  const DeviceTensor fn = a.next_fn ? *a.next_fn : DeviceTensor{};
  DSV4_CUDA_TRY(launch_pdl(hc_post_kernel<M>, column_block_grid(a.T, a.D), dim3(kShortThreads), 0, stream,
                           post_params(a), a.D, MixerParams{fn.type, fn.data, fn.row_bytes}, a.partial));
  return cuda_status(cudaGetLastError(), "hc_post kernel");
}

}  // namespace

namespace detail {

Status hc_short_partials(const float* x, const DeviceTensor& fn, int M, int T, int64_t D, double* partial,
                         cudaStream_t stream) {
  return with_mixer_rows<false>(M, [&](auto rows) {
    return launch_short_partials<decltype(rows)::value>(x, fn, T, D, partial, stream);
  });
}

Status hc_short_post(const HcPostArgs& a, int M, cudaStream_t stream) {
  return with_mixer_rows<true>(M, [&](auto rows) { return launch_short_post<decltype(rows)::value>(a, stream); });
}

}  // namespace detail

Status hc_pre_from_partials(const HcPreArgs& a, cudaStream_t stream) { return launch_finish<kHcMix, false>(a, stream); }
Status hc_head_from_partials(const HcPreArgs& a, cudaStream_t stream) {
  return launch_finish<kHcStreams, true>(a, stream);
}

Status hc_comb(float* mix, int T, float hc_eps, int sinkhorn_iters, cudaStream_t stream) {
  if (T <= 0) return Status();
  DSV4_CUDA_TRY(launch_pdl(hc_comb_kernel, dim3(T), dim3(32), 0, stream, mix, hc_eps, sinkhorn_iters));
  return cuda_status(cudaGetLastError(), "hc comb kernel");
}

Status hc_pre(const HcPreArgs& a, cudaStream_t stream) {
  DSV4_TRY(hc_mixer_partials(a.x, a.fn, kHcMix, a.T, a.D, a.partial, stream));
  DSV4_TRY(hc_pre_from_partials(a, stream));
  return hc_comb(a.mix, a.T, a.hc_eps, a.sinkhorn_iters, stream);
}
Status hc_head(const HcPreArgs& a, cudaStream_t stream) {
  DSV4_TRY(hc_mixer_partials(a.x, a.fn, kHcStreams, a.T, a.D, a.partial, stream));
  return hc_head_from_partials(a, stream);
}

Status hc_post_collapse(const HcPostArgs& post, const HcPreArgs& next, bool head, cudaStream_t stream) {
  if (next.T != post.T || next.D != post.D) return make_error("hc_post_collapse: the collapse's shape is not the post's");
  if (post.D > kHcPostCollapseMaxDims) return make_error("hc_post_collapse: D above one cluster's dims");
  if (post.T <= 0) return Status();
  return head ? launch_post_collapse<kHcStreams, true>(post, next, stream)
              : launch_post_collapse<kHcMix, false>(post, next, stream);
}

Status embed_tokens(const DeviceTensor& e, const int32_t* tokens, int T, float* x, cudaStream_t stream) {
  if (T <= 0) return Status();
  DSV4_CUDA_TRY(launch_pdl(embed_kernel, dim3(T), dim3(kEmbedThreads), 0, stream, e.type, e.data, e.row_bytes, e.ne0,
                           tokens, x));
  return cuda_status(cudaGetLastError(), "embedding kernel");
}

}  // namespace dsv4::cuda
