// Tensor-core batch-1 matvec for the block formats Q8_0, Q4_K, Q2_K and IQ2_XXS: the weight codes
// go into mma.m16n8k32 (s8) as they are, the activations as exact int8 limbs (matvec_mma.cuh says
// why the result is exact up to f32 rounding of the scaled partial sums).
//
// Roofline. Decode reads each weight byte once; with f32 decoding (matvec_fast.cu) these formats
// cost 13–18 issued instructions per weight (ncu) and stay far below the memory roof. Here the
// products run on the tensor cores. Reached (H200, % of the 4.2 TB/s copy, docs/PERF.md): Q8_0
// LM head 52 %, MoE Q4_K ×6 27–33 %, Q2_K ×6 summed 16.5 %, IQ2_XXS ×6 12 %. Measured limit
// (ncu): 4.6–10 issued instructions per weight (A-fragment building, per-block index math) with
// one 16-warp block per SM: each warp issues once per 7.5–9.6 cycles, no warp eligible in ≈50 % of
// cycles, DRAM 10–31 % busy — latency of dependent shared loads, not bandwidth.
//
// Shape of the work:
//   block  = 16 warps, one per SM (persistent): shared memory holds the converted activations of
//            the whole launch (converted once per block) and each warp's ring of 3 weight buffers.
//   unit   = 16 rows of one slot (or of all slots, summed form), W warps per unit splitting the
//            stages; units dealt round-robin to the groups of W warps, as in matvec_fast.cu.
//   item   = one stage (kStageBlocks weight blocks) of a unit's 16 rows, cp.async'ed by the warp's
//            lanes (lane l: row l % 16) into its ring; two items in flight while one is decoded.
//   mma    = 16 rows × 32 codes × 4 activation limbs.
// Each lane keeps two row partials (rows g and g+8 over its 8-code columns); at a unit's end the
// four lanes of a row are added by shuffles in a fixed order and the W warps in warp order.
#include <cuda_runtime.h>

#include <cstdint>

#include "cuda/cp_async.cuh"
#include "cuda/device_math.cuh"
#include "cuda/matvec_launch.h"
#include "cuda/once_per_device.h"
#include "cuda/matvec_mma.cuh"
#include "cuda/pdl.cuh"

