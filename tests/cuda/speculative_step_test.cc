// The speculative decode step of cuda/session.h: a session that queues the step of each sampled
// token before the host has read it must compute bit for bit what a session without speculation
// computes, whatever the caller does next: forward that token (commit), another token or several,
// every-token logits, logits(), sample() again, checkpoint/rollback, serialize/restore, reset, a
// full context, destruction with a step queued. Each case runs the same calls on two sessions of
// one model (speculation on and off) and compares n() and the logits with memcmp; the state
// bytes (serialize) at the end of each case. Exact equality is the bar: both sessions run the same
// kernels with fixed reduction orders, and a cancelled step is undone by copying the state back.
//
// The small preset, official mode: sliding, ratio-4 (with the indexer, selecting from position 67)
// and ratio-128 layers, whose rings and frontiers a step writes; prompts of 120 tokens so that the
// decode steps cross the ratio-128 emission at position 127 and several ratio-4 emissions. F32
// weights as the engine's synthetic presets: what is speculated does not depend on the weight
// kernels, and quantising the published type mix on the host takes tens of seconds.
#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <vector>

#include "cpu/test_models.h"
#include "cuda/cuda_test_util.h"
#include "cuda/session.h"
#include "cuda/uploaded_models.h"

namespace dsv4::cuda::testing {
namespace {

using cpu::testing::test_tokens;

constexpr int64_t kPrompt = 120;

// Two sessions of one model, `spec` with speculation and `plain` without.
struct Pair {
  std::unique_ptr<DeviceSession> spec, plain;
  int64_t V = 0;

