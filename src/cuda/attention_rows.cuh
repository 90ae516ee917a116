// Which rows token t of an attention launch sees (MODEL.md §7.8-7.10), for the device kernels:
// the raw window max(0, p-W+1) .. p, or from the window start where the args name one (this chunk's
// rows from kv_chunk, earlier ones from the ring), then its compressed rows (ratio 128: all
// c < floor((p+1)/128); ratio 4: all c < floor((p+1)/4) while at most top_k, else the indexer's
// selection).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "cuda/attention.h"

namespace dsv4::cuda::detail {

struct AttnRowSet {
  int64_t chunk0, pos, lo, n_raw, n_comp;
  bool indexed;  // compressed rows through the selection list
  __device__ __forceinline__ int64_t total() const { return n_raw + n_comp; }
};

__device__ __forceinline__ AttnRowSet attn_row_set(const AttentionArgs& a, int t) {
  AttnRowSet r;
  r.chunk0 = *a.pos0;
  r.pos = r.chunk0 + a.t0 + t;
  r.lo = r.pos - a.window + 1 > 0 ? r.pos - a.window + 1 : 0;
  if (a.window_start && *a.window_start > r.lo) r.lo = *a.window_start;
  r.n_raw = r.pos - r.lo + 1;
  r.indexed = false;
  r.n_comp = 0;
  if (a.ratio != 0) {
    const int64_t n_vis = (r.pos + 1) / a.ratio;
    if (a.ratio == 4 && n_vis > a.top_k) {
      r.n_comp = a.top_k;
      r.indexed = true;
    } else {
      r.n_comp = n_vis;
    }
  }
  return r;
}

__device__ __forceinline__ const float* attn_row_ptr(const AttentionArgs& a, const AttnRowSet& r, int t, int64_t i) {
  if (i < r.n_raw) {
    const int64_t q = r.lo + i;
    return q < r.chunk0 ? a.ring + (q % a.window) * a.hd : a.kv_chunk + (q - r.chunk0) * a.hd;
  }
  const int64_t c = i - r.n_raw;
  const int64_t idx = r.indexed ? a.selected[static_cast<int64_t>(a.t0 + t) * a.top_k + c] : c;
  return a.comp + idx * a.hd;
}

}  // namespace dsv4::cuda::detail