namespace dsv4::cuda::detail {

namespace {

__device__ __forceinline__ void mma_s8(int32_t (&c)[4], const uint32_t (&a)[4], uint2 b) {
  asm("mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};\n"
      : "+r"(c[0]), "+r"(c[1]), "+r"(c[2]), "+r"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b.x), "r"(b.y));
}

__host__ __device__ constexpr int round16(int v) { return (v + 15) / 16 * 16; }

// Shared-memory plan: tables | reduction buffer | activations | rings.
template <class M>
struct MmaSmem {
  static constexpr int kTables = round16(M::Fmt::kTableBytes);
  static constexpr int kRed = 2 * kMmaWarps * kMmaRows * 4;
  static constexpr int kRings = kMmaWarps * kMmaBufs * MmaGeometry<M>::kBufBytes;
  static int bytes(const XLayout& xl) { return kTables + kRed + round16(xl.bytes()) + kRings; }
};

// Converts the launch's activation vectors into limbs, scales and 16-group sums (all warps).
__device__ void convert_x(const MmaParams& p, const XLayout& xl, uint8_t* limbs, float* scales, float* sums) {
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int total = xl.n_xvec * xl.xblocks;
  for (int t = warp; t < total; t += kMmaWarps) {
    const int v = t / xl.xblocks, xb = t - v * xl.xblocks;
    const int e0 = xb * kXBlock + 8 * lane;  // n_in is a multiple of 32: all 8 in, or all out
    float x[8];
    if (e0 < p.n_in) {
      const float* src = p.x + v * p.x_stride + e0;
      const float4 lo = __ldg(reinterpret_cast<const float4*>(src));
      const float4 hi = __ldg(reinterpret_cast<const float4*>(src + 4));
      x[0] = lo.x, x[1] = lo.y, x[2] = lo.z, x[3] = lo.w, x[4] = hi.x, x[5] = hi.y, x[6] = hi.z, x[7] = hi.w;
    } else {
#pragma unroll
      for (int k = 0; k < 8; ++k) x[k] = 0.0f;
    }
    uint32_t mx = 0;
#pragma unroll
    for (int k = 0; k < 8; ++k) mx = max(mx, __float_as_uint(x[k]) & 0x7FFFFFFFu);
    mx = __reduce_max_sync(0xFFFFFFFFu, mx);
    const int e = xblock_exponent(mx);
    if (e0 < p.n_in) {
      uint32_t w[kXLimbs][2] = {};
#pragma unroll
      for (int k = 0; k < 8; ++k) {
        const int32_t X = x_to_fixed(x[k], e);
#pragma unroll
        for (int q = 0; q < kXLimbs; ++q) w[q][k >> 2] |= (static_cast<uint32_t>(x_limb(X, q)) & 0xFFu) << (8 * (k & 3));
      }
      const int chunk = e0 / kChunk;
#pragma unroll
      for (int q = 0; q < kXLimbs; ++q) {
        *reinterpret_cast<uint2*>(limbs + ((static_cast<int64_t>(v) * xl.chunks + chunk) * kXLimbs + q) * kChunk +
                                  8 * (lane & 3)) = make_uint2(w[q][0], w[q][1]);
      }
    }
    if (lane < 8) {
      const bool finite = mx < 0x7F800000u;
      scales[(v * xl.xblocks + xb) * 8 + lane] =
          lane >= kXLimbs ? 0.0f : (finite ? pow2f(e + 8 * lane) : __uint_as_float(0x7FC00000u));
    }
    if (xl.sums) {
      float s8 = x[0];
#pragma unroll
      for (int k = 1; k < 8; ++k) s8 += x[k];
      const float next = __shfl_down_sync(0xFFFFFFFFu, s8, 1);
      if ((lane & 1) == 0 && e0 < p.n_in) sums[v * (p.n_in / 16) + e0 / 16] = s8 + next;
    }
  }
}

template <class M, bool kSum>
__global__ void __launch_bounds__(kMmaThreads, 1) matvec_mma_kernel(const __grid_constant__ MmaParams p) {
  using G = MmaGeometry<M>;
  using S = MmaSmem<M>;
  extern __shared__ __align__(16) uint8_t smem[];
  const XLayout xl = make_xlayout(p.n_in, p.n_xvec, M::kSums);
  pdl_wait();  // launched with PDL: nothing before this line (pdl.cuh)
  pdl_trigger();
  uint8_t* tables = smem;
  float* red = reinterpret_cast<float*>(smem + S::kTables);
  uint8_t* limbs = smem + S::kTables + S::kRed;
  float* scales = reinterpret_cast<float*>(limbs + xl.limb_bytes());
  float* sums = scales + xl.scale_bytes() / 4;
  uint8_t* rings = limbs + round16(xl.bytes());

  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const MmaWarp<M, kSum> wk(p, blockIdx.x, warp);
  uint8_t* wbuf = rings + warp * (kMmaBufs * G::kBufBytes);
  // A chunk cut short by the tensor's end is copied with plain loads (compute-sanitizer reports a
  // short cp.async as a 16-byte read); the __syncwarp after the wait orders them like cp.async data.
  auto copy = [](uint8_t* dst, const uint8_t* src, int bytes) {
    if (bytes == 16) {
      cp_async16(dst, src);
    } else {
      for (int b = 0; b < 16; ++b) dst[b] = b < bytes ? __ldg(src + b) : uint8_t{0};
    }
  };
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

  // Weights first, so their latency overlaps the conversion of the activations.
#pragma unroll
  for (int b = 0; b < kMmaBufs - 1; ++b) {
    issue_next(wbuf + b * G::kBufBytes);
    cp_async_commit();
  }
  if constexpr (M::Fmt::kTableBytes > 0) M::Fmt::load_tables(tables, p.tables);
  convert_x(p, xl, limbs, scales, sums);
  __syncthreads();

  const int g = lane >> 2, c = lane & 3;
  int buf = 0;
  for (int k = 0; k < wk.my_units; ++k) {
    const FastUnit un = wk.unit(k);
    float acc[2] = {0.0f, 0.0f}, part[2] = {0.0f, 0.0f};
    for (int i = 0; i < wk.per_unit; ++i) {
      issue_next(wbuf + (buf == 0 ? kMmaBufs - 1 : buf - 1) * G::kBufBytes);
      cp_async_commit();
      cp_async_wait<kMmaBufs - 1>();
      __syncwarp();
      const RowPair rows = wk.rows(un, i, lane, wbuf + buf * G::kBufBytes);
      const int v = wk.xvec_of(un, i), st = wk.stage_of(i), nblk = wk.stage_blocks(st);
#pragma unroll
      for (int blk = 0; blk < M::kStageBlocks; ++blk) {
        if (blk < nblk) {
          const int elem0 = st * G::kStageElems + blk * M::Fmt::kBlockElems;
          const int xb = elem0 / kXBlock;
          const float2 xs = *reinterpret_cast<const float2*>(scales + (v * xl.xblocks + xb) * 8 + 2 * c);
          const float* xsum = sums + v * (p.n_in / 16) + xb * 16;
          typename M::State s;
          if constexpr (M::Fmt::kTableBytes > 0) s.tables = tables;
          M::begin(s, rows, blk, lane);
#pragma unroll
          for (int m = 0; m < M::kMmas; ++m) {
            uint32_t a[4];
            int32_t cc[4];
            M::build(s, rows, blk, m, lane, a, cc);
            mma_s8(cc, a, b_fragment(limbs, xl, v, elem0 / kChunk + m, lane));
            M::after(s, rows, blk, m, lane, cc, xs, part);
          }
          M::end(s, rows, blk, lane, xs, xsum, part);
        }
      }
      __syncwarp();  // the buffer is refilled by a later issue
      if (wk.last_of_slot(i)) {
        const float sc = wk.slot_scale(un, i);
        acc[0] = fmaf(sc, part[0], acc[0]);
        acc[1] = fmaf(sc, part[1], acc[1]);
        part[0] = part[1] = 0.0f;
      }
      buf = buf + 1 == kMmaBufs ? 0 : buf + 1;
    }
    // The four lanes of a row in a fixed order, then the group's warps in warp order.
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      acc[h] += __shfl_xor_sync(0xFFFFFFFFu, acc[h], 1);
      acc[h] += __shfl_xor_sync(0xFFFFFFFFu, acc[h], 2);
    }
    if (p.wpr == 1) {
      if (c == 0) {
        if (g < un.rows) p.y[wk.output_index(un, g)] = acc[0];
        if (g + 8 < un.rows) p.y[wk.output_index(un, g + 8)] = acc[1];
      }
    } else {
      float* rb = red + (k & 1) * kMmaWarps * kMmaRows;  // double-buffered, as in matvec_fast.cu
      if (c == 0) {
        rb[warp * kMmaRows + g] = acc[0];
        rb[warp * kMmaRows + g + 8] = acc[1];
      }
      const int grp = warp / p.wpr;
      group_barrier(grp, p.wpr);
      if (wk.ks == 0 && lane < un.rows) {
        const float* gb = rb + grp * p.wpr * kMmaRows;
        float s = gb[lane];
        for (int j = 1; j < p.wpr; ++j) s += gb[j * kMmaRows + lane];
        p.y[wk.output_index(un, lane)] = s;
      }
    }
  }
  cp_async_wait<0>();
}

