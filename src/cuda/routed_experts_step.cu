// A one-token decode step's routed experts in one launch (matvec_launch.h
// launch_routed_experts_step): the gate/up with the SwiGLU of row pairs, then the down projection,
// where matvec_2bit.cu ran them as two launches with the shared expert's down projection between.
// Why: the two launches each paid a ramp (the down's blocks land only as the gate/up's leave, then
// wait for its last block, stage, fetch their first weights) and the down waited for the whole
// gate/up; here a group starts its down units as soon as every gate/up unit of their slot is
// written (docs/PERF.md, session 40).
//
// Work: the grid is what the GPU holds at once (every block resident: a group may wait on any
// other). Group g of block b (rt2_vblock) walks its gate/up units exactly as matvec_2bit.cu's
// kernel would (RowTileWalk, the same units, items and order per output: the same bits), adds one
// to its units' slot counters, then walks its down units, which are all of one slot (the groups
// are a multiple of the slots and units are dealt tile-major): it fetches its first weights,
// waits until its slot's counter reaches the gate/up tiles of a slot, stages that slot's
// activations in its own buffer (the same limb blocks as the down launch's staging) and walks
// them. The last group to finish sets the counters back to zero for the next launch.
#include <cuda_runtime.h>

#include <cstdint>

#include "cuda/matvec_2bit_body.cuh"
#include "cuda/matvec_launch.h"
#include "cuda/once_per_device.h"
#include "cuda/pdl.cuh"

