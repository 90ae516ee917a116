// The work schedule shared by the row-tile matvec kernels (matvec_q8.cu, matvec_2bit.cu): a block of
// W warps computes one tile of 32 rows at a time, lane = row. Unit u (a tile of one slot, or a tile
// over all slots when summed) goes to block u mod gridDim.x; warp w of a block takes the row items
// w, w+W, ... of its units (for every slot in turn when summed).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#ifdef __CUDACC__
#include "cuda/device_math.cuh"  // group_barrier
#endif

namespace dsv4::cuda::detail {

inline constexpr int kRowTileRows = 32;

// A block may also hold several groups of W warps (matvec_2bit.cu), each walking the units of a
// virtual block `vblock` of `vgrid`; the Q8_0 kernel's block is one group (blockIdx.x of gridDim.x).
// Per-slot units are numbered tile-major (u = tile·n_slots + slot) when `slot_fastest`: with a
// grid of groups that is a multiple of n_slots, each group then sees one slot only.
template <bool kSum>
struct RowTileSchedule {
  int n_tiles, n_slots, W, warp;
  int vblock, vgrid;
  bool slot_fastest;
  int my_items;  // row items of this warp per slot
  int per_unit;  // items of this warp per unit
  int my_units;  // units of this block (group)

#ifdef __CUDACC__
  __device__ RowTileSchedule(int n_items, int n_slots, int n_units, int n_tiles_, int W_, int warp_)
      : RowTileSchedule(n_items, n_slots, n_units, n_tiles_, W_, warp_, blockIdx.x, gridDim.x) {}
#endif
  __host__ __device__ RowTileSchedule(int n_items, int n_slots_, int n_units, int n_tiles_, int W_, int warp_,
                                      int vblock_, int vgrid_, bool slot_fastest_ = false)
      : n_tiles(n_tiles_), n_slots(n_slots_), W(W_), warp(warp_), vblock(vblock_), vgrid(vgrid_),
        slot_fastest(!kSum && slot_fastest_) {
    my_items = warp < n_items ? (n_items - warp + W - 1) / W : 0;
    per_unit = my_items * (kSum ? n_slots : 1);
    my_units = vblock < n_units ? (n_units - vblock + vgrid - 1) / vgrid : 0;
  }
  // Slot and tile of the k-th unit of this block; slot and row item of item i of a unit.
  __host__ __device__ int unit_slot(int k) const {
    const int u = vblock + k * vgrid;
    return kSum ? 0 : slot_fastest ? u % n_slots : u / n_tiles;
  }
  __host__ __device__ int unit_tile(int k) const {
    const int u = vblock + k * vgrid;
    return slot_fastest ? u / n_slots : u % n_tiles;
  }
  __host__ __device__ int item_slot(int k, int i) const { return kSum ? i / my_items : unit_slot(k); }
  __host__ __device__ int item_index(int i) const { return warp + (kSum ? i % my_items : i) * W; }
  // Whether item i closes a slot's partial sum (every item per slot; a slot's last when summed).
  __host__ __device__ bool closes_slot(int i) const { return !kSum || i % my_items == my_items - 1; }
  // Output index of `row` for unit k.
  __host__ __device__ int64_t out_index(int k, int row, int n_out) const {
    return kSum ? row : static_cast<int64_t>(unit_slot(k)) * n_out + row;
  }
};

#ifdef __CUDACC__
// Stores the lane's row result of unit k: the W warps' partials added in warp order. `red` holds
// [2][W][32] floats, double-buffered by unit parity: a warp writes buffer k & 1 only after the
// barrier of unit k − 1, by which time warp 0 has read what it held for unit k − 2.
// `barrier` synchronises the W warps (the block's __syncthreads when the block is one group).
template <class Barrier>
__device__ __forceinline__ void store_row_tile(float acc, float* red, int k, int W, int warp, int lane, int row,
                                               int n_out, int64_t out, float* y, Barrier barrier) {
  if (W == 1) {
    if (row < n_out) y[out] = acc;
    return;
  }
  float* rb = red + (k & 1) * W * kRowTileRows;
  rb[warp * kRowTileRows + lane] = acc;
  barrier();
  if (warp == 0 && row < n_out) {
    float s = rb[lane];
    for (int q = 1; q < W; ++q) s += rb[q * kRowTileRows + lane];
    y[out] = s;
  }
}
__device__ __forceinline__ void store_row_tile(float acc, float* red, int k, int W, int warp, int lane, int row,
                                               int n_out, int64_t out, float* y) {
  store_row_tile(acc, red, k, W, warp, lane, row, n_out, out, y, [] { __syncthreads(); });
}
#endif  // __CUDACC__

// Warps per row (1..max_warps, a power of two, at most `items`): a function of the shape only, so
// the result bits never depend on the device. From the H200 sweep (docs/PERF.md): two warps per row
// for the longest matrices, up to eight from 8192 rows down.
inline int row_tile_warps_per_row(int64_t items, int64_t n_out, int max_warps) {
  const int64_t want = n_out > 0 && n_out < 32768 ? 65536 / n_out : 2;
  int w = 1;
  while (w * 2 <= max_warps && w * 2 <= items && w * 2 <= want) w *= 2;
  return w;
}

}  // namespace dsv4::cuda::detail
