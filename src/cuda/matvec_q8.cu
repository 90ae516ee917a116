// Q8_0 row-tile matvec (rows_per_warp 32 in MatvecTuning): the default for Q8_0 rows of a multiple
// of 256 elements. Layout and per-lane work: matvec_q8.cuh.
//
// Roofline. Batch-1 decode reads each weight byte once, so the floor is bytes / copy bandwidth; an
// SM must take ≈13.6 Q8_0 weights per clock at 90 % of an H200's copy bandwidth. This kernel decodes
// in integers (dp4a of the int8 codes against the activations' fixed-point limbs, matvec_q8.cuh),
// reads the weights with coalesced 16-byte cp.async (two 8.7 KB items in flight per warp, 8 warps
// per SM: ≈140 KB in flight per SM, several times what the latency needs) and the activations' limbs
// as broadcast loads from shared memory (each warp loads its next item's 1 KB of x one item ahead
// and converts it when that item's turn comes).
//
// Shape of the work:
//   block  = W warps (W = warps_per_row, 1–8), together computing one tile of 32 rows at a time;
//            warp k takes the superblocks k, k+W, ... of the tile's rows (for every slot when
//            summed). The grid is what fits the GPU at once; unit u (a tile of one slot, or a tile
//            over all slots when summed) goes to block u mod gridDim.x, so blocks walk their units
//            in turn and each warp's items form one stream through its ring across units.
//   lane   = one row: its partial sums stay in registers (each item's f32 sum times the item's
//            2^E); a slot's partial is scaled and added in slot order; at a unit's end the block's
//            W partials are added in warp order.
// Every output is one fixed sequence of f32 operations: deterministic, no atomics, the same bits
// for any grid.
#include <cuda_runtime.h>

#include <cstdint>

#include "cuda/cp_async.cuh"
#include "cuda/matvec_launch.h"
#include "cuda/once_per_device.h"
#include "cuda/matvec_q8.cuh"
#include "cuda/pdl.cuh"
#include "cuda/row_tile.cuh"
#include "cuda/swiglu.cuh"

