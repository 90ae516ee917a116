// hc.h. The mixer (M ≤ 24 rows × 16384 columns, 0.8 MB of F16) is split over column blocks:
// block b takes the columns h·D + d of the 64 dims d in [64b, 64b+64) of all four streams, one dim
// (its four columns) per thread, so that hc_post, whose block b produces exactly those values of
// the next state, adds the next mixer's partial sums (and the Gram matrix of hc.h) while the
// values are in registers. Each thread loads its columns of the mixer before griddepcontrol.wait
// (weights: no kernel writes them), so under PDL that read overlaps the previous kernel. The
// finishing kernel runs ⌈D/256⌉ blocks per token at decode (one per token for prefill chunks);
// each sums the records (20 KB, from L2) in the same fixed order, derives the gates and the RMS factor of the collapse from them, and
// writes its 256 dims; block 0 also runs the 4×4 Sinkhorn on 16 lanes of a warp of its own (one
// matrix entry each) and writes the mixing coefficients. The gate and Sinkhorn arithmetic
// repeats cpu/hc.cc operation by operation (no contraction), so the coefficients match the CPU's
// up to the mixer sums' rounding.
//
// Every sum has a fixed order that depends only on D (warp reduce-scatter, warps in order, column
// blocks in four runs, runs in order), never on the grid's schedule or the device.
//
// Roofline: the mixer reads 0.8 MB and the streams 64 KB per token: ~0.3 µs at HBM bandwidth;
// these kernels are latency-bound at decode (a few µs each).
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
constexpr int kWarps = kThreads / 32;
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
// G[h][j] = Σ_d X[h][d]·X[j][d] (products exact in double). xs holds the thread's dim of the four
// streams.
template <int M>
__device__ __forceinline__ void store_record(const float (&wc)[M][kHcStreams], const float (&xs)[kHcStreams],
                                             double* record) {
  constexpr int N = pow2_at_least(M);
  __shared__ float red_m[kWarps][N];
  __shared__ double red_g[kWarps][kGram];
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
  const int i = threadIdx.x;
  for (int e = i; e < M + kGram; e += kThreads) {
    double sum = e < M ? static_cast<double>(red_m[0][e]) : red_g[0][e - M];
#pragma unroll
    for (int wi = 1; wi < kWarps; ++wi) sum += e < M ? static_cast<double>(red_m[wi][e]) : red_g[wi][e - M];
    record[e] = sum;
  }
}

__device__ __forceinline__ double* record_of(double* partial, int M) {
  return partial + (static_cast<int64_t>(blockIdx.y) * gridDim.x + blockIdx.x) * record_size(M);
}

