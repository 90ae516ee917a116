// sampling.h. Two kernels, both on a cluster of kRanks blocks:
//
//   greedy   : the selection's cluster, one pass over each rank's range and one exchange of the
//              ranks' largest keys (below).
//   selection: a cluster of kRanks blocks, each owning a contiguous id range; every pass over the
//              vocabulary (max, mass, radix histograms, survivors) runs on all ranks with their
//              partials combined through distributed shared memory in rank order (deterministic),
//              and the short ordered work (sort, sums along a list, the draw) on rank 0.
//
//   keys     : a finite logit l of token i ranks by the 64-bit key (order bits of l) << 32 | ~i, so
//              "larger key" is exactly the reference's order (logit desc, id asc) and keys are
//              unique. Non-finite logits are never candidates.
//   top-k    : radix select (8-bit digits, stopping at the first digit whose bucket is taken
//              whole) of the k-th largest key, the ≤ 1024 keys above it gathered and bitonic-sorted
//              in rank 0's shared memory.
//   top-p    : without top-k, the survivors are walked in sorted order chunk by chunk (the next 1024
//              keys below the last one taken) until the cumulative mass reaches the target, as
//              the reference's lazily sorted chunks do.
//   id order : top-p off and top-k off: min-p survivors compacted in id order (each rank's count,
//              then its offset from the ranks before it). exp() runs only for logits that can pass
//              min-p (the reference's prefilter, 0.01 looser in log space than the exact test).
// Weights are formed in parallel; sums along a list and the draw run on one thread in list order,
// as on the host.
//
// Cost (H100, 129 280 logits, kernel + token readback): greedy 7 µs (10 on one block), T 1 + min-p
// 0.05 20 µs, top-k 40 43 µs, top-p 0.9 58 µs; docs/PERF.md, "session 7 — decode: sampling on many
// blocks" and "session 8 — decode: greedy on the cluster".
#include <cuda_runtime.h>

#include <cstdint>
#include <cstring>
#include <utility>

#include "cuda/check.h"
#include "cuda/device_math.cuh"
#include "cuda/pdl.cuh"
#include "cuda/sampling_cluster.cuh"
#include "cuda/sampling.h"

