// prefill_indexer.h.
//
// Roofline at an 8K prompt (last 2048-token chunk, up to 2048 eligible rows per token, 64 heads ×
// 128 dims): 2 × 64 × 128 × ~1800 × 2048 ≈ 60 GFLOP of f32 FMA per CSA layer, ~1.3 ms at the
// H200's f32 peak; the decode-shaped kernel (one warp per row, q from shared memory at 2 loads
// per FMA) ran these at about a quarter of that.
#include <cuda_runtime.h>

#include "cuda/check.h"
#include "cuda/device_math.cuh"
#include "cuda/pdl.cuh"
#include "cuda/prefill_indexer.h"
#include "cuda/prefill_tile.cuh"

namespace dsv4::cuda {

namespace {

using namespace detail;

constexpr int kSlab = 32;  // index head dims per slab

__device__ __forceinline__ int64_t visible_rows(const IndexerArgs& a, int t) {
  return (static_cast<int64_t>(*a.pos0) + a.t0 + t + 1) / 4;
}

// q[t][h] = FP4_SIM(Hadamard(RoPE(q[t][h], p))) in place (official mode), for tokens that rank.
__global__ void prep_kernel(IndexerArgs a) {
  pdl_wait();  // launched with PDL: nothing before this line (pdl.cuh)
  pdl_trigger();
  extern __shared__ float v[];  // [idh]
  const int h = blockIdx.x, t = blockIdx.y;
  if (visible_rows(a, t) <= a.top_k) return;
  const int64_t pos = static_cast<int64_t>(*a.pos0) + a.t0 + t;
  float* q = a.q + (static_cast<int64_t>(t) * a.IH + h) * a.idh;
  for (int i = threadIdx.x; i < a.idh; i += blockDim.x) v[i] = q[i];
  rope_shared(v, a.idh, a.n_rot / 2, a.omega, pos, false);
  if (a.sim) hadamard_fp4_shared(v, a.idh, true);
  for (int i = threadIdx.x; i < a.idh; i += blockDim.x) q[i] = v[i];
}

// Block (row tile, token t): scores of rows [64·blockIdx.x, +64) ∩ [0, n_vis).
__global__ void __launch_bounds__(kTileThreads) score_kernel(IndexerArgs a, int32_t* n_rows) {
  pdl_wait();  // launched with PDL: nothing before this line (pdl.cuh)
  pdl_trigger();
  __shared__ __align__(16) float qs[kSlab * kTilePitch];
  __shared__ __align__(16) float ks[kSlab * kTilePitch];
  __shared__ float ws[kTile];
  __shared__ float part[kTile / kTileM][kTile + 1];  // per group of kTileM heads: Σ over its heads
  const int t = blockIdx.y;
  const int64_t n_vis = visible_rows(a, t);
  const bool ranks = n_vis > a.top_k;
  if (blockIdx.x == 0 && threadIdx.x == 0) n_rows[t] = ranks ? static_cast<int32_t>(n_vis) : 0;
  const int64_t row0 = static_cast<int64_t>(blockIdx.x) * kTile;
  if (!ranks || row0 >= n_vis) return;
  const int nr = static_cast<int>(n_vis - row0 < kTile ? n_vis - row0 : kTile);
  const float w_scale = static_cast<float>(1.0 / sqrt(static_cast<double>(a.idh * a.IH)));
  for (int h = threadIdx.x; h < kTile; h += blockDim.x) {
    ws[h] = h < a.IH ? __fmul_rn(a.w[static_cast<int64_t>(t) * a.IH + h], w_scale) : 0.0f;
  }
  const float* q = a.q + static_cast<int64_t>(t) * a.IH * a.idh;
  const float* rows = a.rows + row0 * a.idh;
  const int IH = a.IH, idh = a.idh;
  TileAcc acc;
  tile_zero(acc);
  for (int d0 = 0; d0 < idh; d0 += kSlab) {
    load_slab_transposed(qs, d0, kSlab, [&](int h) { return h < IH ? q + static_cast<int64_t>(h) * idh : nullptr; });
    load_slab_transposed(ks, d0, kSlab, [&](int r) { return r < nr ? rows + static_cast<int64_t>(r) * idh : nullptr; });
    __syncthreads();
    tile_fma(qs, ks, kSlab, acc);
    __syncthreads();
  }
  // ReLU per head, then the (signed) head weight; heads in order within each group.
  const int ty = threadIdx.x >> 4, tx = threadIdx.x & 15;
#pragma unroll
  for (int j = 0; j < kTileN; ++j) {
    float s = __fmul_rn(ws[kTileM * ty], fmaxf(acc.v[0][j], 0.0f));
#pragma unroll
    for (int i = 1; i < kTileM; ++i) s = fmaf(ws[kTileM * ty + i], fmaxf(acc.v[i][j], 0.0f), s);
    part[ty][kTileN * tx + j] = s;
  }
  __syncthreads();
  if (threadIdx.x < nr) {
    float s = 0.0f;
#pragma unroll
    for (int g = 0; g < kTile / kTileM; ++g) s += part[g][threadIdx.x];
    a.scores[static_cast<int64_t>(t) * a.score_cap + row0 + threadIdx.x] = s;
  }
}

}  // namespace

bool prefill_indexer_supported(int IH, int idh) {
  return IH >= 1 && IH <= kTile && idh >= kSlab && idh % kSlab == 0 && idh <= 1024 && (idh & (idh - 1)) == 0;
}

Status prefill_indexer_select(const IndexerArgs& a, int32_t* n_rows, cudaStream_t stream) {
  if (a.T <= 0) return Status();
  if (!prefill_indexer_supported(a.IH, a.idh)) return make_error("prefill indexer: unsupported geometry");
  if (a.T > 65535) return make_error("prefill indexer: too many tokens for one launch");
  DSV4_CUDA_TRY(launch_pdl(prep_kernel, dim3(a.IH, a.T), dim3(128), a.idh * sizeof(float), stream, a));
  const unsigned tiles = static_cast<unsigned>((a.score_cap + kTile - 1) / kTile);
  if (tiles == 0) return make_error("prefill indexer: no score capacity");
  DSV4_CUDA_TRY(launch_pdl(score_kernel, dim3(tiles, a.T), dim3(kTileThreads), 0, stream, a, n_rows));
  DSV4_TRY(cuda_status(cudaGetLastError(), "prefill indexer kernels"));
  return top_k_rows(a.scores, a.score_cap, n_rows, a.T, a.top_k, a.selected, stream);
}

}  // namespace dsv4::cuda