template <int M>
__global__ void __launch_bounds__(kThreads) hc_partial_kernel(const float* __restrict__ x, gguf::TensorType type,
                                                              const uint8_t* __restrict__ w, int64_t row_bytes,
                                                              int64_t D, double* __restrict__ partial) {
  const int64_t d = static_cast<int64_t>(blockIdx.x) * kHcDimsPerBlock + threadIdx.x;
  const bool live = d < D;
  float wc[M][kHcStreams];
  load_columns<M>(wc, type, w, row_bytes, D, d, live);  // weights: before the wait (pdl.cuh)
  pdl_wait();
  pdl_trigger();
  const float* xt = x + static_cast<int64_t>(blockIdx.y) * kHcStreams * D;
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
// out = RMSNorm_w(Σ_h g_h·X[h]) with ‖Σ_h g_h·X[h]‖² = Σ_hj g_h·g_j·G[h][j].
template <int M, bool kHead>
__global__ void __launch_bounds__(kFinishThreads) hc_finish_kernel(const float* __restrict__ x, const double* __restrict__ partial,
                                                                   int S, int64_t D, int64_t span, const float* __restrict__ scale,
                                                                   const float* __restrict__ base, const float* __restrict__ norm,
                                                                   float rms_eps, float hc_eps, int iters, float* __restrict__ mix,
                                                                   float* __restrict__ out) {
  constexpr int P = record_size(M);
  constexpr int n = kHcStreams;
  __shared__ double runs[kSumRuns][P];
  __shared__ double sums[P];
  const int t = blockIdx.y, lane = threadIdx.x & 31;
  const int64_t d0 = static_cast<int64_t>(blockIdx.x) * span + threadIdx.x;
  const int64_t end = min(D, static_cast<int64_t>(blockIdx.x) * span + span);
  const bool live = d0 < end;
  // Weights before the wait (pdl.cuh). Lanes 0..3 of a warp make the pre (or head) gates, lanes
  // 4..7 the post gates; lane 4j + k of block 0's second warp holds the comb entry C[j][k].
  constexpr int n_gates = kHead ? n : 2 * n;
  const float w0 = live ? norm[d0] : 0.0f;
  const float gate_scale = kHead || lane < n ? scale[0] : scale[1];
  const float gate_base = lane < n_gates ? base[lane] : 0.0f;
  const float comb_scale = kHead ? 0.0f : scale[2];
  const float comb_base = kHead ? 0.0f : base[2 * n + (lane & 15)];
  pdl_wait();
  pdl_trigger();
  const int64_t HD = kHcStreams * D;
  const float* xt = x + static_cast<int64_t>(t) * HD;
  float xs[kHcStreams];
#pragma unroll
  for (int h = 0; h < kHcStreams; ++h) xs[h] = live ? xt[h * D + d0] : 0.0f;
  if (threadIdx.x < kSumRuns * P) {
    const int run = threadIdx.x / P, k = threadIdx.x % P;
    const int len = (S + kSumRuns - 1) / kSumRuns, s0 = run * len, s1 = min(S, s0 + len);
    const double* p = partial + static_cast<int64_t>(t) * S * P + k;
    double v = 0.0;
#pragma unroll 16
    for (int s = s0; s < s1; ++s) v += p[s * P];
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
  const double* G = sums + M;
  // cpu::hc_flat_rms_scale: Σ X² over the 4·D values (the Gram matrix's trace), double mean, rounded once.
  const double ss_x = ((G[0] + G[5]) + G[10]) + G[15];
  const float r = static_cast<float>(1.0 / sqrt(ss_x / static_cast<double>(HD) + static_cast<double>(rms_eps)));
  auto logit = [&](int k) { return __fmul_rn(static_cast<float>(sums[k]), r); };
  if constexpr (!kHead) {
    if (blockIdx.x == 0 && threadIdx.x >= 32 && threadIdx.x < 64) {
      // The Sinkhorn projection (§5.3), the kernel's longest chain, on a warp of its own.
      const float z = __fadd_rn(__fmul_rn(logit(2 * n + (lane & 15)), comb_scale), comb_base);
      const float comb = sinkhorn4_lane(z, hc_eps, iters);
      if (lane < 16) mix[static_cast<int64_t>(t) * kHcMixSize + 2 * n + lane] = comb;
    }
  }
  float gate = 0.0f;
  if (lane < n_gates) {
    const float sig = sigmoid_f32(__fadd_rn(__fmul_rn(logit(lane), gate_scale), gate_base));
    gate = lane < n ? __fadd_rn(sig, hc_eps) : __fmul_rn(2.0f, sig);
  }
  if (!kHead && blockIdx.x == 0 && threadIdx.x < n_gates) mix[static_cast<int64_t>(t) * kHcMixSize + threadIdx.x] = gate;
  float g[n];
  double gd[n];
#pragma unroll
  for (int h = 0; h < n; ++h) {
    g[h] = __shfl_sync(0xFFFFFFFFu, gate, h);
    gd[h] = g[h];
  }
  double ss_u = 0.0;
#pragma unroll
  for (int h = 0; h < n; ++h) {
    double row = 0.0;
#pragma unroll
    for (int j = 0; j < n; ++j) row += gd[j] * G[h * n + j];
    ss_u += gd[h] * row;
  }
  const float rn = static_cast<float>(1.0 / sqrt(ss_u / static_cast<double>(D) + static_cast<double>(rms_eps)));
  // cpu::hc_weighted_sum, then cpu::rms_norm's (u·r)·w.
  float* ot = out + static_cast<int64_t>(t) * D;
  auto apply = [&](int64_t d, const float(&v)[kHcStreams], float w) {
    const float u = __fadd_rn(__fadd_rn(__fadd_rn(__fmul_rn(g[0], v[0]), __fmul_rn(g[1], v[1])), __fmul_rn(g[2], v[2])),
                              __fmul_rn(g[3], v[3]));
    ot[d] = __fmul_rn(__fmul_rn(u, rn), w);
  };
  if (live) apply(d0, xs, w0);
  for (int64_t d = d0 + kFinishThreads; d < end; d += kFinishThreads) {
    float v[kHcStreams];
#pragma unroll
    for (int h = 0; h < kHcStreams; ++h) v[h] = xt[h * D + d];
    apply(d, v, norm[d]);
  }
}

// X' = post ⊗ f + Cᵀ·X for the block's dims; with M > 0 also the next mixer's record.
template <int M>
__global__ void __launch_bounds__(kThreads) hc_post_kernel(const float* __restrict__ x, const float* __restrict__ f,
                                                           int n_parts, const float* __restrict__ f_extra,
                                                           const float* __restrict__ mix, int64_t D, float* __restrict__ out,
                                                           gguf::TensorType type, const uint8_t* __restrict__ w,
                                                           int64_t row_bytes, double* __restrict__ partial) {
  const int t = blockIdx.y;
  const int64_t d = static_cast<int64_t>(blockIdx.x) * kHcDimsPerBlock + threadIdx.x;
  const bool live = d < D;
  float wc[M > 0 ? M : 1][kHcStreams];
  if constexpr (M > 0) load_columns<M>(wc, type, w, row_bytes, D, d, live);  // weights: before the wait
  pdl_wait();
  pdl_trigger();
  float xs[kHcStreams] = {0.0f, 0.0f, 0.0f, 0.0f};
  if (live) {
    const float* parts = f + static_cast<int64_t>(t) * n_parts * D;
    float fv = parts[d];
    for (int i = 1; i < n_parts; ++i) fv = __fadd_rn(fv, parts[i * D + d]);
    if (f_extra) fv = __fadd_rn(fv, f_extra[static_cast<int64_t>(t) * D + d]);
    const float* g = mix + static_cast<int64_t>(t) * kHcMixSize;
    const float* post = g + kHcStreams;
    const float* comb = g + 2 * kHcStreams;
    const float* xt = x + static_cast<int64_t>(t) * kHcStreams * D;
    float xin[kHcStreams];
#pragma unroll
    for (int j = 0; j < kHcStreams; ++j) xin[j] = xt[j * D + d];
    float* ot = out + static_cast<int64_t>(t) * kHcStreams * D;
#pragma unroll
    for (int k = 0; k < kHcStreams; ++k) {
      float v = __fmul_rn(post[k], fv);
#pragma unroll
      for (int j = 0; j < kHcStreams; ++j) v = __fadd_rn(v, __fmul_rn(comb[j * kHcStreams + k], xin[j]));
      xs[k] = v;
      ot[k * D + d] = v;
    }
  }
  if constexpr (M > 0) store_record<M>(wc, xs, record_of(partial, M));
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
  DSV4_CUDA_TRY(launch_pdl(hc_partial_kernel<M>, dim3(splits(D), T), dim3(kThreads), 0, stream, x, fn.type, fn.data,
                           fn.row_bytes, D, partial));
  return cuda_status(cudaGetLastError(), "hc partial kernel");
}

template <int M, bool kHead>
Status launch_finish(const HcPreArgs& a, cudaStream_t stream) {
  DSV4_TRY(check_fn(a.fn, M, kHcStreams * a.D));
  if (a.T <= 0) return Status();
  if (!kHead && !a.mix) return make_error("hc_pre: no buffer for the mixing coefficients");
  const int64_t row = (a.D + kFinishThreads - 1) / kFinishThreads * kFinishThreads;
  const int64_t span = a.T >= kFinishRowTokens ? row : kFinishThreads;
  const int blocks = static_cast<int>((a.D + span - 1) / span);
  DSV4_CUDA_TRY(launch_pdl(hc_finish_kernel<M, kHead>, dim3(blocks, a.T), dim3(kFinishThreads), 0, stream, a.x,
                           a.partial, splits(a.D), a.D, span, a.scale, a.base, a.norm, a.rms_eps, a.hc_eps,
                           a.sinkhorn_iters, a.mix, a.out));
  return cuda_status(cudaGetLastError(), "hc finish kernel");
}

template <int M>
Status launch_post(const HcPostArgs& a, cudaStream_t stream) {
  const DeviceTensor fn = a.next_fn ? *a.next_fn : DeviceTensor{};
  if (M > 0) DSV4_TRY(check_fn(fn, M, kHcStreams * a.D));
  DSV4_CUDA_TRY(launch_pdl(hc_post_kernel<M>, dim3(splits(a.D), a.T), dim3(kThreads), 0, stream, a.x, a.f, a.n_parts,
                           a.f_extra, a.mix, a.D, a.out, fn.type, fn.data, fn.row_bytes, a.partial));
  return cuda_status(cudaGetLastError(), "hc_post kernel");
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

Status hc_pre(const HcPreArgs& a, cudaStream_t stream) {
  DSV4_TRY(hc_mixer_partials(a.x, a.fn, kHcMix, a.T, a.D, a.partial, stream));
  return hc_pre_from_partials(a, stream);
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

Status embed_tokens(const DeviceTensor& e, const int32_t* tokens, int T, float* x, cudaStream_t stream) {
  if (T <= 0) return Status();
  DSV4_CUDA_TRY(launch_pdl(embed_kernel, dim3(T), dim3(kEmbedThreads), 0, stream, e.type, e.data, e.row_bytes, e.ne0,
                           tokens, x));
  return cuda_status(cudaGetLastError(), "embedding kernel");
}

}  // namespace dsv4::cuda
