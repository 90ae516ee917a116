// Batch-1 decode matrix-vector products on the GPU: y = W·x for weights in the GGUF block layouts
// of FORMATS.md §4 (F32, F16, BF16, Q8_0, Q2_K, Q4_K, IQ2_XXS), f32 activations and outputs.
//
// Weights stay exactly as in the file: row-major rows of gguf::row_bytes(type, n_in) bytes, and a
// 3-D expert tensor of ne = (n_in, n_out, n_expert) is n_expert such matrices ("slabs") one after
// the other. The expert forms take a device-side list of expert ids, so the MoE gate/up/down of
// the k selected experts is one launch whose arguments do not change from token to token (CUDA
// graph friendly).
//
// Every output element is one fixed-order reduction: results are bit-reproducible from run to run
// and do not depend on the other rows, on the number of experts in the launch or on timing (no
// atomics). They equal quant::dot_row up to f32 rounding (tests/cuda/matvec_test.cc bounds it).
// Q8_0 rows of a multiple of 256 elements (every Q8_0 matrix of the model) run on the row-tile
// kernel (matvec_q8.cuh) in integers: the activations as 31-bit fixed point per 256 elements (an
// element more than 2^6 below the item's largest magnitude is rounded to 2^-30 of it; four int8
// limbs), each 32-weight block's code × limb products summed exactly with dp4a, recombined in f32
// and times the block's scale, blocks added in order. A non-finite activation makes the outputs it
// touches NaN.
// Q2_K rows of a multiple of 256 and IQ2_XXS rows of a multiple of 512 elements (the routed
// experts) run on the 2-bit row-tile kernel (matvec_2bit.cuh) in integers: the activations as
// 23-bit fixed point per 256 elements (each rounded to ≤ 2^-22 of its block's largest magnitude,
// three int8 limbs), the codes times limbs summed exactly with dp4a, scaled by the 4-bit scales
// as integers, and per 256-weight block one f32 conversion and scale (Q2_K's dmin·m·Σx term in
// f32); blocks added in order. A non-finite activation makes the outputs it touches NaN.
// Other Q8_0 rows, Q2_K, Q4_K and IQ2_XXS run on int8 tensor cores (matvec_mma.cuh): the activations are
// turned into exact 32-bit fixed point per 256 elements (an element more than 2^6 below the block's
// largest magnitude is rounded to 2^-30 of it), products and 32-element sums are exact integers,
// and the scaled partial sums are added in f32. A non-finite activation makes the outputs it
// touches NaN. (Beyond ≈25 000 activations per launch, n_slots·n_in for per-slot x, these types
// fall back to the f32 kernel.)
//
// Launch order: the row-tile kernels are launched with programmatic dependent launch (pdl.cuh):
// a dense launch (matvec) starts reading its weights while the kernel before it in the stream is
// still running, and everything else after that kernel has finished. So the weights must not be
// written by the kernel launched just before (a copy, an event or a synchronisation in between is
// enough).
//
// All pointers are device pointers. Nothing here synchronises, allocates or reads device data on
// the host (the IQ2_XXS tables are uploaded once per device: see prepare_matvec); errors in the
// arguments come back as a Status before anything is launched, launch errors as a Status after.
// Launch shapes and performance: matvec_fast.cu; the reference kernel: matvec_ref.cu.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "gguf/types.h"
#include "util/status.h"

