// norms.h. Rows of at most a few thousand values: a block per row for a few rows, a warp per row
// for the long chunks of prefill (latency-bound, tiny).
#include <cuda_runtime.h>

#include <algorithm>

#include "cuda/check.h"
#include "cuda/device_math.cuh"
#include "cuda/norms.h"
#include "cuda/pdl.cuh"
#include "cuda/split_query.cuh"

namespace dsv4::cuda {

namespace {

using namespace detail;

constexpr int kThreads = 256;

// v[0, n) (shared) ← RMSNorm_w(v): Σv² in double, r rounded once, (v·r)·w.
__device__ void rms_norm_shared(float* v, int64_t n, const float* w, float eps, double* scratch) {
  double ss = 0.0;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) ss += static_cast<double>(v[i]) * static_cast<double>(v[i]);
  ss = block_sum(ss, scratch);
  const float r = static_cast<float>(1.0 / sqrt(ss / static_cast<double>(n) + static_cast<double>(eps)));
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) v[i] = w ? __fmul_rn(__fmul_rn(v[i], r), w[i]) : __fmul_rn(v[i], r);
  __syncthreads();
}

__global__ void rms_norm_rows_kernel(const float* __restrict__ in, int64_t in_stride, const float* __restrict__ w,
                                     int64_t n, float eps, float* __restrict__ out, int64_t out_stride) {
  pdl_wait();  // launched with PDL: nothing before this line (pdl.cuh)
  pdl_trigger();
  extern __shared__ float v[];
  __shared__ double scratch[32];
  const int t = blockIdx.x;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) v[i] = in[t * in_stride + i];
  __syncthreads();
  rms_norm_shared(v, n, w, eps, scratch);
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) out[t * out_stride + i] = v[i];
}

// A row of n = 32·per_lane values held by a warp, lane l holding elements l + 32i, loaded from src
// and turned into RMSNorm_w(row) in v: Σv² in double over the lane's elements in order, then the
// butterfly; the scale rounded once and (v·r)·w as cpu::rms_norm. The warp kernels' common step.
template <int kMaxPerLane>
__device__ __forceinline__ void warp_rms_norm_row(const float* src, int per_lane, const float* w, float eps,
                                                  float (&v)[kMaxPerLane]) {
  const int lane = threadIdx.x & 31;
  double ss = 0.0;
#pragma unroll
  for (int i = 0; i < kMaxPerLane; ++i) {
    if (i < per_lane) {
      v[i] = src[lane + 32 * i];
      ss += static_cast<double>(v[i]) * static_cast<double>(v[i]);
    }
  }
  ss = warp_sum(ss);
  const float r = static_cast<float>(1.0 / sqrt(ss / static_cast<double>(32 * per_lane) + static_cast<double>(eps)));
#pragma unroll
  for (int i = 0; i < kMaxPerLane; ++i) {
    if (i < per_lane) v[i] = w ? __fmul_rn(__fmul_rn(v[i], r), w[lane + 32 * i]) : __fmul_rn(v[i], r);
  }
}

// rms_norm_rows for many rows (prefill chunks): a warp per row (n a multiple of 32, at most
// 32·kNormWarpsPerLane). The block kernel above spends a 1 024-thread block and its barriers on
// each 1 024-value row: a few memory round trips each, 8 192 of them in a chunk (≈ 100 µs a layer).
constexpr int kNormWarpsPerLane = 32;  // rows of up to 1 024 values take the warp kernel
constexpr int kNormWarpsFromRows = 64;
__global__ void __launch_bounds__(256) rms_norm_rows_warps_kernel(const float* __restrict__ in, int64_t in_stride,
                                                                  const float* __restrict__ w, int n, float eps,
                                                                  float* __restrict__ out, int64_t out_stride, int T) {
  pdl_wait();  // launched with PDL: nothing before this line (pdl.cuh)
  pdl_trigger();
  const int lane = threadIdx.x & 31, t = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5), per_lane = n / 32;
  if (t >= T) return;
  float v[kNormWarpsPerLane];
  warp_rms_norm_row(in + t * in_stride, per_lane, w, eps, v);
#pragma unroll
  for (int i = 0; i < kNormWarpsPerLane; ++i) {
    if (i < per_lane) out[t * out_stride + lane + 32 * i] = v[i];
  }
}

// Dynamic shared memory of q_kv_finish: the row, then the RoPE angles (float2-aligned).
__host__ __device__ inline int64_t q_kv_finish_angles_at(int hd) { return (hd + 1) / 2 * 2; }

