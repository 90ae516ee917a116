// The consumers of the wgmma GEMM's narrow tile (gemm_wgmma.cu, kShapeNarrow): 16 tokens × 256
// features for groups of few rows (docs/PERF.md, session 23: at a 128-token chunk an expert has
// ≈ 3 rows, and the 64-token tile's consumers spent half the launch's shared-memory traffic on its
// padding rows). Q8_0 weights only since session 24 (out_a's groups of few tokens): the routed
// experts' IQ2_XXS weights take gemm_wgmma_regs.cu, which decodes W into the A registers.
//
// W is the A operand (each consumer warpgroup two m64 fragments: features 128g + 64i ..), and the
// B operand is the 16 tokens' x_hi rows followed by their x_lo rows, one n32 tile: one m64n32k16
// forms W·x_hi in columns 0-15 and W·x_lo in columns 16-31, so every W slice is read by the tensor
// cores once per k16, where the other tiles read it once for x_hi and once for x_lo. A thread holds
// token t's hi column in accumulator pair j (t = 8j + 2·(lane % 4) + c % 2, j < 2) and its lo
// column in pair j + 2. Numbers: per 32-column half, tmp_hi and tmp_lo are chains of exact
// code × x products from zero over the half's two k16 slices, then acc = fma(scale, tmp_hi + tmp_lo,
// acc): one f32 rounding more per half than the other tiles' single chain, inside the split's
// bound; other bits than theirs.
#pragma once

#include <cuda_fp16.h>

#include <cstdint>

#include "cuda/gemm_kernel.cuh"
#include "cuda/gemm_launch.h"
#include "cuda/mbarrier.cuh"
#include "cuda/wgmma.cuh"

