// hc.h. The mixer (M ≤ 24 rows × 16384 columns, 0.8 MB of F16) is split over column blocks:
// block b takes the columns h·D + d of the 64 dims d in [64b, 64b+64) of all four streams, one dim
// (its four columns) per thread, so that hc_post, whose block b produces exactly those values of
// the next state, adds the next mixer's partial sums (and the Gram matrix of hc.h) while the
// values are in registers. Each thread loads its columns of the mixer before griddepcontrol.wait
// (weights: no kernel writes them), so under PDL that read overlaps the previous kernel. The
// finishing kernel runs ⌈D/256⌉ blocks per token at decode (one per token for prefill chunks);
// each sums the records (20 KB, from L2) in the same fixed order, derives the gates and the RMS
// factor of the collapse from them, and writes its 256 dims; block 0 also writes the pre and post
// gates and the comb logits. The 4×4 Sinkhorn of those logits (20 dependent iterations, ≈ 3 µs,
// the longest chain of a collapse) is a one-warp kernel of its own, hc_comb, so that the forward
// can run it beside the sub-layer (only the sub-layer's hc_post reads comb). The gate and
// Sinkhorn arithmetic repeats cpu/hc.cc operation by operation (no contraction), so the
// coefficients match the CPU's up to the mixer sums' rounding.
//
// One-token steps fuse hc_post with the collapse after it (hc_post_collapse): the same per-thread
// work in blocks of 256 dims, one thread-block cluster per token, the records exchanged through
// distributed shared memory instead of global scratch and a second launch.
//
// Every sum has a fixed order that depends only on D (warp reduce-scatter, warps in order, column
// blocks in four runs, runs in order; the fused kernel: warps, then blocks in rank order), never
// on the grid's schedule or the device.
//
// Roofline: the mixer reads 0.8 MB and the streams 64 KB per token: ~0.3 µs at HBM bandwidth;
// these kernels are latency-bound at decode (a few µs each).
#include <cooperative_groups.h>
#include <cuda_runtime.h>

#include "cuda/check.h"
#include "cuda/device_math.cuh"
#include "cuda/hc.h"
#include "cuda/pdl.cuh"
#include "cuda/warp_scatter.cuh"