namespace dsv4::cuda {

using gguf::TensorType;

enum class MatvecImpl {
  kAuto,       // the fast kernel where its alignment needs are met, else the reference kernel
  kFast,       // the fast kernel only; an error where it cannot run
  kReference,  // the simple kernel (one warp per row, element-wise dequantisation): for tests
};

// Launch shape of the fast kernels. 0 = the built-in choice. For benchmarks and tests.
struct MatvecTuning {
  // f32 kernel: rows sharing one activation load, 1, 2 or 4. 16: the tensor-core kernel (Q8_0,
  // Q2_K, Q4_K, IQ2_XXS; 16 rows per mma). 32: the row-tile kernels (a row per lane; Q8_0 and Q2_K
  // rows of a multiple of 256 elements, IQ2_XXS of 512).
  int rows_per_warp = 0;
  int warps_per_row = 0;  // warps splitting a row's columns: 1, 2, 4 or 8 (tensor-core kernel: or 16;
                          // row-tile kernels: at most the row's items of 256 (IQ2_XXS: 512) elements)
};

// y[o] = Σ_i W[o, i]·x[i] for o < n_out; W has n_out rows of row_bytes(type, n_in) bytes.
Status matvec(TensorType type, const void* w, int64_t n_in, int64_t n_out, const float* x, float* y,
              cudaStream_t stream, MatvecImpl impl = MatvecImpl::kAuto,
              MatvecTuning tuning = MatvecTuning{});

// The selected experts of a 3-D tensor ne = (n_in, n_out, n_expert).
struct ExpertMatvec {
  TensorType type = TensorType::F32;
  const void* w = nullptr;   // slab e starts at w + e·n_out·row_bytes(type, n_in)
  int64_t n_in = 0;
  int64_t n_out = 0;
  int64_t n_expert = 0;
  // n_slots expert ids in [0, n_expert), read on the device; or null: slot j is expert j (n_slots ≤
  // n_expert), known before the launch, so the launch fetches its weights while the kernel before it
  // still runs (PDL, as a dense launch does: the grouped output projection of a decode step).
  const int32_t* experts = nullptr;
  int n_slots = 0;
  const float* x = nullptr;  // slot j reads x + (j / slots_per_x)·x_stride
  int64_t x_stride = 0;      // 0: every slot reads the same x (gate/up); n_in: one x per slot (down)
  // Consecutive slots reading one x (a dividing n_slots): a multi-token step's gate/up, whose K
  // slots of token t read token t's row. Only the 2-bit row-tile kernel takes more than 1
  // (can_share_x); other launches are refused.
  int slots_per_x = 1;
  // > 0: slots j and j + pair_stride read the same slab for every j of the first pair_stride of each
  // 2·pair_stride slots (expert ids equal: the caller's promise), as the same weights' tokens t and
  // t + 1 of a multi-token step do (n_slots a multiple of pair_stride: tokens of pair_stride slots;
  // an odd count's last token has no partner). The Q8_0 row tile, the f32 kernel's float formats
  // (F32, F16, BF16) and the F16 row tile (one pair) then stage and decode each weight once for
  // both (the same bits as without); other kernels ignore it. Per-slot launches without up only.
  // Without expert ids (a dense pair of slab 0), only launches that pair are taken: elsewhere
  // slot 1 is slab 1.
  int pair_stride = 0;
  const float* slot_scale = nullptr;  // n_slots factors (e.g. route weights), or null for 1
  // Fused SwiGLU (moe.h swiglu, the routed experts' down projection): when `up` is set, slot j's
  // activation is silu(min(g, L))·clamp(u, ±L)·act_weights[j] (no factor when act_weights is
  // null; clamp iff L = act_limit > 1e-6) with g = x[j·x_stride + i] and u = up[j·x_stride + i],
  // bit for bit what swiglu would have written, computed as the kernel stages its activations.
  // Only the row-tile kernels (2-bit and Q8_0) do this (can_fuse_swiglu); other launches are refused.
  const float* up = nullptr;
  const float* act_weights = nullptr;
  float act_limit = 0.0f;
  // SwiGLU of row pairs (the routed experts' gate/up, session 8: the activation computed where
  // gate row i and up row i meet, not in the down projection's staging): when set, a slab's n_out
  // rows are F = n_out/2 gate rows then F up rows, and matvec_experts writes F values per slot,
  // y[j·F + i] = silu(min(g, L))·clamp(u, ±L)·act_weights[j] (as `up` above, with g and u the
  // results of rows i and F + i), bit for bit what matvec_experts then swiglu would write. Only
  // the 2-bit row-tile kernel does this, per slot, with n_out a multiple of 32
  // (can_swiglu_rows); other launches are refused.
  bool swiglu_rows = false;
};

// Whether matvec_experts / matvec_experts_sum (kAuto, default tuning) can take m with `up` set.
bool can_fuse_swiglu(const ExpertMatvec& m);
// Whether matvec_experts (kAuto, default tuning) can take m with swiglu_rows set.
bool can_swiglu_rows(const ExpertMatvec& m);
// Whether matvec_experts (kAuto, default tuning) can take m with its slots_per_x.
bool can_share_x(const ExpertMatvec& m);
// Whether matvec_experts (kAuto, default tuning) runs m on a row-tile kernel (Q8_0 or 2-bit),
// whose outputs are the bits of any other launch of the same rows on it.
bool on_row_tile(const ExpertMatvec& m);

// Dense y = W·swiglu(gate, up) (the shared expert's down projection, §8.6): the fused SwiGLU above
// (no route weight) on a dense launch, whose weights are fetched before the previous kernel ends
// (PDL). Refused where can_fuse_swiglu would refuse the one-slot form.
Status matvec_swiglu(TensorType type, const void* w, int64_t n_in, int64_t n_out, const float* gate,
                     const float* up, float limit, float* y, cudaStream_t stream,
                     MatvecTuning tuning = MatvecTuning{});

// Dense y = W·RMSNorm_norm_w(x) (q_b's input, §7.2): the Q8_0 row-tile kernel normalises x as it
// stages it, as norms.h rms_norm_rows does for one row ((x·r)·w, r from Σx² in double rounded
// once; the sum taken in another order, so r may differ from rms_norm_rows's in its last bit).
// can_fuse_rms_norm says whether a launch can (Q8_0 rows of a multiple of 256, 16-aligned
// pointers); others are refused.
// tokens = 2: two tokens' rows (x rows x_stride apart, 0: n_in; y rows n_out apart), each
// normalised with its own scale, the weights decoded once for both (the row tile's token pairs):
// each token's outputs the bits of its one-token launch.
bool can_fuse_rms_norm(TensorType type, const void* w, int64_t n_in, int64_t n_out, const float* x,
                       const float* norm_w);
Status matvec_rms_norm(TensorType type, const void* w, int64_t n_in, int64_t n_out, const float* x,
                       const float* norm_w, float eps, float* y, cudaStream_t stream,
                       MatvecTuning tuning = MatvecTuning{}, int tokens = 1, int64_t x_stride = 0);

// One output per slot: y[j·n_out + o] = scale_j · Σ_i W_{e_j}[o, i]·x_j[i].
Status matvec_experts(const ExpertMatvec& m, float* y, cudaStream_t stream,
                      MatvecImpl impl = MatvecImpl::kAuto, MatvecTuning tuning = MatvecTuning{});

// The slots summed in slot order: y[o] = Σ_j scale_j · Σ_i W_{e_j}[o, i]·x_j[i] (MoE down).
Status matvec_experts_sum(const ExpertMatvec& m, float* y, cudaStream_t stream,
                          MatvecImpl impl = MatvecImpl::kAuto,
                          MatvecTuning tuning = MatvecTuning{});

// Uploads the IQ2_XXS lookup tables to the current device (once per device; later calls return at
// once). The matvec functions call it themselves, but a call made while `stream` is being captured
// into a CUDA graph cannot upload: call this once before the first capture.
Status prepare_matvec();

// The launch shape the fast kernel would use (after defaults), or an error if it cannot run.
struct MatvecPlan {
  bool fast = false;
  int rows_per_warp = 0;  // 16: the tensor-core kernel; 32: a row-tile kernel
  int warps_per_row = 0;
  int blocks = 0;  // grid.x
};
Result<MatvecPlan> plan_matvec(TensorType type, int64_t n_in, int64_t n_out, int n_grid_slots,
                               MatvecTuning tuning = MatvecTuning{});

}  // namespace dsv4::cuda
