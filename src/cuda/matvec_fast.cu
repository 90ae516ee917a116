// Fast batch-1 matvec: weights streamed through shared memory with 16-byte cp.async, decoded per
// format (quant_decode.cuh), f32 FMAs, fixed-order reductions.
//
// Roofline. A decode matvec reads each weight byte once and does 2 flops per element: far below
// any compute limit, so the floor is bytes / HBM bandwidth (H100 SXM ≈ 3.0 TB/s, H200 ≈ 4.3 TB/s
// measured device-to-device copy, read + write). Target: ≥ 90 % of the measured copy bandwidth for
// Q8_0 / F16 / BF16 / F32 on matrices well above L2 size (4096×8192 Q8_0: 35.7 MB → ≈ 12 µs on
// H100). The sub-4-bit formats decode 4–8 elements per weight byte, each costing a conversion and an
// FMA on the CUDA cores with f32 activations; they are issue-bound, not bandwidth-bound
// (estimates: Q4_K ≈ 80 %, Q2_K ≈ 50–60 %, IQ2_XXS ≈ 35–45 % of copy bandwidth on H100, less on
// H200). Going past that needs int8 activations with dp4a or tensor cores (MODEL.md §11.7 allows
// int8 activations for these GEMMs).
//
// Shape of the work (names used below):
//   block   = 8 warps. It owns R·(8/W) consecutive rows ("row groups" of R rows; W warps per group).
//   stage   = kStageElems columns of a row: a contiguous byte range, copied into shared memory by
//             the warp's 32 lanes as 16-byte cp.async chunks from the 16-aligned address at or below
//             the range (so any row alignment works; the decoders read at the data's offset).
//   item    = one stage of the R rows of a group (for one expert slot). Warp k of a group takes the
//             stages k, k+W, k+2W, ... of every slot; items go through a ring of kBufs buffers, so
//             kBufs−1 items are in flight while one is decoded.
//   step    = kStepElems columns of a stage, decoded by the 32 lanes together (Fmt::dot).
// Each lane keeps R partial sums; a slot's partials are scaled and added in slot order; at the end
// a butterfly shuffle sums the lanes and one thread per row adds the W warps' sums in warp order.
// Every output is one fixed sequence of f32 operations: deterministic, no atomics.
#include <cuda_runtime.h>

#include <cstdint>

#include "cuda/matvec_fast.cuh"
#include "cuda/matvec_launch.h"

