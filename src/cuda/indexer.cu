// indexer.h.
//
// Scores: a block takes kRowsPerBlock indexer rows of one token with that token's 64×128 queries
// in shared memory (rows padded by four floats: lane l's 16-byte reads of head l's row fall in
// distinct banks); a warp scores four rows at once, each lane two heads, the rows broadcast from
// shared memory 16 bytes at a time (one row at a time, every row re-read all 32 KB of queries from
// shared memory: ≈ 9 wavefronts per 16 bytes of row, what bounded the kernel at long contexts).
// Roofline at 32K context: 8192 rows × 64 heads × 128 × 2 flops = 134 MFLOP per CSA layer and
// token, ~5 µs at the f32 FMA rate; tensor cores are the next step (PERFORMANCE.md §6 item 8).
//
// Top-k: one block of 1024 threads per token. Radix select over the order-preserving key of each
// score (NaN ranked as -inf, like cpu::top_k_desc; the keys of up to 8192 candidates, or 49 152 for
// a token alone, kept in shared memory after the first pass), 8 bits per pass from below the bits
// all keys share: the histogram of the candidates that share the decided prefix locates the bucket
// holding the k-th largest key, until that bucket is taken whole or every bit is decided. Then the
// threshold (on the decided bits) and how many of its equal keys to take are known; equal keys are
// taken in index order, which is the lower-index tie rule. The selected indices are written in
// ascending order by an ordered compaction (two bitmaps built by warp ballots, one barrier per
// window of candidates).
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "cuda/check.h"
#include "cuda/cp_async.cuh"
#include "cuda/device_math.cuh"
#include "cuda/indexer.h"
#include "cuda/once_per_device.h"
#include "cuda/pdl.cuh"

