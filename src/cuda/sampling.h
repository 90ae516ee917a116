// Token sampling on the device, with the semantics of engine/sampler.h (the reference): penalties,
// greedy (lowest id among the largest finite logits), top-k (capped at 1024), temperature, min-p,
// top-p and the inverse-CDF draw over the kept candidates in the reference's list order (sorted by
// logit desc / id asc when top-k or top-p order them, id order otherwise). The PRNG stays on the
// host: the caller draws u = rng.uniform() exactly when the reference would (temperature > 0,
// parameter mode) and passes it, so a seed replays the same tokens on either side.
//
// Arithmetic: candidate weights exp((l - max)/T) are formed as on the host (the exp evaluated in
// double and rounded, i.e. a correctly rounded expf); running sums over ordered lists are
// sequential doubles as on the host. One sum is reassociated: the total mass over the whole
// vocabulary that top-p needs without top-k is a deterministic parallel double sum (the host sums
// in id order); the two differ by ~1e-16 relative, which moves a top-p cut only when the
// cumulative mass lands within that of the boundary. Logprobs are not computed here (callers
// fall back to the host sampler when they are requested).
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>
#include <memory>
#include <span>

#include "util/status.h"

namespace dsv4::cuda {

struct SamplingRequest {
  bool raw_greedy = false;  // Sampler::Mode::kRawGreedy: argmax of the raw logits, no penalties
  float temperature = 1.0f;
  float top_p = 1.0f;
  float min_p = 0.0f;
  int32_t top_k = 0;  // 0 = off; capped at 1024
  float presence_penalty = 0.0f;
  float frequency_penalty = 0.0f;
  std::span<const int32_t> history;          // distinct tokens generated so far
  std::span<const uint32_t> history_counts;  // how often each occurred
  double u = 0.0;  // uniform in [0, 1) from the host PRNG (used when temperature > 0)
};

class DeviceSampler {
 public:
  static Result<std::unique_ptr<DeviceSampler>> create(int vocab);
  ~DeviceSampler();
  DeviceSampler(const DeviceSampler&) = delete;
  DeviceSampler& operator=(const DeviceSampler&) = delete;

  // The sampled token id (-1: no finite logit): enqueue() then wait().
  Result<int32_t> sample(const float* logits, const SamplingRequest& request, cudaStream_t stream);
  // Queues the selection, which stores its token in mapped pinned host memory, then an event. When
  // device_token is not null the kernel also stores the token there, as a valid id (0 in place of
  // -1), so that work queued behind it can consume the token before the host has read it (the
  // session's speculative decode step). Nothing here waits for the device.
  Status enqueue(const float* logits, const SamplingRequest& request, int32_t* device_token, cudaStream_t stream);
  // The token of the last enqueue(): waits for its event only, not for work queued after it.
  Result<int32_t> wait();
  // The same selection without the draw: probs[V] (device) gets the kept distribution (0 for
  // excluded tokens, one-hot for greedy), as Sampler::distribution (tests).
  Status distribution(const float* logits, const SamplingRequest& request, float* probs, cudaStream_t stream);

 private:
  DeviceSampler() = default;
  Status launch(const float* logits, const SamplingRequest& request, float* probs, int32_t* device_token,
                cudaStream_t stream);

  int vocab_ = 0;
  void* buffer_ = nullptr;  // work logits, candidate ids and weights, history
  float* work_ = nullptr;
  int32_t* cand_id_ = nullptr;
  float* cand_w_ = nullptr;
  int32_t* hist_ = nullptr;
  uint32_t* hist_counts_ = nullptr;
  // Pinned host words: the token (mapped: the kernel writes it through result_, its device
  // address), and the staged history (2 x vocab) so that its copies are asynchronous (a pageable
  // copy may wait for the work already queued on the stream).
  int32_t* host_token_ = nullptr;
  int32_t* result_ = nullptr;
  int32_t* host_history_ = nullptr;
  cudaEvent_t token_ready_ = nullptr;
  cudaEvent_t history_copied_ = nullptr;
};

}  // namespace dsv4::cuda
