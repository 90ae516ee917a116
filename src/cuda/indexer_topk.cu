// indexer_topk.cuh: the indexer's top-k, two ways.
//
// From the score histogram (tokens of at least IndexerArgs::topk_bins_from candidates, where the
// score kernel counted its scores' bins, indexer_topk.cuh), a grid per token: every block reads the
// token's 4096 bins and finds the same bin b holding the k-th largest key (a block scan from the
// top), then takes its 4096 candidates (one float4 a thread): keys above bin b go to the token's
// list of taken rows, keys in bin b to its survivors (as 64-bit keys key << 32 | ~index: distinct,
// larger for the lower index of equal scores), placed by one global atomic a block and list. The
// last block to finish (a ticket after a fence) clears the bins for the next launch, ranks the
// survivors in shared memory (a radix select on the 64-bit keys: no ties), and sorts the k rows it
// takes (bitonic). So the candidates are read once, by many SMs, and one SM ranks only bin b's (the
// scores near the k-th spread over several of its eight bins a binade). Bins that do not add up to
// the candidates (a score launch whose top-k never ran), more survivors than the last block's
// shared memory holds, or k above kIndexerTopkListMax take the second way there.
//
// Radix select, one block of 1024 threads per token (without scratch; the fall-back).
// Over the order-preserving key of each score (NaN ranked as -inf, like cpu::top_k_desc; the keys
// of up to 8192 candidates, or 49 152 for a token alone, kept in shared memory after the first
// pass), 8 bits per pass from below the bits all keys share: the histogram of the candidates that
// share the decided prefix locates the bucket holding the k-th largest key, until that bucket is
// taken whole or every bit is decided. Then the threshold (on the decided bits) and how many of its
// equal keys to take are known; equal keys are taken in index order, which is the lower-index tie
// rule. The selected indices are written in ascending order by an ordered compaction (two bitmaps
// built by warp ballots, one barrier per window of candidates).
#include <cuda_runtime.h>

#include <algorithm>
#include <climits>
#include <cstdint>

#include "cuda/check.h"
#include "cuda/cp_async.cuh"
#include "cuda/device_math.cuh"
#include "cuda/gemm_kernel.cuh"
#include "cuda/indexer_topk.cuh"
#include "cuda/once_per_device.h"
#include "cuda/pdl.cuh"

