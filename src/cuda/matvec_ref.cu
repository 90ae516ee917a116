// Reference matvec: one warp per output row, lanes over blocks, every element dequantised with the
// plain formulas of FORMATS.md (Fmt::elem, byte loads, any alignment) and multiplied in f32. Slow
// (about a tenth of the fast kernel) but short enough to check by eye; it is the second opinion in
// the tests and the fallback for layouts the fast kernel does not take (unaligned base pointers,
// plain-type rows that are not a multiple of 16 bytes).
//
// Roofline: none aimed for; correctness only.
#include <cuda_runtime.h>

#include <cstdint>

#include "cuda/matvec_launch.h"
#include "cuda/quant_decode.cuh"

namespace dsv4::cuda::detail {

namespace {

constexpr int kWarps = 8;

template <class F, bool kSum>
__global__ void __launch_bounds__(kWarps * 32) matvec_ref_kernel(const MatvecLaunch l) {
  const int lane = threadIdx.x & 31;
  const int row = blockIdx.x * kWarps + (threadIdx.x >> 5);
  if (row >= l.n_out) return;
  const Iq2Tables* tables = static_cast<const Iq2Tables*>(l.iq2_tables);
  const int n_blocks = l.n_in / F::kBlockElems;
  const int j0 = kSum ? 0 : static_cast<int>(blockIdx.y);
  const int j1 = kSum ? l.n_slots : j0 + 1;
  float acc = 0.0f;
  for (int j = j0; j < j1; ++j) {
    const int e = l.experts ? l.experts[j] : j;
    const uint8_t* w = l.w + static_cast<int64_t>(e) * l.slab_bytes + static_cast<int64_t>(row) * l.row_bytes;
    const float* x = l.x + static_cast<int64_t>(j) * l.x_stride;
    float s = 0.0f;
    for (int b = lane; b < n_blocks; b += 32) {
      const uint8_t* blk = w + static_cast<int64_t>(b) * F::kBlockBytes;
      const float* xb = x + static_cast<int64_t>(b) * F::kBlockElems;
      for (int i = 0; i < F::kBlockElems; ++i) s = fmaf(F::elem(blk, i, tables), xb[i], s);
    }
    for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xFFFFFFFFu, s, o);
    acc = fmaf(l.scale ? l.scale[j] : 1.0f, s, acc);
  }
  if (lane == 0) l.y[kSum ? row : static_cast<int64_t>(blockIdx.y) * l.n_out + row] = acc;
}

template <class F>
cudaError_t launch_format(const MatvecLaunch& l, cudaStream_t stream) {
  const dim3 grid((l.n_out + kWarps - 1) / kWarps, l.sum ? 1 : l.n_slots);
  if (l.sum) {
    matvec_ref_kernel<F, true><<<grid, kWarps * 32, 0, stream>>>(l);
  } else {
    matvec_ref_kernel<F, false><<<grid, kWarps * 32, 0, stream>>>(l);
  }
  return cudaGetLastError();
}

}  // namespace

cudaError_t launch_matvec_ref(const MatvecLaunch& l, cudaStream_t stream) {
  switch (l.type) {
    case gguf::TensorType::F32: return launch_format<FmtF32>(l, stream);
    case gguf::TensorType::F16: return launch_format<FmtF16>(l, stream);
    case gguf::TensorType::BF16: return launch_format<FmtBF16>(l, stream);
    case gguf::TensorType::Q8_0: return launch_format<FmtQ8_0>(l, stream);
    case gguf::TensorType::Q2_K: return launch_format<FmtQ2_K>(l, stream);
    case gguf::TensorType::Q4_K: return launch_format<FmtQ4_K>(l, stream);
    case gguf::TensorType::IQ2_XXS: return launch_format<FmtIQ2_XXS>(l, stream);
    default: return cudaErrorInvalidValue;
  }
}

}  // namespace dsv4::cuda::detail