namespace dsv4::cuda {

namespace {

using namespace detail;

constexpr int kThreads = kHcDimsPerBlock;  // column-block kernels: one dim (its four columns) per thread
constexpr int kGram = kHcStreams * kHcStreams;
static_assert(kHcDimsPerBlock % 32 == 0, "whole warps");

__host__ __device__ constexpr int record_size(int M) { return M + kGram; }

int splits(int64_t D) { return static_cast<int>((D + kHcDimsPerBlock - 1) / kHcDimsPerBlock); }

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
  if (!live) type = gguf::TensorType::I32;  // not a mixer type (check_fn): the zeros below
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
// emit(e, value) (e < record_size(M)). xs holds the thread's dim of the four streams.
template <int M, int kBlockThreads, class Emit>
__device__ __forceinline__ void reduce_record(const float (&wc)[M][kHcStreams], const float (&xs)[kHcStreams],
                                              Emit&& emit) {
  constexpr int N = pow2_at_least(M);
  constexpr int W = kBlockThreads / 32;
  __shared__ float red_m[W][N];
  __shared__ double red_g[W][kGram];
  float acc[N];
#pragma unroll
  for (int k = 0; k < N; ++k) {
    acc[k] = 0.0f;
    if (k < M) {
#pragma unroll
      for (int h = 0; h < kHcStreams; ++h) acc[k] = fmaf(wc[k][h], xs[h], acc[k]);
    }
  }
  double gram[kGram];
#pragma unroll
  for (int i = 0; i < kGram; ++i) {
    gram[i] = static_cast<double>(xs[i / kHcStreams]) * static_cast<double>(xs[i % kHcStreams]);
  }
  const float m = warp_reduce_scatter(acc);
  const double g = warp_reduce_scatter(gram);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (lane % (32 / N) == 0) red_m[warp][reduce_scatter_index(lane, N)] = m;
  if (lane % (32 / kGram) == 0) red_g[warp][reduce_scatter_index(lane, kGram)] = g;
  __syncthreads();
  for (int e = threadIdx.x; e < M + kGram; e += kBlockThreads) {
    double sum = e < M ? static_cast<double>(red_m[0][e]) : red_g[0][e - M];
#pragma unroll
    for (int wi = 1; wi < W; ++wi) sum += e < M ? static_cast<double>(red_m[wi][e]) : red_g[wi][e - M];
    emit(e, sum);
  }
}

template <int M>
__device__ __forceinline__ void store_record(const float (&wc)[M][kHcStreams], const float (&xs)[kHcStreams],
                                             double* record) {
  reduce_record<M, kThreads>(wc, xs, [&](int e, double v) { record[e] = v; });
}

// The column-block kernels' grid is tokens × column blocks, the token fastest: blocks are handed
// to the SMs in that order, so the SMs work through one column block's tokens together and can
// keep its mixer columns (12 KB) in L1, where a grid with the column block fastest had every
// token read the whole mixer (0.8 MB) from L2 (docs/PERF.md, session 12: −1 to −3 % per launch).
__device__ __forceinline__ int block_token() { return static_cast<int>(blockIdx.x); }
__device__ __forceinline__ int64_t block_first_dim() { return static_cast<int64_t>(blockIdx.y) * kHcDimsPerBlock; }
dim3 column_block_grid(int T, int64_t D) {
  return dim3(static_cast<unsigned>(T), static_cast<unsigned>(splits(D)));
}

// The record of (token, column block): token-major, the column blocks in order (hc_finish's read).
__device__ __forceinline__ double* record_of(double* partial, int M) {
  return partial + (static_cast<int64_t>(blockIdx.x) * gridDim.y + blockIdx.y) * record_size(M);
}

template <int M>
__global__ void __launch_bounds__(kThreads) hc_partial_kernel(const float* __restrict__ x, gguf::TensorType type,
                                                              const uint8_t* __restrict__ w, int64_t row_bytes,
                                                              int64_t D, double* __restrict__ partial) {
  const int64_t d = block_first_dim() + threadIdx.x;
  const bool live = d < D;
  float wc[M][kHcStreams];
  load_columns<M>(wc, type, w, row_bytes, D, d, live);  // weights: before the wait (pdl.cuh)
  pdl_wait();
  pdl_trigger();
  const float* xt = x + static_cast<int64_t>(block_token()) * kHcStreams * D;
  float xs[kHcStreams];
#pragma unroll
  for (int h = 0; h < kHcStreams; ++h) xs[h] = live ? xt[h * D + d] : 0.0f;
  store_record<M>(wc, xs, record_of(partial, M));
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
static_assert(kSumRuns * record_size(kHcMix) <= kFinishThreads, "a thread per run and record entry");

// Token blockIdx.y, dims [span·blockIdx.x, +span): the gates from the records, then
// out = RMSNorm_w(Σ_h g_h·X[h]).
template <int M, bool kHead>
__global__ void __launch_bounds__(kFinishThreads) hc_finish_kernel(const float* __restrict__ x, const double* __restrict__ partial,
                                                                   int S, int64_t D, int64_t span, CollapseParams p) {
  constexpr int P = record_size(M);
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

// The operands of hc_post. mix is not __restrict__: the fused kernel writes the next mixing
// coefficients over the ones it reads (hc_post_collapse_kernel says why that is safe).
struct PostParams {
  const float* x;  // [T][4·D]
  const float* f;  // n_parts rows per token
  int n_parts;
  const float* f_extra;  // [T][D] or null
  const float* mix;      // [T][kHcMixSize]
  float* out;            // [T][4·D]
};

// X'[k][d] = post_k·f[d] + Σ_j C[j][k]·X[j][d] of token t for dim d (cpu::hc_post's order), into
// xs and the new state.
__device__ __forceinline__ void post_dim(const PostParams& p, int t, int64_t D, int64_t d, float (&xs)[kHcStreams]) {
  const float* parts = p.f + static_cast<int64_t>(t) * p.n_parts * D;
  float fv = parts[d];
  for (int i = 1; i < p.n_parts; ++i) fv = __fadd_rn(fv, parts[i * D + d]);
  if (p.f_extra) fv = __fadd_rn(fv, p.f_extra[static_cast<int64_t>(t) * D + d]);
  const float* g = p.mix + static_cast<int64_t>(t) * kHcMixSize;
  const float* post = g + kHcStreams;
  const float* comb = g + 2 * kHcStreams;
  const float* xt = p.x + static_cast<int64_t>(t) * kHcStreams * D;
  float xin[kHcStreams];
#pragma unroll
  for (int j = 0; j < kHcStreams; ++j) xin[j] = xt[j * D + d];
  float* ot = p.out + static_cast<int64_t>(t) * kHcStreams * D;
#pragma unroll
  for (int k = 0; k < kHcStreams; ++k) {
    float v = __fmul_rn(post[k], fv);
#pragma unroll
    for (int j = 0; j < kHcStreams; ++j) v = __fadd_rn(v, __fmul_rn(comb[j * kHcStreams + k], xin[j]));
    xs[k] = v;
    ot[k * D + d] = v;
  }
}

struct MixerParams {
  gguf::TensorType type;
  const uint8_t* w;
  int64_t row_bytes;
};

// X' = post ⊗ f + Cᵀ·X for the block's dims; with M > 0 also the next mixer's record.
template <int M>
__global__ void __launch_bounds__(kThreads) hc_post_kernel(PostParams p, int64_t D, MixerParams next,
                                                           double* __restrict__ partial) {
  const int64_t d = block_first_dim() + threadIdx.x;
  const bool live = d < D;
  float wc[M > 0 ? M : 1][kHcStreams];
  if constexpr (M > 0) load_columns<M>(wc, next.type, next.w, next.row_bytes, D, d, live);  // weights: before the wait
  pdl_wait();
  pdl_trigger();
  float xs[kHcStreams] = {0.0f, 0.0f, 0.0f, 0.0f};
  if (live) post_dim(p, block_token(), D, d, xs);
  if constexpr (M > 0) store_record<M>(wc, xs, record_of(partial, M));
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
  constexpr int P = record_size(M);
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

Status check_fn(const DeviceTensor& fn, int64_t M, int64_t HD) {
  if (!fn.present() || fn.ne1 != M || fn.ne0 != HD) return make_error("hc: mixer weight shape mismatch");
  switch (fn.type) {
    case gguf::TensorType::F32:
    case gguf::TensorType::F16:
    case gguf::TensorType::BF16:
    case gguf::TensorType::Q8_0: return Status();
    default: return make_error("hc: mixer weight type " + gguf::type_name(fn.type) + " unsupported on the device");
  }
}

template <int M>
Status launch_partials(const float* x, const DeviceTensor& fn, int T, int64_t D, double* partial, cudaStream_t stream) {
  DSV4_TRY(check_fn(fn, M, kHcStreams * D));
  if (T <= 0) return Status();
  DSV4_CUDA_TRY(launch_pdl(hc_partial_kernel<M>, column_block_grid(T, D), dim3(kThreads), 0, stream, x, fn.type,
                           fn.data, fn.row_bytes, D, partial));
  return cuda_status(cudaGetLastError(), "hc partial kernel");
}

CollapseParams collapse_params(const HcPreArgs& a) {
  return CollapseParams{a.scale, a.base, a.norm, a.rms_eps, a.hc_eps, a.mix, a.out};
}

PostParams post_params(const HcPostArgs& a) { return PostParams{a.x, a.f, a.n_parts, a.f_extra, a.mix, a.out}; }

template <int M, bool kHead>
Status launch_finish(const HcPreArgs& a, cudaStream_t stream) {
  DSV4_TRY(check_fn(a.fn, M, kHcStreams * a.D));
  if (a.T <= 0) return Status();
  if (!kHead && !a.mix) return make_error("hc_pre: no buffer for the mixing coefficients");
  const int64_t row = (a.D + kFinishThreads - 1) / kFinishThreads * kFinishThreads;
  const int64_t span = a.T >= kFinishRowTokens ? row : kFinishThreads;
  const int blocks = static_cast<int>((a.D + span - 1) / span);
  DSV4_CUDA_TRY(launch_pdl(hc_finish_kernel<M, kHead>, dim3(blocks, a.T), dim3(kFinishThreads), 0, stream, a.x,
                           a.partial, splits(a.D), a.D, span, collapse_params(a)));
  return cuda_status(cudaGetLastError(), "hc finish kernel");
}

template <int M>
Status launch_post(const HcPostArgs& a, cudaStream_t stream) {
  const DeviceTensor fn = a.next_fn ? *a.next_fn : DeviceTensor{};
  if (M > 0) DSV4_TRY(check_fn(fn, M, kHcStreams * a.D));
  DSV4_CUDA_TRY(launch_pdl(hc_post_kernel<M>, column_block_grid(a.T, a.D), dim3(kThreads), 0, stream, post_params(a),
                           a.D, MixerParams{fn.type, fn.data, fn.row_bytes}, a.partial));
  return cuda_status(cudaGetLastError(), "hc_post kernel");
}

template <int M, bool kHead>
Status launch_post_collapse(const HcPostArgs& post, const HcPreArgs& next, cudaStream_t stream) {
  DSV4_TRY(check_fn(next.fn, M, kHcStreams * post.D));
  if (!kHead && !next.mix) return make_error("hc_post_collapse: no buffer for the mixing coefficients");
  const auto kernel = hc_post_collapse_kernel<M, kHead>;
  // Once per kernel: clusters of more than the portable 8 blocks.
  static const cudaError_t allowed = cudaFuncSetAttribute(kernel, cudaFuncAttributeNonPortableClusterSizeAllowed, 1);
  DSV4_CUDA_TRY(allowed);
  const unsigned blocks = static_cast<unsigned>((post.D + kFusedThreads - 1) / kFusedThreads);
  DSV4_CUDA_TRY(launch_pdl_cluster(kernel, dim3(blocks, post.T), dim3(kFusedThreads), blocks, 0, stream,
                                   post_params(post), post.D, MixerParams{next.fn.type, next.fn.data, next.fn.row_bytes},
                                   collapse_params(next)));
  return cuda_status(cudaGetLastError(), "hc_post_collapse kernel");
}

}  // namespace

int64_t hc_partial_doubles(int64_t T, int64_t D, int M) { return T * splits(D) * record_size(M); }

Status hc_mixer_partials(const float* x, const DeviceTensor& fn, int M, int T, int64_t D, double* partial,
                         cudaStream_t stream) {
  if (M == kHcMix) return launch_partials<kHcMix>(x, fn, T, D, partial, stream);
  if (M == kHcStreams) return launch_partials<kHcStreams>(x, fn, T, D, partial, stream);
  return make_error("hc: mixer of " + std::to_string(M) + " rows unsupported");
}

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

Status hc_post(const HcPostArgs& a, cudaStream_t stream) {
  if (a.T <= 0) return Status();
  if (!a.next_fn) return launch_post<0>(a, stream);
  if (a.next_M == kHcMix) return launch_post<kHcMix>(a, stream);
  if (a.next_M == kHcStreams) return launch_post<kHcStreams>(a, stream);
  return make_error("hc_post: next mixer of " + std::to_string(a.next_M) + " rows unsupported");
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
