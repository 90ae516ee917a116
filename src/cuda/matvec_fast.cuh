// The per-warp, per-lane work of the fast matvec kernel (matvec_fast.cu), as __host__ __device__
// code: the kernel is glue around FastWarp (cp.async, barriers, shuffles), and
// tests/cuda/cpu/fast_emulation_test.cc runs the same FastWarp on the CPU lane by lane. All index
// math of the kernel lives here.
//
// Names:
//   group  = W warps (W = p.wpr: 1, 2, 4 or 8) that share rows, warp k of a group taking the stages
//            k, k+W, k+2W, ... of each row. A block holds kFastWarps / W groups.
//   unit   = R consecutive rows of one expert slot (per-slot form), of a pair of slots reading the
//            same slab (paired form, kPair: slots j and j + pair_stride, each item's weights copied
//            once and dotted with both slots' activations), or R consecutive rows over all slots
//            (summed form): what a group computes and writes. Units are dealt round-robin
//            to the groups of the grid (unit u goes to group u mod n_groups), so a grid smaller
//            than the work is persistent: every group walks its units in order.
//   item   = one stage of a unit's R rows (for one slot): one ring buffer of R·kRowStride bytes.
//            A warp's items form one stream across its units, so the cp.async ring stays full from
//            one unit to the next.
//   step   = kStepElems columns of a stage, decoded by the 32 lanes together (Fmt::dot).
#pragma once

#include <cstdint>
#include <type_traits>

#include "cuda/quant_decode.cuh"

namespace dsv4::cuda::detail {

constexpr int kFastWarps = 8;
constexpr int kFastThreads = kFastWarps * 32;
// Shared memory per warp for its ring of weight buffers: 8 warps fit a block in 48 KB with the
// IQ2_XXS tables and the reduction buffer, so no opt-in shared memory is needed.
constexpr int kFastRingBytes = 5376;

struct FastParams {
  const uint8_t* w;       // 16-aligned
  const uint8_t* w_end;   // no load reaches it
  int64_t row_bytes;
  int64_t slab_bytes;
  const int32_t* experts;  // null: slot j is slab j
  const float* x;
  int64_t x_stride;
  const float* scale;  // null: 1
  float* y;
  const void* tables;
  int n_in;
  int n_out;
  int n_slots;
  int wpr;           // W: warps per group, 1, 2, 4 or 8
  int n_row_groups;  // ⌈n_out / R⌉
  // units: n_row_groups (summed form), token_pairs(n_slots, pair_stride) · n_row_groups (paired) or
  // n_slots · n_row_groups
  int n_units;
  int pair_stride;   // paired form: slots j and j + pair_stride share a unit (matvec.h); else 0
  int n_groups;      // groups in the grid: gridDim.x · kFastWarps / W
};

// The formats whose per-slot launches pair slots (ExpertMatvec::pair_stride): the float ones, whose
// stage is 8 activations a lane, so both tokens' fit in registers beside the R rows' sums.
template <class F>
DSV4_HD constexpr bool fast_pairs() {
  return std::is_same_v<F, FmtF32> || std::is_same_v<F, FmtF16> || std::is_same_v<F, FmtBF16>;
}

template <class F>
struct Geometry {
  static constexpr int kStageElems = F::kStepElems * F::kStageSteps;
  static constexpr int kStageBytes = F::kStepBytes * F::kStageSteps;
  // A stage's bytes start anywhere in their first 16-byte chunk.
  static constexpr int kRowStride = (kStageBytes + 15 + 15) / 16 * 16;
};

// The ring of one warp: as many buffers of R rows as kFastRingBytes holds, between 2 and 8.
template <class F, int R>
struct Ring {
  static constexpr int kBufBytes = R * Geometry<F>::kRowStride;
  static constexpr int kFit = kFastRingBytes / kBufBytes;
  static constexpr int kBufs = kFit < 2 ? 2 : (kFit > 8 ? 8 : kFit);
};

DSV4_HD float4 load_x4(const float* p) {
#ifdef __CUDA_ARCH__
  return __ldg(reinterpret_cast<const float4*>(p));
#else
  return *reinterpret_cast<const float4*>(p);
#endif
}

DSV4_HD int32_t load_expert(const int32_t* p) {
#ifdef __CUDA_ARCH__
  return __ldg(p);
#else
  return *p;
#endif
}

// One unit as the warps see it.
struct FastUnit {
  int slot;   // per-slot form: the unit's slot; summed form: 0
  int row0;   // first row
  int rows;   // rows in the unit (R, fewer for the last one)
};

// Which work a warp of the persistent matvec kernels (this one and matvec_mma.cuh) takes: warps
// form groups of p.wpr splitting a row's stages; unit u (kRows rows of one slot, or of all slots
// when summed) goes to group u mod p.n_groups; warp ks of a group takes stages ks, ks + wpr, ...
// P: the kernel's parameters (wpr, n_in, n_out, n_slots, n_units, n_groups, n_row_groups,
// experts, slab_bytes, row_bytes).
template <class P, bool kSum, int kRows, int kWarpsPerBlock, int kStageElems, int64_t kStageBytes>
struct WarpSchedule {
  const P& p;
  int group;      // this warp's group in the grid
  int ks;         // this warp's index in its group
  int n_stages;   // stages per row
  int my_stages;  // stages of a row this warp takes
  int per_unit;   // items per unit for this warp
  int my_units;   // units of this warp's group