namespace dsv4::cuda::detail {

namespace {

constexpr int kTopkThreads = 1024;
// Candidates of the top-k's ordered compaction, 32 a word: the two counts of a window share one
// 32-bit word in its scans (at most 2^14 each), and a warp's run of words is at most 32.
constexpr int kTopkWindowWords = 512;
static_assert(32 * kTopkWindowWords <= (1 << 14) && kTopkWindowWords <= kTopkThreads,
              "packed counts; runs of 32 words at most");
// Keys a top-k block keeps in shared memory: 8192 (32 KB) with a block per token of a chunk, so
// that two blocks share an SM; up to 49 152 (192 KB) for one token alone (the decode step), whose
// later passes read from global memory (L2) what its shared memory does not hold. The histogram's
// last block holds half as many survivors (8 bytes each) in the same memory.
constexpr int kTopkCached = 8192;
constexpr int kTopkCachedAlone = 49152;

// The histogram's grid: a block's candidates (a float4 a thread), and the token's scratch
// (kIndexerTopkScratchWords words, indexer.h): the bins, the counters (the blocks' tickets, the
// taken rows, the survivors: all zero between launches), the taken rows, the survivors (64-bit).
constexpr int kPassRows = 4 * kTopkThreads;
constexpr int kTicketAt = kIndexerScoreBins, kTakenCountAt = kTicketAt + 1, kSurvivorCountAt = kTicketAt + 2;
constexpr int kTakenAt = kIndexerScoreBins + 8;
constexpr int kSurvivorsAt = kTakenAt + kIndexerTopkListMax;
static_assert(kIndexerScoreBins == 4 * kTopkThreads, "a thread's four bins");
static_assert(kIndexerTopkListMax <= kTopkThreads, "a row a thread in the sort");
static_assert(kSurvivorsAt % 4 == 0 && kSurvivorsAt + 2 * kIndexerTopkSurvivorsMax == kIndexerTopkScratchWords &&
                  2 * kIndexerTopkSurvivorsMax == kTopkCachedAlone,
              "indexer.h's scratch: the survivors 16-byte aligned, as many as the last block holds");
static_assert(kIndexerTopkScratchWords % 4 == 0, "tokens' scratch 16-byte aligned");

// Shared-memory accesses by 32-bit address (cp_async.cuh's shared_address): through a generic
// pointer the top-k's loops rebuilt each key's address from SR_CgaCtaId (ncu, docs/PERF.md session
// 20). The conditional increment is a predicated red in PTX; ptxas still branches around it
// (BSSY/BSYNC per key), but without the generic address's conversion.
__device__ __forceinline__ uint32_t shared_u32(uint32_t addr) {
  uint32_t v;
  asm volatile("ld.shared.u32 %0, [%1];" : "=r"(v) : "r"(addr) : "memory");
  return v;
}
__device__ __forceinline__ uint4 shared_v4(uint32_t addr) {
  uint4 v;
  asm volatile("ld.shared.v4.u32 {%0, %1, %2, %3}, [%4];"
               : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
               : "r"(addr)
               : "memory");
  return v;
}
__device__ __forceinline__ void shared_store_v2_if(uint32_t addr, uint32_t x, uint32_t y, bool p) {
  asm volatile("{\n .reg .pred q;\n setp.ne.u32 q, %3, 0;\n @q st.shared.v2.u32 [%0], {%1, %2};\n}" ::"r"(addr), "r"(x),
               "r"(y), "r"(static_cast<uint32_t>(p))
               : "memory");
}
__device__ __forceinline__ void shared_increment_if(uint32_t addr, bool p) {
  asm volatile("{\n .reg .pred q;\n setp.ne.u32 q, %1, 0;\n @q red.shared.add.u32 [%0], 1;\n}" ::"r"(addr),
               "r"(static_cast<uint32_t>(p))
               : "memory");
}

// Warp 0 after a digit pass: the bucket of h (256 counts, the candidates matching the decided
// prefix) holding the need-th largest key. Lane l owns buckets 255-8l .. 248-8l; the counts above
// each lane's buckets come from a prefix sum across lanes. The lane that finds it writes the bucket,
// the count still needed within it, and whether the bucket is taken whole.
__device__ __forceinline__ void find_bucket(const int* h, int need, int lane, int* bucket, int* need_in, int* whole) {
  int mine = 0;
#pragma unroll
  for (int j = 0; j < 8; ++j) mine += h[255 - 8 * lane - j];
  int above = warp_inclusive_scan(mine, lane) - mine;  // the counts of the lanes before
  if (above < need && above + mine >= need) {
    int b = 255 - 8 * lane;
    while (above + h[b] < need) above += h[b--];
    *bucket = b;
    *need_in = need - above;
    *whole = h[b] == need - above;
  }
}

// k rows of one token's n candidates (n > k) at sc, into out (ascending). The first pass reads the
// scores once, keeps the keys of the first key_cap candidates in shared memory (keys4; later reads of
// the rest go to L2) and finds the bits every key shares (the AND and OR of all keys). The digit
// passes start below that common prefix (a decode's scores lie within a few binades: a first digit
// of the top 8 bits put nearly every key in one or two buckets) and end early once the bucket holding
// the k-th largest key is taken whole. Two barriers per digit pass: the histograms alternate between
// two buffers, the idle one cleared during the pass.
//
// One block on one SM: bound by its instruction issue (ncu, H200, a decode at 41K: 82 600 warp
// instructions for 10 250 candidates in the version with 64-bit indices, a branch per key between
// cached and uncached keys, and four full passes), so every loop over the keys is lean: 32-bit
// indices, the cached keys read four at a time, the rest after them.
__device__ void radix_select(const float* sc, int n, int k, int32_t* out, uint4* keys4, int key_cap) {
  __shared__ int hist[2][256];
  __shared__ uint32_t warp_and[32], warp_or[32];
  __shared__ uint32_t warp_counts[32];
  __shared__ int s_bucket, s_need, s_whole;
  uint32_t* keys = reinterpret_cast<uint32_t*>(keys4);
  const uint32_t keys_at = shared_address(keys4);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
  const int cached = n < key_cap ? n : key_cap, quads = cached / 4;
  const auto key_at = [&](int i) { return i < cached ? shared_u32(keys_at + 4 * i) : score_key(sc[i]); };
  // f(key) for every candidate: the cached quads, then the rest (a fixed order per thread).
  const auto for_each_key = [&](auto&& f) {
    for (int q = threadIdx.x; q < quads; q += blockDim.x) {
      const uint4 v = shared_v4(keys_at + 16 * q);
      f(v.x), f(v.y), f(v.z), f(v.w);
    }
    for (int i = 4 * quads + threadIdx.x; i < n; i += blockDim.x) f(key_at(i));
  };
  uint32_t all_and = ~0u, any_or = 0u;
  const bool sc_aligned = (reinterpret_cast<uintptr_t>(sc) & 15u) == 0;
  for (int q = threadIdx.x; q < quads; q += blockDim.x) {
    const float4 v = sc_aligned ? *reinterpret_cast<const float4*>(sc + 4 * q)
                                : make_float4(sc[4 * q], sc[4 * q + 1], sc[4 * q + 2], sc[4 * q + 3]);
    const uint4 key = make_uint4(score_key(v.x), score_key(v.y), score_key(v.z), score_key(v.w));
    keys4[q] = key;
    all_and &= key.x & key.y & key.z & key.w;
    any_or |= key.x | key.y | key.z | key.w;
  }
  for (int i = 4 * quads + threadIdx.x; i < n; i += blockDim.x) {
    const uint32_t key = score_key(sc[i]);
    if (i < cached) keys[i] = key;
    all_and &= key;
    any_or |= key;
  }
  all_and = __reduce_and_sync(0xFFFFFFFFu, all_and);
  any_or = __reduce_or_sync(0xFFFFFFFFu, any_or);
  if (lane == 0) {
    warp_and[warp] = all_and;
    warp_or[warp] = any_or;
  }
  for (int i = threadIdx.x; i < 256; i += blockDim.x) hist[0][i] = 0;
  __syncthreads();
  const uint32_t common_ones = __reduce_and_sync(0xFFFFFFFFu, lane < warps ? warp_and[lane] : ~0u);
  const uint32_t differ = common_ones ^ __reduce_or_sync(0xFFFFFFFFu, lane < warps ? warp_or[lane] : 0u);
  // The decided bits (mask) and their values (prefix): first the common prefix; all equal: every key.
  const int top = differ ? 31 - __clz(differ) : -1;  // the highest bit on which keys differ
  uint32_t mask = top < 0 ? ~0u : top == 31 ? 0u : ~0u << (top + 1);
  uint32_t prefix = common_ones & mask;
  int need = k;  // how many of the keys matching the prefix are still to be taken
  // Digit passes over bits [shift, shift + 8): the first right below the common prefix; a digit
  // reaching into decided bits is harmless (every counted key has their values).
  for (int pass = 0, shift = top < 0 ? -1 : top >= 7 ? top - 7 : 0; shift >= 0; ++pass) {
    int* h = hist[pass & 1];
    const uint32_t h_at = shared_address(h);
    for (int i = threadIdx.x; i < 256; i += blockDim.x) hist[(pass + 1) & 1][i] = 0;
    for_each_key(
        [&](uint32_t key) { shared_increment_if(h_at + 4 * ((key >> shift) & 255u), (key & mask) == prefix); });
    __syncthreads();
    if (threadIdx.x < 32) find_bucket(h, need, lane, &s_bucket, &s_need, &s_whole);
    __syncthreads();
    prefix |= static_cast<uint32_t>(s_bucket) << shift;  // s_*: rewritten only after the next pass's first barrier
    need = s_need;
    mask |= 255u << shift;
    if (s_whole || shift == 0) break;
    shift = shift >= 8 ? shift - 8 : 0;
  }
  // Keys above the threshold (on the decided bits), then the first `need` equal ones in index order:
  // candidate i goes to (keys above before i) + min(equal keys before i, need). A window of
  // 32·kTopkWindowWords candidates at a time, 32 a word: warp w takes a contiguous run of the
  // window's words and writes two bitmaps by ballots (lane l: whether candidate 32j + l lies above
  // the threshold; equal to it), counting both as it goes; after the window's one barrier, lane l of
  // warp w takes word l of the run: the warps' totals before w (one scan of the 32 totals) and a scan
  // over the run's words give the counts before it, and it writes its set bits' candidates in
  // order. (Walking every candidate twice, counting then writing, took ≈ 22 000 of the launch's
  // 42 800 warp instructions at 41K: docs/PERF.md, session 20.)
  __shared__ uint2 window_bits[kTopkWindowWords];
  // Shared addresses passed through a shuffle: ptxas cannot rebuild them from SR_CgaCtaId in the
  // loop then (it did, four instructions a word, for the plain ones).
  const uint32_t lane_keys_at = __shfl_sync(0xFFFFFFFFu, keys_at, 0) + 4 * lane;
  const uint32_t window_bits_at = __shfl_sync(0xFFFFFFFFu, shared_address(window_bits), 0);
  int gt_done = 0, eq_done = 0;  // in the windows before
  for (int w0 = 0; w0 < n; w0 += 32 * kTopkWindowWords) {
    const int words = min(kTopkWindowWords, (n - w0 + 31) / 32);
    const int per_warp = (words + warps - 1) / warps;  // ≤ 32
    const int first = warp * per_warp, end = min(words, first + per_warp);
    uint32_t counts = 0;  // above | equal << 16 over the run (≤ 2^14 each)
    const auto add_word = [&](int j, uint32_t key, bool in) {
      key &= mask;
      const uint32_t gt = __ballot_sync(0xFFFFFFFFu, in && key > prefix);
      const uint32_t eq = __ballot_sync(0xFFFFFFFFu, in && key == prefix);
      shared_store_v2_if(window_bits_at + 8 * j, gt, eq, lane == 0);
      counts += static_cast<uint32_t>(__popc(gt)) | static_cast<uint32_t>(__popc(eq)) << 16;
    };
    // The run's words of cached keys first, from shared memory alone; then the rest (lanes past n
    // read the last key and count nothing).
    const int cached_end = max(first, min(end, (cached - w0) / 32));
    int j = first;
    for (; j < cached_end; ++j) add_word(j, shared_u32(lane_keys_at + 4 * (w0 + 32 * j)), true);
    for (; j < end; ++j) {
      const int i = w0 + 32 * j + lane;
      add_word(j, key_at(i < n ? i : n - 1), i < n);
    }
    if (lane == 0) warp_counts[warp] = counts;
    __syncthreads();
    // The packed sums stay below 2^31: warp_inclusive_scan's int adds them without a carry between
    // the halves.
    const int run_counts = lane < warps ? static_cast<int>(warp_counts[lane]) : 0;
    const int runs_upto = warp_inclusive_scan(run_counts, lane);
    const int warp_base = __shfl_sync(0xFFFFFFFFu, runs_upto - run_counts, warp);
    const uint32_t window_total = static_cast<uint32_t>(__shfl_sync(0xFFFFFFFFu, runs_upto, 31));
    j = first + lane;
    const uint2 b = j < end ? window_bits[j] : make_uint2(0u, 0u);
    const int mine = __popc(b.x) | __popc(b.y) << 16;
    const uint32_t before = static_cast<uint32_t>(warp_base + warp_inclusive_scan(mine, lane) - mine);
    int gt_at = gt_done + static_cast<int>(before & 0xFFFFu), eq_at = eq_done + static_cast<int>(before >> 16);
    for (uint32_t left = b.x | b.y; left != 0u; left &= left - 1u) {
      const int bit = __ffs(static_cast<int>(left)) - 1;
      const int i = w0 + 32 * j + bit;
      if ((b.x >> bit) & 1u) {
        out[gt_at + min(eq_at, need)] = i;
        ++gt_at;
      } else {
        if (eq_at < need) out[gt_at + eq_at] = i;
        ++eq_at;
      }
    }
    gt_done += static_cast<int>(window_total & 0xFFFFu);
    eq_done += static_cast<int>(window_total >> 16);
    if (w0 + 32 * kTopkWindowWords < n) __syncthreads();  // this window's words read before the next's are written
  }
}

// The candidates of token t: n_rows[t], or the rows position pos0 + t0 + t sees.
__device__ __forceinline__ int candidates(const int32_t* n_rows, const int* pos0, int t0, int t) {
  return static_cast<int>(n_rows ? n_rows[t] : visible_rows(pos0, t0, t));  // < 2^31: positions are ints
}

__global__ void __launch_bounds__(kTopkThreads) radix_topk_kernel(const float* scores, int64_t stride,
                                                                  const int32_t* n_rows, const int* pos0, int t0,
                                                                  int k, int32_t* selected, int key_cap) {
  pdl_wait();  // launched with PDL: nothing before this line (pdl.cuh)
  pdl_trigger();
  extern __shared__ uint4 keys4[];  // [key_cap / 4]
  const int t = blockIdx.x;
  const int n = candidates(n_rows, pos0, t0, t);
  if (n <= k) return;
  radix_select(scores + static_cast<int64_t>(t) * stride, n, k, selected + static_cast<int64_t>(t) * k, keys4, key_cap);
}

// Where p: this lane's slot among the warp's appends to *count (one atomic a warp).
__device__ __forceinline__ int warp_append(bool p, int lane, int* count) {
  const uint32_t ballot = __ballot_sync(0xFFFFFFFFu, p);
  int base = 0;
  if (ballot != 0u) {
    const int leader = __ffs(static_cast<int>(ballot)) - 1;
    if (lane == leader) base = atomicAdd(count, __popc(ballot));
    base = __shfl_sync(0xFFFFFFFFu, base, leader);
  }
  return base + __popc(ballot & ((1u << lane) - 1u));
}

// The m survivors' 64-bit keys (distinct) in shared memory: the `need` largest, appended to
// list[*count ..]. A radix select as radix_select's, 8 bits a pass from below the survivors'
// common prefix, until the bucket holding the need-th largest is taken whole (at the latest when
// every bit is decided: one key).
__device__ void take_largest(const uint64_t* keys, int m, int need, int32_t* list, int* count) {
  __shared__ int hist[2][256];
  __shared__ uint32_t warp_bits[4][32];
  __shared__ int s_bucket, s_need, s_whole;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
  uint64_t mask = 0, prefix = 0;  // taken: (key & mask) >= prefix
  if (need < m) {
    uint32_t and_hi = ~0u, and_lo = ~0u, or_hi = 0u, or_lo = 0u;
    for (int i = threadIdx.x; i < m; i += blockDim.x) {
      const uint64_t c = keys[i];
      and_hi &= static_cast<uint32_t>(c >> 32), or_hi |= static_cast<uint32_t>(c >> 32);
      and_lo &= static_cast<uint32_t>(c), or_lo |= static_cast<uint32_t>(c);
    }
    and_hi = __reduce_and_sync(0xFFFFFFFFu, and_hi), and_lo = __reduce_and_sync(0xFFFFFFFFu, and_lo);
    or_hi = __reduce_or_sync(0xFFFFFFFFu, or_hi), or_lo = __reduce_or_sync(0xFFFFFFFFu, or_lo);
    if (lane == 0) {
      warp_bits[0][warp] = and_hi, warp_bits[1][warp] = and_lo;
      warp_bits[2][warp] = or_hi, warp_bits[3][warp] = or_lo;
    }
    for (int i = threadIdx.x; i < 256; i += blockDim.x) hist[0][i] = 0;
    __syncthreads();
    const uint64_t common = static_cast<uint64_t>(__reduce_and_sync(0xFFFFFFFFu, lane < warps ? warp_bits[0][lane] : ~0u))
                                << 32 |
                            __reduce_and_sync(0xFFFFFFFFu, lane < warps ? warp_bits[1][lane] : ~0u);
    const uint64_t any = static_cast<uint64_t>(__reduce_or_sync(0xFFFFFFFFu, lane < warps ? warp_bits[2][lane] : 0u))
                             << 32 |
                         __reduce_or_sync(0xFFFFFFFFu, lane < warps ? warp_bits[3][lane] : 0u);
    const int top = 63 - __clzll(static_cast<long long>(common ^ any));  // m ≥ 2 distinct keys: some bit differs
    mask = top == 63 ? 0 : ~uint64_t{0} << (top + 1);
    prefix = common & mask;
    for (int pass = 0, shift = top >= 7 ? top - 7 : 0;; ++pass) {
      int* h = hist[pass & 1];
      for (int i = threadIdx.x; i < 256; i += blockDim.x) hist[(pass + 1) & 1][i] = 0;
      for (int i = threadIdx.x; i < m; i += blockDim.x) {
        const uint64_t c = keys[i];
        if ((c & mask) == prefix) atomicAdd(h + ((c >> shift) & 255u), 1);
      }
      __syncthreads();
      if (threadIdx.x < 32) find_bucket(h, need, lane, &s_bucket, &s_need, &s_whole);
      __syncthreads();
      prefix |= static_cast<uint64_t>(s_bucket) << shift;
      need = s_need;
      mask |= uint64_t{255} << shift;
      if (s_whole || shift == 0) break;
      shift = shift >= 8 ? shift - 8 : 0;
    }
  }
  for (int i0 = warp * 32; i0 < m; i0 += blockDim.x) {
    const int i = i0 + lane;
    const uint64_t c = i < m ? keys[i] : 0;
    const bool take = i < m && (c & mask) >= prefix;
    const int at = warp_append(take, lane, count);
    if (take) list[at] = static_cast<int32_t>(~static_cast<uint32_t>(c));
  }
}

// The n ≤ kTopkThreads rows of list, ascending, thread x's in out[x] (a bitonic sort padded to a
// power of two, thread x holding element x): the compare-exchanges of threads 32 or more apart
// through shared memory (two buffers: one barrier a step), the closer ones by shuffles.
__device__ void sort_ascending(const int32_t* list, int n, int32_t* out) {
  __shared__ int32_t exchange[2][kTopkThreads];
  int p = 2;
  while (p < n) p <<= 1;
  const int x = threadIdx.x;
  int32_t v = x < n ? list[x] : INT_MAX;
  int step = 0;
  for (int size = 2; size <= p; size <<= 1) {
    for (int stride = size / 2; stride > 0; stride >>= 1) {
      int32_t other;
      if (stride >= 32) {
        int32_t* const buf = exchange[step++ & 1];
        buf[x] = v;
        __syncthreads();
        other = buf[x ^ stride];  // x < p: a partner below p; the rest hold padding
      } else {
        other = __shfl_xor_sync(0xFFFFFFFFu, v, stride);
      }
      // The lower of a pair keeps the smaller in an ascending run ((x & size) == 0), the larger in a
      // descending one.
      v = ((x & stride) == 0) == ((x & size) == 0) ? min(v, other) : max(v, other);
    }
  }
  if (x < n) out[x] = v;
}

// The histogram's grid (indexer_topk.cuh, this file's header): block (x, t) takes token t's
// candidates [x·kPassRows, (x + 1)·kPassRows); key_cap as radix_select's (the last block's survivors:
// key_cap / 2).
__global__ void __launch_bounds__(kTopkThreads) bins_topk_kernel(const float* scores, int64_t stride,
                                                                 const int32_t* n_rows, const int* pos0, int t0, int k,
                                                                 uint32_t* scratch, int bins_from, int32_t* selected,
                                                                 int key_cap) {
  pdl_wait();  // launched with PDL: nothing before this line (pdl.cuh)
  pdl_trigger();
  extern __shared__ uint4 keys4[];  // the fall-back's keys, or the survivors
  __shared__ int warp_sums[32];
  __shared__ int s_bin, s_taken, s_survivors;
  __shared__ int s_block_counts[2], s_block_bases[2];  // the block's taken rows and survivors; where they go
  __shared__ bool s_last;
  __shared__ int32_t list[kIndexerTopkListMax];
  const int t = blockIdx.y, lane = threadIdx.x & 31;
  const float* const sc = scores + static_cast<int64_t>(t) * stride;
  int32_t* const out = selected + static_cast<int64_t>(t) * k;
  const int n = candidates(n_rows, pos0, t0, t);
  if (n <= k) return;
  if (n < bins_from) {  // no histogram: the radix select on the first block
    if (blockIdx.x == 0) radix_select(sc, n, k, out, keys4, key_cap);
    return;
  }
  const int blocks = (n + kPassRows - 1) / kPassRows;
  if (static_cast<int>(blockIdx.x) >= blocks) return;
  uint32_t* const ws = scratch + static_cast<int64_t>(t) * kIndexerTopkScratchWords;

  // Thread j's bins 4095-4j .. 4092-4j, from the top: the bin holding the k-th largest key.
  const uint4 v = __ldcg(reinterpret_cast<const uint4*>(ws) + (kTopkThreads - 1 - threadIdx.x));
  const int bin_counts[4] = {static_cast<int>(v.w), static_cast<int>(v.z), static_cast<int>(v.y), static_cast<int>(v.x)};
  const int mine = bin_counts[0] + bin_counts[1] + bin_counts[2] + bin_counts[3];
  if (threadIdx.x == 0) s_survivors = INT_MAX, s_block_counts[0] = s_block_counts[1] = 0;
  int total = 0;
  int above = block_exclusive_scan(mine, warp_sums, &total);
  if (above < k && above + mine >= k) {
    int j = 0;
    while (above + bin_counts[j] < k) above += bin_counts[j++];
    s_bin = kIndexerScoreBins - 1 - 4 * static_cast<int>(threadIdx.x) - j;
    s_taken = above;
    s_survivors = bin_counts[j];
  }
  __syncthreads();
  const int bin = s_bin, taken = s_taken, survivors = s_survivors;
  const bool from_bins = total == n && k <= kIndexerTopkListMax && survivors <= key_cap / 2;

  if (from_bins) {
    int* const taken_count = reinterpret_cast<int*>(ws + kTakenCountAt);
    int* const survivor_count = reinterpret_cast<int*>(ws + kSurvivorCountAt);
    int32_t* const taken_rows = reinterpret_cast<int32_t*>(ws + kTakenAt);
    uint64_t* const survivor_keys = reinterpret_cast<uint64_t*>(ws + kSurvivorsAt);
    const int i0 = static_cast<int>(blockIdx.x) * kPassRows + 4 * static_cast<int>(threadIdx.x);
    float s[4];
    if ((reinterpret_cast<uintptr_t>(sc) & 15u) == 0 && i0 + 3 < n) {
      const float4 f = *reinterpret_cast<const float4*>(sc + i0);
      s[0] = f.x, s[1] = f.y, s[2] = f.z, s[3] = f.w;
    } else {
#pragma unroll
      for (int c = 0; c < 4; ++c) s[c] = i0 + c < n ? sc[i0 + c] : -INFINITY;
    }
    // The block's appends counted by warp (ballots) and block (shared atomics), placed in the token's
    // lists by one global atomic a list (not an atomic a warp and append: a warp would wait on four
    // round trips in a row).
    uint32_t key[4], taken_bits[4], survivor_bits[4];
    int warp_taken = 0, warp_survivors = 0;
#pragma unroll
    for (int c = 0; c < 4; ++c) {
      key[c] = score_key(s[c]);
      const int b = static_cast<int>(score_bin(key[c]));
      const bool in = i0 + c < n;
      taken_bits[c] = __ballot_sync(0xFFFFFFFFu, in && b > bin);
      survivor_bits[c] = __ballot_sync(0xFFFFFFFFu, in && b == bin);
      warp_taken += __popc(taken_bits[c]);
      warp_survivors += __popc(survivor_bits[c]);
    }
    if (lane == 0) {
      warp_taken = warp_taken ? atomicAdd(&s_block_counts[0], warp_taken) : 0;
      warp_survivors = warp_survivors ? atomicAdd(&s_block_counts[1], warp_survivors) : 0;
    }
    __syncthreads();
    if (threadIdx.x == 0) {
      s_block_bases[0] = s_block_counts[0] ? atomicAdd(taken_count, s_block_counts[0]) : 0;
      s_block_bases[1] = s_block_counts[1] ? atomicAdd(survivor_count, s_block_counts[1]) : 0;
    }
    __syncthreads();
    int at_taken = s_block_bases[0] + __shfl_sync(0xFFFFFFFFu, warp_taken, 0);
    int at_survivor = s_block_bases[1] + __shfl_sync(0xFFFFFFFFu, warp_survivors, 0);
    const uint32_t below = (1u << lane) - 1u;
#pragma unroll
    for (int c = 0; c < 4; ++c) {
      const int i = i0 + c;
      if ((taken_bits[c] >> lane) & 1u) taken_rows[at_taken + __popc(taken_bits[c] & below)] = i;
      if ((survivor_bits[c] >> lane) & 1u) {
        survivor_keys[at_survivor + __popc(survivor_bits[c] & below)] =
            static_cast<uint64_t>(key[c]) << 32 | ~static_cast<uint32_t>(i);
      }
      at_taken += __popc(taken_bits[c]);
      at_survivor += __popc(survivor_bits[c]);
    }
  }
  // The last block to get here sees every block's lists: the block's writes ordered before its
  // ticket by the barrier and one thread's fence, the last block's reads after its own (the pattern
  // of cooperative groups' grid sync; a fence by every thread measured the same).
  __syncthreads();
  if (threadIdx.x == 0) {
    __threadfence();
    s_last = atomicAdd(ws + kTicketAt, 1u) == static_cast<uint32_t>(blocks - 1);
    if (s_last) __threadfence();
  }
  __syncthreads();
  if (!s_last) return;
  // Every block has read the bins: clear them and the counters for the next launch.
  reinterpret_cast<uint4*>(ws)[threadIdx.x] = make_uint4(0u, 0u, 0u, 0u);
  if (threadIdx.x < 4) ws[kTicketAt + threadIdx.x] = 0u;
  if (!from_bins) {
    radix_select(sc, n, k, out, keys4, key_cap);
    return;
  }
  uint64_t* const keys = reinterpret_cast<uint64_t*>(keys4);
  const uint64_t* const survivor_keys = reinterpret_cast<const uint64_t*>(ws + kSurvivorsAt);
  for (int i = threadIdx.x; i < taken; i += blockDim.x) list[i] = __ldcg(reinterpret_cast<const int*>(ws + kTakenAt) + i);
  for (int i = threadIdx.x; i < survivors; i += blockDim.x) {
    keys[i] = __ldcg(reinterpret_cast<const unsigned long long*>(survivor_keys) + i);
  }
  __shared__ int s_count;
  if (threadIdx.x == 0) s_count = taken;
  __syncthreads();
  take_largest(keys, survivors, k - taken, list, &s_count);
  __syncthreads();
  sort_ascending(list, k, out);
}

// Makes the bins the score kernel would have (top_k_rows with scratch): block (x, t) counts token t's
// candidates [x·kPassRows, (x + 1)·kPassRows).
__global__ void __launch_bounds__(kTopkThreads) count_bins_kernel(const float* scores, int64_t stride,
                                                                  const int32_t* n_rows, int k, int bins_from,
                                                                  uint32_t* scratch) {
  __shared__ uint32_t block_bins[kIndexerScoreBins];
  pdl_wait();
  pdl_trigger();
  const int t = blockIdx.y, n = n_rows[t], first = static_cast<int>(blockIdx.x) * kPassRows;
  if (n <= k || n < bins_from || first >= n) return;
  for (int i = threadIdx.x; i < kIndexerScoreBins; i += blockDim.x) block_bins[i] = 0u;
  __syncthreads();
  const float* sc = scores + static_cast<int64_t>(t) * stride;
  const int end = min(n, first + kPassRows);
  for (int i = first + static_cast<int>(threadIdx.x); i < end; i += blockDim.x) {
    atomicAdd(block_bins + score_bin(score_key(sc[i])), 1u);
  }
  __syncthreads();
  add_bins(block_bins, scratch + static_cast<int64_t>(t) * kIndexerTopkScratchWords);
}

// The histogram's grids (count_bins_kernel, bins_topk_kernel): a block per kPassRows candidates of
// a row of `stride` (fixed when a decode graph is captured, not the position) and token.
dim3 pass_grid(int64_t stride, int T) {
  return dim3(static_cast<unsigned>((std::max<int64_t>(stride, 1) + kPassRows - 1) / kPassRows), T);
}

}  // namespace

Status launch_top_k(const float* scores, int64_t stride, const int32_t* n_rows, const int* pos0, int t0, int T, int k,
                    uint32_t* scratch, int bins_from, int32_t* selected, cudaStream_t stream) {
  // A token alone: room for all its keys, or (the histogram's way) all its candidates as survivors.
  const int64_t cap = T == 1 ? std::min<int64_t>((scratch ? 2 : 1) * stride, kTopkCachedAlone) : kTopkCached;
  int device = 0;
  DSV4_CUDA_TRY(cudaGetDevice(&device));
  const size_t smem = static_cast<size_t>(cap) * sizeof(uint32_t);
  if (scratch == nullptr) {
    DSV4_CUDA_TRY(once_per_device(device, [device] {
      return allow_optin_smem(device, reinterpret_cast<const void*>(radix_topk_kernel));
    }));
    DSV4_CUDA_TRY(launch_pdl(radix_topk_kernel, dim3(T), dim3(kTopkThreads), smem, stream, scores, stride, n_rows, pos0,
                             t0, k, selected, static_cast<int>(cap)));
    return Status();
  }
  DSV4_CUDA_TRY(once_per_device(device, [device] {
    return allow_optin_smem(device, reinterpret_cast<const void*>(bins_topk_kernel));
  }));
  DSV4_CUDA_TRY(launch_pdl(bins_topk_kernel, pass_grid(stride, T), dim3(kTopkThreads), smem, stream, scores, stride,
                           n_rows, pos0, t0, k, scratch, bins_from, selected, static_cast<int>(cap)));
  return Status();
}

}  // namespace dsv4::cuda::detail

namespace dsv4::cuda {

Status top_k_rows(const float* scores, int64_t stride, const int32_t* n, int T, int k, int32_t* selected,
                  cudaStream_t stream, uint32_t* scratch, int bins_from) {
  if (T <= 0) return Status();
  if (reinterpret_cast<uintptr_t>(scratch) % 16 != 0) return make_error("top-k: scratch must be 16-byte aligned");
  if (scratch != nullptr) {
    DSV4_CUDA_TRY(detail::launch_pdl(detail::count_bins_kernel, detail::pass_grid(stride, T), dim3(detail::kTopkThreads),
                                     0, stream, scores, stride, n, k, bins_from, scratch));
  }
  DSV4_TRY(detail::launch_top_k(scores, stride, n, nullptr, 0, T, k, scratch, bins_from, selected, stream));
  return cuda_status(cudaGetLastError(), "top-k kernel");
}

}  // namespace dsv4::cuda