// Lets every instantiation use the device's opt-in shared memory, once per device.
template <class M, bool kSum>
cudaError_t allow_smem(int device) {
  return once_per_device(device, [device] {
    int optin = 0;
    cudaError_t e = cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device);
    if (e == cudaSuccess) e = cudaFuncSetAttribute(matvec_mma_kernel<M, kSum>, cudaFuncAttributeMaxDynamicSharedMemorySize, optin);
    return e;
  });
}

template <class M, bool kSum>
cudaError_t launch(const MatvecLaunch& l, cudaStream_t stream) {
  int device = 0;
  cudaError_t e = cudaGetDevice(&device);
  if (e != cudaSuccess) return e;
  e = allow_smem<M, kSum>(device);
  if (e != cudaSuccess) return e;
  MmaParams p;
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
  p.n_xvec = l.x_stride ? l.n_slots : 1;
  p.wpr = l.warps_per_row;
  p.n_row_groups = (l.n_out + kMmaRows - 1) / kMmaRows;
  p.n_units = kSum ? p.n_row_groups : l.n_slots * p.n_row_groups;
  p.n_groups = l.blocks * (kMmaWarps / l.warps_per_row);
  const int smem = MmaSmem<M>::bytes(make_xlayout(l.n_in, p.n_xvec, M::kSums));
  return launch_pdl(matvec_mma_kernel<M, kSum>, dim3(l.blocks), dim3(kMmaThreads), smem, stream, p);
}