  DSV4_HD WarpSchedule(const P& params, int block_x, int warp) : p(params) {
    const int groups_per_block = kWarpsPerBlock / p.wpr;
    const int g = warp / p.wpr;
    ks = warp - g * p.wpr;
    group = block_x * groups_per_block + g;
    n_stages = (p.n_in + kStageElems - 1) / kStageElems;
    my_stages = ks < n_stages ? (n_stages - ks + p.wpr - 1) / p.wpr : 0;
    per_unit = my_stages * (kSum ? p.n_slots : 1);
    my_units = group < p.n_units ? (p.n_units - group + p.n_groups - 1) / p.n_groups : 0;
  }

  // The k-th unit of this warp's group.
  DSV4_HD FastUnit unit(int k) const {
    const int u = group + k * p.n_groups;
    const int slot = kSum ? 0 : u / p.n_row_groups;
    const int rg = kSum ? u : u - slot * p.n_row_groups;
    FastUnit un;
    un.slot = slot;
    un.row0 = rg * kRows;
    un.rows = p.n_out - un.row0 < kRows ? p.n_out - un.row0 : kRows;
    return un;
  }

  // Slot and stage of item i of a unit.
  DSV4_HD int slot_of(const FastUnit& un, int i) const { return kSum ? i / my_stages : un.slot; }
  DSV4_HD int stage_of(int i) const { return ks + (kSum ? i % my_stages : i) * p.wpr; }
  DSV4_HD bool last_of_slot(int i) const { return !kSum || i % my_stages == my_stages - 1; }
  // Byte offset from p.w of stage `st` of the unit's first row in expert slot `slot`; row
  // row0 + r is r·row_bytes further.
  DSV4_HD int64_t stage_offset(const FastUnit& un, int slot, int st) const {
    const int e = p.experts ? load_expert(p.experts + slot) : slot;
    return static_cast<int64_t>(e) * p.slab_bytes + static_cast<int64_t>(un.row0) * p.row_bytes +
           static_cast<int64_t>(st) * kStageBytes;
  }
};

// kPair (per-slot form only): a unit's slot is pair v, whose tokens k = 0, 1 are the slots
// first_slot(v) + k·pair_stride; each token's sums are the operations of its unpaired unit. An odd
// token count's last pairs have no token 1 (has_token): its activations are zeros, its sums unused.
template <class F, int R, bool kSum, bool kPair = false>
struct FastWarp : WarpSchedule<FastParams, kSum, R, kFastWarps, Geometry<F>::kStageElems, Geometry<F>::kStageBytes> {
  static_assert(!(kSum && kPair), "pairs are per-slot units");
  static constexpr int kTokens = kPair ? 2 : 1;
  using G = Geometry<F>;
  using S = WarpSchedule<FastParams, kSum, R, kFastWarps, G::kStageElems, G::kStageBytes>;
  using S::S;
  using S::p;
  using S::stage_of;
  using S::stage_offset;
  using S::last_of_slot;
  // The first slot of pair v: pairs are the first pair_stride slots of each 2·pair_stride.
  DSV4_HD int first_slot(int v) const {
    if constexpr (kPair) {
      return v / p.pair_stride * 2 * p.pair_stride + v % p.pair_stride;
    } else {
      return v;
    }
  }
  // The slot of item i (paired: the pair's first, whose slab both read); token k's is k·pair_stride on.
  DSV4_HD int slot_of(const FastUnit& un, int i) const { return kPair ? first_slot(un.slot) : S::slot_of(un, i); }
  DSV4_HD int token_slot(const FastUnit& un, int i, int k) const { return slot_of(un, i) + k * p.pair_stride; }
  DSV4_HD bool has_token(const FastUnit& un, int k) const { return kSum || token_slot(un, 0, k) < p.n_slots; }
  DSV4_HD int stage_elems(int st) const {
    const int left = p.n_in - st * G::kStageElems;
    return left < G::kStageElems ? left : G::kStageElems;
  }
  // This lane's share of the 16-byte chunks of item i: copy(dst, src, bytes) for each, with
  // 1 ≤ bytes ≤ 16 (a chunk that reaches past the tensor is cut short; one wholly past it is
  // skipped). The chunks start at the 16-aligned address at or below each row's stage.
  template <class Copy>
  DSV4_HD void issue(const FastUnit& un, int i, int lane, uint8_t* dst, Copy copy) const {
    const int st = stage_of(i);
    const int nbytes = stage_elems(st) / F::kBlockElems * F::kBlockBytes;
    const int64_t off0 = stage_offset(un, slot_of(un, i), st);
    DSV4_UNROLL
    for (int r = 0; r < R; ++r) {
      if (r < un.rows) {
        const int64_t off = off0 + r * p.row_bytes;
        const uint8_t* first = p.w + (off & ~int64_t{15});
        const int nchunks = static_cast<int>((off & 15) + nbytes + 15) >> 4;
        uint8_t* d = dst + r * G::kRowStride;
        if (p.w_end - first >= 16 * static_cast<int64_t>(nchunks)) {
          for (int c = lane; c < nchunks; c += 32) copy(d + 16 * c, first + 16 * c, 16);
        } else {  // the tensor's last row: stop at its end
          for (int c = lane; c < nchunks; c += 32) {
            const int64_t left = p.w_end - (first + 16 * c);
            if (left > 0) copy(d + 16 * c, first + 16 * c, left < 16 ? static_cast<int>(left) : 16);
          }
        }
      }
    }
  }