namespace dsv4::cuda::detail {

namespace {

// Items per row of the experts' decode shapes (gate/up 4096 = 8 IQ2_XXS items, down 2048 = 8
// Q2_K items): the compile-time row stride, as matvec_2bit.cu's per-slot launches of these shapes.
constexpr int kStepItems = 8;

struct StepParams {
  RtParams gu, dn;  // the two launches' parameters (gate/up: swiglu_rows, one x; down: its x the gate/up's y)
  unsigned* counters;  // [n_slots] gate/up units written per slot, then [1] groups finished
};

template <class FmtGU, class FmtDn>
__host__ __device__ constexpr int ring_bytes() {
  return 2 * (rt_item_bytes<FmtGU>() > rt_item_bytes<FmtDn>() ? rt_item_bytes<FmtGU>() : rt_item_bytes<FmtDn>());
}

// Dynamic shared memory: the gate/up's activations, each group's slot of the down's, the warps'
// rings, the groups' reduction buffers and swiglu round buffers.
template <class FmtGU, class FmtDn>
int64_t step_smem_bytes(int groups, int W, int gu_in, int dn_in) {
  const int warps = groups * W;
  return (gu_in / kXBlock2b + int64_t{groups} * (dn_in / kXBlock2b)) * static_cast<int64_t>(sizeof(XBlock2b)) +
         int64_t{warps} * ring_bytes<FmtGU, FmtDn>() + 3 * int64_t{warps} * k2bTileRows * 4;
}

__device__ __forceinline__ unsigned load_acquire(const unsigned* p) {
  unsigned v;
  asm volatile("ld.acquire.gpu.global.u32 %0, [%1];" : "=r"(v) : "l"(p) : "memory");
  return v;
}

template <class FmtGU, class FmtDn>
__global__ void __launch_bounds__(k2bMaxBlockWarps * 32, 1) routed_experts_step_kernel(__grid_constant__ const StepParams sp) {
  const RtParams& gu = sp.gu;
  const RtParams& dn = sp.dn;
  constexpr int kRing = ring_bytes<FmtGU, FmtDn>();
  extern __shared__ __align__(16) uint8_t smem[];
  const int W = gu.W, G = gu.groups;
  const int block_warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int group = block_warp / W, warp = block_warp - group * W;
  const int gu_blocks = gu.n_in / kXBlock2b, dn_blocks = dn.n_in / kXBlock2b;
  XBlock2b* xgu = reinterpret_cast<XBlock2b*>(smem);
  XBlock2b* xdn = xgu + gu_blocks + group * dn_blocks;
  uint8_t* rings = reinterpret_cast<uint8_t*>(xgu + gu_blocks + G * dn_blocks);
  float* red = reinterpret_cast<float*>(rings + (blockDim.x >> 5) * kRing) + group * 2 * W * k2bTileRows;
  float* pend = reinterpret_cast<float*>(rings + (blockDim.x >> 5) * kRing) + (2 * G + group) * W * k2bTileRows;
  uint8_t* ring = rings + block_warp * kRing;
  const int vblock = rt2_vblock(blockIdx.x, group, gridDim.x), vgrid = gridDim.x * G;

  RowTileWalk<FmtGU, false, kStepItems> up(gu, ring, W, warp, lane, vblock, vgrid);
  if constexpr (FmtGU::kTables) copy_iq2_tables(gu.iq2);
  pdl_wait();  // the expert ids, the activations
  up.issue_first();
  pdl_trigger();
  stage_x<FmtGU>(gu, false, xgu, gu.n_in);
  __syncthreads();  // the tables and activations are in place
  up.run(red, pend, group, [&](int) { return xgu; });

  // Every row this group activated is written (each writer's fence, then the group's barrier)
  // before its units count for their slots.
  __threadfence();
  group_barrier(group, W);
  if (warp == 0 && lane == 0) {
    UnitCursor<false> unit(vblock, vgrid, gu.n_slots, gu.n_tiles);
    for (int k = 0; k < up.sched.my_units; ++k, unit.next()) atomicAdd(sp.counters + unit.slot(), 1u);
  }

  RowTileWalk<FmtDn, false, kStepItems> down(dn, ring, W, warp, lane, vblock, vgrid);
  if (down.sched.my_units > 0) {
    const int slot = vblock % dn.n_slots;  // of every down unit of the group
    down.issue_first();                   // weights: the slot's expert is known
    if (warp == 0 && lane == 0) {
      while (load_acquire(sp.counters + slot) < static_cast<unsigned>(gu.n_tiles)) __nanosleep(32);
    }
    group_barrier(group, W);
    // The slot's activations as the down launch stages them (stage_x), read from L2: they were
    // written during this launch.
    for (int i = warp; i < dn_blocks; i += W) {
      const float* at = dn.x + slot * dn.x_stride + i * kXBlock2b + 8 * lane;
      const float4 lo = __ldcg(reinterpret_cast<const float4*>(at));
      const float4 hi = __ldcg(reinterpret_cast<const float4*>(at + 4));
      const float x[8] = {lo.x, lo.y, lo.z, lo.w, hi.x, hi.y, hi.z, hi.w};
      stage_block<FmtDn>(x, xdn[i], lane);
    }
    group_barrier(group, W);
    down.run(red, pend, group, [&](int) { return xdn; });
  }

  // The last group out resets the counters: every group has passed its wait by then.
  if (warp == 0 && lane == 0) {
    const unsigned groups = gridDim.x * G;
    if (atomicAdd(sp.counters + gu.n_slots, 1u) == groups - 1) {
      for (int j = 0; j <= gu.n_slots; ++j) sp.counters[j] = 0;
    }
  }
}

template <class FmtGU, class FmtDn>
cudaError_t allow_step_smem(int device) {
  return once_per_device(device, [device] {
    int max_smem = 0;
    cudaError_t e = cudaDeviceGetAttribute(&max_smem, cudaDevAttrMaxSharedMemoryPerBlockOptin, device);
    const int bytes = max_smem - (FmtGU::kTables || FmtDn::kTables ? static_cast<int>(sizeof(Iq2RowTables)) : 0);
    if (e == cudaSuccess) {
      e = cudaFuncSetAttribute(routed_experts_step_kernel<FmtGU, FmtDn>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                               bytes);
    }
    return e;
  });
}

RtParams step_params(const MatvecLaunch& l, int groups) {
  RtParams p{};
  p.w = l.w;
  p.row_bytes = l.row_bytes;
  p.slab_bytes = l.slab_bytes;
  p.experts = l.experts;
  p.x = l.x;
  p.x_stride = l.x_stride;
  p.slots_per_x = 1;
  p.act_weights = l.act_weights;
  p.act_limit = l.act_limit;
  p.swiglu_rows = l.swiglu_rows;
  p.y = l.y;
  p.iq2 = static_cast<const Iq2Tables*>(l.iq2_tables);
  p.n_in = l.n_in;
  p.n_out = l.n_out;
  p.n_slots = l.n_slots;
  p.n_items = kStepItems;
  p.n_tiles = (l.n_out + k2bTileRows - 1) / k2bTileRows;
  p.n_units = l.n_slots * p.n_tiles;
  p.W = l.warps_per_row;
  p.groups = groups;
  return p;
}

}  // namespace

// The shapes the kernel is instantiated for: IQ2_XXS gate/up and Q2_K down (the q2 mix).
bool routed_experts_step_types(gguf::TensorType gate_up, gguf::TensorType down) {
  return gate_up == gguf::TensorType::IQ2_XXS && down == gguf::TensorType::Q2_K;
}

int routed_experts_step_items() { return kStepItems; }

int64_t routed_experts_step_smem(int groups, int W, int gu_in, int dn_in) {
  return step_smem_bytes<Fmt2bIQ2, Fmt2bQ2K>(groups, W, gu_in, dn_in) + static_cast<int64_t>(sizeof(Iq2RowTables));
}

int routed_experts_step_blocks_per_sm(int groups, int W, int gu_in, int dn_in) {
  int device = 0, n = 0;
  if (cudaGetDevice(&device) != cudaSuccess || allow_step_smem<Fmt2bIQ2, Fmt2bQ2K>(device) != cudaSuccess) return 0;
  const cudaError_t e = cudaOccupancyMaxActiveBlocksPerMultiprocessor(
      &n, routed_experts_step_kernel<Fmt2bIQ2, Fmt2bQ2K>, groups * W * 32,
      step_smem_bytes<Fmt2bIQ2, Fmt2bQ2K>(groups, W, gu_in, dn_in));
  return e == cudaSuccess ? n : 0;
}

cudaError_t prepare_routed_experts_step() {
  int device = 0;
  const cudaError_t e = cudaGetDevice(&device);
  return e == cudaSuccess ? allow_step_smem<Fmt2bIQ2, Fmt2bQ2K>(device) : e;
}

cudaError_t launch_routed_experts_step(const MatvecLaunch& gate_up, const MatvecLaunch& down, int groups,
                                       unsigned* counters, cudaStream_t stream) {
  if (!routed_experts_step_types(gate_up.type, down.type)) return cudaErrorInvalidValue;
  int device = 0;
  cudaError_t e = cudaGetDevice(&device);
  if (e == cudaSuccess) e = allow_step_smem<Fmt2bIQ2, Fmt2bQ2K>(device);
  if (e != cudaSuccess) return e;
  StepParams sp;
  sp.gu = step_params(gate_up, groups);
  sp.dn = step_params(down, groups);
  sp.counters = counters;
  const int64_t smem = step_smem_bytes<Fmt2bIQ2, Fmt2bQ2K>(groups, gate_up.warps_per_row, gate_up.n_in, down.n_in);
  return launch_pdl(routed_experts_step_kernel<Fmt2bIQ2, Fmt2bQ2K>, dim3(gate_up.blocks),
                    dim3(groups * gate_up.warps_per_row * 32), static_cast<size_t>(smem), stream, sp);
}

}  // namespace dsv4::cuda::detail
