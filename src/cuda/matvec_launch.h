// Internal to cuda/: the validated launch description shared by the dispatcher (matvec.cc) and
// the two kernels (matvec_fast.cu, matvec_ref.cu). Plain C++ so the dispatcher needs no nvcc.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "gguf/types.h"

namespace dsv4::cuda::detail {

// The pairs of a paired launch of n_slots slots (tokens of pair_stride slots each): the last token
// alone in its pairs when the tokens are odd in number.
inline constexpr int token_pairs(int n_slots, int pair_stride) { return (n_slots / pair_stride + 1) / 2 * pair_stride; }

struct MatvecLaunch {
  gguf::TensorType type;
  const uint8_t* w;      // first byte of the tensor
  const uint8_t* w_end;  // one past its last byte: no load reaches it
  int64_t row_bytes;
  int64_t slab_bytes;      // bytes from one expert's matrix to the next
  const int32_t* experts;  // null: slot j is slab j (the dense case has one slot)
  const float* x;
  int64_t x_stride;
  int slots_per_x;  // slot j reads x + (j / slots_per_x)·x_stride (2-bit row-tile kernel only, else 1)
  // > 0: token pairs (ExpertMatvec::pair_stride) on the Q8_0 row tile, the f32 kernel (the float
  // formats, fast_pairs_type) or the F16 row tile (one dense pair); else 0
  int pair_stride;
  // Fused SwiGLU (2-bit row-tile kernel only): when set, slot j's activation is
  // swiglu_element(x_j[i], up[j·x_stride + i], act_weights + j or null, act_limit) (swiglu.cuh).
  const float* up;
  const float* act_weights;
  float act_limit;
  // SwiGLU of row pairs (2-bit row-tile kernel only, per slot; matvec.h ExpertMatvec::swiglu_rows):
  // rows i and n_out/2 + i give y[j·n_out/2 + i] (act_weights and act_limit as above).
  bool swiglu_rows;
  // Fused RMSNorm (Q8_0 row-tile kernel, dense launches only): when set, the activation is
  // RMSNorm_norm_w(x)[i] (norms.h rms_norm_rows of one row; Σx² summed in another order).
  const float* norm_w;
  float norm_eps;
  const float* scale;  // null: 1
  float* y;
  int n_in;
  int n_out;
  int n_slots;
  bool sum;  // y[o] = Σ_j ... instead of y[j·n_out + o]
  int rows_per_warp;  // fast kernel: 1, 2 or 4; 16: the tensor-core kernel; 32: a row-tile kernel (Q8_0 or 2-bit)
  int warps_per_row;
  int blocks;  // grid size (the groups walk the units persistently)
  const void* iq2_tables;  // device copy of the IQ2_XXS grid and signs (Iq2Tables)
};

// Device layout of the IQ2_XXS tables (quant/iq2_xxs_tables.h copied as they are).
struct Iq2Tables {
  uint64_t grid[256];
  uint8_t signs[128];
};

// Fast kernel: elements per stage (a row's columns are split into stages of this many elements);
// 0 for a type it does not handle.
int fast_stage_elems(gguf::TensorType type);

// Fast kernel: blocks of one launch shape that fit an SM at once on the current device (0 if the
// runtime cannot say).
int fast_blocks_per_sm(gguf::TensorType type, int rows_per_warp, bool sum);

// Fast kernel: whether it pairs slots of this type (pair_stride > 0: the float formats).
bool fast_pairs_type(gguf::TensorType type);

cudaError_t launch_matvec_fast(const MatvecLaunch& l, cudaStream_t stream);

// Tensor-core kernel (matvec_mma.cu) for Q8_0, Q2_K, Q4_K and IQ2_XXS: elements per stage (0 for
// other types), the dynamic shared memory a launch needs with n_xvec activation vectors, and
// the launch (rows_per_warp is 16 there; warps_per_row 1–16; one block of 16 warps per SM).
int mma_stage_elems(gguf::TensorType type);
int mma_smem_bytes(gguf::TensorType type, int n_in, int n_xvec);
cudaError_t launch_matvec_mma(const MatvecLaunch& l, cudaStream_t stream);
// Raises the tensor-core kernels' shared-memory limit on the current device (launch does it too,
// once per device; prepare_matvec calls this so that no attribute is set during graph capture).
cudaError_t prepare_matvec_mma();
cudaError_t launch_matvec_ref(const MatvecLaunch& l, cudaStream_t stream);

// Q8_0 row-tile kernel (matvec_q8.cu; rows_per_warp 32: a row per lane) for rows of a multiple of
// 256 elements: the default warps per row (a function of the shape only), the blocks of W warps
// that fit an SM at once (0 if the runtime cannot say), the launch, and the shared-memory opt-in
// (once per device; prepare_matvec calls it so that no attribute is set during graph capture).
int q8_warps_per_row(int64_t n_in, int64_t n_out);
int q8_blocks_per_sm(int warps, bool pair = false);
cudaError_t launch_matvec_q8(const MatvecLaunch& l, cudaStream_t stream);
cudaError_t prepare_matvec_q8();

// 2-bit row-tile kernel (matvec_2bit.cu; rows_per_warp 32: a row per lane) for Q2_K, IQ2_XXS and Q4_K:
// elements per staged item (0 for other types: rows must be a multiple of it), the default warps
// per row (a function of the shape only), the shared memory of a block of W warps whose launch
// has x_floats activations (n_xvec · n_in: they are staged in shared memory), the blocks that fit
// an SM at once (0 if the runtime cannot say), the shared-memory opt-in (once per device) and the
// launch.
// A block holds rt2_groups_per_block groups of W warps (each group a tile at a time; one copy of
// the activations and tables for all): the most, up to 16 warps, whose shared memory fits the
// current device. rt2_smem_bytes and rt2_blocks_per_sm take the block's warps (groups · W).
int rt2_item_elems(gguf::TensorType type);
int rt2_warps_per_row(gguf::TensorType type, int64_t n_in, int64_t n_out);
int rt2_groups_per_block(gguf::TensorType type, int warps_per_row, int64_t x_floats);
int64_t rt2_smem_bytes(gguf::TensorType type, int warps, int64_t x_floats);
int rt2_blocks_per_sm(gguf::TensorType type, int warps, int64_t x_floats);
cudaError_t prepare_matvec_2bit();
cudaError_t launch_matvec_2bit(const MatvecLaunch& l, cudaStream_t stream);

// F16 row-tile kernel (matvec_f16.cu; rows_per_warp 32: a row per lane) for one-slot (or one
// dense pair: tokens = 2), unsummed F16 launches whose rows are a multiple of 64 elements and whose
// activations fit shared memory (f16_row_tile_fits): the items a row splits into, the default
// warps per row (a function of the shape only), the groups of that many warps a block holds (one
// block per SM), the shared-memory opt-in (once per device) and the launch.
int64_t f16_row_items(int64_t n_in);
int f16_warps_per_row(int64_t n_in, int64_t n_out);
int f16_groups_per_block(int warps_per_row);
bool f16_row_tile_fits(int64_t n_in, int tokens = 1);
cudaError_t prepare_matvec_f16();
cudaError_t launch_matvec_f16(const MatvecLaunch& l, cudaStream_t stream);

// Uploads (once per device) and returns the device address of the IQ2_XXS tables.
cudaError_t iq2_device_tables(cudaStream_t stream, const void** tables);

// The current device's opt-in shared memory per block (0 if it cannot be read): the plan and the
// 2-bit launch both size blocks by it.
inline int max_smem_per_block() {
  int device = 0, v = 0;
  if (cudaGetDevice(&device) != cudaSuccess ||
      cudaDeviceGetAttribute(&v, cudaDevAttrMaxSharedMemoryPerBlockOptin, device) != cudaSuccess) {
    return 0;
  }
  return v;
}

}  // namespace dsv4::cuda::detail
