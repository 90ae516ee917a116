// sampling.h. One block of 1024 threads does the whole selection:
//
//   keys     : a finite logit l of token i ranks by the 64-bit key (order bits of l) << 32 | ~i, so
//              "larger key" is exactly the reference's order (logit desc, id asc) and keys are
//              unique. Non-finite logits are never candidates.
//   top-k    : radix select (8 passes of 8 bits) of the k-th largest key, the ≤ 1024 keys above it
//              gathered and bitonic-sorted in shared memory.
//   top-p    : without top-k, the survivors are walked in sorted order chunk by chunk (the next 1024
//              keys below the last one taken) until the cumulative mass reaches the target, as
//              the reference's lazily sorted chunks do.
//   id order : top-p off and top-k off: min-p survivors compacted in id order (ordered scan).
// Sums along a list and the draw run on thread 0 in list order, as on the host.
//
// Cost (H100, 129 280 logits, docs/PERF.md session 7): greedy 11 µs (float4 loads, 8 in flight per
// thread); the other passes still load one value per thread at a time and are latency-bound:
// T 1 + min-p 227 µs, top-k 40 361 µs, top-p 0.9 459 µs.
#include <cuda_runtime.h>

#include <cstdint>
#include <cstring>
#include <utility>

#include "cuda/check.h"
#include "cuda/device_math.cuh"
#include "cuda/sampling.h"

