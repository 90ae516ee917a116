// hc.h. The mixer (M ≤ 24 rows × 16384 columns, 0.8 MB of F16) is split over column blocks:
// block b takes the columns h·D + d of the 256 dims d in [256b, 256b+256) of all four streams, so
// that hc_post, whose block b produces exactly those values of the next state, adds the next
// mixer's partial sums while the values are in registers (no separate pass over the state). The
// 4×4 Sinkhorn runs on 16 lanes of one warp, one matrix entry each. The gate and Sinkhorn
// arithmetic repeats cpu/hc.cc operation by operation (no contraction), so the mixing
// coefficients match the CPU's up to the mixer sums' rounding.
//
// Roofline: the mixer reads 0.8 MB and the streams 64 KB per token: ~0.3 µs at HBM bandwidth;
// these kernels are latency-bound at decode (a few µs each).
#include <cuda_runtime.h>

#include "cuda/check.h"
#include "cuda/device_math.cuh"
#include "cuda/hc.h"
#include "cuda/pdl.cuh"

namespace dsv4::cuda {

namespace {

using namespace detail;

constexpr int kThreads = 256;

int splits(int64_t D) { return static_cast<int>((D + kHcDimsPerBlock - 1) / kHcDimsPerBlock); }

// Adds this thread's share of the mixer sums for the value v of column c (stream h, dim d).
template <int M>
__device__ __forceinline__ void accumulate(float (&acc)[M], double& ss, gguf::TensorType type, const uint8_t* w,
                                           int64_t row_bytes, int64_t c, float v) {
  ss += static_cast<double>(v) * static_cast<double>(v);
#pragma unroll
  for (int k = 0; k < M; ++k) acc[k] = fmaf(weight_elem(type, w + k * row_bytes, c), v, acc[k]);
}

// partial[(t·S + b)·(M+1) + k] = the block's Σ W[k][c]·X[c] (k < M) and Σ X[c]² (k = M),
// warps added in order.
template <int M>
__device__ __forceinline__ void store_partials(float (&acc)[M], double ss, double* partial) {
  __shared__ double red[kThreads / 32][M + 1];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
#pragma unroll
  for (int k = 0; k < M; ++k) {
    const float v = warp_sum(acc[k]);
    if (lane == 0) red[warp][k] = v;
  }
  ss = warp_sum(ss);
  if (lane == 0) red[warp][M] = ss;
  __syncthreads();
  if (threadIdx.x <= M) {
    double sum = red[0][threadIdx.x];
    for (int wi = 1; wi < kThreads / 32; ++wi) sum += red[wi][threadIdx.x];
    partial[(static_cast<int64_t>(blockIdx.y) * gridDim.x + blockIdx.x) * (M + 1) + threadIdx.x] = sum;
  }
}

template <int M>
__global__ void __launch_bounds__(kThreads) hc_partial_kernel(const float* __restrict__ x, gguf::TensorType type,
                                                              const uint8_t* __restrict__ w, int64_t row_bytes,
                                                              int64_t D, double* __restrict__ partial) {
  pdl_wait();  // launched with PDL: nothing before this line (pdl.cuh)
  pdl_trigger();
  const int t = blockIdx.y;
  const int64_t d = static_cast<int64_t>(blockIdx.x) * kHcDimsPerBlock + threadIdx.x;
  const float* xt = x + static_cast<int64_t>(t) * kHcStreams * D;
  float acc[M];
#pragma unroll
  for (int k = 0; k < M; ++k) acc[k] = 0.0f;
  double ss = 0.0;
  if (d < D) {
#pragma unroll
    for (int h = 0; h < kHcStreams; ++h) accumulate<M>(acc, ss, type, w, row_bytes, h * D + d, xt[h * D + d]);
  }
  store_partials<M>(acc, ss, partial);
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

// One token: gates from the partial sums, then out = RMSNorm_w(Σ_h g_h·X[h]). A wide block and
// vector loads so that every thread has few dependent memory round trips (the kernel is pure
// latency at decode).
constexpr int kFinishThreads = 1024;

__device__ __forceinline__ float4 ld4(const float* p) { return *reinterpret_cast<const float4*>(p); }

template <int M, bool kHead>
__global__ void __launch_bounds__(kFinishThreads) hc_finish_kernel(const float* __restrict__ x, const double* __restrict__ partial,
                                                                   int S, int64_t D, const float* __restrict__ scale,
                                                                   const float* __restrict__ base, const float* __restrict__ norm,
                                                                   float rms_eps, float hc_eps, int iters, float* __restrict__ mix,
                                                                   float* __restrict__ out) {
  pdl_wait();  // launched with PDL: nothing before this line (pdl.cuh)
  pdl_trigger();
  extern __shared__ float4 u4[];  // [D/4]
  __shared__ float gates[kHcMixSize];
  __shared__ float m[M];
  __shared__ double sums[M + 1];
  __shared__ double scratch[32];
  constexpr int n = kHcStreams;
  const int t = blockIdx.x;
  const int64_t HD = kHcStreams * D;
  const float* xt = x + static_cast<int64_t>(t) * HD;
  // The mixer's sums and Σx², each over the splits in order (the loads issued ahead of the adds).
  if (threadIdx.x <= M) {
    const double* p = partial + static_cast<int64_t>(t) * S * (M + 1) + threadIdx.x;
    double v = 0.0;
#pragma unroll 16
    for (int s = 0; s < S; ++s) v += p[s * (M + 1)];
    sums[threadIdx.x] = v;
  }
  __syncthreads();
  // cpu::hc_flat_rms_scale: double mean, rounded once.
  const float r = static_cast<float>(1.0 / sqrt(sums[M] / static_cast<double>(HD) + static_cast<double>(rms_eps)));
  if (threadIdx.x < M) m[threadIdx.x] = __fmul_rn(static_cast<float>(sums[threadIdx.x]), r);
  __syncthreads();
  const int i = threadIdx.x;
  if (kHead) {
    if (i < n) gates[i] = __fadd_rn(sigmoid_f32(__fadd_rn(__fmul_rn(m[i], scale[0]), base[i])), hc_eps);
  } else {
    if (i < n) gates[i] = __fadd_rn(sigmoid_f32(__fadd_rn(__fmul_rn(m[i], scale[0]), base[i])), hc_eps);
    if (i >= n && i < 2 * n) gates[i] = __fmul_rn(2.0f, sigmoid_f32(__fadd_rn(__fmul_rn(m[i], scale[1]), base[i])));
    if (i < 32) {
      const int c = i & 15;
      const float z = __fadd_rn(__fmul_rn(m[2 * n + c], scale[2]), base[2 * n + c]);
      const float comb = sinkhorn4_lane(z, hc_eps, iters);
      if (i < 16) gates[2 * n + i] = comb;
    }
  }
  __syncthreads();
  if (!kHead && i < kHcMixSize) mix[static_cast<int64_t>(t) * kHcMixSize + i] = gates[i];
  const float g0 = gates[0], g1 = gates[1], g2 = gates[2], g3 = gates[3];
  auto mix1 = [&](float a, float b, float c, float d) {
    return __fadd_rn(__fadd_rn(__fadd_rn(__fmul_rn(g0, a), __fmul_rn(g1, b)), __fmul_rn(g2, c)), __fmul_rn(g3, d));
  };
  double ss = 0.0;
  const int64_t D4 = D / 4;
#pragma unroll 4
  for (int64_t q = threadIdx.x; q < D4; q += blockDim.x) {
    const float4 a = ld4(xt + 4 * q), b = ld4(xt + D + 4 * q), c = ld4(xt + 2 * D + 4 * q), d = ld4(xt + 3 * D + 4 * q);
    const float4 v = make_float4(mix1(a.x, b.x, c.x, d.x), mix1(a.y, b.y, c.y, d.y), mix1(a.z, b.z, c.z, d.z),
                                 mix1(a.w, b.w, c.w, d.w));
    u4[q] = v;
    ss += static_cast<double>(v.x) * v.x + static_cast<double>(v.y) * v.y + static_cast<double>(v.z) * v.z +
          static_cast<double>(v.w) * v.w;
  }
  ss = block_sum(ss, scratch);
  const float rn = static_cast<float>(1.0 / sqrt(ss / static_cast<double>(D) + static_cast<double>(rms_eps)));
  float* o = out + static_cast<int64_t>(t) * D;
#pragma unroll 4
  for (int64_t q = threadIdx.x; q < D4; q += blockDim.x) {
    const float4 v = u4[q], w = ld4(norm + 4 * q);
    *reinterpret_cast<float4*>(o + 4 * q) = make_float4(__fmul_rn(__fmul_rn(v.x, rn), w.x), __fmul_rn(__fmul_rn(v.y, rn), w.y),
                                                        __fmul_rn(__fmul_rn(v.z, rn), w.z), __fmul_rn(__fmul_rn(v.w, rn), w.w));
  }
}

// X' = post ⊗ f + Cᵀ·X for the block's dims; with M > 0 also the next mixer's partial sums.
template <int M>
__global__ void __launch_bounds__(kThreads) hc_post_kernel(const float* __restrict__ x, const float* __restrict__ f,
                                                           int n_parts, const float* __restrict__ f_extra,
                                                           const float* __restrict__ mix, int64_t D, float* __restrict__ out,
                                                           gguf::TensorType type, const uint8_t* __restrict__ w,
                                                           int64_t row_bytes, double* __restrict__ partial) {
  pdl_wait();  // launched with PDL: nothing before this line (pdl.cuh)
  pdl_trigger();
  const int t = blockIdx.y;
  const int64_t d = static_cast<int64_t>(blockIdx.x) * kHcDimsPerBlock + threadIdx.x;
  float acc[M > 0 ? M : 1];
#pragma unroll
  for (int k = 0; k < (M > 0 ? M : 1); ++k) acc[k] = 0.0f;
  double ss = 0.0;
  if (d < D) {
    const float* parts = f + static_cast<int64_t>(t) * n_parts * D;
    float fv = parts[d];
    for (int i = 1; i < n_parts; ++i) fv = __fadd_rn(fv, parts[i * D + d]);
    if (f_extra) fv = __fadd_rn(fv, f_extra[static_cast<int64_t>(t) * D + d]);
    const float* g = mix + static_cast<int64_t>(t) * kHcMixSize;
    const float* post = g + kHcStreams;
    const float* comb = g + 2 * kHcStreams;
    const float* xt = x + static_cast<int64_t>(t) * kHcStreams * D;
    float* ot = out + static_cast<int64_t>(t) * kHcStreams * D;
#pragma unroll
    for (int k = 0; k < kHcStreams; ++k) {
      float v = __fmul_rn(post[k], fv);
#pragma unroll
      for (int j = 0; j < kHcStreams; ++j) v = __fadd_rn(v, __fmul_rn(comb[j * kHcStreams + k], xt[j * D + d]));
      ot[k * D + d] = v;
      if constexpr (M > 0) accumulate<M>(acc, ss, type, w, row_bytes, k * D + d, v);
    }
  }
  if constexpr (M > 0) store_partials<M>(acc, ss, partial);
}

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
  if (a.D % 4 != 0) return make_error("hc: hidden width must be a multiple of 4");
  if (a.T <= 0) return Status();
  const size_t smem = static_cast<size_t>(a.D) * sizeof(float);
  if (smem > 48 * 1024) {
    DSV4_CUDA_TRY(cudaFuncSetAttribute(hc_finish_kernel<M, kHead>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                       static_cast<int>(smem)));
  }
  DSV4_CUDA_TRY(launch_pdl(hc_finish_kernel<M, kHead>, dim3(a.T), dim3(kFinishThreads), smem, stream, a.x, a.partial,
                           splits(a.D), a.D, a.scale, a.base, a.norm, a.rms_eps, a.hc_eps, a.sinkhorn_iters, a.mix,
                           a.out));
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

int hc_column_blocks(int64_t D) { return splits(D); }
int64_t hc_partial_doubles(int64_t T, int64_t D) { return T * splits(D) * (kHcMix + 1); }

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
  DSV4_CUDA_TRY(launch_pdl(embed_kernel, dim3(T), dim3(kFinishThreads), 0, stream, e.type, e.data, e.row_bytes, e.ne0,
                           tokens, x));
  return cuda_status(cudaGetLastError(), "embedding kernel");
}

}  // namespace dsv4::cuda
