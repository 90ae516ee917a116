// attention.h.
//
// Work split: block (split s, head group g, token t) takes rows [32s, 32s+32) of the token's row
// list and the HG ≤ 8 heads of group g, whose queries sit in shared memory. Scores: a warp per two
// rows, every lane holding hd/32 dims of each, one warp reduction per row and head. Softmax
// statistics per head (max, sum of exps) stay local to the split; P·V: each thread owns output dims
// for the HG heads, four rows at a time. The combine kernel merges the splits with the sink:
// o = Σ_s e^{m_s-M} o_s / (e^{sink-M} + Σ_s e^{m_s-M} l_s).
//
// Roofline (decode, one token): each KV row (2 KB f32) is read once per head group, 8 groups for
// 64 heads: a CSA layer's 640 rows cost 10 MB of L2 traffic and 42 MFLOP, ~3-5 µs; at decode the
// kernels are memory-latency bound, so each thread issues its loads in unrolled batches, the
// combine reads its partials into registers in one round trip, and the splits are short (20 for a
// CSA layer). The FlashMLA shape (all 64 heads in one tile, tensor cores) is the next step
// (PERFORMANCE.md §6 item 6).
#include <cuda_runtime.h>

#include <cstdint>

#include "cuda/attention.h"
#include "cuda/attention_rows.cuh"
#include "cuda/pdl.cuh"
#include "cuda/check.h"
#include "cuda/device_math.cuh"
#include "cuda/once_per_device.h"