namespace dsv4::cuda {

namespace {

using namespace detail;
using namespace sampling_detail;

constexpr double kBoundaryTolerance = 1e-6;  // engine/sampler.h

struct Params {
  const float* logits;
  float* work;
  int32_t* cand_id;
  float* cand_w;
  const int32_t* hist;
  const uint32_t* counts;
  int32_t* result;        // mapped pinned host memory: the host reads it after the kernel's event
  int32_t* device_token;  // also gets the token, as a valid id, when not null
  float* probs;  // distribution mode when not null
  int V;
  int n_hist;
  int raw_greedy;
  int top_k;
  float temperature, top_p, min_p, presence, frequency;
  double u;
};

// The selection's outcome: the result word, and the consumer's token slot with a valid id (the
// host reports -1 as an error; whatever a queued consumer then computed is discarded).
__device__ __forceinline__ void publish(const Params& p, int token) {
  *p.result = token;
  if (p.device_token) *p.device_token = token < 0 ? 0 : token;
}

__device__ __forceinline__ bool penalties_apply(const Params& p) {
  return !p.raw_greedy && (p.presence != 0.0f || p.frequency != 0.0f) && p.n_hist > 0;
}

// work[lo, hi) = the penalised logits of that range (the block's own writes, so a __syncthreads
// orders the copy before the history's updates).
__device__ void penalise_range(const Params& p, int lo, int hi) {
  for (int i = lo + static_cast<int>(threadIdx.x); i < hi; i += blockDim.x) p.work[i] = p.logits[i];
  __syncthreads();
  for (int h = threadIdx.x; h < p.n_hist; h += blockDim.x) {
    const int t = p.hist[h];
    if (t < lo || t >= hi) continue;
    const double c = p.counts[h];
    p.work[t] = __fsub_rn(p.work[t], static_cast<float>(static_cast<double>(p.presence) + static_cast<double>(p.frequency) * c));
  }
  __syncthreads();
}

// exp((l - max)/T) as the host forms it.
__device__ __forceinline__ float weight(float l, float max_logit, float T) {
  return exp_f32(__fdiv_rn(__fsub_rn(l, max_logit), T));
}

// ---------------------------------------------------------------------------------------------
// Greedy: the largest key (largest finite logit, then lowest id) on the selection's cluster: each
// rank's range in one pass, the ranks' maxima exchanged once.

__device__ uint64_t block_max_key(uint64_t v, uint64_t* scratch) {
  for (int o = 16; o > 0; o >>= 1) v = max(v, __shfl_xor_sync(0xFFFFFFFFu, v, o));
  if ((threadIdx.x & 31) == 0) scratch[threadIdx.x >> 5] = v;
  __syncthreads();
  uint64_t m = 0;
  for (int w = 0; w < static_cast<int>(blockDim.x >> 5); ++w) m = max(m, scratch[w]);
  return m;
}

__global__ void __launch_bounds__(kThreads) greedy_kernel(Params p) {
  __shared__ Shared sh;
  pdl_wait();
  cg::cluster_group cluster = cg::this_cluster();
  const int rank = static_cast<int>(cluster.block_rank());
  const int V = p.V;
  const int per_rank = (V + kRanks - 1) / kRanks;
  const int lo = min(V, rank * per_rank), hi = min(V, lo + per_rank);
  int phase = 0;
  const float* L = p.logits;
  if (penalties_apply(p)) {
    penalise_range(p, lo, hi);
    cluster.sync();
    L = p.work;
  }
  // Keys of finite logits are nonzero (key_of), so 0 stands for "none".
  uint64_t best = 0;
  for_range(L, lo, hi, [&](float v, int i) {
    if (isfinite(v)) best = max(best, key_of(v, i));
  });
  uint64_t all[kRanks];
  cluster_all(block_max_key(best, sh.local), all, sh, phase);
  for (int r = 0; r < kRanks; ++r) best = max(best, all[r]);
  const int chosen = best == 0 ? -1 : id_of(best);
  if (rank == 0 && threadIdx.x == 0) publish(p, chosen);
  if (p.probs) {
    for (int i = lo + static_cast<int>(threadIdx.x); i < hi; i += kThreads) p.probs[i] = (i == chosen) ? 1.0f : 0.0f;
  }
  cluster.sync();  // no rank leaves while another reads its exchange slot
}

// ---------------------------------------------------------------------------------------------
// Selection on a cluster (the passes: sampling_cluster.cuh).

__global__ void __launch_bounds__(kThreads) select_kernel(Params p) {
  __shared__ Shared sh;
  pdl_wait();
  cg::cluster_group cluster = cg::this_cluster();
  const int rank = static_cast<int>(cluster.block_rank());
  const int tid = threadIdx.x;
  const int V = p.V;
  const int per_rank = (V + kRanks - 1) / kRanks;
  const int lo = min(V, rank * per_rank), hi = min(V, lo + per_rank);
  int phase = 0;
  const float* L = p.logits;
  if (penalties_apply(p)) {
    penalise_range(p, lo, hi);
    cluster.sync();
    L = p.work;
  }

  float mx = -INFINITY;
  int any = 0;
  for_range(L, lo, hi, [&](float v, int) {
    if (isfinite(v)) {
      mx = fmaxf(mx, v);
      any = 1;
    }
  });
  {
    float all[kRanks];
    cluster_all(block_max(mx, sh.fscratch), all, sh, phase);
    for (int r = 0; r < kRanks; ++r) mx = fmaxf(mx, all[r]);
  }
  any = cluster_sum(block_sum(any, sh.ints), sh, phase);
  if (any == 0) {
    if (rank == 0 && tid == 0) publish(p, -1);
    cluster.sync();  // no rank leaves while another reads its exchange slot
    return;
  }
  const float T = p.temperature;
  const double min_weight = static_cast<double>(p.min_p) * (1.0 - kBoundaryTolerance);
  const bool top_p_on = p.top_p < 1.0f;
  auto survives = [&](float w) { return w > 0.0f && w >= min_weight; };

  if (p.top_k > 0) {
    const int m = select_sorted(L, lo, hi, ~uint64_t{0}, min(p.top_k, kMaxTopK), sh, phase);
    if (rank == 0) {
      const float max_logit = L[id_of(sh.keys[0])];
      float w = 0.0f;
      if (tid < m) {
        const int id = id_of(sh.keys[tid]);
        w = weight(L[id], max_logit, T);
        p.cand_id[tid] = id;
        p.cand_w[tid] = w;
        sh.w[tid] = w;
      }
      // Weights descend along the sorted list: min-p (and underflow to 0) cut a prefix, never
      // below the top token.
      const int n = 1 + __syncthreads_count(tid >= 1 && tid < m && survives(w));
      if (tid == 0) {
        int cut = n;
        if (top_p_on) {
          double total = 0.0;
          for (int j = 0; j < m; ++j) total += sh.w[j];
          const double target = (static_cast<double>(p.top_p) - kBoundaryTolerance) * total;
          double cum = 0.0;
          for (int j = 0; j < n; ++j) {
            cum += sh.w[j];
            if (cum >= target) {
              cut = j + 1;
              break;
            }
          }
        }
        sh.n = cut;
      }
    }
  } else if (!top_p_on) {
    // Survivors of min-p in id order. Only logits above the prefilter's cutoff can pass.
    const double cutoff = static_cast<double>(mx) + static_cast<double>(T) * (log(min_weight) - 0.01);
    auto kept_weight = [&](float v, float& w) {
      if (!(v >= cutoff) || !isfinite(v)) return false;
      w = weight(v, mx, T);
      return survives(w);
    };
    int mine = 0;
    for_range(L, lo, hi, [&](float v, int) {
      float w;
      mine += kept_weight(v, w) ? 1 : 0;
    });
    int counts[kRanks];
    cluster_all(block_sum(mine, sh.ints), counts, sh, phase);
    int at = 0, n = 0;
    for (int r = 0; r < kRanks; ++r) {
      at += r < rank ? counts[r] : 0;
      n += counts[r];
    }
    // In id order: kLoads tiles of kThreads ids loaded at once, then compacted tile by tile.
    for (int tile0 = lo; tile0 < hi; tile0 += kLoads * kThreads) {
      float v[kLoads];
#pragma unroll
      for (int u = 0; u < kLoads; ++u) {
        const int i = tile0 + u * kThreads + tid;
        v[u] = i < hi ? L[i] : NAN;
      }
#pragma unroll
      for (int u = 0; u < kLoads; ++u) {
        const int i = tile0 + u * kThreads + tid;
        float w = 0.0f;
        const int keep = (i < hi && kept_weight(v[u], w)) ? 1 : 0;
        if (!__syncthreads_or(keep)) continue;  // block-uniform
        int total = 0;
        const int j = at + block_exclusive_scan(keep, sh.warp_sums, &total);
        if (keep) {
          p.cand_id[j] = i;
          p.cand_w[j] = w;
        }
        at += total;
      }
    }
    if (tid == 0) sh.n = n;
  } else {
    // The mass of the whole distribution (reassociated: see sampling.h; each rank's threads in
    // order, then the ranks in order), then sorted chunks.
    double part = 0.0;
    for_range(L, lo, hi, [&](float v, int) {
      if (isfinite(v)) part += weight(v, mx, T);
    });
    const double total = cluster_sum(block_sum(part, sh.dscratch), sh, phase);
    const double target = (static_cast<double>(p.top_p) - kBoundaryTolerance) * total;
    uint64_t bound = ~uint64_t{0};
    double cum = 0.0;  // rank 0's thread 0's
    if (tid == 0) sh.taken = 0;
    while (true) {
      const int m = select_sorted(L, lo, hi, bound, kMaxTopK, sh, phase);
      if (rank == 0) {
        const int taken = sh.taken;
        float w = 0.0f;
        if (tid < m) {
          const int id = id_of(sh.keys[tid]);
          w = weight(L[id], mx, T);
          p.cand_id[taken + tid] = id;
          p.cand_w[taken + tid] = w;
          sh.w[tid] = w;
        }
        // The survivors of min-p are a prefix of the order (weights descend along it).
        const int s = __syncthreads_count(tid < m && survives(w));
        if (tid == 0) {
          int cut = -1;
          for (int j = 0; j < s; ++j) {
            cum += sh.w[j];
            if (cum >= target) {
              cut = taken + j + 1;
              break;
            }
          }
          if (cut < 0 && (s < m || m < kMaxTopK)) cut = taken + s;  // no more candidates
          sh.taken = taken + s;
          sh.n = cut;
          sh.next_bound = m > 0 ? sh.keys[m - 1] : 0;
        }
      }
      cluster.sync();
      // Rank 0 writes these again only after the next chunk's first cluster barrier.
      const int cut = *cluster.map_shared_rank(&sh.n, 0);
      bound = *cluster.map_shared_rank(&sh.next_bound, 0);
      if (cut >= 0) break;
    }
  }
  cluster.sync();  // no rank leaves while another reads its shared memory
  if (rank != 0) return;

  // The kept mass and the inverse-CDF draw in list order on thread 0, through shared memory one
  // tile of kThreads weights at a time (a walk over global memory would wait for every load).
  const int n = sh.n;
  if (tid == 0) sh.drawn = -1;  // the drawn position in the list; set: the walk stops
  auto walk_weights = [&](auto&& visit) {  // visit(first index of the tile, its length) on thread 0
    for (int tile = 0; tile < n; tile += kThreads) {
      __syncthreads();
      if (tile + tid < n) sh.w[tid] = p.cand_w[tile + tid];
      __syncthreads();
      if (tid == 0) visit(tile, min(kThreads, n - tile));
      __syncthreads();
      if (sh.drawn >= 0) break;
    }
  };
  double kept = 0.0;  // thread 0's
  walk_weights([&](int, int end) {
    for (int j = 0; j < end; ++j) kept += sh.w[j];
  });
  double r = p.u * kept;  // thread 0's
  walk_weights([&](int tile, int end) {
    for (int j = 0; j < end; ++j) {
      r -= sh.w[j];
      if (r < 0.0) {
        sh.drawn = tile + j;
        break;
      }
    }
  });
  if (tid == 0) {
    const int at = sh.drawn >= 0 ? sh.drawn : n - 1;  // the last kept token absorbs rounding
    publish(p, n > 0 ? p.cand_id[at] : -1);
    sh.kept = kept;
  }
  __syncthreads();
  if (p.probs) {
    for (int i = tid; i < V; i += blockDim.x) p.probs[i] = 0.0f;
    __syncthreads();
    for (int j = tid; j < sh.n; j += blockDim.x) p.probs[p.cand_id[j]] = static_cast<float>(p.cand_w[j] / sh.kept);
  }
}

}  // namespace

Result<std::unique_ptr<DeviceSampler>> DeviceSampler::create(int vocab) {
  if (vocab <= 0) return make_error("device sampler: empty vocabulary");
  std::unique_ptr<DeviceSampler> s(new DeviceSampler());
  s->vocab_ = vocab;
  const size_t n = static_cast<size_t>(vocab);
  const size_t bytes = n * (sizeof(float) + sizeof(int32_t) + sizeof(float) + sizeof(int32_t) + sizeof(uint32_t));
  DSV4_CUDA_TRY(cudaMalloc(&s->buffer_, bytes));
  auto* b = static_cast<uint8_t*>(s->buffer_);
  s->work_ = reinterpret_cast<float*>(b);
  s->cand_id_ = reinterpret_cast<int32_t*>(b + n * 4);
  s->cand_w_ = reinterpret_cast<float*>(b + n * 8);
  s->hist_ = reinterpret_cast<int32_t*>(b + n * 12);
  s->hist_counts_ = reinterpret_cast<uint32_t*>(b + n * 16);
  // The kernel stores the token straight into host memory: no copy sits between it and the
  // work queued behind it.
  void* device_address = nullptr;
  DSV4_CUDA_TRY(cudaHostAlloc(&s->host_token_, sizeof(int32_t), cudaHostAllocMapped));
  DSV4_CUDA_TRY(cudaHostGetDevicePointer(&device_address, s->host_token_, 0));
  s->result_ = static_cast<int32_t*>(device_address);
  DSV4_CUDA_TRY(cudaMallocHost(&s->host_history_, 2 * n * sizeof(int32_t)));
  DSV4_CUDA_TRY(cudaEventCreateWithFlags(&s->token_ready_, cudaEventDisableTiming));
  DSV4_CUDA_TRY(cudaEventCreateWithFlags(&s->history_copied_, cudaEventDisableTiming));
  return Result<std::unique_ptr<DeviceSampler>>(std::move(s));
}

DeviceSampler::~DeviceSampler() {
  // Work queued by launch() may still use the pinned words: let it finish first.
  for (cudaEvent_t e : {token_ready_, history_copied_}) {
    if (!e) continue;
    cudaEventSynchronize(e);
    cudaEventDestroy(e);
  }
  if (host_history_) cudaFreeHost(host_history_);
  if (host_token_) cudaFreeHost(host_token_);
  if (buffer_) cudaFree(buffer_);
}

Status DeviceSampler::launch(const float* logits, const SamplingRequest& r, float* probs, int32_t* device_token,
                             cudaStream_t stream) {
  if (r.history.size() != r.history_counts.size() || r.history.size() > static_cast<size_t>(vocab_)) {
    return make_error("device sampler: history lists of different or excessive lengths");
  }
  if (!(r.temperature >= 0.0f) || r.top_k < 0 || !(r.top_p > 0.0f && r.top_p <= 1.0f) || !(r.min_p >= 0.0f && r.min_p <= 1.0f)) {
    return make_error("device sampler: sampling parameters out of range");
  }
  for (int32_t t : r.history) {
    if (t < 0 || t >= vocab_) return make_error("device sampler: history token out of range");
  }
  Params p{};
  p.logits = logits;
  p.work = work_;
  p.cand_id = cand_id_;
  p.cand_w = cand_w_;
  p.hist = hist_;
  p.counts = hist_counts_;
  p.result = result_;
  p.device_token = device_token;
  p.probs = probs;
  p.V = vocab_;
  p.n_hist = static_cast<int>(r.history.size());
  p.raw_greedy = r.raw_greedy ? 1 : 0;
  p.top_k = r.top_k;
  p.temperature = r.temperature;
  p.top_p = r.top_p;
  p.min_p = r.min_p;
  p.presence = r.presence_penalty;
  p.frequency = r.frequency_penalty;
  p.u = r.u;
  if (p.n_hist > 0 && (p.presence != 0.0f || p.frequency != 0.0f)) {
    // Through the pinned staging words, so the copy does not wait for the stream's queued work;
    // the previous launch's copy must have left them first (normally long done).
    DSV4_CUDA_TRY(cudaEventSynchronize(history_copied_));
    const size_t h = r.history.size();
    std::memcpy(host_history_, r.history.data(), h * 4);
    std::memcpy(host_history_ + h, r.history_counts.data(), h * 4);
    DSV4_CUDA_TRY(cudaMemcpyAsync(hist_, host_history_, h * 4, cudaMemcpyHostToDevice, stream));
    DSV4_CUDA_TRY(cudaMemcpyAsync(hist_counts_, host_history_ + h, h * 4, cudaMemcpyHostToDevice, stream));
    DSV4_CUDA_TRY(cudaEventRecord(history_copied_, stream));
  }
  const bool greedy = r.raw_greedy || r.temperature == 0.0f;
  const cudaError_t e = launch_pdl_cluster(greedy ? greedy_kernel : select_kernel, dim3(kRanks), dim3(kThreads), kRanks,
                                           0, stream, p);
  return cuda_status(e, "sampling kernel");
}

Result<int32_t> DeviceSampler::sample(const float* logits, const SamplingRequest& request, cudaStream_t stream) {
  DSV4_TRY(enqueue(logits, request, nullptr, stream));
  return wait();
}

Status DeviceSampler::enqueue(const float* logits, const SamplingRequest& request, int32_t* device_token,
                              cudaStream_t stream) {
  DSV4_TRY(launch(logits, request, nullptr, device_token, stream));
  return cuda_status(cudaEventRecord(token_ready_, stream), "sampled token event");
}

Result<int32_t> DeviceSampler::wait() {
  DSV4_CUDA_TRY(cudaEventSynchronize(token_ready_));
  return *static_cast<volatile int32_t*>(host_token_);
}

Status DeviceSampler::distribution(const float* logits, const SamplingRequest& request, float* probs,
                                   cudaStream_t stream) {
  return launch(logits, request, probs, nullptr, stream);
}

}  // namespace dsv4::cuda
