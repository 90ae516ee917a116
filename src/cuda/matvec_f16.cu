// F16 row-tile matvec (rows_per_warp 32 in MatvecTuning for F16): the default for one-slot F16
// launches of many rows (matvec.cc; in the model the indexer's q_b, 1024 -> 8192), and for one
// token pair of them (a multi-token step's: both tokens' activations staged, each item's halves
// read and converted once for the two tokens' sums, each the operations of its one-token launch).
// Layout and per-lane work: matvec_f16.cuh.
//
// Shape of the work (the Q8_0 row-tile kernel's, matvec_q8.cu):
//   block = kF16Warps warps in groups of W (W = warps_per_row, 1–8) computing one tile of 32 rows
//           at a time; warp k of a group takes the items k, k+W, ... of the tile's rows. Unit u (a
//           tile) goes to group u mod (groups in the grid); the grid is what fits the GPU at once,
//           so a group walks its units in turn and each warp's items form one stream through its
//           ring of kF16Ring buffers across units (kF16Ring − 1 items in flight while one is read).
//   lane  = one row: its item sums added in item order; at a unit's end the group's W partials are
//           added in warp order (row_tile.cuh store_row_tile).
// Every output is one fixed sequence of f32 operations: deterministic, no atomics, the same bits
// for any grid.
#include <cuda_runtime.h>

#include <cstdint>

#include "cuda/cp_async.cuh"
#include "cuda/matvec_f16.cuh"
#include "cuda/matvec_launch.h"
#include "cuda/once_per_device.h"
#include "cuda/pdl.cuh"
#include "cuda/row_tile.cuh"

