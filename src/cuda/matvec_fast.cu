// Fast batch-1 matvec (f32 decode): weights streamed through shared memory with 16-byte cp.async,
// decoded per format (quant_decode.cuh), f32 FMAs, fixed-order reductions. The default for
// F32/F16/BF16 and for Q8_0 below 65 536 rows; the block formats otherwise use matvec_mma.cu.
//
// Roofline. A decode matvec reads each weight byte once and does 2 flops per weight: the floor is
// bytes / copy bandwidth. Reached (H200, 4.2 TB/s copy, docs/PERF.md): 38–45 % for Q8_0 / F16 /
// BF16 / F32 at 9–36 MB. Measured limit (ncu): instruction issue, not memory — 13–18 issued
// instructions per weight (IPC 3.1 of 4, DRAM 29 % busy) against the ≈5 per weight an SM can
// afford at 90 % of copy bandwidth; the launch shape changes it by < 10 %.
//
// Shape of the work (names in matvec_fast.cuh):
//   block  = 8 warps in groups of W; the grid is what fits the GPU at once.
//   unit   = R rows (of one slot, of a token pair reading one slab (float formats: each stage of
//            weights copied and converted once for both tokens), or over all slots when summed),
//            dealt round-robin to the groups; a group walks its units in turn.
//   stage  = kStageElems columns of a row: a contiguous byte range, copied into shared memory by
//            the warp's 32 lanes as 16-byte cp.async chunks from the 16-aligned address at or below
//            the range (so any row alignment works; the decoders read at the data's offset).
//   item   = one stage of a unit's R rows (for one slot). Warp k of a group takes stages k, k+W, ...
//            Items go through a ring of up to 8 buffers (Ring) as one stream across the warp's
//            units, so kBufs − 1 items are in flight while one is decoded.
//   step   = kStepElems columns of a stage, decoded by the 32 lanes together (Fmt::dot).
// Each lane keeps R partial sums; a slot's partials are scaled and added in slot order; at a unit's
// end a butterfly shuffle sums the lanes and the group's first warp adds the W warps' sums in warp
// order (named barrier per group). Every output is one fixed sequence of f32 operations:
// deterministic, no atomics.
#include <cuda_runtime.h>

#include <cstdint>

#include "cuda/cp_async.cuh"
#include "cuda/device_math.cuh"
#include "cuda/matvec_fast.cuh"
#include "cuda/matvec_launch.h"
#include "cuda/pdl.cuh"