template <class M>
cudaError_t launch_format(const MatvecLaunch& l, cudaStream_t stream) {
  return l.sum ? launch<M, true>(l, stream) : launch<M, false>(l, stream);
}

template <class M>
int smem_format(int n_in, int n_xvec) {
  return MmaSmem<M>::bytes(make_xlayout(n_in, n_xvec, M::kSums));
}

}  // namespace

int mma_stage_elems(gguf::TensorType type) {
  switch (type) {
    case gguf::TensorType::Q8_0: return MmaGeometry<MmaQ8_0>::kStageElems;
    case gguf::TensorType::Q2_K: return MmaGeometry<MmaQ2_K>::kStageElems;
    case gguf::TensorType::Q4_K: return MmaGeometry<MmaQ4_K>::kStageElems;
    case gguf::TensorType::IQ2_XXS: return MmaGeometry<MmaIQ2_XXS>::kStageElems;
    default: return 0;
  }
}

int mma_smem_bytes(gguf::TensorType type, int n_in, int n_xvec) {
  switch (type) {
    case gguf::TensorType::Q8_0: return smem_format<MmaQ8_0>(n_in, n_xvec);
    case gguf::TensorType::Q2_K: return smem_format<MmaQ2_K>(n_in, n_xvec);
    case gguf::TensorType::Q4_K: return smem_format<MmaQ4_K>(n_in, n_xvec);
    case gguf::TensorType::IQ2_XXS: return smem_format<MmaIQ2_XXS>(n_in, n_xvec);
    default: return 0;
  }
}

cudaError_t prepare_matvec_mma() {
  int device = 0;
  cudaError_t e = cudaGetDevice(&device);
  if (e == cudaSuccess) e = allow_smem<MmaQ8_0, false>(device);
  if (e == cudaSuccess) e = allow_smem<MmaQ8_0, true>(device);
  if (e == cudaSuccess) e = allow_smem<MmaQ2_K, false>(device);
  if (e == cudaSuccess) e = allow_smem<MmaQ2_K, true>(device);
  if (e == cudaSuccess) e = allow_smem<MmaQ4_K, false>(device);
  if (e == cudaSuccess) e = allow_smem<MmaQ4_K, true>(device);
  if (e == cudaSuccess) e = allow_smem<MmaIQ2_XXS, false>(device);
  if (e == cudaSuccess) e = allow_smem<MmaIQ2_XXS, true>(device);
  return e;
}

cudaError_t launch_matvec_mma(const MatvecLaunch& l, cudaStream_t stream) {
  if (l.warps_per_row < 1 || l.warps_per_row > kMmaWarps || (l.warps_per_row & (l.warps_per_row - 1)) ||
      l.blocks < 1) {
    return cudaErrorInvalidValue;
  }
  switch (l.type) {
    case gguf::TensorType::Q8_0: return launch_format<MmaQ8_0>(l, stream);
    case gguf::TensorType::Q2_K: return launch_format<MmaQ2_K>(l, stream);
    case gguf::TensorType::Q4_K: return launch_format<MmaQ4_K>(l, stream);
    case gguf::TensorType::IQ2_XXS: return launch_format<MmaIQ2_XXS>(l, stream);
    default: return cudaErrorInvalidValue;
  }
}

}  // namespace dsv4::cuda::detail