  // The activations this lane needs for item i of token k (zeros past the row), and their sum per
  // step (for the formats that subtract a per-block minimum).
  DSV4_HD void load_x(const FastUnit& un, int i, int lane, float (&xv)[F::kStageSteps][F::kXPerLane],
                      float (&xsum)[F::kStageSteps], int k = 0) const {
    const int slot = token_slot(un, i, k), st = stage_of(i);
    const int elems = has_token(un, k) ? stage_elems(st) : 0;
    const float* xs = p.x + static_cast<int64_t>(slot) * p.x_stride + static_cast<int64_t>(st) * G::kStageElems;
    DSV4_UNROLL
    for (int s = 0; s < F::kStageSteps; ++s) {
      DSV4_UNROLL
      for (int k = 0; k < F::kXPerLane / 4; ++k) {
        const int e = s * F::kStepElems + F::x_elem(lane, k);
        const float4 v = e < elems ? load_x4(xs + e) : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
        xv[s][4 * k] = v.x;
        xv[s][4 * k + 1] = v.y;
        xv[s][4 * k + 2] = v.z;
        xv[s][4 * k + 3] = v.w;
      }
      float t = 0.0f;
      if constexpr (F::kNeedsXSum) {
        t = xv[s][0];
        DSV4_UNROLL
        for (int k = 1; k < F::kXPerLane; ++k) t += xv[s][k];
      }
      xsum[s] = t;
    }
  }