namespace dsv4::cuda::detail {

namespace {

template <class F, int R, bool kSum, bool kPair>
__global__ void __launch_bounds__(kFastThreads, F::kMinBlocks) matvec_fast_kernel(__grid_constant__ const FastParams p) {
  constexpr int kTok = FastWarp<F, R, kSum, kPair>::kTokens;
  constexpr int kBufBytes = Ring<F, R>::kBufBytes;
  constexpr int kNBuf = Ring<F, R>::kBufs;
  extern __shared__ __align__(16) uint8_t smem[];
  uint8_t* tables = smem;
  float* red = reinterpret_cast<float*>(smem + F::kTableBytes);
  uint8_t* bufs = smem + F::kTableBytes + fast_red_bytes<F, R>();

  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const FastWarp<F, R, kSum, kPair> wk(p, blockIdx.x, warp);
  uint8_t* wbuf = bufs + warp * (kNBuf * kBufBytes);
  // A chunk cut short by the tensor's end is copied with plain loads: cp.async with a source
  // size below 16 is reported by compute-sanitizer as a 16-byte read past the allocation. The
  // __syncwarp after the wait orders these stores for the other lanes, as it does cp.async data.
  auto copy = [](uint8_t* dst, const uint8_t* src, int bytes) {
    if (bytes == 16) {
      cp_async16(dst, src);
    } else {
      for (int b = 0; b < 16; ++b) dst[b] = b < bytes ? __ldg(src + b) : uint8_t{0};
    }
  };

  // The issue cursor walks the warp's item stream kNBuf − 1 items ahead of the consumer, across
  // unit boundaries.
  int issue_k = 0, issue_i = 0;
  FastUnit issue_unit = wk.my_units > 0 ? wk.unit(0) : FastUnit{0, 0, 0};
  auto issue_next = [&](uint8_t* dst) {
    if (issue_k < wk.my_units && wk.per_unit > 0) {
      wk.issue(issue_unit, issue_i, lane, dst, copy);
      if (++issue_i == wk.per_unit) {
        issue_i = 0;
        if (++issue_k < wk.my_units) issue_unit = wk.unit(issue_k);
      }
    }
  };

  // Prologue: start the first kNBuf − 1 items (empty groups where there are fewer), then the
  // tables, whose barrier the whole block reaches before any warp waits on its items. PDL: a
  // dense launch fetches these weights while the kernel before it finishes (nothing writes
  // weights); the expert ids, activations and outputs come after it (pdl.cuh).
  if (p.experts) pdl_wait();
#pragma unroll
  for (int b = 0; b < kNBuf - 1; ++b) {
    issue_next(wbuf + b * kBufBytes);
    cp_async_commit();
  }
  if (!p.experts) pdl_wait();
  pdl_trigger();
  if constexpr (F::kTableBytes > 0) {
    F::load_tables(tables, p.tables);
    __syncthreads();
  }

  int buf = 0;  // ring buffer of the next item to consume
  for (int k = 0; k < wk.my_units; ++k) {
    const FastUnit un = wk.unit(k);
    float acc[kTok][R], part[kTok][R];
#pragma unroll
    for (int t = 0; t < kTok; ++t) {
#pragma unroll
      for (int r = 0; r < R; ++r) acc[t][r] = part[t][r] = 0.0f;
    }
    for (int i = 0; i < wk.per_unit; ++i) {
      issue_next(wbuf + (buf == 0 ? kNBuf - 1 : buf - 1) * kBufBytes);
      cp_async_commit();
      // Activations first (the same for the R rows): their latency overlaps the wait.
      float xv[kTok][F::kStageSteps][F::kXPerLane], xsum[kTok][F::kStageSteps];
#pragma unroll
      for (int t = 0; t < kTok; ++t) wk.load_x(un, i, lane, xv[t], xsum[t], t);
      cp_async_wait<kNBuf - 1>();  // this lane's chunks of the item have landed
      __syncwarp();                // ... and every other lane's
      if constexpr (kPair) {
        wk.decode_pair(un, i, lane, wbuf + buf * kBufBytes, xv, part);
      } else {
        wk.decode(un, i, lane, wbuf + buf * kBufBytes, xv[0], xsum[0], tables, part[0]);
      }
      __syncwarp();  // the buffer is refilled by a later issue
#pragma unroll
      for (int t = 0; t < kTok; ++t) wk.end_item(un, i, acc[t], part[t], t);
      buf = buf + 1 == kNBuf ? 0 : buf + 1;
    }
    // Lanes by butterfly (every lane ends with the same sums), then the group's warps in order.
#pragma unroll
    for (int t = 0; t < kTok; ++t) {
#pragma unroll
      for (int r = 0; r < R; ++r) {
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) acc[t][r] += __shfl_xor_sync(0xFFFFFFFFu, acc[t][r], o);
      }
    }
    if (p.wpr == 1) {
#pragma unroll
      for (int t = 0; t < kTok; ++t) {
#pragma unroll
        for (int r = 0; r < R; ++r) {
          if (lane == r && r < un.rows && wk.has_token(un, t)) p.y[wk.output_index(un, r, t)] = acc[t][r];
        }
      }
    } else {
      // Double-buffered by unit parity: a warp writes buffer k & 1 only after the barrier of
      // unit k − 1, by which time the group's first warp has read what it held for unit k − 2.
      float* rb = red + (k & 1) * kTok * kFastWarps * R;
      if (lane == 0) {
#pragma unroll
        for (int t = 0; t < kTok; ++t) {
#pragma unroll
          for (int r = 0; r < R; ++r) rb[(t * kFastWarps + warp) * R + r] = acc[t][r];
        }
      }
      const int g = warp / p.wpr;
      group_barrier(g, p.wpr);
      if (wk.ks == 0 && lane < un.rows) {
#pragma unroll
        for (int t = 0; t < kTok; ++t) {
          if (wk.has_token(un, t)) {
            p.y[wk.output_index(un, lane, t)] = fast_group_sum<R>(rb + (t * kFastWarps + g * p.wpr) * R, p.wpr, lane);
          }
        }
      }
    }
  }
  cp_async_wait<0>();
}

template <class F, int R, bool kSum, bool kPair>
void fill_params(const MatvecLaunch& l, FastParams* p) {
  p->w = l.w;
  p->w_end = l.w_end;
  p->row_bytes = l.row_bytes;
  p->slab_bytes = l.slab_bytes;
  p->experts = l.experts;
  p->x = l.x;
  p->x_stride = l.x_stride;
  p->scale = l.scale;
  p->y = l.y;
  p->tables = l.iq2_tables;
  p->n_in = l.n_in;
  p->n_out = l.n_out;
  p->n_slots = l.n_slots;
  p->wpr = l.warps_per_row;
  p->n_row_groups = (l.n_out + R - 1) / R;
  p->n_units = (kSum ? 1 : kPair ? token_pairs(l.n_slots, l.pair_stride) : l.n_slots) * p->n_row_groups;
  p->pair_stride = kPair ? l.pair_stride : 0;
  p->n_groups = l.blocks * (kFastWarps / l.warps_per_row);
}

template <class F, int R, bool kSum, bool kPair = false>
cudaError_t launch(const MatvecLaunch& l, cudaStream_t stream) {
  static_assert(fast_smem_bytes<F, R>() <= 48 * 1024, "no opt-in shared memory needed");
  FastParams p;
  fill_params<F, R, kSum, kPair>(l, &p);
  return launch_pdl(matvec_fast_kernel<F, R, kSum, kPair>, dim3(l.blocks), dim3(kFastThreads), fast_smem_bytes<F, R>(),
                    stream, p);
}

template <class F, int R, bool kSum>
int resident_blocks() {
  int n = 0;
  if (cudaOccupancyMaxActiveBlocksPerMultiprocessor(&n, matvec_fast_kernel<F, R, kSum, false>, kFastThreads,
                                                    fast_smem_bytes<F, R>()) != cudaSuccess) {
    return 0;
  }
  return n;
}

template <class F>
cudaError_t launch_format(const MatvecLaunch& l, cudaStream_t stream) {
  if (l.pair_stride > 0) {
    if constexpr (fast_pairs<F>()) {
      if (l.sum || l.n_slots % l.pair_stride != 0) return cudaErrorInvalidValue;
      switch (l.rows_per_warp) {
        case 1: return launch<F, 1, false, true>(l, stream);
        case 2: return launch<F, 2, false, true>(l, stream);
        case 4: return launch<F, 4, false, true>(l, stream);
        default: return cudaErrorInvalidValue;
      }
    } else {
      return cudaErrorInvalidValue;
    }
  }
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

template <class F>
int resident_blocks_format(int rows, bool sum) {
  switch (rows * 2 + (sum ? 1 : 0)) {
    case 2: return resident_blocks<F, 1, false>();
    case 3: return resident_blocks<F, 1, true>();
    case 4: return resident_blocks<F, 2, false>();
    case 5: return resident_blocks<F, 2, true>();
    case 8: return resident_blocks<F, 4, false>();
    case 9: return resident_blocks<F, 4, true>();
    default: return 0;
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

bool fast_pairs_type(gguf::TensorType type) {
  switch (type) {
    case gguf::TensorType::F32: return fast_pairs<FmtF32>();
    case gguf::TensorType::F16: return fast_pairs<FmtF16>();
    case gguf::TensorType::BF16: return fast_pairs<FmtBF16>();
    default: return false;  // the block formats (fast_pairs)
  }
}

cudaError_t launch_matvec_fast(const MatvecLaunch& l, cudaStream_t stream) {
  if (l.warps_per_row != 1 && l.warps_per_row != 2 && l.warps_per_row != 4 && l.warps_per_row != 8) {
    return cudaErrorInvalidValue;
  }
  if (l.blocks < 1) return cudaErrorInvalidValue;
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

int fast_blocks_per_sm(gguf::TensorType type, int rows_per_warp, bool sum) {
  switch (type) {
    case gguf::TensorType::F32: return resident_blocks_format<FmtF32>(rows_per_warp, sum);
    case gguf::TensorType::F16: return resident_blocks_format<FmtF16>(rows_per_warp, sum);
    case gguf::TensorType::BF16: return resident_blocks_format<FmtBF16>(rows_per_warp, sum);
    case gguf::TensorType::Q8_0: return resident_blocks_format<FmtQ8_0>(rows_per_warp, sum);
    case gguf::TensorType::Q2_K: return resident_blocks_format<FmtQ2_K>(rows_per_warp, sum);
    case gguf::TensorType::Q4_K: return resident_blocks_format<FmtQ4_K>(rows_per_warp, sum);
    case gguf::TensorType::IQ2_XXS: return resident_blocks_format<FmtIQ2_XXS>(rows_per_warp, sum);
    default: return 0;
  }
}

}  // namespace dsv4::cuda::detail
