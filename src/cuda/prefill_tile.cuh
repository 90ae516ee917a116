// The f32 register tile of the prefill indexer kernel: a block of 128 threads computes
// C[64][64] += A·B over a k-slab held in shared memory k-major (As[k][64], Bs[k][64], pitch
// kTilePitch), each thread an 8×4 sub-tile (thread (ty, tx) = (tid/16, tid%16) owns C rows 8ty..
// and columns 4tx..). Per k step a warp loads two float4s of A (two addresses
// each, broadcast) and one of B (16 contiguous float4s): 4 shared-memory wavefronts for 32 FMAs
// per warp, so the loop is bound by the FMA rate, not by shared memory (a 4×4 sub-tile needs 3 for
// 16 and ran at ≈ 30 % of the f32 peak). Plain fmaf in k order: exact f32 arithmetic.
#pragma once

#include <cuda_runtime.h>

namespace dsv4::cuda::detail {

inline constexpr int kTileThreads = 128;
inline constexpr int kTileM = 8, kTileN = 4;  // one thread's sub-tile
inline constexpr int kTile = 64;            // C is kTile × kTile
inline constexpr int kTilePitch = kTile + 4;  // keeps float4 alignment, spreads transposed stores

struct TileAcc {
  float v[kTileM][kTileN];
};

__device__ __forceinline__ void tile_zero(TileAcc& c) {
#pragma unroll
  for (int i = 0; i < kTileM; ++i) {
#pragma unroll
    for (int j = 0; j < kTileN; ++j) c.v[i][j] = 0.0f;
  }
}

// c += As[0..k)ᵀ-slab · Bs[0..k) for this thread's sub-tile.
__device__ __forceinline__ void tile_fma(const float* As, const float* Bs, int k, TileAcc& c) {
  const int ty = threadIdx.x >> 4, tx = threadIdx.x & 15;
#pragma unroll 8
  for (int kk = 0; kk < k; ++kk) {
    const float4 a0 = *reinterpret_cast<const float4*>(As + kk * kTilePitch + kTileM * ty);
    const float4 a1 = *reinterpret_cast<const float4*>(As + kk * kTilePitch + kTileM * ty + 4);
    const float4 b = *reinterpret_cast<const float4*>(Bs + kk * kTilePitch + kTileN * tx);
    const float av[kTileM] = {a0.x, a0.y, a0.z, a0.w, a1.x, a1.y, a1.z, a1.w}, bv[kTileN] = {b.x, b.y, b.z, b.w};
#pragma unroll
    for (int i = 0; i < kTileM; ++i) {
#pragma unroll
      for (int j = 0; j < kTileN; ++j) c.v[i][j] = fmaf(av[i], bv[j], c.v[i][j]);
    }
  }
}

// dst[k][m] = row m's values [d0, d0 + kd) for m < 64 (rows from row(m), nullptr for a zero row):
// a transposed load of a k-slab, float4 reads along each row. kd is a multiple of 4, ≤ kTile.
template <class RowFn>
__device__ __forceinline__ void load_slab_transposed(float* dst, int d0, int kd, RowFn row) {
  const int quads = kd / 4;
  for (int f = threadIdx.x; f < kTile * quads; f += blockDim.x) {
    const int m = f / quads, q = f % quads;
    const float* src = row(m);
    const float4 v = src ? *reinterpret_cast<const float4*>(src + d0 + 4 * q) : make_float4(0.f, 0.f, 0.f, 0.f);
    dst[(4 * q + 0) * kTilePitch + m] = v.x;
    dst[(4 * q + 1) * kTilePitch + m] = v.y;
    dst[(4 * q + 2) * kTilePitch + m] = v.z;
    dst[(4 * q + 3) * kTilePitch + m] = v.w;
  }
}

}  // namespace dsv4::cuda::detail
