// Internal to cuda/: the validated launch description shared by the dispatcher (matvec.cc) and
// the two kernels (matvec_fast.cu, matvec_ref.cu). Plain C++ so the dispatcher needs no nvcc.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "gguf/types.h"

namespace dsv4::cuda::detail {

struct MatvecLaunch {
  gguf::TensorType type;
  const uint8_t* w;      // first byte of the tensor
  const uint8_t* w_end;  // one past its last byte: no load reaches it
  int64_t row_bytes;
  int64_t slab_bytes;      // bytes from one expert's matrix to the next
  const int32_t* experts;  // null: slot j is slab j (the dense case has one slot)
  const float* x;
  int64_t x_stride;
  const float* scale;  // null: 1
  float* y;
  int n_in;
  int n_out;
  int n_slots;
  bool sum;  // y[o] = Σ_j ... instead of y[j·n_out + o]
  int rows_per_warp;
  int warps_per_row;
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

cudaError_t launch_matvec_fast(const MatvecLaunch& l, cudaStream_t stream);
cudaError_t launch_matvec_ref(const MatvecLaunch& l, cudaStream_t stream);

// Uploads (once per device) and returns the device address of the IQ2_XXS tables.
cudaError_t iq2_device_tables(cudaStream_t stream, const void** tables);

}  // namespace dsv4::cuda::detail
