// The per-lane work of the F16 row-tile matvec (matvec_f16.cu) as __host__ __device__ code, so that
// tests/cuda/cpu/matvec_f16_emulation_test.cc runs the same copy map and dot on the CPU.
//
// Why a row tile. The f32 kernel (matvec_fast.cu) spreads a row's 256-element stages over the 32
// lanes and its warps over few stages each: on the indexer's q_b (1024 -> 8192, 16.8 MB) every warp
// took 4 KB of weights and issued ≈ 19 instructions a weight, of which the dot's conversion and FMA
// are 2 (ncu, docs/PERF.md session 30). As in the Q8_0 and 2-bit row-tile kernels:
//   tile  = 32 consecutive rows, one per lane, the partial sum in registers;
//   item  = 64 elements (128 bytes) of each of the tile's rows, copied with 16-byte cp.async (copy j
//           of lane l moves chunk c = l + 32j: row c / 8, chunk c % 8, so each row's 128 bytes are
//           one coalesced run) into rows of kF16RowStride bytes (128 + 16: lane r's 16-byte loads
//           fall on distinct banks in each quarter warp);
//   x     = the launch's activations, staged once per block in shared memory as f32 and read by
//           every lane at once (broadcast 16-byte loads).
// A lane's item is four chains of 16 FMAs (element k in chain k mod 4) added as (c0 + c1) + (c2 +
// c3), then added to the lane's running sum in item order.
#pragma once

#include <cstdint>
#include <cstring>

#include "cuda/quant_decode.cuh"

namespace dsv4::cuda::detail {

constexpr int kF16TileRows = 32;
constexpr int kF16ItemElems = 64;
constexpr int kF16ItemRowBytes = kF16ItemElems * 2;
constexpr int kF16RowStride = kF16ItemRowBytes + 16;
constexpr int kF16ItemBytes = kF16TileRows * kF16RowStride;
constexpr int kF16Copies = kF16TileRows * kF16ItemRowBytes / 16 / 32;  // per lane and item

// Copy j of `lane`: row `row` of the tile, 16-byte chunk `chunk` of its item.
DSV4_HD void f16_copy(int lane, int j, int& row, int& chunk) {
  const int c = lane + 32 * j;
  row = c >> 3;
  chunk = c & 7;
}

// Σ w[k]·x[k] over one item: w the row's 64 halves as 8 uint4 (halves 8j..8j+7 in w[j]), x the
// item's 64 activations as 16 float4.
template <class WRow, class XRow>
DSV4_HD float f16_item_dot(const WRow& w, const XRow& x) {
  float c[4] = {0.0f, 0.0f, 0.0f, 0.0f};
  DSV4_UNROLL
  for (int j = 0; j < 8; ++j) {
    const uint4 v = w[j];
    const float4 xa = x[2 * j], xb = x[2 * j + 1];
    const float2 a = f16x2_to_f32(v.x), b = f16x2_to_f32(v.y), d = f16x2_to_f32(v.z), e = f16x2_to_f32(v.w);
    c[0] = fmaf(a.x, xa.x, c[0]);
    c[1] = fmaf(a.y, xa.y, c[1]);
    c[2] = fmaf(b.x, xa.z, c[2]);
    c[3] = fmaf(b.y, xa.w, c[3]);
    c[0] = fmaf(d.x, xb.x, c[0]);
    c[1] = fmaf(d.y, xb.y, c[1]);
    c[2] = fmaf(e.x, xb.z, c[2]);
    c[3] = fmaf(e.y, xb.w, c[3]);
  }
  return (c[0] + c[1]) + (c[2] + c[3]);
}

}  // namespace dsv4::cuda::detail
