// What the hyper-connection kernels of hc.cu (decode: the fused post + collapse, the finishing
// kernel) and hc_chunk.cu (chunks: hc_post and the mixer's partial sums) share: the record layout,
// the operands of hc_post and its arithmetic.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <string>
#include <type_traits>

#include "cuda/hc.h"
#include "cuda/device_model.h"
#include "gguf/types.h"
#include "util/status.h"

namespace dsv4::cuda::detail {

inline constexpr int kHcGram = kHcStreams * kHcStreams;

// A column block's record: the M mixer sums, then the 4×4 Gram matrix (hc.h).
__host__ __device__ constexpr int hc_record_size(int M) { return M + kHcGram; }

// Column blocks of kHcDimsPerBlock dims covering D (the records per token).
inline int hc_column_blocks(int64_t D) { return static_cast<int>((D + kHcDimsPerBlock - 1) / kHcDimsPerBlock); }

// A mixer of M rows over the HD = 4·D columns, of a type the kernels read.
Status hc_check_mixer(const DeviceTensor& fn, int64_t M, int64_t HD);

// Calls launch(std::integral_constant<int, M>) for the mixers the kernels are built for: the
// attention's (kHcMix rows), the head's (kHcStreams) and, when kNone, none (M = 0: no records).
template <bool kNone, typename Launch>
Status with_mixer_rows(int M, Launch&& launch) {
  if (M == kHcMix) return launch(std::integral_constant<int, kHcMix>{});
  if (M == kHcStreams) return launch(std::integral_constant<int, kHcStreams>{});
  if constexpr (kNone) {
    if (M == 0) return launch(std::integral_constant<int, 0>{});
  }
  return make_error("hc: mixer of " + std::to_string(M) + " rows unsupported");
}

// The short chunks' kernels (hc.cu), for chunks under kHcTokenLaneMinTokens tokens; the caller has
// checked the mixer. M = 0 in hc_short_post: no records.
Status hc_short_partials(const float* x, const DeviceTensor& fn, int M, int T, int64_t D, double* partial,
                         cudaStream_t stream);
Status hc_short_post(const HcPostArgs& a, int M, cudaStream_t stream);

// The operands of hc_post. mix is not __restrict__: the fused kernel writes the next mixing
// coefficients over the ones it reads (hc_post_collapse_kernel says why that is safe).
struct PostParams {
  const float* x;  // [T][4·D]
  const float* f;  // n_parts rows per token
  int n_parts;
  const float* f_extra;  // [T][D] or null
  const float* mix;      // [T][kHcMixSize]
  float* out;            // [T][4·D]
};

struct MixerParams {
  gguf::TensorType type;
  const uint8_t* w;
  int64_t row_bytes;
};

// X'[k] = post_k·f + Σ_j C[j][k]·X[j] of one dim (cpu::hc_post's order, no contraction); comb is
// C[j][k] at j·4 + k.
__device__ __forceinline__ void hc_post_value(const float* post, const float* comb, float f,
                                              const float (&xin)[kHcStreams], float (&xs)[kHcStreams]) {
#pragma unroll
  for (int k = 0; k < kHcStreams; ++k) {
    float v = __fmul_rn(post[k], f);
#pragma unroll
    for (int j = 0; j < kHcStreams; ++j) v = __fadd_rn(v, __fmul_rn(comb[j * kHcStreams + k], xin[j]));
    xs[k] = v;
  }
}

}  // namespace dsv4::cuda::detail
