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
#include <type_traits>

#include "cuda/cp_async.cuh"
#include "cuda/matvec_2bit.cuh"
#include "cuda/matvec_launch.h"
#include "cuda/once_per_device.h"
#include "cuda/pdl.cuh"
#include "cuda/row_tile.cuh"
#include "cuda/swiglu.cuh"

namespace dsv4::cuda::detail {

namespace {

static_assert(k2bTileRows == kRowTileRows, "the row-tile schedule (row_tile.cuh) takes tiles of 32 rows");

// The IQ2_XXS tables (48 KB, the most static shared memory a kernel may have). Only the IQ2_XXS
// instantiations refer to it, so only they hold it. (Its address is not an immediate in SASS:
// ptxas keeps it in a register, so the lookups add it to a lane base once, iq2_sub_accumulate.)
__shared__ Iq2RowTables iq2_row_tables;
static_assert(sizeof(Iq2RowTables) <= 48 * 1024, "static shared memory");

struct RtParams {
  const uint8_t* w;  // 4-aligned; rows of row_bytes (a multiple of the item's bytes)
  int64_t row_bytes;
  int64_t slab_bytes;
  const int32_t* experts;  // null: slot j is slab j
  const float* x;          // 16-aligned
  int64_t x_stride;        // a multiple of 4
  int slots_per_x;         // slot j reads x vector j / slots_per_x
  const float* up;         // fused SwiGLU (matvec_launch.h), or null
  const float* act_weights;
  float act_limit;
  bool swiglu_rows;        // y = SwiGLU of row pairs (matvec_launch.h)
  const float* scale;      // null: 1
  float* y;
  const Iq2Tables* iq2;  // IQ2_XXS only
  int n_in;
  int n_out;
  int n_slots;
  int n_items;  // items per row
  int n_tiles;  // ⌈n_out / 32⌉
  int n_units;  // n_tiles (summed) or n_slots · n_tiles
  int W;        // warps per row (= per group)
  int groups;   // groups per block
  // gridDim.x % n_slots and (gridDim.x · groups) % n_slots: the slots of a block's units stepped
  // without a division per unit (staged_slots).
  int grid_mod_slots, vgrid_mod_slots;
};

// Bit j: this block's groups take a unit of slot j (per-slot launches with one x per slot and at
// most 64 slots; else every bit). The same walk as RowTileSchedule with slot_fastest, unit u's slot
// u mod n_slots carried from unit to unit (a division per unit was ≈ 20 instructions of every
// thread, ≈ 5 % of a down projection's: ncu, session 20).
__device__ uint64_t staged_slots(const RtParams& p, bool sum) {
  if (sum || p.x_stride == 0 || p.n_slots > 64 || p.slots_per_x > 1) return ~uint64_t{0};
  uint64_t mask = 0;
  const int n = p.n_slots, vgrid = gridDim.x * p.groups;
  int group_slot = static_cast<int>(blockIdx.x) % n;  // of unit rt2_vblock(blockIdx.x, g, gridDim.x), g = 0
  for (int g = 0; g < p.groups; ++g) {
    int slot = group_slot;
    for (int u = rt2_vblock(blockIdx.x, g, gridDim.x); u < p.n_units; u += vgrid) {
      mask |= uint64_t{1} << slot;
      slot += p.vgrid_mod_slots;
      if (slot >= n) slot -= n;
    }
    group_slot += p.grid_mod_slots;
    if (group_slot >= n) group_slot -= n;
  }
  return mask;
}


// Σ over one item of this lane's row, xb the item's first staged activation block; between(step)
// at each of the decoder's Fmt::kDecodeSteps steps.
template <class Fmt, class Between>
__device__ __forceinline__ float item_dot(const uint32_t* w, const XBlock2b* xb, int lane, Between between) {
  static_assert(kIq2TableCopies == 32, "a table copy per lane");
  if constexpr (Fmt::kTables) {
    return iq2_item_dot(w, iq2_row_tables, lane, xb, between);
  } else if constexpr (std::is_same_v<Fmt, Fmt4bQ4K>) {
    return q4k_block_dot(reinterpret_cast<const uint4*>(w), *xb, between);
  } else {
    return q2k_block_dot(w, *xb, between);
  }
}

// Quarter m (of 4) of an item's copies of the staging map (rt_copy): copies 8m..8m + 7, and with
// the last quarter the copies past 32 of items of more than 32 words. `base` the item's words in
// the tile's first row, `rb` the row bytes, `hi` the bytes from the tile's row 0 to its row 16
// (16·rb; with swiglu_rows, F·rb: the up half), rows past `last_row` re-read it (plain tiles only:
// swiglu_rows tiles are full). Full tiles: copy q < 32 moves word lane of row q
// from run + q·rb, run the quarter's first row (SASS: with a run-time rb a 64-bit add per copy,
// IADD3 + IMAD.X; with a compile-time one, kItems below, an immediate offset of the LDGSTS). One
// code path for the four quarters (m at run time): four unrolled ones were merged by the compiler
// into a run-time switch anyway, each copy paying a 32-bit multiply, a sign extension and a 64-bit
// add (session 7: the same speed, less code).
template <class Fmt>
__device__ __forceinline__ void copy_quarter(int m, uint8_t* dst, const uint8_t* base, int rb, int hi, int last_row,
                                             int lane) {
  if constexpr (Fmt::kChunks16) {
    // Chunks [m·n/4, (m + 1)·n/4) of the rt_chunk map, n = rt_chunks: lane l takes l, l + 32, ...
    constexpr int kQuarter = rt_chunks<Fmt>() / 4;
    static_assert(rt_chunks<Fmt>() % 4 == 0, "quarters of whole chunks");
#pragma unroll
    for (int k = 0; k < (kQuarter + 31) / 32; ++k) {
      const int j = kQuarter * m + lane + 32 * k;
      if (32 * k + lane < kQuarter) {
        int row = 0, chunk = 0;
        rt_chunk<Fmt>(j, last_row, row, chunk);
        cp_async16(dst + 16 * j, base + ((row < 16 ? 0 : hi) + rb * (row & 15) + 16 * chunk));
      }
    }
  } else {
    constexpr int kWords = Fmt::kItemWords, kRow = Fmt::kRowWords, kTail = rt_copies<kWords>() - 32;
    const int q0 = 8 * m;
    if (last_row >= k2bTileRows - 1) {
      if (lane < kWords) {
        const uint8_t* run = base + 4 * lane + ((m < 2 ? 0 : hi) + rb * (q0 & 15));
        uint8_t* to = dst + 4 * (q0 * kRow + lane);
#pragma unroll
        for (int t = 0; t < 8; ++t) cp_async4(to + 4 * t * kRow, run + static_cast<int64_t>(rb) * t);
      }
      if (kTail > 0 && m == 3) {
        const uint8_t* row = base + ((lane < 16 ? 0 : hi) + rb * (lane & 15));
#pragma unroll
        for (int t = 0; t < kTail; ++t) cp_async4(dst + 4 * (lane * kRow + 32 + t), row + 4 * (32 + t));
      }
    } else {
      auto copy = [&](int q) {
        int row = 0, word = 0;
        const bool active = rt_copy<kWords>(lane, q, last_row, row, word);
        const int dst_row = q < 32 ? q : lane;  // where the kernel reads it, whatever was copied
        if (active) cp_async4(dst + 4 * (dst_row * kRow + word), base + static_cast<int64_t>(rb) * row + 4 * word);
      };
#pragma unroll
      for (int t = 0; t < 8; ++t) copy(q0 + t);
      if (m == 3) {
#pragma unroll
        for (int t = 0; t < kTail; ++t) copy(32 + t);
      }
    }
  }
}

// Stages the activations (written by the kernel before: after pdl_wait) of the slots this block
// takes as fixed-point limb blocks (matvec_2bit.cuh), slot j's n_in/256 blocks from j·n_in/256;
// with the SwiGLU fused, computed here from the gate and up rows. One warp per 256-element block,
// lane l holding elements 8l..8l+7.
template <class Fmt>
__device__ void stage_x(const RtParams& p, bool sum, XBlock2b* xsm, int x_floats) {
  const uint64_t slots = staged_slots(p, sum);
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, warps = blockDim.x >> 5;
  const int per_slot = p.n_in / kXBlock2b;
  // Block t of the launch's x is block i of slot `slot`, stepped with t (no division per block).
  int slot = 0, i = warp;
  for (int t = warp; t < x_floats / kXBlock2b; t += warps, i += warps) {
    while (i >= per_slot) i -= per_slot, ++slot;
    const int e0 = i * kXBlock2b + 8 * lane;
    if (slot < 64 && !((slots >> slot) & 1u)) continue;
    const int64_t at = slot * p.x_stride + e0;
    float x[8];
    {
      const float4 lo = __ldg(reinterpret_cast<const float4*>(p.x + at));
      const float4 hi = __ldg(reinterpret_cast<const float4*>(p.x + at + 4));
      x[0] = lo.x, x[1] = lo.y, x[2] = lo.z, x[3] = lo.w, x[4] = hi.x, x[5] = hi.y, x[6] = hi.z, x[7] = hi.w;
    }
    if (p.up) {
      const float4 ulo = __ldg(reinterpret_cast<const float4*>(p.up + at));
      const float4 uhi = __ldg(reinterpret_cast<const float4*>(p.up + at + 4));
      const float u[8] = {ulo.x, ulo.y, ulo.z, ulo.w, uhi.x, uhi.y, uhi.z, uhi.w};
      const float* w = p.act_weights ? p.act_weights + slot : nullptr;
#pragma unroll
      for (int k = 0; k < 8; ++k) x[k] = swiglu_element(x[k], u[k], w, p.act_limit);
    }
    uint32_t mx = 0;
#pragma unroll
    for (int k = 0; k < 8; ++k) mx = max(mx, __float_as_uint(x[k]) & 0x7FFFFFFFu);
    mx = __reduce_max_sync(0xFFFFFFFFu, mx);
    const int e = xblock_exponent(mx, kXTopBits2b);
    const XLaneStage s = xblock_lane_stage(x, e);
    XBlock2b& xb = xsm[t];
#pragma unroll
    for (int q = 0; q < kXLimbs2b; ++q) {
      reinterpret_cast<uint2*>(xb.limbs[q])[lane] = make_uint2(s.words[q][0], s.words[q][1]);
    }
    if constexpr (!Fmt::kTables) {
      const float next = __shfl_down_sync(0xFFFFFFFFu, s.sum8, 1);
      if ((lane & 1) == 0) xb.gsum[lane >> 1] = s.sum8 + next;
    }
    if (lane == 0) xb.scale = xblock_scale(mx, e);
  }
}

// kItems: the items per row when the launch has exactly that many and unpadded rows (the experts'
// decode shapes: 8, launch()), so that the row stride is a compile-time constant; 0: any shape,
// the stride from p.row_bytes.
template <class Fmt, bool kSum, int kItems>
__global__ void __launch_bounds__(k2bMaxBlockWarps * 32, 1) matvec_2bit_kernel(__grid_constant__ const RtParams p) {
  constexpr int kWords = Fmt::kItemWords, kRing = Fmt::kRing, kItemBytes = rt_item_bytes<Fmt>();
  constexpr int kRowBytes = kItems * kWords * 4;  // 0: run time
  static_assert(kRing == 2, "one item decoded while the next is copied");
  extern __shared__ __align__(16) uint8_t smem[];
  const int W = p.W;
  const int block_warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int group = block_warp / W, warp = block_warp - group * W;
  XBlock2b* xsm = reinterpret_cast<XBlock2b*>(smem);
  const int x_floats = p.x_stride ? p.n_slots / p.slots_per_x * p.n_in : p.n_in;
  uint8_t* rings = reinterpret_cast<uint8_t*>(xsm + x_floats / kXBlock2b);
  uint8_t* ring = rings + block_warp * (kRing * kItemBytes);
  // [G][2][W][32]
  float* red = reinterpret_cast<float*>(rings + (blockDim.x >> 5) * (kRing * kItemBytes)) + group * 2 * W * k2bTileRows;
  // swiglu_rows: [G][W][32], the row sums of the group's current round of W units.
  float* pend = reinterpret_cast<float*>(rings + (blockDim.x >> 5) * (kRing * kItemBytes)) +
                (2 * p.groups + group) * W * k2bTileRows;

  const int vblock = rt2_vblock(blockIdx.x, group, gridDim.x), vgrid = gridDim.x * p.groups;
  const RowTileSchedule<kSum> sched(kItems ? kItems : p.n_items, p.n_slots, p.n_units, p.n_tiles, W, warp, vblock,
                                    vgrid, /*slot_fastest=*/true);
  const int per_unit = sched.per_unit, my_units = sched.my_units;
  // The units' slots and tiles, without the schedule's divisions: one cursor for the unit whose
  // items are issued (copied), one for the unit being decoded.
  UnitCursor<kSum> issue_unit(vblock, vgrid, p.n_slots, p.n_tiles), unit = issue_unit;

  // The next item's copies are issued a quarter at a time while the current one is decoded.
  struct Pending {
    const uint8_t* base;  // the item's words in its tile's first row; null: no item
    uint8_t* dst;
    int last_row;
  };
  // 32 rows of them fit an int (launch_matvec_2bit).
  const int rb = kRowBytes ? kRowBytes : static_cast<int>(p.row_bytes);
  // A tile's first row and its row 16 (swiglu_rows: gate rows 16t.., up rows F + 16t..; both fit
  // an int, launch_matvec_2bit).
  const int tile_step = p.swiglu_rows ? k2bTileRows / 2 : k2bTileRows;
  const int hi = p.swiglu_rows ? p.n_out / 2 * rb : 16 * rb;
  int issue_k = 0, issue_i = 0;
  auto next_item = [&](uint8_t* dst) {
    Pending pd{nullptr, dst, 0};
    if (issue_k >= my_units || per_unit == 0) return pd;
    const int slot = kSum ? sched.item_slot(issue_k, issue_i) : issue_unit.slot(), tile = issue_unit.tile();
    const int e = p.experts ? __ldg(p.experts + slot) : slot;
    pd.base = p.w + e * p.slab_bytes + static_cast<int64_t>(tile) * tile_step * rb +
              static_cast<int64_t>(sched.item_index(issue_i)) * (kWords * 4);
    pd.last_row = p.swiglu_rows ? k2bTileRows - 1 : p.n_out - 1 - tile * k2bTileRows;
    if (++issue_i == per_unit) {
      issue_i = 0;
      ++issue_k;
      issue_unit.next();
    }
    return pd;
  };
  auto issue_quarter = [&](const Pending& pd, int m) {
    if (!pd.base) return;
    // The copies' addresses are computed here, not hoisted out of the decode loop around it (held
    // live, ptxas kept a 64-bit address per copy and spilled: session 6): a run-time row stride
    // passes through an opaque move. (A compile-time one makes them immediate offsets.)
    int rb_here = kRowBytes;
    if constexpr (kRowBytes == 0) asm volatile("mov.b32 %0, %1;" : "=r"(rb_here) : "r"(rb));
    copy_quarter<Fmt>(m, pd.dst, pd.base, rb_here, hi, pd.last_row, lane);
  };

  // The lookup tables are constant data: copied before waiting for the kernel before this one.
  if constexpr (Fmt::kTables) {
    // A warp per 32 entries (grid then signs, contiguous: entry e's copies at words e·32..): one
    // load per lane, then the 32 copies of each entry as one conflict-free store.
    uint32_t* words = reinterpret_cast<uint32_t*>(&iq2_row_tables);
    for (int c = block_warp; c < (256 + 128) / 32; c += blockDim.x >> 5) {
      const int e = 32 * c + lane;
      const uint32_t v = e < 256 ? iq2_grid_entry(p.iq2->grid[e]) : iq2_sign_entry(p.iq2->signs[e - 256]);
#pragma unroll 8
      for (int j = 0; j < 32; ++j) words[(32 * c + j) * kIq2TableCopies + lane] = __shfl_sync(0xFFFFFFFFu, v, j);
    }
  }
  // PDL: the weights of a dense launch are fetched while the kernel before it finishes (nothing
  // writes weights); the expert ids, activations and outputs only after it. pdl.cuh.
  if (p.experts) pdl_wait();
  {
    const Pending first = next_item(ring);
    for (int m = 0; m < 4; ++m) issue_quarter(first, m);
    cp_async_commit();
  }
  if (!p.experts) pdl_wait();
  pdl_trigger();
  stage_x<Fmt>(p, kSum, xsm, x_floats);
  __syncthreads();  // the tables and activations are in place

  int buf = 0;
  int act_slot = 0, act_tile = 0;  // swiglu_rows: the unit this warp activates at its round's end
  for (int k = 0; k < my_units; ++k) {
    float acc = 0.0f, part = 0.0f;
    for (int i = 0; i < per_unit; ++i) {
      cp_async_wait<0>();  // this lane's words of item i have landed
      __syncwarp();        // ... and every other lane's
      // Item i + 1 goes to the other buffer (item i − 1's, read before the __syncwarp below).
      const Pending next = next_item(ring + (buf ^ 1) * kItemBytes);
      auto between = [&](int step) {
        constexpr int kPer = Fmt::kDecodeSteps / 4;
        if (step % kPer == 0) issue_quarter(next, step / kPer);
      };
      // The lane's row is read from shared memory as it is decoded.
      const uint32_t* row = reinterpret_cast<const uint32_t*>(ring + buf * kItemBytes) + lane * Fmt::kRowWords;
      const int slot = kSum ? sched.item_slot(k, i) : unit.slot();
      const int x_vector = p.slots_per_x == 1 ? slot : slot / p.slots_per_x;
      const XBlock2b* xb =
          xsm + ((p.x_stride ? x_vector * p.n_in : 0) + sched.item_index(i) * Fmt::kItemElems) / kXBlock2b;
      part += item_dot<Fmt>(row, xb, lane, between);
      cp_async_commit();
      __syncwarp();  // the buffer is refilled while the next item is decoded
      // Scaled and added: per item in the per-slot form, at each slot's last item (slot order) when summed.
      if (sched.closes_slot(i)) {
        const float s = p.scale ? __ldg(p.scale + slot) : 1.0f;
        acc = fmaf(s, part, acc);
        part = 0.0f;
      }
      buf ^= 1;
    }
    auto barrier = [group, W] { group_barrier(group, W); };
    if (!kSum && p.swiglu_rows) {
      // Unit k's row sums into the round's buffer; at the round's end each warp activates one unit
      // (W a power of two). A round's buffer is rewritten only after the next unit's barrier, which
      // every warp reaches after its reads here (W = 1: after the decode's __syncwarp).
      const int c = k & (W - 1);
      if (c == warp) act_slot = unit.slot(), act_tile = unit.tile();  // unit k − c + warp, from the cursor
      store_row_tile(acc, red, k, W, warp, lane, lane, k2bTileRows, lane, pend + c * k2bTileRows, barrier);
      if (c == W - 1 || k == my_units - 1) {
        barrier();  // the round's sums are in place
        if (warp <= c && lane < k2bTileRows / 2) {
          const int F = p.n_out / 2;
          const float* s = pend + warp * k2bTileRows;
          p.y[static_cast<int64_t>(act_slot) * F + act_tile * (k2bTileRows / 2) + lane] =
              swiglu_element(s[lane], s[lane + k2bTileRows / 2], p.act_weights ? p.act_weights + act_slot : nullptr,
                             p.act_limit);
        }
      }
    } else {
      const int row = unit.tile() * k2bTileRows + lane;
      const int64_t out = kSum ? row : static_cast<int64_t>(unit.slot()) * p.n_out + row;  // sched.out_index
      store_row_tile(acc, red, k, W, warp, lane, row, p.n_out, out, p.y, barrier);
    }
    unit.next();
  }
  cp_async_wait<0>();
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