namespace dsv4::cuda {

namespace {

using namespace detail;

// The partial kernel's blocks: 16 warps, so that each warp scores two of the split's 32 rows and
// each thread sums one output dim of a 512-wide head (ncu, H200: with 8 warps the kernel issued
// once per 2.9 cycles per scheduler at 2.5 active warps, latency-bound on each warp's serial rows).
constexpr int kPartialThreads = 512;
// The combine's blocks: one output dim per thread for 512-wide heads, for the same reason.
constexpr int kCombineThreads = 512;
constexpr int kRows = kAttnRowsPerSplit;

// Before griddepcontrol.wait (pdl.cuh) the block reads only the position (no kernel of a step
// writes it: advance_position, the step's last launch, is not overlapped by any PDL launch) and
// computes its rows' addresses; it asks L2 for the rows it can name (all but the indexer's
// selection), its head group taking every (H/HG)-th 128-byte line of the split's rows. A prefetch
// moves no data into the SM, and L2 is where global memory is coherent, so a row that a
// predecessor is still writing (the token's own, a fresh compressed row) is read after the wait
// at its new value all the same. A split past the token's last row writes nothing: the combine
// reads only the splits that hold rows (attn_live_splits). (Staging the split's rows in shared
// memory by cp.async before the two loops was measured no faster: docs/PERF.md, session 10.)
template <int HG>
__global__ void __launch_bounds__(kPartialThreads) partial_kernel(AttentionArgs a) {
  extern __shared__ __align__(16) float smem[];
  float* qs = smem;                 // [HG][hd]
  float* sc = qs + HG * a.hd;       // [HG][kRows]
  __shared__ __align__(16) const float* rows[kRows];
  __shared__ float stats[HG][2];
  const int s = blockIdx.x, g = blockIdx.y, t = blockIdx.z;
  const AttnRowSet rs = attn_row_set(a, t);
  const int64_t total = rs.n_raw + rs.n_comp;
  const int64_t r0 = static_cast<int64_t>(s) * kRows;
  const int64_t left = total - r0;
  const int nr = left <= 0 ? 0 : static_cast<int>(left < kRows ? left : kRows);
  const int64_t part = (static_cast<int64_t>(t) * a.H + g * HG) * a.splits + s;  // head g·HG
  // Rows named without the selection: the raw window, and every compressed row when unindexed.
  const int64_t raw_left = rs.n_raw - r0;
  const int named = !rs.indexed || raw_left >= nr ? nr : raw_left > 0 ? static_cast<int>(raw_left) : 0;
  for (int i = threadIdx.x; i < named; i += blockDim.x) rows[i] = attn_row_ptr(a, rs, t, r0 + i);
  const int lines_per_row = a.hd * static_cast<int>(sizeof(float)) / 128;
  for (int l = g + static_cast<int>(gridDim.y) * threadIdx.x; l < named * lines_per_row;
       l += static_cast<int>(gridDim.y) * blockDim.x) {
    const float* row = attn_row_ptr(a, rs, t, r0 + l / lines_per_row);
    prefetch_l2(reinterpret_cast<const char*>(row) + (l % lines_per_row) * 128);
  }
  pdl_wait();
  pdl_trigger();
  if (nr == 0) return;
  const float4* q4 = reinterpret_cast<const float4*>(a.q + (static_cast<int64_t>(t) * a.H + g * HG) * a.hd);
  float4* qs4 = reinterpret_cast<float4*>(qs);
#pragma unroll 4
  for (int i = threadIdx.x; i < HG * a.hd / 4; i += blockDim.x) qs4[i] = q4[i];
  for (int i = named + threadIdx.x; i < nr; i += blockDim.x) rows[i] = attn_row_ptr(a, rs, t, r0 + i);
  __syncthreads();
  const float scale = static_cast<float>(1.0 / sqrt(static_cast<double>(a.hd)));
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
  // A warp scores rows i and i + warps at once: each query load from shared memory serves both
  // (one row at a time, a block's query loads were ≈ 4 000 wavefronts; session 19).
  for (int i = warp; i < nr; i += 2 * warps) {
    const bool two = i + warps < nr;
    const float* k0 = rows[i];
    const float* k1 = two ? rows[i + warps] : k0;
    float acc0[HG], acc1[HG];
#pragma unroll
    for (int h = 0; h < HG; ++h) acc0[h] = acc1[h] = 0.0f;
#pragma unroll 8
    for (int m = lane; m < a.hd; m += 32) {
      const float kv0 = k0[m], kv1 = k1[m];
#pragma unroll
      for (int h = 0; h < HG; ++h) {
        const float qv = qs[h * a.hd + m];
        acc0[h] = fmaf(qv, kv0, acc0[h]);
        acc1[h] = fmaf(qv, kv1, acc1[h]);
      }
    }
#pragma unroll
    for (int h = 0; h < HG; ++h) {
      const float v0 = warp_sum(acc0[h]), v1 = warp_sum(acc1[h]);
      if (lane == 0) {
        sc[h * kRows + i] = __fmul_rn(v0, scale);
        if (two) sc[h * kRows + i + warps] = __fmul_rn(v1, scale);
      }
    }
  }
  __syncthreads();
  if (warp < HG) {
    float* sh = sc + warp * kRows;
    float m = -INFINITY;
    for (int i = lane; i < nr; i += 32) m = fmaxf(m, sh[i]);
    m = warp_max(m);
    float l = 0.0f;
    for (int i = lane; i < nr; i += 32) {
      const float e = expf(sh[i] - m);
      sh[i] = e;
      l += e;
    }
    l = warp_sum(l);
    if (lane == 0) {
      stats[warp][0] = m;
      stats[warp][1] = l;
    }
  }
  __syncthreads();
  // P·V four rows at a time: their weights as one 16-byte broadcast load per head (and their
  // addresses as two), each head's chain still over the rows in order.
  for (int d = threadIdx.x; d < a.hd; d += blockDim.x) {
    float acc[HG];
#pragma unroll
    for (int h = 0; h < HG; ++h) acc[h] = 0.0f;
    int i = 0;
#pragma unroll 2
    for (; i + 4 <= nr; i += 4) {
      const float kv[4] = {rows[i][d], rows[i + 1][d], rows[i + 2][d], rows[i + 3][d]};
#pragma unroll
      for (int h = 0; h < HG; ++h) {
        const float4 p = *reinterpret_cast<const float4*>(sc + h * kRows + i);
        acc[h] = fmaf(p.w, kv[3], fmaf(p.z, kv[2], fmaf(p.y, kv[1], fmaf(p.x, kv[0], acc[h]))));
      }
    }
    for (; i < nr; ++i) {
      const float kv = rows[i][d];
#pragma unroll
      for (int h = 0; h < HG; ++h) acc[h] = fmaf(sc[h * kRows + i], kv, acc[h]);
    }
#pragma unroll
    for (int h = 0; h < HG; ++h) a.part_o[(part + static_cast<int64_t>(h) * a.splits) * a.hd + d] = acc[h];
  }
  if (threadIdx.x < HG) {
    float* ml = a.part_ml + (part + static_cast<int64_t>(threadIdx.x) * a.splits) * 2;
    ml[0] = stats[threadIdx.x][0];
    ml[1] = stats[threadIdx.x][1];
  }
}

// The splits holding rows of token t (the state sizes `splits` for the longest context).
__device__ __forceinline__ int attn_live_splits(const AttentionArgs& a, int t) {
  return static_cast<int>((attn_row_set(a, t).total() + kRows - 1) / kRows);
}

// Statistics of the live splits at once (one load round trip), their weights e^{m_s - M} kept in
// shared memory, then each output dim sums the splits' partial outputs in split order. The
// partials go to registers, kCombineSplits splits at a time, the first ones issued before the
// statistics and each next set before the current one is summed: one round trip for a decode's
// splits, and no staging buffer, so that the combine's blocks leave room beside them for out_a's
// (a Q8_0 row tile takes 215 KB of the SM's shared memory; with 64 KB of staged partials here, out_a
// could not start on the SMs the combine held until it ended: docs/PERF.md, session 22). The sink
// (a weight) and the RoPE angles (ω a weight, the position stable through a step: partial_kernel)
// are taken before griddepcontrol.wait.
constexpr int kCombineSplits = 16;
__host__ __device__ inline int64_t combine_angles_at(int hd, int splits) { return (hd + splits + 1) / 2 * 2; }

// Splits [s0, s0 + kCombineSplits) ∩ [0, live) of dim d (zeros past live).
__device__ __forceinline__ void load_split_dims(float (&v)[kCombineSplits], const float* part, int64_t hd, int d,
                                                int s0, int live) {
#pragma unroll
  for (int s = 0; s < kCombineSplits; ++s) v[s] = s0 + s < live ? part[(s0 + s) * hd + d] : 0.0f;
}

__global__ void __launch_bounds__(kCombineThreads) combine_kernel(AttentionArgs a) {
  extern __shared__ __align__(16) float smem[];
  float* o = smem;      // [hd]
  float* w = o + a.hd;  // [splits]
  float2* cs = reinterpret_cast<float2*>(smem + combine_angles_at(a.hd, a.splits));  // [n_rot/2]
  __shared__ float scratch[32];
  const int h = blockIdx.x, t = blockIdx.y;
  const int64_t base = (static_cast<int64_t>(t) * a.H + h) * a.splits;
  const float sink = a.sinks[h];
  const int64_t pos = static_cast<int64_t>(*a.pos0) + a.t0 + t;
  const int live = attn_live_splits(a, t);
  rope_angles_shared(cs, a.n_rot / 2, a.omega, pos);
  pdl_wait();
  pdl_trigger();
  const float* part = a.part_o + base * a.hd;
  const int d0 = threadIdx.x;  // the thread's first dim (a flash head's 512: its only one)
  float cur[kCombineSplits];
  if (d0 < a.hd) load_split_dims(cur, part, a.hd, d0, 0, live);
  float m_local = -INFINITY;
  for (int s = threadIdx.x; s < live; s += blockDim.x) {
    const float2 ml = reinterpret_cast<const float2*>(a.part_ml)[base + s];
    if (ml.y > 0.0f) m_local = fmaxf(m_local, ml.x);
  }
  const float M = fmaxf(sink, block_max(m_local, scratch));
  float den_local = 0.0f;
  for (int s = threadIdx.x; s < live; s += blockDim.x) {
    const float2 ml = reinterpret_cast<const float2*>(a.part_ml)[base + s];
    const float e = ml.y > 0.0f ? expf(ml.x - M) : 0.0f;
    w[s] = e;
    den_local += ml.y * e;
  }
  const float den = expf(sink - M) + block_sum(den_local, scratch);  // its barrier publishes w
  for (int d = d0; d < a.hd; d += blockDim.x) {
    if (d != d0) load_split_dims(cur, part, a.hd, d, 0, live);
    float acc = 0.0f;
    for (int s0 = 0; s0 < live; s0 += kCombineSplits) {
      const bool more = s0 + kCombineSplits < live;
      float next[kCombineSplits];
      if (more) load_split_dims(next, part, a.hd, d, s0 + kCombineSplits, live);
#pragma unroll
      for (int s = 0; s < kCombineSplits; ++s) {
        if (s0 + s < live) acc = fmaf(cur[s], w[s0 + s], acc);
      }
      if (more) {
#pragma unroll
        for (int s = 0; s < kCombineSplits; ++s) cur[s] = next[s];
      }
    }
    o[d] = acc / den;
  }
  rope_apply_shared(o, a.hd, a.n_rot / 2, cs, true);
  float* out = a.out + (static_cast<int64_t>(t) * a.H + h) * a.hd;
  for (int d = threadIdx.x; d < a.hd; d += blockDim.x) out[d] = o[d];
  if (a.store_ring && h == 0) {
    float* dst = a.store_ring + (pos % a.window) * a.hd;
    for (int d = threadIdx.x; d < a.hd; d += blockDim.x) dst[d] = a.kv_chunk[d];
  }
}

__global__ void store_kernel(const float* kv_chunk, float* ring, const int* pos0, int T, int window, int hd) {
  pdl_wait();  // launched with PDL: nothing before this line (pdl.cuh)
  pdl_trigger();
  const int n = T < window ? T : window;
  const int t = T - n + blockIdx.x;
  const int64_t p = static_cast<int64_t>(*pos0) + t;
  float* dst = ring + (p % window) * hd;
  const float* src = kv_chunk + static_cast<int64_t>(t) * hd;
  for (int i = threadIdx.x; i < hd; i += blockDim.x) dst[i] = src[i];
}

template <int HG>
Status launch(const AttentionArgs& a, cudaStream_t stream) {
  // Both kernels' shared memory is sized at run time (hd; the combine's also by the split count and
  // n_rot), so each may take all the device allows a block, set once per device (the combine's once
  // per device and HG: the lambda is one per instantiation).
  int device = 0;
  DSV4_CUDA_TRY(cudaGetDevice(&device));
  DSV4_CUDA_TRY(once_per_device(device, [device] {
    cudaError_t e = allow_optin_smem(device, reinterpret_cast<const void*>(partial_kernel<HG>));
    if (e == cudaSuccess) e = allow_optin_smem(device, reinterpret_cast<const void*>(combine_kernel));
    return e;
  }));
  const size_t smem = static_cast<size_t>(HG) * (a.hd + kRows) * sizeof(float);
  DSV4_CUDA_TRY(launch_pdl(partial_kernel<HG>, dim3(a.splits, a.H / HG, a.T), dim3(kPartialThreads), smem, stream, a));
  const size_t combine_smem =
      static_cast<size_t>(combine_angles_at(a.hd, a.splits)) * sizeof(float) + (a.n_rot / 2) * sizeof(float2);
  DSV4_CUDA_TRY(launch_pdl(combine_kernel, dim3(a.H, a.T), dim3(kCombineThreads), combine_smem, stream, a));
  return cuda_status(cudaGetLastError(), "attention kernels");
}

}  // namespace

int attention_splits(int64_t max_rows) { return static_cast<int>((max_rows + kRows - 1) / kRows); }

Status attention(const AttentionArgs& a, cudaStream_t stream) {
  if (a.T <= 0) return Status();
  if (a.splits <= 0 || a.splits > 65535) return make_error("attention: bad split count");
  if (a.store_ring && (a.T != 1 || a.t0 != 0)) return make_error("attention: the ring store is for one-token chunks");
  // The kernels read queries and partial outputs 16 bytes at a time.
  const auto aligned = [](const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; };
  if (a.hd % 4 != 0 || !aligned(a.q) || !aligned(a.part_o)) {
    return make_error("attention: queries and partials must be 16-byte aligned and hd a multiple of 4");
  }
  if (a.H % 8 == 0) return launch<8>(a, stream);
  if (a.H % 4 == 0) return launch<4>(a, stream);
  if (a.H % 2 == 0) return launch<2>(a, stream);
  return launch<1>(a, stream);
}

Status store_raw_rows(const float* kv_chunk, float* ring, const int* pos0, int T, int window, int hd,
                      cudaStream_t stream) {
  if (T <= 0) return Status();
  DSV4_CUDA_TRY(launch_pdl(store_kernel, dim3(T < window ? T : window), dim3(128), 0, stream, kv_chunk, ring, pos0, T,
                           window, hd));
  return cuda_status(cudaGetLastError(), "raw row store kernel");
}

}  // namespace dsv4::cuda