namespace dsv4::cuda::detail {

namespace {

static_assert(kQ8TileRows == kRowTileRows, "the row-tile schedule (row_tile.cuh) takes tiles of 32 rows");

struct Q8Params {
  const uint8_t* w;  // 16-aligned; rows of row_bytes (a multiple of 272)
  int64_t row_bytes;
  int64_t slab_bytes;
  const int32_t* experts;  // null: slot j is slab j
  const float* x;          // 16-aligned
  int64_t x_stride;        // a multiple of 4
  const float* up;         // kSwiglu: slot j's activation is swiglu_element(x_j[i], up[j·x_stride + i],
  const float* act_weights;  // act_weights + j or null, act_limit)
  float act_limit;
  const float* norm_w;  // kRmsNorm (dense): the activation is (x[i]·r)·norm_w[i], r = q8_rms_scale(x)
  float norm_eps;
  const float* scale;      // null: 1
  float* y;
  int n_out;
  int n_slots;
  int n_sb;     // superblocks per row
  int n_tiles;  // ⌈n_out / 32⌉
  int n_units;  // n_tiles (summed) or n_slots · n_tiles
};


// What the kernel stages as its activations: x as it is, SwiGLU(x, up) (the op before a down
// projection) or RMSNorm(x) (the op before q_b): the fused forms save the launch of that op.
enum class Q8Input { kPlain, kSwiglu, kRmsNorm };

// RMSNorm's scale of x[0, n) as norms.cu computes it (Σx² in double, rounded once), by one warp in a
// fixed order (each lane its float4s in turn, then a fixed shuffle tree): the same value in every
// warp of every grid. n a multiple of 128.
__device__ float q8_rms_scale(const float* x, int n, float eps, int lane) {
  double ss = 0.0;
  for (int i = 4 * lane; i < n; i += 128) {
    const float4 v = __ldg(reinterpret_cast<const float4*>(x + i));
    ss += static_cast<double>(v.x) * static_cast<double>(v.x);
    ss += static_cast<double>(v.y) * static_cast<double>(v.y);
    ss += static_cast<double>(v.z) * static_cast<double>(v.z);
    ss += static_cast<double>(v.w) * static_cast<double>(v.w);
  }
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) ss += __shfl_down_sync(0xFFFFFFFFu, ss, o);
  ss = __shfl_sync(0xFFFFFFFFu, ss, 0);
  return static_cast<float>(1.0 / sqrt(ss / static_cast<double>(n) + static_cast<double>(eps)));
}

template <bool kSum, Q8Input kIn>
__global__ void __launch_bounds__(kQ8MaxWarps * 32) matvec_q8_kernel(__grid_constant__ const Q8Params p) {
  extern __shared__ __align__(16) uint8_t smem[];
  const int W = blockDim.x >> 5;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  uint8_t* ring = smem + warp * (kQ8Ring * kQ8ItemBytes);
  constexpr int kXbufWords = kQ8XLimbs * kQ8XWords;  // the item's limb planes
  uint32_t* xbuf = reinterpret_cast<uint32_t*>(smem + W * (kQ8Ring * kQ8ItemBytes)) + warp * kXbufWords;
  float* red = reinterpret_cast<float*>(smem + W * (kQ8Ring * kQ8ItemBytes + kXbufWords * 4));  // [2][W][32]

  // Row items are superblocks (row_tile.cuh).
  const RowTileSchedule<kSum> sched(p.n_sb, p.n_slots, p.n_units, p.n_tiles, W, warp);
  const int per_unit = sched.per_unit, my_units = sched.my_units;

  // This lane's 17 chunk offsets within an item of a full tile (a partial last tile recomputes).
  int32_t off[kQ8SbChunks];
#pragma unroll
  for (int j = 0; j < kQ8SbChunks; ++j) off[j] = static_cast<int32_t>(q8_chunk_offset(lane, j, p.row_bytes, 31));

  int issue_k = 0, issue_i = 0;
  auto issue_next = [&](uint8_t* dst) {
    if (issue_k >= my_units || per_unit == 0) return;
    const int slot = sched.item_slot(issue_k, issue_i), tile = sched.unit_tile(issue_k);
    const int e = p.experts ? __ldg(p.experts + slot) : slot;
    const uint8_t* base = p.w + e * p.slab_bytes + static_cast<int64_t>(tile) * kQ8TileRows * p.row_bytes +
                          static_cast<int64_t>(sched.item_index(issue_i)) * kQ8SbBytes;
    const int last_row = p.n_out - 1 - tile * kQ8TileRows;
    if (last_row >= kQ8TileRows - 1) {
#pragma unroll
      for (int j = 0; j < kQ8SbChunks; ++j) cp_async16(dst + 16 * (lane + 32 * j), base + off[j]);
    } else {
#pragma unroll
      for (int j = 0; j < kQ8SbChunks; ++j) {
        cp_async16(dst + 16 * (lane + 32 * j), base + q8_chunk_offset(lane, j, p.row_bytes, last_row));
      }
    }
    if (++issue_i == per_unit) {
      issue_i = 0;
      ++issue_k;
    }
  };

  // The activations of the warp's next item (unit k, item i), in flight in registers while the
  // current item is decoded; staged into xbuf when that item's turn comes.
  // Fused forms: u_next holds the up values (kSwiglu) or the norm weights (kRmsNorm) until staged.
  constexpr bool kSwiglu = kIn == Q8Input::kSwiglu, kRmsNorm = kIn == Q8Input::kRmsNorm;
  float4 x_next[kQ8XChunks], u_next[kQ8XChunks];
  auto load_x = [&](int k, int i) {
    if (k >= my_units || per_unit == 0) return;
    const int64_t at = sched.item_slot(k, i) * p.x_stride + static_cast<int64_t>(sched.item_index(i)) * kQ8SbElems;
#pragma unroll
    for (int j = 0; j < kQ8XChunks; ++j) {
      x_next[j] = __ldg(reinterpret_cast<const float4*>(p.x + at + q8_x_index(lane, j)));
      if constexpr (kSwiglu) u_next[j] = __ldg(reinterpret_cast<const float4*>(p.up + at + q8_x_index(lane, j)));
      if constexpr (kRmsNorm) u_next[j] = __ldg(reinterpret_cast<const float4*>(p.norm_w + at + q8_x_index(lane, j)));
    }
  };

  // PDL: the weights of a dense launch are fetched while the kernel before it finishes (nothing
  // writes weights); the expert ids, activations and outputs only after it. pdl.cuh.
  if (p.experts) pdl_wait();
#pragma unroll
  for (int b = 0; b < kQ8Ring - 1; ++b) {
    issue_next(ring + b * kQ8ItemBytes);
    cp_async_commit();
  }
  if (!p.experts) pdl_wait();
  load_x(0, 0);
  pdl_trigger();
  float norm_r = 1.0f;
  if constexpr (kRmsNorm) norm_r = q8_rms_scale(p.x, p.n_sb * kQ8SbElems, p.norm_eps, lane);

  int buf = 0;
  for (int k = 0; k < my_units; ++k) {
    float acc = 0.0f, part = 0.0f;
    for (int i = 0; i < per_unit; ++i) {
      issue_next(ring + (buf == 0 ? kQ8Ring - 1 : buf - 1) * kQ8ItemBytes);
      cp_async_commit();
      cp_async_wait<kQ8Ring - 1>();  // this lane's chunks of item i have landed
      __syncwarp();                  // ... and every other lane's
      uint32_t wv[kQ8SbWords];
      const uint4* row = reinterpret_cast<const uint4*>(ring + buf * kQ8ItemBytes + lane * kQ8SbBytes);
#pragma unroll
      for (int c = 0; c < kQ8SbChunks; ++c) {
        const uint4 v = row[c];
        wv[4 * c] = v.x;
        wv[4 * c + 1] = v.y;
        wv[4 * c + 2] = v.z;
        wv[4 * c + 3] = v.w;
      }
      // Every lane is past the previous item's decode (the __syncwarp above): xbuf is free.
      const int slot = sched.item_slot(k, i);
      float4 v[kQ8XChunks];
#pragma unroll
      for (int j = 0; j < kQ8XChunks; ++j) {
        v[j] = x_next[j];
        if constexpr (kSwiglu) {
          const float* aw = p.act_weights ? p.act_weights + slot : nullptr;
          v[j] = make_float4(swiglu_element(v[j].x, u_next[j].x, aw, p.act_limit),
                             swiglu_element(v[j].y, u_next[j].y, aw, p.act_limit),
                             swiglu_element(v[j].z, u_next[j].z, aw, p.act_limit),
                             swiglu_element(v[j].w, u_next[j].w, aw, p.act_limit));
        }
        if constexpr (kRmsNorm) {  // as norms.cu: (x·r)·w, each product rounded
          const float4 nw = u_next[j];
          v[j] = make_float4(__fmul_rn(__fmul_rn(v[j].x, norm_r), nw.x), __fmul_rn(__fmul_rn(v[j].y, norm_r), nw.y),
                             __fmul_rn(__fmul_rn(v[j].z, norm_r), nw.z), __fmul_rn(__fmul_rn(v[j].w, norm_r), nw.w));
        }
      }
      // The item's exponent from the warp's largest |x| (an exact maximum: any order), then its limbs.
      uint32_t max_abs = q8_lane_max_abs(v);
#pragma unroll
      for (int o = 16; o > 0; o >>= 1) max_abs = max(max_abs, __shfl_xor_sync(0xFFFFFFFFu, max_abs, o));
      const float item_scale = q8_x_scale(max_abs);
      uint32_t words[kQ8XChunks][kQ8XLimbs];
      q8_stage_lane(v, q8_x_exponent(max_abs), words);
#pragma unroll
      for (int j = 0; j < kQ8XChunks; ++j) {
#pragma unroll
        for (int q = 0; q < kQ8XLimbs; ++q) xbuf[q * kQ8XWords + lane + 32 * j] = words[j][q];
      }
      if (i + 1 < per_unit) {
        load_x(k, i + 1);
      } else {
        load_x(k + 1, 0);
      }
      __syncwarp();  // the weight buffer is refilled by a later issue; xbuf is complete
      const float sb = q8_superblock_dot(
          wv, [xbuf](int q, int c) { return reinterpret_cast<const uint4*>(xbuf + q * kQ8XWords)[c]; });
      part = fmaf(sb, item_scale, part);
      // Scaled and added: per item in the per-slot form, at each slot's last item (slot order) when summed.
      if (sched.closes_slot(i)) {
        const float s = p.scale ? __ldg(p.scale + slot) : 1.0f;
        acc = fmaf(s, part, acc);
        part = 0.0f;
      }
      buf = buf + 1 == kQ8Ring ? 0 : buf + 1;
    }
    const int row = sched.unit_tile(k) * kQ8TileRows + lane;
    store_row_tile(acc, red, k, W, warp, lane, row, p.n_out, sched.out_index(k, row, p.n_out), p.y);
  }
  cp_async_wait<0>();
}

using Q8Kernel = void (*)(Q8Params);
constexpr Q8Kernel kQ8Kernels[] = {matvec_q8_kernel<false, Q8Input::kPlain>, matvec_q8_kernel<true, Q8Input::kPlain>,
                                   matvec_q8_kernel<false, Q8Input::kSwiglu>, matvec_q8_kernel<true, Q8Input::kSwiglu>,
                                   matvec_q8_kernel<false, Q8Input::kRmsNorm>};
// The instantiation of a launch (RMSNorm: dense launches only, checked by the caller).
Q8Kernel q8_kernel(bool sum, Q8Input in) {
  return in == Q8Input::kRmsNorm ? kQ8Kernels[4] : kQ8Kernels[(in == Q8Input::kSwiglu ? 2 : 0) + (sum ? 1 : 0)];
}

// Lets every instantiation use the largest shared memory a launch asks for, once per device.
cudaError_t allow_smem(int device) {
  return once_per_device(device, [] {
    constexpr int bytes = q8_smem_bytes(kQ8MaxWarps);
    cudaError_t e = cudaSuccess;
    for (Q8Kernel k : kQ8Kernels) {
      if (e == cudaSuccess) e = cudaFuncSetAttribute(k, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes);
    }
    return e;
  });
}

}  // namespace

