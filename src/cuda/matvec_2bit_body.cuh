// The 2-bit row-tile kernels' device code (matvec_2bit.cu's matvec kernel, routed_experts_step.cu's
// one-launch routed experts of a decode step): the launch parameters, the staging of activations
// as fixed-point limb blocks, the items' copies and dots, and the walk of a group over its units
// (RowTileWalk). Layout, work split and per-lane work: matvec_2bit.cu's head and matvec_2bit.cuh.
// Included by .cu files only; everything here is internal to the including file (the IQ2_XXS
// tables are each kernel file's own static shared memory).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <type_traits>

#include "cuda/cp_async.cuh"
#include "cuda/matvec_2bit.cuh"
#include "cuda/matvec_launch.h"
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

// Lane `lane`'s part of staging one 256-element block of activations into xb: x its elements
// 8·lane..8·lane + 7 (with a fused SwiGLU, already activated). One warp per block.
template <class Fmt>
__device__ __forceinline__ void stage_block(const float (&x)[8], XBlock2b& xb, int lane) {
  uint32_t mx = 0;
#pragma unroll
  for (int k = 0; k < 8; ++k) mx = max(mx, __float_as_uint(x[k]) & 0x7FFFFFFFu);
  mx = __reduce_max_sync(0xFFFFFFFFu, mx);
  const int e = xblock_exponent(mx, kXTopBits2b);
  const XLaneStage s = xblock_lane_stage(x, e);
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
    stage_block<Fmt>(x, xsm[t], lane);
  }
}

// The IQ2_XXS tables into shared memory (constant data: a kernel copies them before waiting for
// the kernel before it). A warp per 32 entries (grid then signs, contiguous: entry e's copies at
// words e·32..): one load per lane, then the 32 copies of each entry as one conflict-free store.
__device__ __forceinline__ void copy_iq2_tables(const Iq2Tables* t) {
  const int block_warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  uint32_t* words = reinterpret_cast<uint32_t*>(&iq2_row_tables);
  for (int c = block_warp; c < (256 + 128) / 32; c += blockDim.x >> 5) {
    const int e = 32 * c + lane;
    const uint32_t v = e < 256 ? iq2_grid_entry(t->grid[e]) : iq2_sign_entry(t->signs[e - 256]);
#pragma unroll 8
    for (int j = 0; j < 32; ++j) words[(32 * c + j) * kIq2TableCopies + lane] = __shfl_sync(0xFFFFFFFFu, v, j);
  }
}

// One warp's walk over its group's units (group = W warps, vblock of vgrid: rt2_vblock): the items'
// copies issued a quarter at a time while the item before is decoded, the dots, the slots' scales,
// the W warps' partials added in warp order (with swiglu_rows, a round of W units activated at
// once). kItems: the items per row when the launch has exactly that many and unpadded rows (a
// compile-time row stride); 0: any shape, the stride from p.row_bytes.
template <class Fmt, bool kSum, int kItems>
struct RowTileWalk {
  static constexpr int kWords = Fmt::kItemWords, kItemBytes = rt_item_bytes<Fmt>();
  static constexpr int kRowBytes = kItems * kWords * 4;  // 0: run time
  static_assert(Fmt::kRing == 2, "one item decoded while the next is copied");

  // An item's copies: its words in its tile's first row (null: no item), where they go, the
  // tile's last row.
  struct Pending {
    const uint8_t* base;
    uint8_t* dst;
    int last_row;
  };

  const RtParams& p;
  const RowTileSchedule<kSum> sched;
  // The units' slots and tiles, without the schedule's divisions: one cursor for the unit whose
  // items are issued (copied), one for the unit being decoded.
  UnitCursor<kSum> issue_unit, unit;
  uint8_t* const ring;  // the warp's kRing items
  const int W, warp, lane;
  // 32 rows of them fit an int (launch_matvec_2bit). A tile's first row and its row 16
  // (swiglu_rows: gate rows 16t.., up rows F + 16t..; both fit an int, launch_matvec_2bit).
  const int rb, tile_step, hi;
  int issue_k = 0, issue_i = 0;

  __device__ RowTileWalk(const RtParams& p_, uint8_t* ring_, int W_, int warp_, int lane_, int vblock, int vgrid)
      : p(p_),
        sched(kItems ? kItems : p_.n_items, p_.n_slots, p_.n_units, p_.n_tiles, W_, warp_, vblock, vgrid,
              /*slot_fastest=*/true),
        issue_unit(vblock, vgrid, p_.n_slots, p_.n_tiles),
        unit(issue_unit),
        ring(ring_),
        W(W_),
        warp(warp_),
        lane(lane_),
        rb(kRowBytes ? kRowBytes : static_cast<int>(p_.row_bytes)),
        tile_step(p_.swiglu_rows ? k2bTileRows / 2 : k2bTileRows),
        hi(p_.swiglu_rows ? p_.n_out / 2 * rb : 16 * rb) {}

  __device__ Pending next_item(uint8_t* dst) {
    Pending pd{nullptr, dst, 0};
    if (issue_k >= sched.my_units || sched.per_unit == 0) return pd;
    const int slot = kSum ? sched.item_slot(issue_k, issue_i) : issue_unit.slot(), tile = issue_unit.tile();
    const int e = p.experts ? __ldg(p.experts + slot) : slot;
    pd.base = p.w + e * p.slab_bytes + static_cast<int64_t>(tile) * tile_step * rb +
              static_cast<int64_t>(sched.item_index(issue_i)) * (kWords * 4);
    pd.last_row = p.swiglu_rows ? k2bTileRows - 1 : p.n_out - 1 - tile * k2bTileRows;
    if (++issue_i == sched.per_unit) {
      issue_i = 0;
      ++issue_k;
      issue_unit.next();
    }
    return pd;
  }

  __device__ void issue_quarter(const Pending& pd, int m) {
    if (!pd.base) return;
    // The copies' addresses are computed here, not hoisted out of the decode loop around it (held
    // live, ptxas kept a 64-bit address per copy and spilled: session 6): a run-time row stride
    // passes through an opaque move. (A compile-time one makes them immediate offsets.)
    int rb_here = kRowBytes;
    if constexpr (kRowBytes == 0) asm volatile("mov.b32 %0, %1;" : "=r"(rb_here) : "r"(rb));
    copy_quarter<Fmt>(m, pd.dst, pd.base, rb_here, hi, pd.last_row, lane);
  }

  // The first item's copies, committed (before the activations are staged: weights only).
  __device__ void issue_first() {
    const Pending first = next_item(ring);
    for (int m = 0; m < 4; ++m) issue_quarter(first, m);
    cp_async_commit();
  }

  // Every unit, after issue_first and the staging. x_of(slot): the slot's first staged block.
  // red: the group's [2][W][32] floats; pend (swiglu_rows): its [W][32]. Ends with every copy landed.
  template <class XOf>
  __device__ void run(float* red, float* pend, int group, XOf x_of) {
    const int per_unit = sched.per_unit, my_units = sched.my_units;
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
        const XBlock2b* xb = x_of(slot) + sched.item_index(i) * Fmt::kItemElems / kXBlock2b;
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
      auto barrier = [group, this] { group_barrier(group, W); };
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
};

}  // namespace

}  // namespace dsv4::cuda::detail