namespace dsv4::cuda::detail {

// The ring slots of gemm_wgmma.cu's kernel that its consumers read: X and W tiles (1024-aligned
// shared addresses), the scale tables, and the full and empty barriers.
struct WgmmaSlots {
  uint32_t xs, ws;
  const float* tab;
  uint32_t full_bar, empty_bar;
};

// Consumer thread ctid (0..255) of a narrow-tile CTA on rows [row0, tile_end) and features f0 ..
template <class G, int kStages>
__device__ __forceinline__ void narrow_consumer(const GemmLaunch& p, const WgmmaSlots& r, int ctid, int row0,
                                                int tile_end, int f0, int n_steps) {
  static_assert(G::kBT == 16 && G::kBF == 256 && G::kXTile == 16 * 128, "16 tokens × 256 features");
  const int lane = ctid & 31, q = lane & 3, warp4 = (ctid >> 5) & 3, wg_f = 128 * (ctid >> 7);

  // X copies: thread ctid moves chunk ctid % 8 of the hi (ctid < 128) or lo row (ctid % 128) / 8
  // (rows past the tile's end repeat its last row) into rows 0-15 or 16-31 of the slot's tile.
  const int chunk = ctid & 7, xr = (ctid & 127) >> 3, lo = ctid >> 7;
  const __half* const xsrc = (lo ? p.x_lo : p.x) + gemm_x_row(p, min(row0 + xr, tile_end - 1)) * p.x_stride + chunk * 8;
  const uint32_t x_dst = static_cast<uint32_t>(lo * G::kXTile + swz(xr, chunk));
  auto issue_x = [&](int u) {
    const int s = u % kStages;
    gemm_cp_async16(r.xs + s * G::kXBytes + x_dst, xsrc + static_cast<int64_t>(u) * kGemmK);
    mbar_arrive_on_cp_async(r.full_bar + 8 * s);
  };
  for (int u = 0; u < kStages && u < n_steps; ++u) issue_x(u);

  // The records of this thread's tokens 8·(k / 2) + 2q + k % 2, read before the main loop (a load
  // after a store to y would wait for it).
  float rec_scale[4];
  int rec_out[4];
#pragma unroll
  for (int k = 0; k < 4; ++k) {
    gemm_row_record(p, row0 + 8 * (k >> 1) + 2 * q + (k & 1), tile_end, &rec_scale[k], &rec_out[k]);
  }

  float acc[2][8], tmp0[2][16], tmp1[2][16];
#pragma unroll
  for (int i = 0; i < 2; ++i) {
#pragma unroll
    for (int e = 0; e < 8; ++e) acc[i][e] = 0.0f;
#pragma unroll
    for (int e = 0; e < 16; ++e) tmp0[i][e] = tmp1[i][e] = 0.0f;
  }
  // Half h of a k-step: both fragments' two k16 slices, one commit group. A k16 slice is 32 bytes
  // (2 descriptor units) further; fragment i's rows 64·i·128 bytes (512 units).
  auto chain = [&](float (&tmp)[2][16], uint64_t x_desc, uint64_t w_desc, int h) {
#pragma unroll
    for (int i = 0; i < 2; ++i) {
#pragma unroll
      for (int s = 0; s < 2; ++s) {
        const uint32_t k_units = static_cast<uint32_t>((2 * h + s) * 2);
        wgmma_m64n32k16_f16<false>(tmp[i], w_desc + i * 512 + k_units, x_desc + k_units, s > 0);
      }
    }
    wgmma_commit();
  };
  // Each accumulator acc[i][4j + c]: fragment i, hi pair j < 2, element c (feature row
  // 16·warp4 + lane / 4 + 8·(c / 2) of the fragment, token 8j + 2q + c % 2).
  auto each_acc = [](auto&& body) {
#pragma unroll
    for (int i = 0; i < 2; ++i) {
#pragma unroll
      for (int j = 0; j < 2; ++j) {
#pragma unroll
        for (int c = 0; c < 4; ++c) body(i, j, c);
      }
    }
  };
  // acc += scale·(tmp_hi + tmp_lo): two scales a fragment.
  auto scale_add = [&](const float (&tmp)[2][16], const float (&d)[2][2]) {
    each_acc([&](int i, int j, int c) {
      acc[i][4 * j + c] = fmaf(d[i][c >> 1], tmp[i][4 * j + c] + tmp[i][4 * (j + 2) + c], acc[i][4 * j + c]);
    });
  };

  for (int t = 0; t < n_steps; ++t) {
    const int s = t % kStages;
    const uint32_t phase = (t / kStages) & 1;
    mbar_wait(r.full_bar + 8 * s, phase);
    fence_proxy_async();  // X landed through cp.async (generic proxy), read by the tensor cores
    const uint64_t x_desc = wgmma_desc_sw128(r.xs + s * G::kXBytes);
    const uint64_t w_desc = wgmma_desc_sw128(r.ws + s * G::kWBytes + wg_f * 128);
    float d[2][2][2];  // [half][fragment][row + 0 / + 8]
#pragma unroll
    for (int h = 0; h < 2; ++h) {
#pragma unroll
      for (int i = 0; i < 2; ++i) {
        const float* sc = r.tab + s * 2 * G::kTabHalf + h * G::kTabHalf + wg_f + 64 * i + 16 * warp4 + (lane >> 2);
        d[h][i][0] = sc[0];
        d[h][i][1] = sc[8];
      }
    }
#pragma unroll
    for (int i = 0; i < 2; ++i) {
      wgmma_fence_operands(tmp0[i]);
      wgmma_fence_operands(tmp1[i]);
    }
    wgmma_fence();
    chain(tmp0, x_desc, w_desc, 0);
    chain(tmp1, x_desc, w_desc, 1);
    wgmma_wait<1>();
#pragma unroll
    for (int i = 0; i < 2; ++i) wgmma_fence_operands(tmp0[i]);
    scale_add(tmp0, d[0]);
    wgmma_wait<0>();
#pragma unroll
    for (int i = 0; i < 2; ++i) wgmma_fence_operands(tmp1[i]);
    scale_add(tmp1, d[1]);
    mbar_arrive(r.empty_bar + 8 * s);
    if (t + kStages < n_steps) {
      // Both consumers read all of X: the slot is free once both are done with it.
      mbar_wait(r.empty_bar + 8 * s, phase);
      issue_x(t + kStages);
    }
  }

  each_acc([&](int i, int j, int c) {
    const int f = f0 + wg_f + 64 * i + 16 * warp4 + (lane >> 2) + 8 * (c >> 1), k = 2 * j + (c & 1);
    if (row0 + 8 * j + 2 * q + (c & 1) < tile_end && f < p.n_out) {
      p.y[static_cast<int64_t>(rec_out[k]) * p.y_stride + f] = acc[i][4 * j + c] * rec_scale[k];
    }
  });
}

}  // namespace dsv4::cuda::detail