int q8_warps_per_row(int64_t n_in, int64_t n_out) {
  return row_tile_warps_per_row(n_in / kQ8SbElems, n_out, kQ8MaxWarps);
}

cudaError_t prepare_matvec_q8() {
  int device = 0;
  const cudaError_t e = cudaGetDevice(&device);
  return e == cudaSuccess ? allow_smem(device) : e;
}

int q8_blocks_per_sm(int warps) {
  int n = 0;
  if (prepare_matvec_q8() != cudaSuccess ||
      cudaOccupancyMaxActiveBlocksPerMultiprocessor(&n, kQ8Kernels[0], warps * 32, q8_smem_bytes(warps)) !=
          cudaSuccess) {
    return 0;
  }
  return n;
}

cudaError_t launch_matvec_q8(const MatvecLaunch& l, cudaStream_t stream) {
  const int W = l.warps_per_row;
  if ((W != 1 && W != 2 && W != 4 && W != 8) || l.blocks < 1 || l.n_in % kQ8SbElems != 0 ||
      l.row_bytes * kQ8TileRows > INT32_MAX || W > l.n_in / kQ8SbElems ||
      (l.norm_w && (l.up || l.experts || l.sum || l.n_slots != 1))) {
    return cudaErrorInvalidValue;
  }
  cudaError_t e = prepare_matvec_q8();
  if (e != cudaSuccess) return e;
  Q8Params p;
  p.w = l.w;
  p.row_bytes = l.row_bytes;
  p.slab_bytes = l.slab_bytes;
  p.experts = l.experts;
  p.x = l.x;
  p.x_stride = l.x_stride;
  p.up = l.up;
  p.act_weights = l.act_weights;
  p.act_limit = l.act_limit;
  p.norm_w = l.norm_w;
  p.norm_eps = l.norm_eps;
  p.scale = l.scale;
  p.y = l.y;
  p.n_out = l.n_out;
  p.n_slots = l.n_slots;
  p.n_sb = l.n_in / kQ8SbElems;
  p.n_tiles = (l.n_out + kQ8TileRows - 1) / kQ8TileRows;
  p.n_units = l.sum ? p.n_tiles : l.n_slots * p.n_tiles;
  const Q8Input in = l.norm_w ? Q8Input::kRmsNorm : l.up ? Q8Input::kSwiglu : Q8Input::kPlain;
  return launch_pdl(q8_kernel(l.sum, in), dim3(l.blocks), dim3(W * 32), q8_smem_bytes(W), stream, p);
}

}  // namespace dsv4::cuda::detail