// q_kv_finish for a few tokens (decode, where the kernel is on the step's chain): a 128-thread
// block per row, blocks 0..H-1 the query heads, block H the KV row, each step spread over the
// block's four warps. The angles are taken before griddepcontrol.wait: ω is a weight and no
// kernel of a step writes the position (only the step's last launch, advance_position, which no
// PDL launch overlaps).
__global__ void q_kv_finish_blocks_kernel(QkvFinishArgs a) {
  extern __shared__ __align__(16) float v[];  // [hd], then float2 angles [n_rot/2]
  __shared__ double scratch[32];
  float2* cs = reinterpret_cast<float2*>(v + q_kv_finish_angles_at(a.hd));
  const int t = blockIdx.y, h = blockIdx.x;
  const int64_t pos = static_cast<int64_t>(*a.pos0) + t;
  rope_angles_shared(cs, a.n_rot / 2, a.omega, pos);
  pdl_wait();
  pdl_trigger();
  const bool kv = h == a.H;
  float* dst = kv ? a.kv_out + static_cast<int64_t>(t) * a.hd
                  : a.q + (static_cast<int64_t>(t) * a.H + h) * a.hd;
  const float* src = kv ? a.kv_in + static_cast<int64_t>(t) * a.kv_stride : dst;
  for (int i = threadIdx.x; i < a.hd; i += blockDim.x) v[i] = src[i];
  __syncthreads();
  rms_norm_shared(v, a.hd, kv ? a.kv_norm : nullptr, a.eps, scratch);
  rope_apply_shared(v, a.hd, a.n_rot / 2, cs, false);
  if (kv && a.fp8) fp8_sim_shared(v, a.hd - a.n_rot);
  for (int i = threadIdx.x; i < a.hd; i += blockDim.x) dst[i] = v[i];
}

// q_kv_finish for many tokens (prefill): one warp per row, rows H·t + h (query heads) and the KV
// row as row H of token t, eight rows per block (the block kernel's barriers bound it there: 0.61
// against 0.42 ms per 4 096-token layer on an H100; at one token this one is the slower, 15
// against 8 µs, each row's steps serial in one warp). Lane l holds elements l + 32i of the row
// (i < hd / 32), so every step is a warp's: Σv² in double (the lane's elements in order, then the
// butterfly), the RoPE pairs (elements 2p, 2p + 1 of the tail: lanes l, l + 1) by a shuffle, and
// FP8_SIM's 64-element blocks (elements i = 2b, 2b + 1 of every lane, as fp8_sim_shared takes
// them). Lane j computes pair j's angle before griddepcontrol.wait, as above.
constexpr int kFinishRowsPerBlock = 8;
constexpr int kFinishMaxPerLane = 32;      // hd ≤ 1024
// The kernel's per-lane array is sized by an instantiation: heads of ≤ 512 dims (flash's) take the
// half-size one, whose 47 registers let 5 blocks share an SM instead of 3: the kernel waits on
// memory, one row per warp, so rows in flight are what sets its pace (docs/PERF.md, session 17).
constexpr int kFinishShortPerLane = 16;
constexpr int kFinishWarpsFromTokens = 64;  // launches of fewer tokens take the block kernel

template <int kMaxPerLane>
__global__ void __launch_bounds__(32 * kFinishRowsPerBlock, kMaxPerLane <= kFinishShortPerLane ? 5 : 1)
    q_kv_finish_warps_kernel(QkvFinishArgs a) {
  const int lane = threadIdx.x & 31, row = blockIdx.x * kFinishRowsPerBlock + (threadIdx.x >> 5);
  const int t = blockIdx.y, n_pairs = a.n_rot / 2, per_lane = a.hd / 32, tail = a.hd - a.n_rot;
  float c = 1.0f, sn = 0.0f;
  if (lane < n_pairs) rope_cos_sin(a.omega[lane], static_cast<int64_t>(*a.pos0) + t, &c, &sn);
  pdl_wait();
  pdl_trigger();
  if (row > a.H) return;
  const bool kv = row == a.H;
  float* dst = kv ? a.kv_out + static_cast<int64_t>(t) * a.hd : a.q + (static_cast<int64_t>(t) * a.H + row) * a.hd;
  const float* src = kv ? a.kv_in + static_cast<int64_t>(t) * a.kv_stride : dst;
  float v[kMaxPerLane];
  warp_rms_norm_row(src, per_lane, kv ? a.kv_norm : nullptr, a.eps, v);
#pragma unroll
  for (int i = 0; i < kMaxPerLane; ++i) {
    if (i < per_lane && 32 * (i + 1) > tail) {
      // Pair p = (e − tail) / 2 of element e (if e is in the tail): x0 on the even lane, x1 on the odd.
      const int e = lane + 32 * i, p = (e - tail) >> 1;
      const float partner = __shfl_xor_sync(0xFFFFFFFFu, v[i], 1);
      const float pc = __shfl_sync(0xFFFFFFFFu, c, p & 31), ps = __shfl_sync(0xFFFFFFFFu, sn, p & 31);
      if (e >= tail) {
        const bool even = (lane & 1) == 0;
        const float2 y = rope_rotated(even ? v[i] : partner, even ? partner : v[i], pc, ps, false);
        v[i] = even ? y.x : y.y;
      }
    }
  }
  if (kv && a.fp8) {
#pragma unroll
    for (int i = 0; i + 1 < kMaxPerLane; i += 2) {
      if (32 * (i + 2) <= tail) {
        const float amax = warp_max(fmaxf(fabsf(v[i]), fabsf(v[i + 1])));
        v[i] = fp8_sim_value(v[i], amax);
        v[i + 1] = fp8_sim_value(v[i + 1], amax);
      }
    }
  }
  if (!kv && a.q_exp != nullptr) {
    store_split_query(v, per_lane, reinterpret_cast<__half*>(dst), a.hd, a.q_exp + static_cast<int64_t>(t) * a.H + row);
    return;
  }
#pragma unroll
  for (int i = 0; i < kMaxPerLane; ++i) {
    if (i < per_lane) dst[lane + 32 * i] = v[i];
  }
}