namespace dsv4::cuda::detail {

namespace {

__device__ __forceinline__ void cp_async16(void* smem_dst, const void* gmem_src, int src_bytes) {
  const unsigned dst = static_cast<unsigned>(__cvta_generic_to_shared(smem_dst));
  // Copies src_bytes (1..16) and zero-fills the rest of the 16 bytes (callers pass 16).
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(gmem_src),
               "r"(src_bytes)
               : "memory");
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

template <class F, int R, bool kSum>
__global__ void __launch_bounds__(kFastThreads, F::kMinBlocks) matvec_fast_kernel(__grid_constant__ const FastParams p) {
  constexpr int kBufBytes = R * Geometry<F>::kRowStride;
  constexpr int kNBuf = F::kBufs;
  extern __shared__ __align__(16) uint8_t smem[];
  uint8_t* tables = smem;
  float* red = reinterpret_cast<float*>(smem + F::kTableBytes);
  uint8_t* bufs = smem + F::kTableBytes + fast_red_bytes<F, R>();

  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const FastWarp<F, R, kSum> wk(p, blockIdx.x, blockIdx.y, warp);
  uint8_t* wbuf = bufs + warp * (kNBuf * kBufBytes);
  // A chunk cut short by the tensor's end is copied with plain loads: cp.async with a source
  // size below 16 is reported by compute-sanitizer as a 16-byte read past the allocation. The
  // __syncwarp after the wait orders these stores for the other lanes, as it does cp.async data.
  auto copy = [](uint8_t* dst, const uint8_t* src, int bytes) {
    if (bytes == 16) {
      cp_async16(dst, src, 16);
    } else {
      for (int b = 0; b < 16; ++b) dst[b] = b < bytes ? __ldg(src + b) : uint8_t{0};
    }
  };

  // Prologue: start the first kBufs−1 items (an empty group where there are fewer), then the
  // tables, whose barrier the whole block reaches before any warp waits on its items.
#pragma unroll
  for (int i = 0; i < kNBuf - 1; ++i) {
    if (i < wk.n_items) wk.issue(i, lane, wbuf + i * kBufBytes, copy);
    cp_async_commit();
  }
  if constexpr (F::kTableBytes > 0) {
    F::load_tables(tables, p.tables);
    __syncthreads();
  }

  float acc[R], part[R];
#pragma unroll
  for (int r = 0; r < R; ++r) acc[r] = part[r] = 0.0f;
  for (int i = 0; i < wk.n_items; ++i) {
    if (i + kNBuf - 1 < wk.n_items) wk.issue(i + kNBuf - 1, lane, wbuf + ((i + kNBuf - 1) % kNBuf) * kBufBytes, copy);
    cp_async_commit();
    // Activations first (the same for the R rows): their latency overlaps the wait.
    float xv[F::kStageSteps][F::kXPerLane], xsum[F::kStageSteps];
    wk.load_x(i, lane, xv, xsum);
    cp_async_wait<kNBuf - 1>();  // this lane's chunks of item i have landed
    __syncwarp();                // ... and every other lane's
    wk.decode(i, lane, wbuf + (i % kNBuf) * kBufBytes, xv, xsum, tables, part);
    __syncwarp();  // the buffer is refilled by the next iteration's issue
    wk.end_item(i, acc, part);
  }
  cp_async_wait<0>();

  // Lanes by butterfly (every lane ends with the same sum), then the group's warps in order.
#pragma unroll
  for (int r = 0; r < R; ++r) {
    float v = acc[r];
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xFFFFFFFFu, v, o);
    if (lane == 0) red[warp * R + r] = v;
  }
  __syncthreads();
  int64_t index;
  float value;
  if (fast_output<R, kSum>(p, blockIdx.x, blockIdx.y, threadIdx.x, red, &index, &value)) p.y[index] = value;
}

template <class F, int R, bool kSum>
cudaError_t launch(const MatvecLaunch& l, cudaStream_t stream) {
  static_assert(fast_smem_bytes<F, R>() <= 48 * 1024, "no opt-in shared memory needed");
  FastParams p;
  p.w = l.w;
  p.w_end = l.w_end;
  p.row_bytes = l.row_bytes;
  p.slab_bytes = l.slab_bytes;
  p.experts = l.experts;
  p.x = l.x;
  p.x_stride = l.x_stride;
  p.scale = l.scale;
  p.y = l.y;
  p.tables = l.iq2_tables;
  p.n_in = l.n_in;
  p.n_out = l.n_out;
  p.n_slots = l.n_slots;
  p.wpr = l.warps_per_row;
  const int rows_per_block = R * (kFastWarps / l.warps_per_row);
  const dim3 grid((l.n_out + rows_per_block - 1) / rows_per_block, kSum ? 1 : l.n_slots);
  matvec_fast_kernel<F, R, kSum><<<grid, kFastThreads, fast_smem_bytes<F, R>(), stream>>>(p);
  return cudaGetLastError();
}

template <class F>
cudaError_t launch_format(const MatvecLaunch& l, cudaStream_t stream) {
  switch (l.rows_per_warp * 2 + (l.sum ? 1 : 0)) {
    case 2: return launch<F, 1, false>(l, stream);
    case 3: return launch<F, 1, true>(l, stream);
    case 4: return launch<F, 2, false>(l, stream);
    case 5: return launch<F, 2, true>(l, stream);
    case 8: return launch<F, 4, false>(l, stream);
    case 9: return launch<F, 4, true>(l, stream);
    default: return cudaErrorInvalidValue;
  }
}

}  // namespace

int fast_stage_elems(gguf::TensorType type) {
  switch (type) {
    case gguf::TensorType::F32: return Geometry<FmtF32>::kStageElems;
    case gguf::TensorType::F16: return Geometry<FmtF16>::kStageElems;
    case gguf::TensorType::BF16: return Geometry<FmtBF16>::kStageElems;
    case gguf::TensorType::Q8_0: return Geometry<FmtQ8_0>::kStageElems;
    case gguf::TensorType::Q2_K: return Geometry<FmtQ2_K>::kStageElems;
    case gguf::TensorType::Q4_K: return Geometry<FmtQ4_K>::kStageElems;
    case gguf::TensorType::IQ2_XXS: return Geometry<FmtIQ2_XXS>::kStageElems;
    default: return 0;
  }
}

cudaError_t launch_matvec_fast(const MatvecLaunch& l, cudaStream_t stream) {
  if (l.warps_per_row != 1 && l.warps_per_row != 2 && l.warps_per_row != 4 && l.warps_per_row != 8) {
    return cudaErrorInvalidValue;
  }
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
