// 2-bit row-tile matvec (rows_per_warp 32 in MatvecTuning for Q2_K and IQ2_XXS, and for Q4_K, the
// 4-bit experts of the q4 mix): the default for the routed experts' formats. Layout and per-lane
// work: matvec_2bit.cuh.
//
// Shape of the work (the Q8_0 row-tile kernel's, matvec_q8.cu, with 4-byte staging; Q4_K's
// 16-byte, matvec_2bit.cuh Fmt4bQ4K):
//   group  = W warps (W = warps_per_row, 1–8) computing one tile of 32 rows at a time; warp k takes
//            the items k, k+W, ... of the tile's rows (for every slot when summed). Unit u (a tile
//            of one slot, or a tile over all slots when summed) goes to group u mod (groups in
//            the grid), group g of block b being number g·grid + b (rt2_vblock).
//   block  = G groups (up to 16 warps, rt2_groups_per_block): one copy of the activations and
//            the (32-fold replicated) IQ2_XXS tables for 16 warps. The grid is what fits the GPU.
//            Per-slot units are dealt tile-major (RowTileSchedule::slot_fastest), and a block
//            stages only the activation vectors of the slots its groups take: at the experts'
//            shapes (132·2 groups, 6 slots, a grid that is a multiple of 6) one of six, since both
//            groups of a block take the same slot (numbered g·grid + b; with b·G + g they took two
//            and every block computed the fused SwiGLU of both).
//   lane   = one row: partial sums in registers; a slot's partial is scaled and added in slot
//            order; at a unit's end the block's W partials are added in warp order.
// Every output is one fixed sequence of f32 operations: deterministic, no atomics, the same bits
// for any grid.
// SwiGLU of row pairs (swiglu_rows, the routed experts' gate/up in decode): tile t is gate rows
// 16t..16t+15 (lanes 0-15) and up rows F+16t..F+16t+15 (lanes 16-31) of a slab of 2F rows, each
// row's sum the same operations as in the plain form; a group keeps its units' row sums in shared
// memory and activates a round of W units at once, a unit per warp (swiglu_element), so the f64
// exp chain is paid once per round (at the experts' decode shape, ≈ 3 units per group: once)
// instead of by every block of the down projection that stages the slot (session 8).
#include <cuda_runtime.h>

#include <cstdint>

#include "cuda/matvec_2bit_body.cuh"
#include "cuda/matvec_launch.h"
#include "cuda/once_per_device.h"
#include "cuda/pdl.cuh"

