// cuda/sampling.h against engine::Sampler (the reference) on fresh random logits: the kept
// distribution of every parameter combination (probabilities within 1e-6 absolute, the same kept
// set), and the tokens drawn over many steps with the same seed (the device gets its uniform
// draws from a second host sampler with that seed, as the engine does).
#include "cuda/sampling.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "cuda/device_util.h"
#include "engine/sampler.h"

namespace dsv4::cuda::testing {
namespace {

using engine::Sampler;
using engine::SamplingParams;

SamplingRequest request_for(Sampler& s, Sampler::Mode mode, std::vector<uint32_t>& counts) {
  const SamplingParams& p = s.params();
  SamplingRequest r;
  r.raw_greedy = mode == Sampler::Mode::kRawGreedy;
  r.temperature = p.temperature;
  r.top_p = p.top_p;
  r.min_p = p.min_p;
  r.top_k = p.top_k;
  r.presence_penalty = p.presence_penalty;
  r.frequency_penalty = p.frequency_penalty;
  r.history = s.history();
  counts.clear();
  for (int32_t t : r.history) counts.push_back(s.count(t));
  r.history_counts = counts;
  return r;
}

// Peaked logits like a model's, with exact ties and a few non-finite values.
std::vector<float> model_like_logits(int V, std::mt19937_64& rng, float spread) {
  std::vector<float> l = normal_vector(static_cast<size_t>(V), rng, 0.0f, spread);
  for (int i = 0; i < 40; ++i) l[rng() % V] = l[rng() % V];  // ties
  l[rng() % V] = NAN;
  l[rng() % V] = -INFINITY;
  l[rng() % V] += 6.0f;
  return l;
}

std::vector<SamplingParams> parameter_sets() {
  std::vector<SamplingParams> sets;
  auto add = [&](float t, float top_p, float min_p, int top_k, float pres = 0, float freq = 0) {
    SamplingParams p;
    p.temperature = t;
    p.top_p = top_p;
    p.min_p = min_p;
    p.top_k = top_k;
    p.presence_penalty = pres;
    p.frequency_penalty = freq;
    sets.push_back(p);
  };
  add(0.0f, 1.0f, 0.0f, 0);          // greedy
  add(0.0f, 1.0f, 0.0f, 0, 1.5f, 0.5f);  // greedy with penalties
  add(1.0f, 1.0f, 0.05f, 0);         // the defaults: min-p, id order
  add(0.7f, 1.0f, 0.0f, 0);          // plain temperature over the whole vocabulary
  add(0.8f, 0.9f, 0.0f, 0);          // top-p alone (sorted chunks)
  add(1.3f, 0.995f, 0.0f, 0);        // top-p reaching deep into the list
  add(0.7f, 1.0f, 0.0f, 40);         // top-k
  add(1.0f, 0.8f, 0.02f, 50);        // all three
  add(1.0f, 1.0f, 0.0f, 5000);       // top-k above the cap
  add(0.9f, 0.95f, 0.05f, 0, 0.7f, 0.3f);  // with penalties
  return sets;
}

// The device's kept distribution against host.distribution() on the same logits and history.
void expect_same_distribution(Sampler& host, const std::vector<float>& logits) {
  const int V = static_cast<int>(logits.size());
  std::vector<float> want(static_cast<size_t>(V));
  ASSERT_TRUE(host.distribution(logits, want).ok());
  auto dev = DeviceSampler::create(V);
  ASSERT_TRUE(dev.ok());
  TestStream stream;
  DeviceBuffer dl = upload(logits), dp(static_cast<size_t>(V) * 4);
  std::vector<uint32_t> counts;
  STATUS_ASSERT((*dev)->distribution(dl.get<float>(), request_for(host, Sampler::Mode::kParams, counts),
                                     dp.get<float>(), stream.get()));
  CUDA_ASSERT(cudaStreamSynchronize(stream.get()));
  const std::vector<float> got = download<float>(dp, V);
  int kept_host = 0, kept_dev = 0;
  for (int i = 0; i < V; ++i) {
    kept_host += want[static_cast<size_t>(i)] > 0;
    kept_dev += got[static_cast<size_t>(i)] > 0;
    ASSERT_EQ(got[static_cast<size_t>(i)] > 0, want[static_cast<size_t>(i)] > 0) << "token " << i;
    ASSERT_NEAR(got[static_cast<size_t>(i)], want[static_cast<size_t>(i)], 1e-6) << "token " << i;
  }
  EXPECT_EQ(kept_dev, kept_host);
}

TEST(CudaSampling, DistributionMatchesHostSampler) {
  const uint64_t seed = fresh_seed();
  SCOPED_TRACE(seed);
  std::mt19937_64 rng(seed);
  const int V = 30000;
  for (const SamplingParams& p : parameter_sets()) {
    SCOPED_TRACE(::testing::Message() << "T " << p.temperature << " top_p " << p.top_p << " min_p " << p.min_p
                                      << " top_k " << p.top_k << " pen " << p.presence_penalty);
    Sampler host = Sampler::create(V, p).value();
    for (int i = 0; i < 30; ++i) host.accept(static_cast<int32_t>(rng() % V));  // a penalty history
    expect_same_distribution(host, model_like_logits(V, rng, p.top_p < 0.99f ? 1.0f : 3.0f));
  }
}

// The selection runs on a cluster of blocks, each owning a contiguous id range: vocabularies
// smaller than the cluster and not a multiple of it; logits on a coarse grid (hundreds of exact
// ties, so top-k's radix select must descend into the id digits); nearly flat logits (top-p walks
// dozens of sorted chunks of 1024, min-p keeps ids in every range); penalties on ids of all ranges.
TEST(CudaSampling, ClusterRangesTiesAndLongListsMatchHostSampler) {
  const uint64_t seed = fresh_seed();
  SCOPED_TRACE(seed);
  std::mt19937_64 rng(seed);
  struct Case {
    int V;
    float spread, grid;  // grid > 0: logits rounded to multiples of it
    float temperature, top_p, min_p;
    int top_k;
    float presence;
  };
  const Case cases[] = {
      {5, 1.0f, 0.0f, 1.0f, 1.0f, 0.05f, 0, 0.0f},       {5, 1.0f, 0.0f, 0.8f, 1.0f, 0.0f, 40, 0.0f},
      {5, 1.0f, 0.0f, 0.8f, 0.9f, 0.0f, 0, 0.0f},        {1027, 1.0f, 0.25f, 0.8f, 1.0f, 0.0f, 40, 0.5f},
      {20001, 1.0f, 0.25f, 0.8f, 1.0f, 0.0f, 300, 0.0f}, {20001, 1.0f, 0.5f, 1.0f, 0.9f, 0.0f, 1024, 0.0f},
      {20001, 0.1f, 0.0f, 1.0f, 0.9f, 0.0f, 0, 0.0f},    {20001, 0.1f, 0.05f, 1.0f, 0.7f, 0.0f, 0, 0.0f},
      {20001, 1.0f, 0.0f, 1.0f, 1.0f, 0.001f, 0, 0.0f},  {20001, 1.0f, 0.0f, 1.2f, 1.0f, 0.01f, 0, 1.0f},
      {20001, 0.5f, 0.0f, 0.9f, 0.95f, 0.05f, 0, 1.0f},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(::testing::Message() << "V " << c.V << " spread " << c.spread << " grid " << c.grid << " T "
                                      << c.temperature << " top_p " << c.top_p << " min_p " << c.min_p << " top_k "
                                      << c.top_k << " presence " << c.presence);
    SamplingParams p;
    p.temperature = c.temperature;
    p.top_p = c.top_p;
    p.min_p = c.min_p;
    p.top_k = c.top_k;
    p.presence_penalty = c.presence;
    Sampler host = Sampler::create(c.V, p).value();
    for (int i = 0; i < 300; ++i) host.accept(static_cast<int32_t>(rng() % c.V));
    std::vector<float> logits = normal_vector(static_cast<size_t>(c.V), rng, 0.0f, c.spread);
    if (c.grid > 0.0f) {
      for (float& l : logits) l = std::round(l / c.grid) * c.grid;
    }
    expect_same_distribution(host, logits);
  }
}

TEST(CudaSampling, SameSeedDrawsTheSameTokens) {
  const uint64_t seed = fresh_seed();
  SCOPED_TRACE(seed);
  std::mt19937_64 rng(seed);
  const int V = 20000;
  auto dev = DeviceSampler::create(V);
  ASSERT_TRUE(dev.ok());
  for (SamplingParams p : parameter_sets()) {
    p.seed = rng();
    SCOPED_TRACE(::testing::Message() << "T " << p.temperature << " top_p " << p.top_p << " top_k " << p.top_k);
    Sampler host = Sampler::create(V, p).value();
    Sampler mirror = Sampler::create(V, p).value();
    TestStream stream;
    DeviceBuffer dl(static_cast<size_t>(V) * 4);
    for (int step = 0; step < 40; ++step) {
      const std::vector<float> logits = model_like_logits(V, rng, 2.0f);
      CUDA_ASSERT(cudaMemcpyAsync(dl.get(), logits.data(), logits.size() * 4, cudaMemcpyHostToDevice, stream.get()));
      const Sampler::Mode mode = step % 7 == 3 ? Sampler::Mode::kRawGreedy : Sampler::Mode::kParams;
      Result<engine::Sample> want = host.sample(logits, mode);
      ASSERT_TRUE(want.ok());
      std::vector<uint32_t> counts;
      SamplingRequest r = request_for(mirror, mode, counts);
      if (mode == Sampler::Mode::kParams && p.temperature != 0.0f) r.u = mirror.rng().uniform();
      Result<int32_t> got = (*dev)->sample(dl.get<float>(), r, stream.get());
      ASSERT_TRUE(got.ok()) << got.error().message;
      mirror.accept(*got);
      ASSERT_EQ(*got, want->token) << "step " << step;
    }
  }
}

// The greedy pass over the cluster's ranks: vocabularies that do and do not split evenly over
// them, logits at an aligned and an unaligned address, the largest value tied at several ids in
// different ranks (the lowest wins) or alone at the last id, against the host sampler's pick.
TEST(CudaSampling, GreedyScanKeepsTheLowestIdOfTheLargest) {
  const uint64_t seed = fresh_seed();
  SCOPED_TRACE(seed);
  std::mt19937_64 rng(seed);
  TestStream stream;
  for (int V : {20001, 129280}) {
    auto dev = DeviceSampler::create(V);
    ASSERT_TRUE(dev.ok());
    SamplingParams greedy;
    greedy.temperature = 0.0f;
    Sampler host = Sampler::create(V, greedy).value();
    DeviceBuffer dl((static_cast<size_t>(V) + 1) * 4);
    for (int round = 0; round < 12; ++round) {
      SCOPED_TRACE(::testing::Message() << "V " << V << " round " << round);
      std::vector<float> logits = model_like_logits(V, rng, 2.0f);
      float top = -INFINITY;
      for (float l : logits) top = std::isfinite(l) ? std::max(top, l) : top;
      for (int k = 0; k < round % 4; ++k) logits[rng() % V] = top;  // ties at the maximum
      if (round % 3 == 0) logits[V - 1] = top + 1.0f;  // the maximum in the scalar tail
      const int offset = round % 2;  // 1: an unaligned address
      CUDA_ASSERT(cudaMemcpyAsync(dl.get<float>() + offset, logits.data(), logits.size() * 4, cudaMemcpyHostToDevice,
                                  stream.get()));
      SamplingRequest r;
      r.temperature = 0.0f;
      Result<int32_t> got = (*dev)->sample(dl.get<float>() + offset, r, stream.get());
      Result<engine::Sample> want = host.sample(logits);
      ASSERT_TRUE(got.ok() && want.ok());
      EXPECT_EQ(*got, want->token);
    }
  }
}

// enqueue() with a device slot (the session's speculative step input): wait() returns what
// sample() returns, the slot holds the same token, and a selection with no finite logit reports
// -1 to the host while the slot gets a valid id (0) for the queued consumer.
TEST(CudaSampling, EnqueueAlsoStoresTheTokenOnTheDevice) {
  const uint64_t seed = fresh_seed();
  SCOPED_TRACE(seed);
  std::mt19937_64 rng(seed);
  const int V = 20000;
  auto dev = DeviceSampler::create(V);
  ASSERT_TRUE(dev.ok());
  TestStream stream;
  DeviceBuffer dl(static_cast<size_t>(V) * 4), slot(4);
  for (SamplingParams p : parameter_sets()) {
    SCOPED_TRACE(::testing::Message() << "T " << p.temperature << " top_p " << p.top_p << " top_k " << p.top_k);
    p.seed = rng();
    Sampler mirror = Sampler::create(V, p).value();
    const std::vector<float> logits = model_like_logits(V, rng, 2.0f);
    CUDA_ASSERT(cudaMemcpyAsync(dl.get(), logits.data(), logits.size() * 4, cudaMemcpyHostToDevice, stream.get()));
    std::vector<uint32_t> counts;
    SamplingRequest r = request_for(mirror, Sampler::Mode::kParams, counts);
    r.u = std::uniform_real_distribution<double>(0.0, 1.0)(rng);
    Result<int32_t> want = (*dev)->sample(dl.get<float>(), r, stream.get());
    ASSERT_TRUE(want.ok());
    CUDA_ASSERT(cudaMemset(slot.get(), 0xFF, 4));
    ASSERT_TRUE((*dev)->enqueue(dl.get<float>(), r, slot.get<int32_t>(), stream.get()).ok());
    Result<int32_t> got = (*dev)->wait();
    ASSERT_TRUE(got.ok());
    EXPECT_EQ(*got, *want);
    int32_t on_device = -2;
    CUDA_ASSERT(cudaStreamSynchronize(stream.get()));
    CUDA_ASSERT(cudaMemcpy(&on_device, slot.get(), 4, cudaMemcpyDeviceToHost));
    EXPECT_EQ(on_device, *want);
  }
  const std::vector<float> none(static_cast<size_t>(V), NAN);
  CUDA_ASSERT(cudaMemcpyAsync(dl.get(), none.data(), none.size() * 4, cudaMemcpyHostToDevice, stream.get()));
  for (float temperature : {0.0f, 1.0f}) {
    SamplingRequest r;
    r.temperature = temperature;
    CUDA_ASSERT(cudaMemset(slot.get(), 0xFF, 4));
    ASSERT_TRUE((*dev)->enqueue(dl.get<float>(), r, slot.get<int32_t>(), stream.get()).ok());
    Result<int32_t> got = (*dev)->wait();
    ASSERT_TRUE(got.ok());
    EXPECT_EQ(*got, -1);
    int32_t on_device = -2;
    CUDA_ASSERT(cudaStreamSynchronize(stream.get()));
    CUDA_ASSERT(cudaMemcpy(&on_device, slot.get(), 4, cudaMemcpyDeviceToHost));
    EXPECT_EQ(on_device, 0);
  }
}

}  // namespace
}  // namespace dsv4::cuda::testing
