// RMSNorm sites of the attention path (MODEL.md §6, §7.2-7.3) for a chunk of T tokens, with the
// RoPE and FP8 simulation that follow them:
//   rms_norm_rows : out[t] = RMSNorm_w(in[t]) (w may be null: unweighted)
//   q_kv_finish   : every query head q[t][h] = RoPE(RMSNorm(q[t][h]), p) in place, and the raw KV
//                   row kv_out[t] = FP8_SIM(RoPE(RMSNorm_kv_norm(kv_in[t]), p)) (nope dims only,
//                   official mode), p = pos0 + t with pos0 read from the device.
// Σx² in double and the scale rounded once, as cpu::rms_norm.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "util/status.h"

namespace dsv4::cuda {

Status rms_norm_rows(const float* in, int64_t in_stride, const float* w, int64_t n, float eps, float* out,
                     int64_t out_stride, int T, cudaStream_t stream);

struct QkvFinishArgs {
  float* q = nullptr;             // [T][H·hd], in place
  const float* kv_in = nullptr;   // row t at kv_in + t·kv_stride
  int64_t kv_stride = 0;
  const float* kv_norm = nullptr;  // [hd]
  float* kv_out = nullptr;        // [T][hd]
  const float* omega = nullptr;   // [n_rot/2] of the layer's regime
  const int* pos0 = nullptr;      // device: position of token 0
  int T = 0, H = 0, hd = 0, n_rot = 0;
  float eps = 1e-6f;
  bool fp8 = true;
  // Non-null: the query heads leave in prefill_attention.h's split form, in place of their f32
  // rows, with their powers of two here ([T][H]); the warp-per-row kernel then runs at any T.
  int* q_exp = nullptr;
};
Status q_kv_finish(const QkvFinishArgs& a, cudaStream_t stream);

// The MODEL.md §11 simulations applied in place to n_rows rows of `width` values, as the kernels
// above and the compressors apply them (for tests against cpu/sim.h): FP8_SIM in blocks of 64
// (width a multiple of 64), or Hadamard then FP4_SIM in blocks of 32 (width a power of two).
enum class SimKind { kFp8, kHadamardFp4 };
Status simulate_rows(float* rows, int n_rows, int width, SimKind kind, cudaStream_t stream);

}  // namespace dsv4::cuda
