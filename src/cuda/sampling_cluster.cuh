// The passes of the device sampler's selection kernel (sampling.cu) over a cluster of kRanks
// blocks of kThreads threads, each block (rank) owning a contiguous id range of the vocabulary:
// ranged loops with several loads in flight, exchanges of per-rank values through distributed
// shared memory (combined in rank order, so deterministic), and the sorted selection of the
// largest keys below a bound (radix select on per-rank histograms summed over the cluster).
// Included by sampling.cu only.
#pragma once

#include <cooperative_groups.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <type_traits>

#include "cuda/device_math.cuh"

namespace dsv4::cuda::sampling_detail {

namespace cg = cooperative_groups;
using detail::block_sum;

constexpr int kThreads = 1024;
constexpr int kRanks = 8;  // blocks of the selection cluster (the portable maximum)
constexpr int kMaxTopK = 1024;
constexpr int kLoads = 8;  // loads in flight per thread in a pass over a rank's range

// A finite logit l of token i ranks by the 64-bit key (order bits of l) << 32 | ~i: "larger key"
// is exactly the reference's order (logit desc, id asc), and keys are unique.
__device__ __forceinline__ uint64_t key_of(float l, int i) {
  const uint32_t b = __float_as_uint(l);
  const uint32_t ord = (b & 0x80000000u) ? ~b : (b | 0x80000000u);
  return (static_cast<uint64_t>(ord) << 32) | static_cast<uint32_t>(0xFFFFFFFFu - static_cast<uint32_t>(i));
}
__device__ __forceinline__ int id_of(uint64_t key) { return static_cast<int>(0xFFFFFFFFu - static_cast<uint32_t>(key)); }

struct Shared {
  uint64_t keys[kMaxTopK];   // rank 0: the selected keys, sorted descending
  uint64_t local[kMaxTopK];  // each rank's gathered keys
  float w[kMaxTopK];         // rank 0: the weights of keys[], then tiles of the kept list
  int hist[2][256];          // each rank's radix histogram (alternating passes)
  int hsum[256];             // the cluster's histogram
  int ints[32];
  int warp_sums[32];
  float fscratch[32];
  double dscratch[32];
  union Word {
    double d;
    uint64_t u;
    int i;
    float f;
  } xchg[2];  // each rank's contribution to a cluster exchange (alternating exchanges)
  uint64_t prefix, next_bound;
  int need, done, n_local, n, taken, drawn;
  double kept;
};

// Calls f(value, id) for every id of [lo, hi), kLoads loads per thread in flight.
template <class F>
__device__ __forceinline__ void for_range(const float* L, int lo, int hi, F&& f) {
  for (int base = lo + static_cast<int>(threadIdx.x); base < hi; base += kLoads * kThreads) {
    float v[kLoads];
#pragma unroll
    for (int u = 0; u < kLoads; ++u) {
      const int i = base + u * kThreads;
      v[u] = i < hi ? L[i] : NAN;
    }
#pragma unroll
    for (int u = 0; u < kLoads; ++u) {
      const int i = base + u * kThreads;
      if (i < hi) f(v[u], i);
    }
  }
}

// Every rank passes its value (the same in all its threads); out[r] gets rank r's. A slot is
// written again two exchanges later, after a cluster barrier that every reader of it has passed.
template <class T>
__device__ void cluster_all(T v, T (&out)[kRanks], Shared& sh, int& phase) {
  cg::cluster_group cluster = cg::this_cluster();
  const int s = phase++ & 1;
  if (threadIdx.x == 0) {
    if constexpr (std::is_same_v<T, uint64_t>) {
      sh.xchg[s].u = v;
    } else if constexpr (sizeof(T) == 8) {
      sh.xchg[s].d = v;
    } else if constexpr (std::is_same_v<T, float>) {
      sh.xchg[s].f = v;
    } else {
      sh.xchg[s].i = v;
    }
  }
  cluster.sync();
#pragma unroll
  for (int r = 0; r < kRanks; ++r) {
    const Shared::Word w = *cluster.map_shared_rank(&sh.xchg[s], r);
    if constexpr (std::is_same_v<T, uint64_t>) {
      out[r] = w.u;
    } else if constexpr (sizeof(T) == 8) {
      out[r] = w.d;
    } else if constexpr (std::is_same_v<T, float>) {
      out[r] = w.f;
    } else {
      out[r] = w.i;
    }
  }
}

template <class T>
__device__ T cluster_sum(T v, Shared& sh, int& phase) {
  T all[kRanks];
  cluster_all(v, all, sh, phase);
  T s = all[0];
#pragma unroll
  for (int r = 1; r < kRanks; ++r) s += all[r];
  return s;
}

// Sorts the 1024 keys descending (bitonic network).
__device__ void sort_keys_desc(uint64_t* keys) {
  const int i = threadIdx.x;
  for (int k = 2; k <= kMaxTopK; k <<= 1) {
    for (int j = k >> 1; j > 0; j >>= 1) {
      const int ixj = i ^ j;
      if (ixj > i) {
        const uint64_t a = keys[i], b = keys[ixj];
        const bool first_half = (i & k) == 0;
        if (first_half ? a < b : a > b) {
          keys[i] = b;
          keys[ixj] = a;
        }
      }
      __syncthreads();
    }
  }
}

// The min(m, |S|) largest keys of S = {finite L[i] with key < bound}, sorted descending into rank
// 0's sh.keys (the rest zero). Returns that count (in every rank). All threads of all ranks call
// it; [lo, hi) is this rank's range.
__device__ int select_sorted(const float* L, int lo, int hi, uint64_t bound, int m, Shared& sh, int& phase) {
  cg::cluster_group cluster = cg::this_cluster();
  const int tid = threadIdx.x;
  int count = 0;
  for_range(L, lo, hi, [&](float l, int i) { count += (isfinite(l) && key_of(l, i) < bound) ? 1 : 0; });
  count = cluster_sum(block_sum(count, sh.ints), sh, phase);
  uint64_t thr = 0;  // take keys >= thr (all of S when it has at most m)
  if (count > m) {
    uint64_t prefix = 0, mask = 0;
    int need = m;
    for (int shift = 56, pass = 0; shift >= 0; shift -= 8, ++pass) {
      // A histogram is zeroed again two passes later, after a cluster barrier its readers passed.
      int* h = sh.hist[pass & 1];
      if (tid < 256) h[tid] = 0;
      __syncthreads();
      for_range(L, lo, hi, [&](float l, int i) {
        if (!isfinite(l)) return;
        const uint64_t key = key_of(l, i);
        if (key < bound && (key & mask) == prefix) atomicAdd(&h[(key >> shift) & 255u], 1);
      });
      cluster.sync();
      if (tid < 256) {
        int s = 0;
#pragma unroll
        for (int r = 0; r < kRanks; ++r) s += cluster.map_shared_rank(h, r)[tid];
        sh.hsum[tid] = s;
      }
      __syncthreads();
      if (tid == 0) {
        int b = 255, above = 0;
        while (above + sh.hsum[b] < need) above += sh.hsum[b--];
        sh.prefix = prefix | (static_cast<uint64_t>(b) << shift);
        sh.need = need - above;
        sh.done = sh.hsum[b] == need - above;  // the whole bucket is taken: its keys' lower digits do not matter
      }
      __syncthreads();
      prefix = sh.prefix;
      need = sh.need;
      const bool done = sh.done != 0;
      mask |= uint64_t{255} << shift;
      __syncthreads();
      if (done) break;
    }
    thr = prefix;  // keys are unique: exactly m keys of S are >= it
    count = m;
  }
  if (tid == 0) sh.n_local = 0;
  __syncthreads();
  for_range(L, lo, hi, [&](float l, int i) {
    if (!isfinite(l)) return;
    const uint64_t key = key_of(l, i);
    if (key < bound && key >= thr) sh.local[atomicAdd(&sh.n_local, 1)] = key;
  });
  cluster.sync();
  if (cluster.block_rank() == 0) {
    int at = 0;
    for (int r = 0; r < kRanks; ++r) {
      const int n = *cluster.map_shared_rank(&sh.n_local, r);
      const uint64_t* keys = cluster.map_shared_rank(sh.local, r);
      for (int j = tid; j < n; j += kThreads) sh.keys[at + j] = keys[j];
      at += n;
    }
    for (int j = at + tid; j < kMaxTopK; j += kThreads) sh.keys[j] = 0;
    __syncthreads();
    sort_keys_desc(sh.keys);
  }
  cluster.sync();  // the ranks' gathered keys are read
  return count;
}

}  // namespace dsv4::cuda::sampling_detail