namespace dsv4::cuda::detail {

namespace {

// The matvec: every unit of the launch, the groups dealt as rt2_vblock says.
template <class Fmt, bool kSum, int kItems>
__global__ void __launch_bounds__(k2bMaxBlockWarps * 32, 1) matvec_2bit_kernel(__grid_constant__ const RtParams p) {
  constexpr int kItemBytes = rt_item_bytes<Fmt>();
  extern __shared__ __align__(16) uint8_t smem[];
  const int W = p.W;
  const int block_warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int group = block_warp / W, warp = block_warp - group * W;
  XBlock2b* xsm = reinterpret_cast<XBlock2b*>(smem);
  const int x_floats = p.x_stride ? p.n_slots / p.slots_per_x * p.n_in : p.n_in;
  uint8_t* rings = reinterpret_cast<uint8_t*>(xsm + x_floats / kXBlock2b);
  // [G][2][W][32]
  float* red = reinterpret_cast<float*>(rings + (blockDim.x >> 5) * (Fmt::kRing * kItemBytes)) + group * 2 * W * k2bTileRows;
  // swiglu_rows: [G][W][32], the row sums of the group's current round of W units.
  float* pend = reinterpret_cast<float*>(rings + (blockDim.x >> 5) * (Fmt::kRing * kItemBytes)) +
                (2 * p.groups + group) * W * k2bTileRows;
  RowTileWalk<Fmt, kSum, kItems> walk(p, rings + block_warp * (Fmt::kRing * kItemBytes), W, warp, lane,
                                      rt2_vblock(blockIdx.x, group, gridDim.x), gridDim.x * p.groups);

  if constexpr (Fmt::kTables) copy_iq2_tables(p.iq2);
  // PDL: the weights of a dense launch are fetched while the kernel before it finishes (nothing
  // writes weights); the expert ids, activations and outputs only after it. pdl.cuh.
  if (p.experts) pdl_wait();
  walk.issue_first();
  if (!p.experts) pdl_wait();
  pdl_trigger();
  stage_x<Fmt>(p, kSum, xsm, x_floats);
  __syncthreads();  // the tables and activations are in place
  walk.run(red, pend, group, [&](int slot) {
    const int x_vector = p.slots_per_x == 1 ? slot : slot / p.slots_per_x;
    return xsm + (p.x_stride ? x_vector * p.n_in : 0) / kXBlock2b;
  });
}

// Items per row of the experts' decode shapes (gate/up 4096 = 8 IQ2_XXS items, down 2048 = 8
// Q2_K items): their per-slot launches get a kernel with the row stride as a constant.
constexpr int kDecodeItems = 8;

// Dynamic shared memory of a launch: rt_smem_bytes less the static tables.
template <class Fmt>
constexpr int64_t dynamic_smem_bytes(int warps, int64_t x_floats, bool swiglu_rows = false) {
  return rt_smem_bytes<Fmt>(warps, x_floats, swiglu_rows) -
         (Fmt::kTables ? static_cast<int64_t>(sizeof(Iq2RowTables)) : 0);
}

template <class Fmt>
cudaError_t set_smem(int max_smem) {
  const int bytes = max_smem - (Fmt::kTables ? static_cast<int>(sizeof(Iq2RowTables)) : 0);
  cudaError_t e =
      cudaFuncSetAttribute(matvec_2bit_kernel<Fmt, false, 0>, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes);
  if (e == cudaSuccess) {
    e = cudaFuncSetAttribute(matvec_2bit_kernel<Fmt, true, 0>, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes);
  }
  if (e == cudaSuccess) {
    e = cudaFuncSetAttribute(matvec_2bit_kernel<Fmt, false, kDecodeItems>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                             bytes);
  }
  return e;
}

// Lets every instantiation use all the shared memory a block may have, once per device.
cudaError_t allow_smem(int device) {
  return once_per_device(device, [device] {
    int max_smem = 0;
    cudaError_t e = cudaDeviceGetAttribute(&max_smem, cudaDevAttrMaxSharedMemoryPerBlockOptin, device);
    if (e == cudaSuccess) e = set_smem<Fmt2bQ2K>(max_smem);
    if (e == cudaSuccess) e = set_smem<Fmt2bIQ2>(max_smem);
    if (e == cudaSuccess) e = set_smem<Fmt4bQ4K>(max_smem);
    return e;
  });
}

// Groups of W warps per block: up to 16 warps, halved until the block's shared memory fits.
template <class Fmt>
int groups_per_block(int W, int64_t x_floats, bool swiglu_rows = false) {
  const int64_t max_smem = max_smem_per_block();
  int g = k2bMaxBlockWarps / W;
  while (g > 1 && rt_smem_bytes<Fmt>(g * W, x_floats, swiglu_rows) > max_smem) g /= 2;
  return g;
}

template <class Fmt, bool kSum>
cudaError_t launch(const MatvecLaunch& l, cudaStream_t stream) {
  RtParams p;
  p.w = l.w;
  p.row_bytes = l.row_bytes;
  p.slab_bytes = l.slab_bytes;
  p.experts = l.experts;
  p.x = l.x;
  p.x_stride = l.x_stride;
  p.slots_per_x = l.slots_per_x > 1 ? l.slots_per_x : 1;
  p.up = l.up;
  p.act_weights = l.act_weights;
  p.act_limit = l.act_limit;
  p.swiglu_rows = l.swiglu_rows;
  p.scale = l.scale;
  p.y = l.y;
  p.iq2 = static_cast<const Iq2Tables*>(l.iq2_tables);
  p.n_in = l.n_in;
  p.n_out = l.n_out;
  p.n_slots = l.n_slots;
  p.n_items = l.n_in / Fmt::kItemElems;
  p.n_tiles = (l.n_out + k2bTileRows - 1) / k2bTileRows;
  p.n_units = l.sum ? p.n_tiles : l.n_slots * p.n_tiles;
  p.W = l.warps_per_row;
  const int64_t x_floats = l.x_stride ? int64_t{l.n_slots / p.slots_per_x} * l.n_in : l.n_in;
  p.groups = groups_per_block<Fmt>(p.W, x_floats, l.swiglu_rows);
  p.grid_mod_slots = l.n_slots > 0 ? l.blocks % l.n_slots : 0;
  p.vgrid_mod_slots = l.n_slots > 0 ? l.blocks * p.groups % l.n_slots : 0;
  const int64_t smem = dynamic_smem_bytes<Fmt>(p.groups * p.W, x_floats, l.swiglu_rows);
  // The per-slot launches of the experts' decode shapes on the compile-time row stride.
  constexpr int64_t kDecodeRowBytes = int64_t{kDecodeItems} * Fmt::kItemWords * 4;
  auto kernel = !kSum && p.n_items == kDecodeItems && p.row_bytes == kDecodeRowBytes
                    ? matvec_2bit_kernel<Fmt, false, kDecodeItems>
                    : matvec_2bit_kernel<Fmt, kSum, 0>;
  return launch_pdl(kernel, dim3(l.blocks), dim3(p.groups * p.W * 32), static_cast<size_t>(smem), stream, p);
}

}  // namespace

int rt2_item_elems(gguf::TensorType type) {
  switch (type) {
    case gguf::TensorType::Q2_K: return Fmt2bQ2K::kItemElems;
    case gguf::TensorType::IQ2_XXS: return Fmt2bIQ2::kItemElems;
    case gguf::TensorType::Q4_K: return Fmt4bQ4K::kItemElems;
    default: return 0;
  }
}

// f<Fmt>() for the format of `type` (one of rt2_item_elems's).
template <class F>
auto with_format(gguf::TensorType type, F&& f) {
  switch (type) {
    case gguf::TensorType::Q2_K: return f(Fmt2bQ2K{});
    case gguf::TensorType::Q4_K: return f(Fmt4bQ4K{});
    default: return f(Fmt2bIQ2{});
  }
}

int rt2_groups_per_block(gguf::TensorType type, int warps_per_row, int64_t x_floats) {
  return with_format(type, [&](auto fmt) { return groups_per_block<decltype(fmt)>(warps_per_row, x_floats); });
}

int rt2_warps_per_row(gguf::TensorType type, int64_t n_in, int64_t n_out) {
  const int item = rt2_item_elems(type);
  return row_tile_warps_per_row(item > 0 ? n_in / item : 0, n_out, k2bMaxWarps);
}

cudaError_t prepare_matvec_2bit() {
  int device = 0;
  const cudaError_t e = cudaGetDevice(&device);
  return e == cudaSuccess ? allow_smem(device) : e;
}

int64_t rt2_smem_bytes(gguf::TensorType type, int warps, int64_t x_floats) {
  return with_format(type, [&](auto fmt) { return rt_smem_bytes<decltype(fmt)>(warps, x_floats); });
}

int rt2_blocks_per_sm(gguf::TensorType type, int warps, int64_t x_floats) {
  int n = 0;
  if (prepare_matvec_2bit() != cudaSuccess) return 0;
  const cudaError_t e = with_format(type, [&](auto fmt) {
    using Fmt = decltype(fmt);
    return cudaOccupancyMaxActiveBlocksPerMultiprocessor(&n, matvec_2bit_kernel<Fmt, false, 0>, warps * 32,
                                                         dynamic_smem_bytes<Fmt>(warps, x_floats));
  });
  return e == cudaSuccess ? n : 0;
}

cudaError_t launch_matvec_2bit(const MatvecLaunch& l, cudaStream_t stream) {
  const int item = rt2_item_elems(l.type);
  const int W = l.warps_per_row;
  if (item == 0 || (W != 1 && W != 2 && W != 4 && W != 8) || l.blocks < 1 || l.n_in % item != 0 ||
      l.row_bytes * k2bTileRows > INT32_MAX || W > l.n_in / item || (l.x_stride != 0 && l.x_stride % 4 != 0) ||
      (l.type == gguf::TensorType::IQ2_XXS && l.iq2_tables == nullptr) ||
      (l.swiglu_rows && (l.sum || l.up || l.n_out % k2bTileRows != 0 ||
                         (int64_t{l.n_out} / 2 + k2bTileRows) * l.row_bytes > INT32_MAX))) {
    return cudaErrorInvalidValue;
  }
  const cudaError_t e = prepare_matvec_2bit();
  if (e != cudaSuccess) return e;
  return with_format(l.type, [&](auto fmt) {
    using Fmt = decltype(fmt);
    return l.sum ? launch<Fmt, true>(l, stream) : launch<Fmt, false>(l, stream);
  });
}

}  // namespace dsv4::cuda::detail
