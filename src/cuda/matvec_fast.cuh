// The per-warp, per-lane work of the fast matvec kernel (matvec_fast.cu), as __host__ __device__
// code: the kernel is glue around FastWarp (cp.async, barriers, shuffles), and
// tests/cuda/fast_emulation_test.cc runs the same FastWarp on the CPU lane by lane. All index math
// of the kernel lives here.
//
// Names: a block of kWarps warps owns R·(kWarps/W) consecutive rows, in groups of R rows, W warps
// per group; warp k of a group takes stages k, k+W, ... of each expert slot; an item is one stage of
// the group's rows (one buffer of R·kRowStride bytes in shared memory).
#pragma once

#include <cstdint>

#include "cuda/quant_decode.cuh"

namespace dsv4::cuda::detail {

constexpr int kFastWarps = 8;
constexpr int kFastThreads = kFastWarps * 32;

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
  int wpr;  // warps per row group: 1, 2, 4 or 8
};

template <class F>
struct Geometry {
  static constexpr int kStageElems = F::kStepElems * F::kStageSteps;
  static constexpr int kStageBytes = F::kStepBytes * F::kStageSteps;
  // A stage's bytes start anywhere in their first 16-byte chunk.
  static constexpr int kRowStride = (kStageBytes + 15 + 15) / 16 * 16;
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

template <class F, int R, bool kSum>
struct FastWarp {
  using G = Geometry<F>;
  const FastParams& p;
  int groups, group, ks, row0, rows, n_stages, my_stages, slot0, n_items;

  DSV4_HD FastWarp(const FastParams& params, int block_x, int block_y, int warp) : p(params) {
    groups = kFastWarps / p.wpr;
    group = warp / p.wpr;
    ks = warp - group * p.wpr;
    row0 = (block_x * groups + group) * R;
    rows = p.n_out - row0 < R ? p.n_out - row0 : R;  // ≤ 0 for the idle groups of the last block
    n_stages = (p.n_in + G::kStageElems - 1) / G::kStageElems;
    my_stages = (rows > 0 && ks < n_stages) ? (n_stages - ks + p.wpr - 1) / p.wpr : 0;
    slot0 = kSum ? 0 : block_y;
    n_items = my_stages * (kSum ? p.n_slots : 1);
  }

  DSV4_HD int slot_of(int item) const { return slot0 + item / my_stages; }
  DSV4_HD int stage_of(int item) const { return ks + (item % my_stages) * p.wpr; }
  DSV4_HD bool last_of_slot(int item) const { return item % my_stages == my_stages - 1; }
  DSV4_HD int stage_elems(int st) const {
    const int left = p.n_in - st * G::kStageElems;
    return left < G::kStageElems ? left : G::kStageElems;
  }
  // Byte offset from p.w of stage `st` of row row0 (the group's first row) of expert slot `slot`;
  // row row0 + r is r·row_bytes further.
  DSV4_HD int64_t stage_offset(int slot, int st) const {
    const int e = p.experts ? load_expert(p.experts + slot) : slot;
    return static_cast<int64_t>(e) * p.slab_bytes + static_cast<int64_t>(row0) * p.row_bytes +
           static_cast<int64_t>(st) * G::kStageBytes;
  }

  // This lane's share of the 16-byte chunks of one item: copy(dst, src, bytes) for each, with
  // 1 ≤ bytes ≤ 16 (a chunk that reaches past the tensor is cut short; one wholly past it is
  // skipped). The chunks start at the 16-aligned address at or below each row's stage.
  template <class Copy>
  DSV4_HD void issue(int item, int lane, uint8_t* dst, Copy copy) const {
    const int st = stage_of(item);
    const int nbytes = stage_elems(st) / F::kBlockElems * F::kBlockBytes;
    const int64_t off0 = stage_offset(slot_of(item), st);
    DSV4_UNROLL
    for (int r = 0; r < R; ++r) {
      if (r < rows) {
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

  // The activations this lane needs for an item (zeros past the row), and their sum per step.
  DSV4_HD void load_x(int item, int lane, float (&xv)[F::kStageSteps][F::kXPerLane],
                      float (&xsum)[F::kStageSteps]) const {
    const int slot = slot_of(item), st = stage_of(item);
    const int elems = stage_elems(st);
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
      float t = xv[s][0];
      DSV4_UNROLL
      for (int k = 1; k < F::kXPerLane; ++k) t += xv[s][k];
      xsum[s] = t;
    }
  }

  // Adds this lane's dots of an item (its buffer `buf`, filled by issue) to part[r].
  DSV4_HD void decode(int item, int lane, const uint8_t* buf, const float (&xv)[F::kStageSteps][F::kXPerLane],
                      const float (&xsum)[F::kStageSteps], const uint8_t* tables, float (&part)[R]) const {
    const int st = stage_of(item);
    const int elems = stage_elems(st);
    const int64_t off0 = stage_offset(slot_of(item), st);
    DSV4_UNROLL
    for (int r = 0; r < R; ++r) {
      if (r < rows) {
        const uint8_t* row = buf + r * G::kRowStride + ((off0 + r * p.row_bytes) & 15);
        DSV4_UNROLL
        for (int s = 0; s < F::kStageSteps; ++s) {
          if (s * F::kStepElems < elems) {
            part[r] += F::dot(row + s * F::kStepBytes, lane, xv[s], xsum[s], elems - s * F::kStepElems, tables);
          }
        }
      }
    }
  }

  // At the last stage of a slot: acc += scale_slot · part, part = 0.
  DSV4_HD void end_item(int item, float (&acc)[R], float (&part)[R]) const {
    if (!last_of_slot(item)) return;
    const int slot = slot_of(item);
#ifdef __CUDA_ARCH__
    const float scale = p.scale ? __ldg(p.scale + slot) : 1.0f;
#else
    const float scale = p.scale ? p.scale[slot] : 1.0f;
#endif
    DSV4_UNROLL
    for (int r = 0; r < R; ++r) {
      acc[r] = fmaf(scale, part[r], acc[r]);
      part[r] = 0.0f;
    }
  }
};

// Output index and value of thread t's row after the warps' sums are in red[warp·R + r]:
// the W warps of a group added in warp order. Returns false for threads without a row.
template <int R, bool kSum>
DSV4_HD bool fast_output(const FastParams& p, int block_x, int block_y, int t, const float* red,
                         int64_t* index, float* value) {
  const int groups = kFastWarps / p.wpr;
  if (t >= groups * R) return false;
  const int g = t / R, r = t - g * R;
  const int row = (block_x * groups + g) * R + r;
  if (row >= p.n_out) return false;
  float s = red[g * p.wpr * R + r];
  for (int k = 1; k < p.wpr; ++k) s += red[(g * p.wpr + k) * R + r];
  *index = kSum ? row : static_cast<int64_t>(block_y) * p.n_out + row;
  *value = s;
  return true;
}

template <class F, int R>
DSV4_HD constexpr int fast_red_bytes() {
  return (kFastWarps * R * 4 + 15) / 16 * 16;
}

template <class F, int R>
DSV4_HD constexpr int fast_smem_bytes() {
  return F::kTableBytes + fast_red_bytes<F, R>() + kFastWarps * F::kBufs * R * Geometry<F>::kRowStride;
}

}  // namespace dsv4::cuda::detail