  explicit Pair(int64_t n_ctx) {
    std::shared_ptr<const DeviceModel> m = uploaded_small_model();
    spec = std::move(DeviceSession::create(m, n_ctx, cpu::SimOptions::official())).value();
    plain = std::move(DeviceSession::create(m, n_ctx, cpu::SimOptions::official())).value();
    spec->set_speculation(true);
    plain->set_speculation(false);
    V = m->config.n_vocab;
  }
  void forward(std::span<const int32_t> t) {
    ASSERT_TRUE(spec->forward(t, nullptr).ok());
    ASSERT_TRUE(plain->forward(t, nullptr).ok());
  }
  // The same token from both (the same request, so the same u).
  int32_t sample(const SamplingRequest& r) {
    Result<int32_t> a = spec->sample(r), b = plain->sample(r);
    if (!a.ok() || !b.ok()) {
      ADD_FAILURE() << "sample failed";
      return 0;
    }
    EXPECT_EQ(*a, *b);
    return *a;
  }
  void expect_same(const char* where) {
    SCOPED_TRACE(where);
    ASSERT_EQ(spec->n(), plain->n());
    std::span<const float> a = spec->logits(), b = plain->logits();
    ASSERT_EQ(a.size(), b.size());
    EXPECT_EQ(0, std::memcmp(a.data(), b.data(), a.size() * 4)) << "logits differ at n " << spec->n();
  }
  void expect_same_state(const char* where) {
    SCOPED_TRACE(where);
    Result<std::vector<uint8_t>> a = spec->serialize(), b = plain->serialize();
    ASSERT_TRUE(a.ok() && b.ok());
    EXPECT_TRUE(*a == *b) << "state bytes differ at n " << spec->n();
  }
};

// Greedy or a draw from the top 20 at temperature 0.8 with a fixed u: both sessions take the
// same request.
SamplingRequest request(std::mt19937_64& rng, bool greedy) {
  SamplingRequest r;
  r.temperature = greedy ? 0.0f : 0.8f;
  r.top_k = 20;
  r.u = std::uniform_real_distribution<double>(0.0, 1.0)(rng);
  return r;
}

TEST(CudaSpeculativeStep, DecodeLoopIsBitIdentical) {
  const uint64_t seed = fresh_seed();
  SCOPED_TRACE(seed);
  std::mt19937_64 rng(seed);
  Pair p(kPrompt + 64);
  ASSERT_TRUE(p.spec && p.plain);
  p.forward(test_tokens(kPrompt, p.V, seed));
  // Logits read after every committed step, then steps with nothing read in between.
  for (int step = 0; step < 24; ++step) {
    const int32_t t = p.sample(request(rng, step % 3 == 0));
    p.forward(std::span(&t, 1));
    p.expect_same("after a committed step");
  }
  for (int step = 0; step < 24; ++step) {
    const int32_t t = p.sample(request(rng, step % 2 == 0));
    p.forward(std::span(&t, 1));
  }
  p.expect_same("after steps read only at the end");
  p.expect_same_state("after steps read only at the end");
}

TEST(CudaSpeculativeStep, EveryOtherCallUndoesTheQueuedStep) {
  const uint64_t seed = fresh_seed();
  SCOPED_TRACE(seed);
  std::mt19937_64 rng(seed);
  Pair p(kPrompt + 64);
  ASSERT_TRUE(p.spec && p.plain);
  const std::vector<int32_t> prompt = test_tokens(kPrompt, p.V, seed);
  p.forward(prompt);
  auto other = [&](int32_t t) { return static_cast<int32_t>((t + 1 + rng() % (p.V - 1)) % p.V); };

  int32_t t = p.sample(request(rng, false));
  const int32_t u = other(t);
  p.forward(std::span(&u, 1));  // another token than the sampled one
  p.expect_same("forward of another token");

  t = p.sample(request(rng, true));
  p.expect_same("logits() with a step queued");  // the logits before the step
  p.forward(std::span(&t, 1));
  p.expect_same("forward after logits()");

  t = p.sample(request(rng, false));
  const SamplingRequest again = request(rng, false);
  t = p.sample(again);  // a second sample from the same logits
  p.forward(std::span(&t, 1));
  p.expect_same("sample twice");

  t = p.sample(request(rng, true));
  const int32_t two[2] = {t, other(t)};
  p.forward(two);  // several tokens, the sampled one first
  p.expect_same("forward of two tokens");

  t = p.sample(request(rng, true));
  std::vector<float> all_a(static_cast<size_t>(p.V)), all_b(static_cast<size_t>(p.V));
  ASSERT_TRUE(p.spec->forward(std::span(&t, 1), all_a.data()).ok());  // every-token logits: no commit
  ASSERT_TRUE(p.plain->forward(std::span(&t, 1), all_b.data()).ok());
  EXPECT_EQ(0, std::memcmp(all_a.data(), all_b.data(), all_a.size() * 4));
  p.expect_same("forward with every-token logits");

  t = p.sample(request(rng, false));
  auto cp_a = std::move(p.spec->checkpoint()).value();
  auto cp_b = std::move(p.plain->checkpoint()).value();
  p.forward(std::span(&t, 1));
  const int32_t after[3] = {other(t), other(t), other(t)};
  p.forward(after);
  t = p.sample(request(rng, true));
  ASSERT_TRUE(p.spec->rollback(*cp_a).ok());  // with a step queued
  ASSERT_TRUE(p.plain->rollback(*cp_b).ok());
  p.expect_same("rollback");
  p.expect_same_state("rollback");

  t = p.sample(request(rng, true));
  p.expect_same_state("serialize with a step queued");
  p.forward(std::span(&t, 1));
  p.expect_same("forward after serialize");

  Result<std::vector<uint8_t>> snap = p.plain->serialize();
  ASSERT_TRUE(snap.ok());
  const int64_t snap_n = p.plain->n();
  t = p.sample(request(rng, false));
  p.forward(std::span(&t, 1));
  t = p.sample(request(rng, false));
  ASSERT_TRUE(p.spec->restore(*snap, snap_n).ok());  // with a step queued
  ASSERT_TRUE(p.plain->restore(*snap, snap_n).ok());
  p.expect_same("restore");
  t = p.sample(request(rng, true));
  p.forward(std::span(&t, 1));
  p.expect_same("a step after restore");

  t = p.sample(request(rng, true));
  ASSERT_TRUE(p.spec->reset().ok());  // with a step queued
  ASSERT_TRUE(p.plain->reset().ok());
  p.forward(std::span(prompt).first(kPrompt / 2));
  t = p.sample(request(rng, true));
  p.forward(std::span(&t, 1));
  p.expect_same("reset, prompt, one step");
  p.expect_same_state("reset, prompt, one step");

  t = p.sample(request(rng, false));  // destroyed with a step queued (memcheck sees the rest)
}

TEST(CudaSpeculativeStep, FullContextSamplesWithoutAStep) {
  const uint64_t seed = fresh_seed();
  SCOPED_TRACE(seed);
  std::mt19937_64 rng(seed);
  Pair p(kPrompt + 2);
  ASSERT_TRUE(p.spec && p.plain);
  p.forward(test_tokens(kPrompt, p.V, seed));
  for (int step = 0; step < 2; ++step) {
    const int32_t t = p.sample(request(rng, true));
    p.forward(std::span(&t, 1));
  }
  ASSERT_EQ(p.spec->n(), p.spec->n_ctx());
  const int32_t t = p.sample(request(rng, false));  // nothing to speculate into
  EXPECT_FALSE(p.spec->forward(std::span(&t, 1), nullptr).ok());
  EXPECT_FALSE(p.plain->forward(std::span(&t, 1), nullptr).ok());
  p.expect_same("full context");
  p.expect_same_state("full context");
}

}  // namespace
}  // namespace dsv4::cuda::testing
