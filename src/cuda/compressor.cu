// compressor.h. The emit launch, then one thread per frontier column. The per-channel pooling
// visits the candidates in the CPU's slot order (previous-window slots, then current-window slots).
// Windows of ratio 4 (8 candidates with the overlap): one block per emitted window, a thread per
// channel (at decode one block that usually has nothing to do). Longer windows without overlap
// (ratio 128: the candidates are 128 frontier slots, written over the last 128 steps and long gone
// from L2): a thread per channel took 64 dependent round trips to DRAM, ≈ 230 µs a layer and
// ≈ 4.9 ms a 128-token window end of the decode step (docs/PERF.md, session 38). There each
// channel's candidates are split over kSplitLanes threads that load all of them at once, the
// softmax sums still run through the candidates in order (lane to lane), and the window's
// channels are split over blocks; the last block of a window (a counter per window) finishes the
// row. Both forms compute the same operations in the same order: the same bits.
#include <cuda_runtime.h>

#include "cuda/check.h"
#include "cuda/compressor.h"
#include "cuda/pdl.cuh"
#include "cuda/device_math.cuh"

namespace dsv4::cuda {

namespace {

using namespace detail;

constexpr int kThreads = 256;

struct Candidate {
  float a, g;
};

// Token q's value in column col: from the chunk's projections when q >= pos0, else from
// frontier slot `slot`.
__device__ __forceinline__ Candidate candidate(const CompressorArgs& p, int64_t pos0, int64_t q, int col, int slot) {
  const int cd = p.ratio == 4 ? 2 * p.d : p.d;
  if (q >= pos0) {
    const int64_t t = q - pos0;
    const float a = p.kv[t * p.proj_stride + col];
    const float z = p.gate[t * p.proj_stride + col];
    return {a, __fadd_rn(z, p.ape[(q % p.ratio) * cd + col])};
  }
  return {p.front_kv[static_cast<int64_t>(slot) * cd + col], p.front_gate[static_cast<int64_t>(slot) * cd + col]};
}

// Row w of the window: the pooled channels (shared memory, d values) normalised, RoPE'd at the
// window's first position, simulated and stored. Every thread of the block calls it.
__device__ void finish_row(const CompressorArgs& p, int64_t w, float* pooled) {
  __shared__ double scratch[32];
  __syncthreads();
  double ss = 0.0;
  for (int i = threadIdx.x; i < p.d; i += blockDim.x) {
    ss += static_cast<double>(pooled[i]) * static_cast<double>(pooled[i]);
  }
  ss = block_sum(ss, scratch);
  const float rs = static_cast<float>(1.0 / sqrt(ss / static_cast<double>(p.d) + static_cast<double>(p.eps)));
  for (int i = threadIdx.x; i < p.d; i += blockDim.x) pooled[i] = __fmul_rn(__fmul_rn(pooled[i], rs), p.norm[i]);
  rope_shared(pooled, p.d, p.n_rot / 2, p.omega, w * p.ratio, false);
  if (p.indexer) {
    if (p.sim) hadamard_fp4_shared(pooled, p.d, true);
  } else if (p.sim) {
    fp8_sim_shared(pooled, p.d - p.n_rot);
  }
  float* row = p.rows + w * p.d;
  for (int i = threadIdx.x; i < p.d; i += blockDim.x) row[i] = pooled[i];
}

// One block per window (blockIdx.x), a thread per channel.
__global__ void __launch_bounds__(kThreads) emit_kernel(CompressorArgs p) {
  pdl_wait();  // launched with PDL: nothing before this line (pdl.cuh)
  pdl_trigger();
  extern __shared__ float pooled[];  // [d]
  const int64_t pos0 = *p.pos0;
  const int r = p.ratio;
  const int64_t w_lo = pos0 / r, w_hi = (pos0 + p.T) / r - 1;
  const int64_t w = w_lo + blockIdx.x;
  if (w > w_hi) return;
  const bool overlap = r == 4;
  // Per channel: the candidates' values, fetched in batches (the loads are the latency), then
  // the softmax pooling in the CPU's slot order.
  for (int j = threadIdx.x; j < p.d; j += blockDim.x) {
    float m = -INFINITY, sum = 0.0f, acc = 0.0f;
    if (overlap) {
      // Previous window (when there is one): first halves; slot k once it was shifted, else 4+k.
      const bool has_prev = w > 0;
      const int prev_slot0 = w * 4 <= pos0 ? 0 : 4;
      Candidate c[8];
#pragma unroll
      for (int k = 0; k < 4; ++k) {
        c[k] = has_prev ? candidate(p, pos0, (w - 1) * 4 + k, j, prev_slot0 + k) : Candidate{0.0f, -INFINITY};
        c[4 + k] = candidate(p, pos0, w * 4 + k, p.d + j, 4 + k);
      }
#pragma unroll
      for (int k = 0; k < 8; ++k) m = fmaxf(m, c[k].g);
#pragma unroll
      for (int k = 0; k < 8; ++k) {
        if (k < 4 && !has_prev) continue;  // gate -inf: weight exactly 0, as on the CPU
        const float e = exp_f32(__fsub_rn(c[k].g, m));
        sum = __fadd_rn(sum, e);
        acc = __fadd_rn(acc, __fmul_rn(e, c[k].a));
      }
    } else {
#pragma unroll 8
      for (int k = 0; k < r; ++k) m = fmaxf(m, candidate(p, pos0, w * r + k, j, k).g);
#pragma unroll 8
      for (int k = 0; k < r; ++k) {
        const Candidate c = candidate(p, pos0, w * r + k, j, k);
        const float e = exp_f32(__fsub_rn(c.g, m));
        sum = __fadd_rn(sum, e);
        acc = __fadd_rn(acc, __fmul_rn(e, c.a));
      }
    }
    pooled[j] = __fdiv_rn(acc, sum);
  }
  finish_row(p, w, pooled);
}

constexpr int kSplitLanes = 8;                          // threads pooling one channel
constexpr int kSplitPer = 16;                           // the most candidates a thread holds at a time
constexpr int kSplitChannels = kThreads / kSplitLanes;  // channels a block

// Windows without overlap: block (x, y) pools channels 32x .. 32x + 31 of the launch's window y;
// the window's last block to finish (p.counters[y]) finishes its row from p.pooled.
__global__ void __launch_bounds__(kThreads) emit_split_kernel(CompressorArgs p) {
  pdl_wait();  // launched with PDL: nothing before this line (pdl.cuh)
  pdl_trigger();
  extern __shared__ float pooled[];  // [d]
  __shared__ bool last_block;
  const int64_t pos0 = *p.pos0;
  const int r = p.ratio;
  const int64_t w_lo = pos0 / r, w_hi = (pos0 + p.T) / r - 1;
  const int64_t w = w_lo + blockIdx.y;
  if (w > w_hi) return;  // the same for every block of the window: its counter stays untouched
  const int lane = threadIdx.x % kSplitLanes;  // of the channel's lanes: consecutive lanes of a warp
  const int j = blockIdx.x * kSplitChannels + threadIdx.x / kSplitLanes;
  const bool live = j < p.d;
  // Candidates base + per·lane + t, t < per: each lane holds a run, so that the sums below pass
  // through the lanes in candidate order; a round is the per·kSplitLanes loaded at once.
  const int per = min(kSplitPer, (r + kSplitLanes - 1) / kSplitLanes), round = per * kSplitLanes;
  float a[kSplitPer], g[kSplitPer];
  auto load = [&](int base) {
#pragma unroll
    for (int t = 0; t < kSplitPer; ++t) {
      const int k = base + per * lane + t;
      const bool here = live && t < per && k < r;
      const Candidate c = here ? candidate(p, pos0, w * r + k, j, k) : Candidate{0.0f, -INFINITY};
      a[t] = c.a;
      g[t] = c.g;
    }
  };
  float m = -INFINITY;
  for (int base = 0; base < r; base += round) {
    load(base);
#pragma unroll
    for (int t = 0; t < kSplitPer; ++t) m = fmaxf(m, g[t]);
  }
  // The largest gate over the lanes (the maximum does not depend on the order).
#pragma unroll
  for (int o = 1; o < kSplitLanes; o <<= 1) m = fmaxf(m, __shfl_xor_sync(0xFFFFFFFFu, m, o, kSplitLanes));
  float sum = 0.0f, acc = 0.0f;
  for (int base = 0; base < r; base += round) {
    if (r > round) load(base);  // one round: the values are still in registers
    float e[kSplitPer], ea[kSplitPer];
#pragma unroll
    for (int t = 0; t < kSplitPer; ++t) {
      e[t] = exp_f32(__fsub_rn(g[t], m));
      ea[t] = __fmul_rn(e[t], a[t]);
    }
    // Lane q adds its run to the sums so far, then hands them to lane q + 1.
    for (int q = 0; q < kSplitLanes; ++q) {
      if (lane == q) {
#pragma unroll
        for (int t = 0; t < kSplitPer; ++t) {
          if (t < per && base + per * q + t < r) {
            sum = __fadd_rn(sum, e[t]);
            acc = __fadd_rn(acc, ea[t]);
          }
        }
      }
      sum = __shfl_sync(0xFFFFFFFFu, sum, q, kSplitLanes);
      acc = __shfl_sync(0xFFFFFFFFu, acc, q, kSplitLanes);
    }
  }
  float* window_pooled = p.pooled + blockIdx.y * static_cast<int64_t>(p.d);
  if (live && lane == 0) window_pooled[j] = __fdiv_rn(acc, sum);
  __threadfence();
  __syncthreads();
  if (threadIdx.x == 0) {
    last_block = atomicAdd(p.counters + blockIdx.y, 1u) == gridDim.x - 1;
    if (last_block) p.counters[blockIdx.y] = 0;  // for the next launch
    __threadfence();
  }
  __syncthreads();
  if (!last_block) return;
  for (int i = threadIdx.x; i < p.d; i += blockDim.x) pooled[i] = __ldcg(window_pooled + i);
  finish_row(p, w, pooled);
}

// The last token of [pos0, pos0+T) with q ≡ k (mod r), or -1.
__device__ __forceinline__ int64_t last_with_residue(int64_t pos0, int T, int r, int k) {
  const int64_t last = pos0 + T - 1;
  const int64_t q = last - ((last - k) % r + r) % r;
  return q >= pos0 ? q : -1;
}

// Before griddepcontrol.wait: the position (no kernel of a step writes it; advance_position, the
// step's last launch, is not overlapped by a PDL launch) and, with overlap, the current-window
// slots, which only this kernel writes (the emit kernel before it reads them).
__global__ void frontier_kernel(CompressorArgs p) {
  const int r = p.ratio;
  const bool overlap = r == 4;
  const int cd = overlap ? 2 * p.d : p.d;
  const int col = blockIdx.x * blockDim.x + threadIdx.x;
  const int64_t pos0 = *p.pos0;
  float* kv = p.front_kv;
  float* gate = p.front_gate;
  float old_a[4], old_g[4];
  if (overlap && col < cd) {
    for (int k = 0; k < 4; ++k) {
      old_a[k] = kv[(4 + k) * cd + col];
      old_g[k] = gate[(4 + k) * cd + col];
    }
  }
  pdl_wait();
  pdl_trigger();
  if (col >= cd) return;
  auto chunk_value = [&](int64_t q, float* a, float* g) {
    const int64_t t = q - pos0;
    *a = p.kv[t * p.proj_stride + col];
    *g = __fadd_rn(p.gate[t * p.proj_stride + col], p.ape[(q % r) * cd + col]);
  };
  if (!overlap) {
    // The chunk's last min(T, r) tokens have distinct slots and are each slot's last write.
    for (int t = p.T > r ? p.T - r : 0; t < p.T; ++t) {
      const int64_t q = pos0 + t;
      const int k = static_cast<int>(q % r);
      chunk_value(q, &kv[k * cd + col], &gate[k * cd + col]);
    }
    return;
  }
  const int64_t w_lo = pos0 / 4, w_hi = (pos0 + p.T) / 4 - 1;
  if (w_hi >= w_lo) {  // the last completed window became the previous half
    for (int k = 0; k < 4; ++k) {
      const int64_t q = w_hi * 4 + k;
      if (q >= pos0) {
        chunk_value(q, &kv[k * cd + col], &gate[k * cd + col]);
      } else {
        kv[k * cd + col] = old_a[k];
        gate[k * cd + col] = old_g[k];
      }
    }
  }
  for (int k = 0; k < 4; ++k) {
    const int64_t q = last_with_residue(pos0, p.T, 4, k);
    if (q >= 0) chunk_value(q, &kv[(4 + k) * cd + col], &gate[(4 + k) * cd + col]);
  }
}

}  // namespace

Status compressor_chunk(const CompressorArgs& a, cudaStream_t stream) {
  if (a.T <= 0) return Status();
  if (a.ratio < 2 || a.d <= 0 || a.d > 2048) return make_error("compressor: bad ratio or width");
  if (a.indexer && (a.d & (a.d - 1)) != 0) return make_error("compressor: indexer width must be a power of two");
  const int windows = a.T / a.ratio + 1;
  const size_t smem = a.d * sizeof(float);
  if (a.ratio != 4 && a.pooled != nullptr && a.counters != nullptr) {
    const int blocks = (a.d + kSplitChannels - 1) / kSplitChannels;
    DSV4_CUDA_TRY(launch_pdl(emit_split_kernel, dim3(blocks, windows), dim3(kThreads), smem, stream, a));
  } else {
    DSV4_CUDA_TRY(launch_pdl(emit_kernel, dim3(windows), dim3(kThreads), smem, stream, a));
  }
  const int cd = a.ratio == 4 ? 2 * a.d : a.d;
  DSV4_CUDA_TRY(launch_pdl(frontier_kernel, dim3((cd + kThreads - 1) / kThreads), dim3(kThreads), 0, stream, a));
  return cuda_status(cudaGetLastError(), "compressor kernels");
}

}  // namespace dsv4::cuda