namespace dsv4::cuda {

namespace {

using namespace detail;

constexpr int kThreads = 1024;
constexpr int kMaxTopK = 1024;
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

__device__ __forceinline__ uint64_t key_of(float l, int i) {
  const uint32_t b = __float_as_uint(l);
  const uint32_t ord = (b & 0x80000000u) ? ~b : (b | 0x80000000u);
  return (static_cast<uint64_t>(ord) << 32) | static_cast<uint32_t>(0xFFFFFFFFu - static_cast<uint32_t>(i));
}
// The selection's outcome: the result word, and the consumer's token slot with a valid id (the
// host reports -1 as an error; whatever a queued consumer then computed is discarded).
__device__ __forceinline__ void publish(const Params& p, int token) {
  *p.result = token;
  if (p.device_token) *p.device_token = token < 0 ? 0 : token;
}

__device__ __forceinline__ int id_of(uint64_t key) { return static_cast<int>(0xFFFFFFFFu - static_cast<uint32_t>(key)); }

struct Shared {
  uint64_t keys[kMaxTopK];
  int hist[256];
  int warp_sums[32];
  float fscratch[32];
  double dscratch[32];
  int ints[32];
  uint64_t u64;
  int n;
  double kept;
};

// Sorts the 1024 keys of sh.keys descending (bitonic network).
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

// The min(m, |S|) largest keys of S = {finite L[i] with key < bound}, sorted descending into
// sh.keys (the rest zero). Returns that count. All threads call it.
__device__ int select_sorted(const float* L, int V, uint64_t bound, int m, Shared& sh) {
  int count = 0;
  for (int i = threadIdx.x; i < V; i += blockDim.x) {
    const float l = L[i];
    count += (isfinite(l) && key_of(l, i) < bound) ? 1 : 0;
  }
  count = block_sum(count, sh.ints);
  uint64_t thr = 0;  // take keys >= thr (all of S when it has at most m)
  if (count > m) {
    uint64_t prefix = 0, mask = 0;
    int need = m;
    for (int shift = 56; shift >= 0; shift -= 8) {
      for (int b = threadIdx.x; b < 256; b += blockDim.x) sh.hist[b] = 0;
      __syncthreads();
      for (int i = threadIdx.x; i < V; i += blockDim.x) {
        const float l = L[i];
        if (!isfinite(l)) continue;
        const uint64_t key = key_of(l, i);
        if (key < bound && (key & mask) == prefix) atomicAdd(&sh.hist[(key >> shift) & 255u], 1);
      }
      __syncthreads();
      if (threadIdx.x == 0) {
        int b = 255, above = 0;
        while (above + sh.hist[b] < need) above += sh.hist[b--];
        sh.u64 = prefix | (static_cast<uint64_t>(b) << shift);
        sh.n = need - above;
      }
      __syncthreads();
      prefix = sh.u64;
      need = sh.n;
      mask |= uint64_t{255} << shift;
      __syncthreads();
    }
    thr = prefix;  // keys are unique: exactly m keys are >= the m-th largest
    count = m;
  }
  for (int j = threadIdx.x; j < kMaxTopK; j += blockDim.x) sh.keys[j] = 0;
  if (threadIdx.x == 0) sh.n = 0;
  __syncthreads();
  for (int i = threadIdx.x; i < V; i += blockDim.x) {
    const float l = L[i];
    if (!isfinite(l)) continue;
    const uint64_t key = key_of(l, i);
    if (key < bound && key >= thr) sh.keys[atomicAdd(&sh.n, 1)] = key;
  }
  __syncthreads();
  sort_keys_desc(sh.keys);
  return count;
}

// exp((l - max)/T) as the host forms it.
__device__ __forceinline__ float weight(float l, float max_logit, float T) {
  return exp_f32(__fdiv_rn(__fsub_rn(l, max_logit), T));
}

__global__ void __launch_bounds__(kThreads) sample_kernel(Params p) {
  __shared__ Shared sh;
  const int tid = threadIdx.x;
  const int V = p.V;
  const float* L = p.logits;
  if (!p.raw_greedy && (p.presence != 0.0f || p.frequency != 0.0f) && p.n_hist > 0) {
    for (int i = tid; i < V; i += blockDim.x) p.work[i] = p.logits[i];
    __syncthreads();
    for (int h = tid; h < p.n_hist; h += blockDim.x) {
      const int t = p.hist[h];
      const double c = p.counts[h];
      p.work[t] = __fsub_rn(p.work[t], static_cast<float>(static_cast<double>(p.presence) + static_cast<double>(p.frequency) * c));
    }
    __syncthreads();
    L = p.work;
  }

  if (p.raw_greedy || p.temperature == 0.0f) {
    // Lowest id among the largest finite logits. Each thread's ids increase along its loop, so
    // keeping the first of equal values keeps the lowest id. One block streams the whole
    // vocabulary: it keeps kGreedyUnroll float4 loads per thread in flight, or the pass is bound
    // by the latency of one load per thread at a time (tens of µs for 129K logits).
    float best = -INFINITY;
    int best_i = -1;
    auto consider = [&](float v, int i) {
      if (isfinite(v) && (best_i < 0 || v > best)) {
        best = v;
        best_i = i;
      }
    };
    constexpr int kGreedyUnroll = 8;
    const int V4 = (reinterpret_cast<uintptr_t>(L) & 15) == 0 ? V / 4 : 0;
    const float4* L4 = reinterpret_cast<const float4*>(L);
    for (int base = tid; base < V4; base += blockDim.x * kGreedyUnroll) {
      float4 v[kGreedyUnroll];
#pragma unroll
      for (int u = 0; u < kGreedyUnroll; ++u) {
        const int j = base + u * static_cast<int>(blockDim.x);
        v[u] = j < V4 ? L4[j] : make_float4(NAN, NAN, NAN, NAN);
      }
#pragma unroll
      for (int u = 0; u < kGreedyUnroll; ++u) {
        const int i = 4 * (base + u * static_cast<int>(blockDim.x));
        consider(v[u].x, i);
        consider(v[u].y, i + 1);
        consider(v[u].z, i + 2);
        consider(v[u].w, i + 3);
      }
    }
    for (int i = 4 * V4 + tid; i < V; i += blockDim.x) consider(L[i], i);
    for (int o = 16; o > 0; o >>= 1) {
      const float ov = __shfl_xor_sync(0xFFFFFFFFu, best, o);
      const int oi = __shfl_xor_sync(0xFFFFFFFFu, best_i, o);
      if (oi >= 0 && (best_i < 0 || ov > best || (ov == best && oi < best_i))) {
        best = ov;
        best_i = oi;
      }
    }
    if ((tid & 31) == 0) {
      sh.fscratch[tid >> 5] = best;
      sh.ints[tid >> 5] = best_i;
    }
    __syncthreads();
    if (tid == 0) {
      for (int w = 1; w < static_cast<int>(blockDim.x >> 5); ++w) {
        const int oi = sh.ints[w];
        const float ov = sh.fscratch[w];
        if (oi >= 0 && (best_i < 0 || ov > best || (ov == best && oi < best_i))) {
          best = ov;
          best_i = oi;
        }
      }
      publish(p, best_i);
      sh.n = best_i;
    }
    __syncthreads();
    if (p.probs) {
      for (int i = tid; i < V; i += blockDim.x) p.probs[i] = (i == sh.n) ? 1.0f : 0.0f;
    }
    return;
  }

  float mx = -INFINITY;
  int any = 0;
  for (int i = tid; i < V; i += blockDim.x) {
    const float v = L[i];
    if (isfinite(v)) {
      mx = fmaxf(mx, v);
      any = 1;
    }
  }
  mx = block_max(mx, sh.fscratch);
  any = block_sum(any, sh.ints);
  if (any == 0) {
    if (tid == 0) publish(p, -1);
    return;
  }
  const float T = p.temperature;
  const double min_weight = static_cast<double>(p.min_p) * (1.0 - kBoundaryTolerance);
  const bool top_p_on = p.top_p < 1.0f;

  if (p.top_k > 0) {
    const int m = select_sorted(L, V, ~uint64_t{0}, min(p.top_k, kMaxTopK), sh);
    if (tid == 0) {
      const float max_logit = L[id_of(sh.keys[0])];
      double total = 0.0;
      for (int j = 0; j < m; ++j) {
        const int id = id_of(sh.keys[j]);
        const float w = weight(L[id], max_logit, T);
        p.cand_id[j] = id;
        p.cand_w[j] = w;
        total += w;
      }
      int n = m;
      for (int j = 1; j < m; ++j) {
        const float w = p.cand_w[j];
        if (w <= 0.0f || w < min_weight) {
          n = j;
          break;
        }
      }
      if (top_p_on) {
        const double target = (static_cast<double>(p.top_p) - kBoundaryTolerance) * total;
        double cum = 0.0;
        int cut = n;
        for (int j = 0; j < n; ++j) {
          cum += p.cand_w[j];
          if (cum >= target) {
            cut = j + 1;
            break;
          }
        }
        n = cut;
      }
      sh.n = n;
    }
  } else if (!top_p_on) {
    // Survivors of min-p in id order.
    int base = 0;
    for (int b = 0; b < V; b += blockDim.x) {
      const int i = b + tid;
      float w = 0.0f;
      int keep = 0;
      if (i < V) {
        const float v = L[i];
        if (isfinite(v)) {
          w = weight(v, mx, T);
          keep = (w > 0.0f && w >= min_weight) ? 1 : 0;
        }
      }
      int total = 0;
      const int at = base + block_exclusive_scan(keep, sh.warp_sums, &total);
      if (keep) {
        p.cand_id[at] = i;
        p.cand_w[at] = w;
      }
      base += total;
    }
    if (tid == 0) sh.n = base;
  } else {
    // The mass of the whole distribution (reassociated: see sampling.h), then sorted chunks.
    double part = 0.0;
    for (int i = tid; i < V; i += blockDim.x) {
      const float v = L[i];
      if (isfinite(v)) part += weight(v, mx, T);
    }
    const double total = block_sum(part, sh.dscratch);
    const double target = (static_cast<double>(p.top_p) - kBoundaryTolerance) * total;
    uint64_t bound = ~uint64_t{0};
    double cum = 0.0;  // thread 0's
    int taken = 0;     // thread 0's
    while (true) {
      const int m = select_sorted(L, V, bound, kMaxTopK, sh);
      if (tid == 0) {
        int cut = -1;
        for (int j = 0; j < m && cut < 0; ++j) {
          const int id = id_of(sh.keys[j]);
          const float w = weight(L[id], mx, T);
          if (!(w > 0.0f && w >= min_weight)) {
            cut = taken;  // the survivors end here (weights descend along the order)
            break;
          }
          p.cand_id[taken] = id;
          p.cand_w[taken] = w;
          ++taken;
          cum += w;
          if (cum >= target) cut = taken;
        }
        if (cut < 0 && m < kMaxTopK) cut = taken;  // no more candidates
        sh.n = cut;
        sh.u64 = m > 0 ? sh.keys[m - 1] : 0;
      }
      __syncthreads();
      if (sh.n >= 0) break;
      bound = sh.u64;
      __syncthreads();
    }
  }
  __syncthreads();
  if (tid == 0) {
    const int n = sh.n;
    double kept = 0.0;
    for (int j = 0; j < n; ++j) kept += p.cand_w[j];
    double r = p.u * kept;
    int token = n > 0 ? p.cand_id[n - 1] : -1;
    for (int j = 0; j < n; ++j) {
      r -= p.cand_w[j];
      if (r < 0.0) {
        token = p.cand_id[j];
        break;
      }
    }
    publish(p, token);
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
  sample_kernel<<<1, kThreads, 0, stream>>>(p);
  return cuda_status(cudaGetLastError(), "sampling kernel");
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