  // fn(r, row, elems) for each row r of item i in its buffer `buf` (filled by issue): the row's
  // stage at its data's offset, elems the stage's columns.
  template <class Fn>
  DSV4_HD void for_rows(const FastUnit& un, int i, const uint8_t* buf, Fn&& fn) const {
    const int st = stage_of(i);
    const int elems = stage_elems(st);
    const int64_t off0 = stage_offset(un, slot_of(un, i), st);
    DSV4_UNROLL
    for (int r = 0; r < R; ++r) {
      if (r < un.rows) fn(r, buf + r * G::kRowStride + ((off0 + r * p.row_bytes) & 15), elems);
    }
  }

  // Adds this lane's dots of item i (its buffer `buf`, filled by issue) to part[r].
  DSV4_HD void decode(const FastUnit& un, int i, int lane, const uint8_t* buf,
                      const float (&xv)[F::kStageSteps][F::kXPerLane], const float (&xsum)[F::kStageSteps],
                      const uint8_t* tables, float (&part)[R]) const {
    for_rows(un, i, buf, [&](int r, const uint8_t* row, int elems) {
      DSV4_UNROLL
      for (int s = 0; s < F::kStageSteps; ++s) {
        if (s * F::kStepElems < elems) {
          part[r] += F::dot(row + s * F::kStepBytes, lane, xv[s], xsum[s], elems - s * F::kStepElems, tables);
        }
      }
    });
  }

  // Paired form (float formats): both tokens' dots of item i, each weight read and converted once
  // (F::dots), each token's sums the operations of decode.
  DSV4_HD void decode_pair(const FastUnit& un, int i, int lane, const uint8_t* buf,
                           const float (&xv)[2][F::kStageSteps][F::kXPerLane], float (&part)[2][R]) const {
    static_assert(fast_pairs<F>() && F::kStageSteps == 1, "pairs of the float formats");
    for_rows(un, i, buf, [&](int r, const uint8_t* row, int elems) {
      float d[2];
      F::template dots<2>(row, lane, {xv[0][0], xv[1][0]}, elems, d);
      part[0][r] += d[0];
      part[1][r] += d[1];
    });
  }

  // At the last stage of a slot (of token k): acc += scale_slot · part, part = 0.
  DSV4_HD void end_item(const FastUnit& un, int i, float (&acc)[R], float (&part)[R], int k = 0) const {
    if (!last_of_slot(i)) return;
    const int slot = token_slot(un, i, k);
    const bool scaled = p.scale && has_token(un, k);
#ifdef __CUDA_ARCH__
    const float scale = scaled ? __ldg(p.scale + slot) : 1.0f;
#else
    const float scale = scaled ? p.scale[slot] : 1.0f;
#endif
    DSV4_UNROLL
    for (int r = 0; r < R; ++r) {
      acc[r] = fmaf(scale, part[r], acc[r]);
      part[r] = 0.0f;
    }
  }

  // Where row r of a unit (of token k) goes in y.
  DSV4_HD int64_t output_index(const FastUnit& un, int r, int k = 0) const {
    return kSum ? un.row0 + r : static_cast<int64_t>(first_slot(un.slot) + k * p.pair_stride) * p.n_out + un.row0 + r;
  }

};

// The sum of a group's W warps for row r (red[k·R + r] = warp k's sum), added in warp order.
template <int R>
DSV4_HD float fast_group_sum(const float* red, int wpr, int r) {
  float s = red[r];
  for (int k = 1; k < wpr; ++k) s += red[k * R + r];
  return s;
}

template <class F, int R>
DSV4_HD constexpr int fast_red_bytes() {
  return 2 * 2 * kFastWarps * R * 4;  // two tokens (paired form), double-buffered by unit parity
}

template <class F, int R>
DSV4_HD constexpr int fast_smem_bytes() {
  return F::kTableBytes + fast_red_bytes<F, R>() + kFastWarps * Ring<F, R>::kBufs * Ring<F, R>::kBufBytes;
}

}  // namespace dsv4::cuda::detail
