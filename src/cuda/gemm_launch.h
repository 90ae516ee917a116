// Internal to cuda/: the validated launch description shared by the GEMM dispatcher (gemm.cc) and
// the kernels (gemm_kernel.cu). Plain C++ so the dispatcher needs no nvcc.
#pragma once

#include <cuda_fp16.h>
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstdint>

#include "gguf/types.h"

namespace dsv4::cuda::detail {

inline bool aligned(const void* p, uintptr_t a) { return reinterpret_cast<uintptr_t>(p) % a == 0; }

// The kernel tile a launch runs on: the mma.sync kernels' small or large one (f16 and split mode;
// the int8 kernel has one tile and ignores it), or gemm_wgmma.cu's 128 × 128 or 64 × 256 one
// (grouped only); in int8 mode kWgmma is gemm_wgmma_int8.cu's kernel.
enum class GemmKernelTile : uint8_t { kSmall, kLarge, kWgmma, kWgmma64, kWgmmaNarrow };
inline bool is_wgmma(GemmKernelTile t) {
  return t == GemmKernelTile::kWgmma || t == GemmKernelTile::kWgmma64 || t == GemmKernelTile::kWgmmaNarrow;
}

// Which of a group's row tiles a grouped launch runs (gemm_find_tile): all of them; all but a last
// tile of at most half a tile (the 128-token wgmma tile of GemmTile::kWgmmaTails); or only those
// last tiles, as one tile of half the rows (its 64-token partner launch); every tile of the groups
// of more than kFewRows rows (the 64-token tile of GemmTile::kWgmmaNarrowPair); or the groups of
// 1..kFewRows rows, one tile each (its 16-token partner).
enum class GemmTails : uint8_t { kAll, kSkipShort, kOnlyShort, kSkipFew, kOnlyFew };
inline constexpr int kFewRows = 16;  // the rows of the 16-token wgmma tile

struct GemmLaunch {
  gguf::TensorType type;
  const uint8_t* w;      // first byte of the weight tensor (16-aligned)
  const uint8_t* w_end;  // one past its last byte: no load reaches it
  int64_t row_bytes;
  int64_t slab_bytes;  // bytes from one expert's matrix to the next
  int n_in;
  int n_out;
  int n_expert;
  // Rows: the dense case has offsets == null and one group of n_rows rows using matrix 0.
  const int32_t* offsets;
  const int32_t* group_expert;
  int n_groups;
  int n_rows;
  const __half* x;
  const __half* x_lo;  // split mode: the low parts of x (same layout), else null
  int64_t x_stride;
  const float* x_scale;  // [x_count] factor of each X row's products, or null (1)
  const int32_t* x_rows;
  int x_count;
  float* y;
  int64_t y_stride;
  const int32_t* y_rows;  // [n_rows] output row of sorted row r, or null (r)
  int y_count;            // rows of y (for clamping y_rows)
  const void* iq2_tables;  // device copy of the IQ2_XXS grid and signs (Iq2Tables)
  // Int8 mode (gemm_int8.cu) when x_limbs is set: limb plane l at x_limbs + l·x_plane, rows
  // x_stride bytes apart, the rows' block records (gemm_int8_codes.cuh) at x_records; x, x_lo and
  // x_scale are unused.
  const int8_t* x_limbs;
  int64_t x_plane;
  const uint8_t* x_records;
  GemmKernelTile tile;
  GemmTails tails;
  // Split-K (gemm() on split mode's small mma.sync tile only): CTA z of the grid's third dimension
  // takes columns [z·n_in, (z + 1)·n_in) of the weight and X rows (n_in is then one slice's
  // length), its weights w_split_bytes·z, X x_split·z elements and Y y_split_stride·z floats
  // further: y holds the slices' partial products, which launch_gemm_k_sum adds.
  int k_splits = 1;
  int64_t w_split_bytes = 0;
  int64_t x_split = 0;
  int64_t y_split_stride = 0;
};

// Row and feature extent of one CTA for the two tile shapes (gemm_kernel.cuh's kBT, kBF).
struct GemmTileShape {
  int rows;
  int features;
};
GemmTileShape gemm_tile_shape(bool large, bool split);

cudaError_t launch_gemm(const GemmLaunch& l, cudaStream_t stream);
// y[r][f] = Σ_z partials[z·slice + r·n_out + f] for r < n, f < n_out, z in order (a split-K launch's
// slices, gemm_kernel.cu).
cudaError_t launch_gemm_k_sum(const float* partials, int k_splits, int64_t slice, int64_t n, int n_out, float* y,
                              int64_t y_stride, cudaStream_t stream);
cudaError_t launch_gemm_split(const GemmLaunch& l, cudaStream_t stream);  // l.x_lo set
cudaError_t launch_gemm_int8(const GemmLaunch& l, cudaStream_t stream);   // l.x_limbs set
int gemm_int8_tile_rows();
// Int8 mode on sm_90a wgmma (gemm_wgmma_int8.cu), l.tile kWgmma (64 tokens a CTA) or kWgmmaNarrow
// (16, n_in ≤ kInt8NarrowMaxIn): Q2_K grouped, x row offsets in 32 bits, weight rows (and slabs) of a
// multiple of 16 bytes.
cudaError_t launch_gemm_wgmma_int8(const GemmLaunch& l, cudaStream_t stream);
int gemm_wgmma_int8_tile_rows(GemmKernelTile tile);  // kWgmma or kWgmmaNarrow
// Its 16-token tile, the codes decoded into the MMAs' registers (gemm_wgmma_int8_regs.cu, which
// launch_gemm_wgmma_int8 calls for kWgmmaNarrow): rows of at most kInt8NarrowMaxIn elements (the
// tile's activations stay in shared memory for the whole row).
inline constexpr int kInt8NarrowMaxIn = 2048;
cudaError_t launch_gemm_wgmma_int8_regs(const GemmLaunch& l, cudaStream_t stream);
// Split mode on sm_90a wgmma (gemm_wgmma.cu), l.tile kWgmma, or kWgmma64 or kWgmmaNarrow (grouped
// only): Q8_0 dense or grouped, IQ2_XXS grouped; x row offsets in 32 bits; weight rows (and slabs)
// of a multiple of 16 bytes.
cudaError_t launch_gemm_wgmma(const GemmLaunch& l, cudaStream_t stream);
// The 16- and 64-token tiles for IQ2_XXS weights (gemm_wgmma_regs.cu, which launch_gemm_wgmma
// calls): grouped, split mode, l.tile kWgmmaNarrow (l.tails kAll or kOnlyFew) or kWgmma64 (kAll,
// kOnlyShort or kSkipFew).
cudaError_t launch_gemm_wgmma_regs(const GemmLaunch& l, cudaStream_t stream);
int gemm_wgmma_tile_rows(GemmKernelTile tile);  // a wgmma tile

// CTA rows of a grouped launch of bt-row tiles: each group adds at most one partial tile
// (gemm_kernel.cuh's grid); a group's short tail alone is one tile; a group of few rows too, and
// at most n_rows / (kFewRows + 1) groups have more (the slots past the tiles are CTAs that leave at
// once, one an SM at a time).
inline int64_t gemm_grouped_slots(const GemmLaunch& l, int bt) {
  const int64_t full = (int64_t{l.n_rows} + bt - 1) / bt;
  switch (l.tails) {
    case GemmTails::kOnlyShort: return l.n_groups;
    case GemmTails::kOnlyFew: return std::min(l.n_groups, l.n_rows);
    case GemmTails::kSkipFew: return full + std::min(l.n_groups, l.n_rows / (kFewRows + 1));
    default: return full + l.n_groups;
  }
}

// Rows of one CTA of the kernel a launch of `tile` runs (split mode, or int8 mode, or f16 mode).
inline int gemm_tile_rows(GemmKernelTile tile, bool split, bool int8) {
  if (int8) return is_wgmma(tile) ? gemm_wgmma_int8_tile_rows(tile) : gemm_int8_tile_rows();
  if (is_wgmma(tile)) return gemm_wgmma_tile_rows(tile);
  return gemm_tile_shape(tile == GemmKernelTile::kLarge, split).rows;
}
cudaError_t launch_convert_f32_to_int8(const float* x, int64_t x_stride, int64_t n_rows, int64_t cols, int8_t* limbs,
                                       int64_t limb_stride, uint8_t* records, cudaStream_t stream);
cudaError_t launch_convert_swiglu_to_int8(const float* gate, const float* up, int64_t stride, const float* weights,
                                          float limit, int64_t n_rows, int64_t cols, int8_t* limbs,
                                          int64_t limb_stride, uint8_t* records, cudaStream_t stream);

cudaError_t launch_sort_by_expert(const int32_t* topk, int n_pairs, int top_k, int n_expert,
                                  int32_t* offsets, int32_t* row_pair, int32_t* row_token,
                                  int32_t* pair_row, const float* pair_weight, float* row_weight,
                                  int32_t* chunk_counts, cudaStream_t stream);
// Pairs per counting-sort chunk (one warp each): the workspace holds n_expert × chunks counters.
constexpr int kSortChunk = 256;

cudaError_t launch_convert_f32_to_f16(const float* x, int64_t x_stride, int64_t n_rows, int64_t cols,
                                      __half* out, __half* out_lo, int64_t out_stride, float* row_scale,
                                      cudaStream_t stream);

}  // namespace dsv4::cuda::detail