namespace dsv4::cuda::detail {

namespace {

constexpr int kF16Warps = 8;
constexpr int kF16Ring = 4;
static_assert(kF16TileRows == kRowTileRows, "the row-tile schedule (row_tile.cuh) takes tiles of 32 rows");

struct F16Params {
  const uint8_t* w;  // 16-aligned; n_out rows of row_bytes (a multiple of 128)
  int64_t row_bytes;
  int64_t slab_bytes;
  const int32_t* expert;  // the (first) slot's expert (slab), or null: slab 0
  const float* scale;     // the slots' factors, or null: 1
  const float* x;         // 16-aligned, n_in floats a token, x_stride apart
  int64_t x_stride;
  float* y;               // n_out a token
  int n_in;
  int n_out;
  int n_items;  // per row
  int n_tiles;
  int W;
};

// Shared memory of a block: the activations, the warps' rings, the groups' reduction buffers.
constexpr int64_t f16_smem_bytes(int64_t n_in, int tokens) {
  return tokens * n_in * 4 + int64_t{kF16Warps} * kF16Ring * kF16ItemBytes + 2 * kF16Warps * kF16TileRows * 4;
}

template <int kTokens>
__global__ void __launch_bounds__(kF16Warps * 32, 1) matvec_f16_kernel(__grid_constant__ const F16Params p) {
  extern __shared__ __align__(16) uint8_t smem[];
  float* xs = reinterpret_cast<float*>(smem);
  uint8_t* rings = smem + static_cast<int64_t>(kTokens) * p.n_in * 4;
  float* red_all = reinterpret_cast<float*>(rings + kF16Warps * kF16Ring * kF16ItemBytes);
  const int W = p.W;
  const int block_warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int group = block_warp / W, warp = block_warp - group * W, groups = kF16Warps / W;
  uint8_t* ring = rings + block_warp * (kF16Ring * kF16ItemBytes);
  float* red = red_all + group * 2 * W * kF16TileRows;  // [2][W][32]: store_row_tile's parity buffers
  const RowTileSchedule<false> sched(p.n_items, 1, p.n_tiles, p.n_tiles, W, warp, blockIdx.x * groups + group,
                                     gridDim.x * groups);

  // PDL: a dense launch fetches its first weights while the kernel before it finishes (nothing
  // writes weights); the expert id, x and y only after it (pdl.cuh).
  const uint8_t* w = p.w;
  if (p.expert) {
    pdl_wait();
    w += __ldg(p.expert) * p.slab_bytes;
  }
  // The issue cursor runs kF16Ring − 1 items ahead of the decode, across units.
  int issue_k = 0, issue_i = 0;
  auto issue_next = [&](uint8_t* dst) {
    if (issue_k < sched.my_units && sched.per_unit > 0) {
      const int row0 = sched.unit_tile(issue_k) * kF16TileRows;
      const uint8_t* base = w + static_cast<int64_t>(sched.item_index(issue_i)) * kF16ItemRowBytes;
#pragma unroll
      for (int j = 0; j < kF16Copies; ++j) {
        int row = 0, chunk = 0;
        f16_copy(lane, j, row, chunk);
        const int src_row = row0 + row < p.n_out ? row0 + row : p.n_out - 1;  // past the matrix: its last row
        cp_async16(dst + row * kF16RowStride + chunk * 16, base + src_row * p.row_bytes + chunk * 16);
      }
      if (++issue_i == sched.per_unit) {
        issue_i = 0;
        ++issue_k;
      }
    }
  };
#pragma unroll
  for (int b = 0; b < kF16Ring - 1; ++b) {
    issue_next(ring + b * kF16ItemBytes);
    cp_async_commit();
  }
  if (!p.expert) pdl_wait();
  pdl_trigger();
#pragma unroll
  for (int t = 0; t < kTokens; ++t) {
    const float4* x = reinterpret_cast<const float4*>(p.x + t * p.x_stride);
    float4* xt = reinterpret_cast<float4*>(xs + t * p.n_in);
    for (int i = threadIdx.x; i < p.n_in / 4; i += blockDim.x) xt[i] = __ldg(x + i);
  }
  __syncthreads();

  int buf = 0;
  for (int k = 0; k < sched.my_units; ++k) {
    float acc[kTokens];
#pragma unroll
    for (int t = 0; t < kTokens; ++t) acc[t] = 0.0f;
    for (int i = 0; i < sched.per_unit; ++i) {
      issue_next(ring + (buf == 0 ? kF16Ring - 1 : buf - 1) * kF16ItemBytes);
      cp_async_commit();
      cp_async_wait<kF16Ring - 1>();  // this lane's copies of the item have landed
      __syncwarp();                   // ... and every other lane's
      const uint4* row = reinterpret_cast<const uint4*>(ring + buf * kF16ItemBytes + lane * kF16RowStride);
      // Two tokens: the dots read the same shared words, loaded and converted once (no store between).
#pragma unroll
      for (int t = 0; t < kTokens; ++t) {
        const float4* x = reinterpret_cast<const float4*>(xs + t * p.n_in) + sched.item_index(i) * (kF16ItemElems / 4);
        acc[t] += f16_item_dot(row, x);
      }
      __syncwarp();  // the buffer is refilled by a later issue
      buf = buf + 1 == kF16Ring ? 0 : buf + 1;
    }
    const int row = sched.unit_tile(k) * kF16TileRows + lane;
    // Token t's sums go through store_row_tile as unit kTokens·k + t, so its parity buffers alternate
    // between the tokens as between units.
#pragma unroll
    for (int t = 0; t < kTokens; ++t) {
      if (p.scale) acc[t] *= __ldg(p.scale + t);
      store_row_tile(acc[t], red, kTokens * k + t, W, warp, lane, row, p.n_out, static_cast<int64_t>(t) * p.n_out + row,
                     p.y, [group, W] { group_barrier(group, W); });
    }
  }
  cp_async_wait<0>();
}

cudaError_t allow_smem(int device) {
  return once_per_device(device, [device] {
    int max_smem = 0;
    cudaError_t e = cudaDeviceGetAttribute(&max_smem, cudaDevAttrMaxSharedMemoryPerBlockOptin, device);
    if (e == cudaSuccess) {
      e = cudaFuncSetAttribute(matvec_f16_kernel<1>, cudaFuncAttributeMaxDynamicSharedMemorySize, max_smem);
    }
    if (e == cudaSuccess) {
      e = cudaFuncSetAttribute(matvec_f16_kernel<2>, cudaFuncAttributeMaxDynamicSharedMemorySize, max_smem);
    }
    return e;
  });
}

}  // namespace

// The row-tile rule (row_tile.cuh). On the indexer's q_b (8 warps a row) 4 warps were faster alone
// (cuda_bench: 5.58 against 6.05 µs) but not in the decode step, where 8 gained 0.02 ms a step and 4
// nothing (H200, docs/PERF.md session 30).
int64_t f16_row_items(int64_t n_in) { return n_in / kF16ItemElems; }

int f16_warps_per_row(int64_t n_in, int64_t n_out) {
  return row_tile_warps_per_row(f16_row_items(n_in), n_out, kF16Warps);
}

int f16_groups_per_block(int warps_per_row) { return kF16Warps / warps_per_row; }

bool f16_row_tile_fits(int64_t n_in, int tokens) {
  return n_in > 0 && n_in % kF16ItemElems == 0 && (tokens == 1 || tokens == 2) &&
         f16_smem_bytes(n_in, tokens) <= max_smem_per_block();
}

cudaError_t prepare_matvec_f16() {
  int device = 0;
  const cudaError_t e = cudaGetDevice(&device);
  return e == cudaSuccess ? allow_smem(device) : e;
}

cudaError_t launch_matvec_f16(const MatvecLaunch& l, cudaStream_t stream) {
  const int W = l.warps_per_row;
  // One slot, or one pair of slots of the same slab (the first's expert is read).
  const int tokens = l.n_slots;
  if (l.type != gguf::TensorType::F16 || l.sum || !(tokens == 1 || (tokens == 2 && l.pair_stride == 1)) || l.up ||
      l.swiglu_rows || l.norm_w || (W != 1 && W != 2 && W != 4 && W != 8) || l.blocks < 1 ||
      !f16_row_tile_fits(l.n_in, tokens) || l.x_stride % 4 != 0 ||
      W > f16_row_items(l.n_in) || l.row_bytes != int64_t{l.n_in} * 2 || reinterpret_cast<uintptr_t>(l.w) % 16 != 0 ||
      reinterpret_cast<uintptr_t>(l.x) % 16 != 0) {
    return cudaErrorInvalidValue;
  }
  const cudaError_t e = prepare_matvec_f16();
  if (e != cudaSuccess) return e;
  F16Params p;
  p.w = l.w;
  p.row_bytes = l.row_bytes;
  p.slab_bytes = l.slab_bytes;
  p.expert = l.experts;
  p.scale = l.scale;
  p.x = l.x;
  p.x_stride = l.x_stride;
  p.y = l.y;
  p.n_in = l.n_in;
  p.n_out = l.n_out;
  p.n_items = l.n_in / kF16ItemElems;
  p.n_tiles = (l.n_out + kF16TileRows - 1) / kF16TileRows;
  p.W = W;
  const size_t smem = static_cast<size_t>(f16_smem_bytes(l.n_in, tokens));
  return launch_pdl(tokens == 2 ? matvec_f16_kernel<2> : matvec_f16_kernel<1>, dim3(l.blocks), dim3(kF16Warps * 32),
                    smem, stream, p);
}

}  // namespace dsv4::cuda::detail