__global__ void simulate_kernel(float* rows, int width, bool fp8) {
  pdl_wait();  // launched with PDL: nothing before this line (pdl.cuh)
  pdl_trigger();
  extern __shared__ float v[];
  float* row = rows + static_cast<int64_t>(blockIdx.x) * width;
  for (int i = threadIdx.x; i < width; i += blockDim.x) v[i] = row[i];
  if (fp8) {
    fp8_sim_shared(v, width);
  } else {
    hadamard_fp4_shared(v, width, true);
  }
  for (int i = threadIdx.x; i < width; i += blockDim.x) row[i] = v[i];
}

}  // namespace

Status simulate_rows(float* rows, int n_rows, int width, SimKind kind, cudaStream_t stream) {
  if (n_rows <= 0) return Status();
  const bool fp8 = kind == SimKind::kFp8;
  if (width <= 0 || width > 4096 || (fp8 ? width % 64 != 0 : (width & (width - 1)) != 0 || width < 32)) {
    return make_error("simulate_rows: width " + std::to_string(width) + " unsupported");
  }
  DSV4_CUDA_TRY(launch_pdl(simulate_kernel, dim3(n_rows), dim3(128), width * sizeof(float), stream, rows, width, fp8));
  return cuda_status(cudaGetLastError(), "simulation kernel");
}

Status rms_norm_rows(const float* in, int64_t in_stride, const float* w, int64_t n, float eps, float* out,
                     int64_t out_stride, int T, cudaStream_t stream) {
  if (T <= 0) return Status();
  if (n * 4 > 48 * 1024) return make_error("rms_norm_rows: row of " + std::to_string(n) + " values too long");
  if (T >= kNormWarpsFromRows && n % 32 == 0 && n <= 32 * kNormWarpsPerLane) {
    constexpr int kWarps = 8;
    DSV4_CUDA_TRY(launch_pdl(rms_norm_rows_warps_kernel, dim3((T + kWarps - 1) / kWarps),
                             dim3(32 * kWarps), 0, stream, in, in_stride, w, static_cast<int>(n), eps, out, out_stride,
                             T));
    return cuda_status(cudaGetLastError(), "rms_norm_rows kernel");
  }
  // One element per thread where the row allows: the kernel is a few memory round trips.
  const int threads = static_cast<int>(std::min<int64_t>(1024, std::max<int64_t>(kThreads, (n + 31) / 32 * 32)));
  DSV4_CUDA_TRY(launch_pdl(rms_norm_rows_kernel, dim3(T), dim3(threads), n * sizeof(float), stream, in, in_stride, w, n,
                           eps, out, out_stride));
  return cuda_status(cudaGetLastError(), "rms_norm_rows kernel");
}

Status q_kv_finish(const QkvFinishArgs& a, cudaStream_t stream) {
  if (a.T <= 0) return Status();
  if (a.hd <= 0 || a.hd % 32 != 0 || a.hd > 32 * kFinishMaxPerLane || a.n_rot < 0 || a.n_rot % 2 != 0 ||
      a.n_rot > 64 || a.n_rot > a.hd || (a.fp8 && (a.hd - a.n_rot) % 64 != 0)) {
    return make_error("q_kv_finish: head of " + std::to_string(a.hd) + " dims with " + std::to_string(a.n_rot) +
                      " rotated unsupported (a multiple of 32 up to 1024, at most 64 rotated, the FP8 part a "
                      "multiple of 64)");
  }
  if (a.T < kFinishWarpsFromTokens && a.q_exp == nullptr) {
    const size_t smem = q_kv_finish_angles_at(a.hd) * sizeof(float) + (a.n_rot / 2) * sizeof(float2);
    DSV4_CUDA_TRY(launch_pdl(q_kv_finish_blocks_kernel, dim3(a.H + 1, a.T), dim3(128), smem, stream, a));
  } else {
    const unsigned row_blocks = static_cast<unsigned>((a.H + 1 + kFinishRowsPerBlock - 1) / kFinishRowsPerBlock);
    const auto kernel = a.hd <= 32 * kFinishShortPerLane ? q_kv_finish_warps_kernel<kFinishShortPerLane>
                                                         : q_kv_finish_warps_kernel<kFinishMaxPerLane>;
    DSV4_CUDA_TRY(launch_pdl(kernel, dim3(row_blocks, a.T), dim3(32 * kFinishRowsPerBlock), 0, stream, a));
  }
  return cuda_status(cudaGetLastError(), "q_kv_finish kernel");
}

}  // namespace dsv4::cuda