namespace dsv4::cuda {

namespace {

using namespace detail;

constexpr int kRowsPerBlock = 32;
constexpr int kScoreThreads = 256;
constexpr int kScoreWarps = kScoreThreads / 32;
constexpr int kRowsPerWarp = kRowsPerBlock / kScoreWarps;
constexpr int kTopkThreads = 1024;
// Candidates of the top-k's ordered compaction, 32 a word: the two counts of a window share one
// 32-bit word in its scans (at most 2^14 each), and a warp's run of words is at most 32.
constexpr int kTopkWindowWords = 512;
static_assert(32 * kTopkWindowWords <= (1 << 14) && kTopkWindowWords <= kTopkThreads,
              "packed counts; runs of 32 words at most");
// Keys a top-k block keeps in shared memory: 8192 (32 KB) with a block per token of a chunk, so
// that two blocks share an SM; up to 49 152 (192 KB) for one token alone (the decode step), whose
// later passes read from global memory (L2) what its shared memory does not hold.
constexpr int kTopkCached = 8192;
constexpr int kTopkCachedAlone = 49152;

// floor((p+1)/4) for token t of a launch starting at chunk token t0.
__device__ __forceinline__ int64_t visible_rows(const int* pos0, int t0, int t) {
  return (static_cast<int64_t>(*pos0) + t0 + t + 1) / 4;
}

// Before griddepcontrol.wait the kernels read only weights and the position (no kernel of a
// step writes it: advance_position, the step's last launch, is not overlapped by a PDL launch),
// and ask L2 for rows (a prefetch brings nothing into the SM; L2 is coherent). Every block waits
// before it returns: a grid must not complete before the one it depends on.
__global__ void prep_kernel(IndexerArgs a) {
  extern __shared__ __align__(16) float v[];  // [idh], then float2 angles [n_rot/2] (idh is a power of two)
  float2* cs = reinterpret_cast<float2*>(v + a.idh);
  const int h = blockIdx.x, t = blockIdx.y;
  const bool needed = visible_rows(a.pos0, a.t0, t) > a.top_k;
  const int64_t pos = static_cast<int64_t>(*a.pos0) + a.t0 + t;
  if (needed) rope_angles_shared(cs, a.n_rot / 2, a.omega, pos);
  pdl_wait();
  pdl_trigger();
  if (!needed) return;
  float* q = a.q + (static_cast<int64_t>(t) * a.IH + h) * a.idh;
  for (int i = threadIdx.x; i < a.idh; i += blockDim.x) v[i] = q[i];
  rope_apply_shared(v, a.idh, a.n_rot / 2, cs, false);
  if (a.sim) hadamard_fp4_shared(v, a.idh, true);
  for (int i = threadIdx.x; i < a.idh; i += blockDim.x) q[i] = v[i];
}

__global__ void __launch_bounds__(kScoreThreads) score_kernel(IndexerArgs a) {
  extern __shared__ __align__(16) float smem[];
  const int t = blockIdx.y;
  const int64_t n_vis = visible_rows(a.pos0, a.t0, t);
  const int64_t row0 = static_cast<int64_t>(blockIdx.x) * kRowsPerBlock;
  const bool needed = n_vis > a.top_k && row0 < n_vis;
  const int64_t row_end = min(n_vis, row0 + kRowsPerBlock);
  const float w_scale = static_cast<float>(1.0 / sqrt(static_cast<double>(a.idh * a.IH)));
  // The block's rows (the newest may be the compressor's fresh one: prefetching it is harmless).
  if (needed) {
    const int64_t bytes = (row_end - row0) * a.idh * static_cast<int64_t>(sizeof(float));
    const char* base = reinterpret_cast<const char*>(a.rows + row0 * a.idh);
    for (int64_t o = threadIdx.x * 128; o < bytes; o += blockDim.x * 128) prefetch_l2(base + o);
  }
  pdl_wait();
  pdl_trigger();
  if (!needed) return;
  const int pitch = a.idh + 4;               // 16-byte rows; lane l's float4 reads hit distinct banks
  float* qs = smem;                          // [IH][idh + 4]
  float* ws = qs + a.IH * pitch;             // [IH], padded to a multiple of 4
  float* ks = ws + (a.IH + 3) / 4 * 4;       // [kRowsPerBlock][idh]: warp w's rows w, w + 8, ...
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  // Each warp's rows are copied into its part of ks while the queries are staged: one round trip
  // for both (a row loaded only once the previous one was scored was a second and third).
  for (int64_t c = row0 + warp, j = 0; c < row_end; c += kScoreWarps, ++j) {
    float* dst = ks + (warp + j * kScoreWarps) * a.idh;
    for (int i = 4 * lane; i < a.idh; i += 128) cp_async16(dst + i, a.rows + c * a.idh + i);
  }
  cp_async_commit();
  const float4* q4 = reinterpret_cast<const float4*>(a.q + static_cast<int64_t>(t) * a.IH * a.idh);
#pragma unroll 8
  for (int i = threadIdx.x; i < a.IH * a.idh / 4; i += blockDim.x) {
    const int e = 4 * i;
    *reinterpret_cast<float4*>(qs + (e / a.idh) * pitch + e % a.idh) = q4[i];
  }
  for (int h = threadIdx.x; h < a.IH; h += blockDim.x) ws[h] = __fmul_rn(a.w[static_cast<int64_t>(t) * a.IH + h], w_scale);
  cp_async_wait<0>();
  __syncthreads();
  if (row0 + warp >= row_end) return;  // no row for this warp (nothing below waits for it)
  const int h0 = lane, h1 = lane + 32;
  const float4* q0 = reinterpret_cast<const float4*>(qs + (h0 < a.IH ? h0 : 0) * pitch);
  const float4* q1 = reinterpret_cast<const float4*>(qs + (h1 < a.IH ? h1 : 0) * pitch);
  // The warp's rows c_j = row0 + warp + 8j, all at once: each query load serves all of them
  // (the row past the end reads row 0 of the block; its score is not stored).
  const float4* k4[kRowsPerWarp];
#pragma unroll
  for (int j = 0; j < kRowsPerWarp; ++j) {
    const int r = warp + j * kScoreWarps;
    k4[j] = reinterpret_cast<const float4*>(ks + (row0 + r < row_end ? r : 0) * a.idh);
  }
  float d0[kRowsPerWarp] = {}, d1[kRowsPerWarp] = {};
#pragma unroll 4
  for (int i = 0; i < a.idh / 4; ++i) {
    const float4 a0 = q0[i], a1 = q1[i];
#pragma unroll
    for (int j = 0; j < kRowsPerWarp; ++j) {
      const float4 kv = k4[j][i];
      d0[j] = fmaf(a0.x, kv.x, fmaf(a0.y, kv.y, fmaf(a0.z, kv.z, fmaf(a0.w, kv.w, d0[j]))));
      d1[j] = fmaf(a1.x, kv.x, fmaf(a1.y, kv.y, fmaf(a1.z, kv.z, fmaf(a1.w, kv.w, d1[j]))));
    }
  }
#pragma unroll
  for (int j = 0; j < kRowsPerWarp; ++j) {
    // ReLU per head, then the (signed) head weight.
    float s = h0 < a.IH ? __fmul_rn(ws[h0], fmaxf(d0[j], 0.0f)) : 0.0f;
    if (h1 < a.IH) s = fmaf(ws[h1], fmaxf(d1[j], 0.0f), s);
    s = warp_sum(s);
    const int64_t c = row0 + warp + j * kScoreWarps;
    if (lane == 0 && c < row_end) a.scores[static_cast<int64_t>(t) * a.score_cap + c] = s;
  }
}

// Larger score → larger key; NaN as -inf, -0 as +0 (cpu::top_k_desc compares values: -0 == +0, so
// the two tie and go by index).
__device__ __forceinline__ uint32_t score_key(float s) {
  if (isnan(s)) s = -INFINITY;
  if (s == 0.0f) s = 0.0f;
  const uint32_t b = __float_as_uint(s);
  return (b & 0x80000000u) ? ~b : (b | 0x80000000u);
}

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

// k rows of token t: `n` candidates (n > k) of scores + t·stride; selected + t·k gets them.
//
// One block on one SM: the kernel is bound by its instruction issue (ncu, H200, a decode at 41K:
// 82 600 warp instructions for 10 250 candidates in the version with 64-bit indices, a branch per
// key between cached and uncached keys, and four full passes), so every loop over the keys is lean:
// 32-bit indices, the cached keys read four at a time, the rest after them.
// The first pass reads the scores once, keeps the keys of the first key_cap candidates in shared
// memory (a decode's candidates, up to 49 152; later reads of the rest go to L2) and finds the bits
// every key shares (the AND and OR of all keys). The digit passes start below that common prefix
// (a decode's scores lie within a few binades: a first digit of the top 8 bits put nearly every key
// in one or two buckets) and end early once the bucket holding the k-th largest key is taken whole.
// Two barriers per digit pass: the histograms alternate between two buffers, the idle one cleared
// during the pass.
__global__ void __launch_bounds__(kTopkThreads) topk_kernel(const float* scores, int64_t stride, const int32_t* n_rows,
                                                            const int* pos0, int t0, int k, int32_t* selected,
                                                            int key_cap) {
  pdl_wait();  // launched with PDL: nothing before this line (pdl.cuh)
  pdl_trigger();
  extern __shared__ uint4 keys4[];  // [key_cap / 4]
  __shared__ int hist[2][256];
  __shared__ uint32_t warp_and[32], warp_or[32];
  __shared__ uint32_t warp_counts[32];
  __shared__ uint32_t s_prefix;
  __shared__ int s_need, s_whole;
  uint32_t* keys = reinterpret_cast<uint32_t*>(keys4);
  const uint32_t keys_at = shared_address(keys4);
  const int t = blockIdx.x;
  const int n = static_cast<int>(n_rows ? n_rows[t] : visible_rows(pos0, t0, t));  // < 2^31: positions are ints
  if (n <= k) return;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
  const float* sc = scores + static_cast<int64_t>(t) * stride;
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
    // The bucket holding the need-th largest key: warp 0, lane l owning buckets 255-8l .. 248-8l;
    // the counts above each lane's buckets come from a prefix sum across lanes.
    if (threadIdx.x < 32) {
      int mine = 0;
#pragma unroll
      for (int j = 0; j < 8; ++j) mine += h[255 - 8 * lane - j];
      int above = warp_inclusive_scan(mine, lane) - mine;  // the counts of the lanes before
      if (above < need && above + mine >= need) {
        int b = 255 - 8 * lane;
        while (above + h[b] < need) above += h[b--];
        s_prefix = prefix | (static_cast<uint32_t>(b) << shift);
        s_need = need - above;
        s_whole = h[b] == need - above;
      }
    }
    __syncthreads();
    prefix = s_prefix;  // rewritten only after the next pass's first barrier
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
  int32_t* out = selected + static_cast<int64_t>(t) * k;
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

// A block per token; its key cache sized by how many tokens share the GPU.
Status launch_top_k(const float* scores, int64_t stride, const int32_t* n_rows, const int* pos0, int t0, int T, int k,
                    int32_t* selected, cudaStream_t stream) {
  const int64_t cap = T == 1 ? std::min<int64_t>(stride, kTopkCachedAlone) : kTopkCached;
  int device = 0;
  DSV4_CUDA_TRY(cudaGetDevice(&device));
  DSV4_CUDA_TRY(once_per_device(device, [device] {
    return allow_optin_smem(device, reinterpret_cast<const void*>(topk_kernel));
  }));
  const size_t smem = static_cast<size_t>(cap) * sizeof(uint32_t);
  DSV4_CUDA_TRY(launch_pdl(topk_kernel, dim3(T), dim3(kTopkThreads), smem, stream, scores, stride, n_rows, pos0, t0, k,
                           selected, static_cast<int>(cap)));
  return Status();
}

}  // namespace

Status indexer_select(const IndexerArgs& a, cudaStream_t stream) {
  if (a.T <= 0) return Status();
  if (a.IH > 64 || a.idh < 4 || a.idh > 1024 || (a.idh & (a.idh - 1)) != 0) {
    return make_error("indexer: unsupported geometry");
  }
  if (reinterpret_cast<uintptr_t>(a.rows) % 16 != 0) return make_error("indexer: rows must be 16-byte aligned");
  DSV4_CUDA_TRY(launch_pdl(prep_kernel, dim3(a.IH, a.T), dim3(128),
                           a.idh * sizeof(float) + (a.n_rot / 2) * sizeof(float2), stream, a));
  // The score kernel's shared memory is sized at run time (IH, idh): it may take all the device
  // allows a block, set once per device.
  int device = 0;
  DSV4_CUDA_TRY(cudaGetDevice(&device));
  DSV4_CUDA_TRY(once_per_device(device, [device] {
    return allow_optin_smem(device, reinterpret_cast<const void*>(score_kernel));
  }));
  const size_t smem =
      (static_cast<size_t>(a.IH) * (a.idh + 4) + (a.IH + 3) / 4 * 4 + static_cast<size_t>(kRowsPerBlock) * a.idh) *
      sizeof(float);
  const unsigned blocks = static_cast<unsigned>((a.score_cap + kRowsPerBlock - 1) / kRowsPerBlock);
  if (blocks > 0) DSV4_CUDA_TRY(launch_pdl(score_kernel, dim3(blocks, a.T), dim3(kScoreThreads), smem, stream, a));
  DSV4_TRY(launch_top_k(a.scores, a.score_cap, nullptr, a.pos0, a.t0, a.T, a.top_k, a.selected, stream));
  return cuda_status(cudaGetLastError(), "indexer kernels");
}

Status top_k_rows(const float* scores, int64_t stride, const int32_t* n, int T, int k, int32_t* selected,
                  cudaStream_t stream) {
  if (T <= 0) return Status();
  DSV4_TRY(launch_top_k(scores, stride, n, nullptr, 0, T, k, selected, stream));
  return cuda_status(cudaGetLastError(), "top-k kernel");
}

}  // namespace dsv4::cuda
