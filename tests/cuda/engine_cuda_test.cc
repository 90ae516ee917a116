// The CUDA backend through the engine API (engine/engine.h): snapshots that move between backends
// (GPU -> CPU and CPU -> GPU, the same "DSV4CPUS" state bytes), snapshot and checkpoint round trips
// on the GPU, sync to edited prefixes, and sampling through Session::sample.
//
// Across backends the continuations agree within the forward bar (relative L2 <= 1e-3); on the GPU
// alone a restored snapshot continues bit-identically (same kernels, fixed reduction orders).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "cpu/test_models.h"
#include "cuda/device_util.h"
#include "cuda/synthetic_engines.h"
#include "engine/engine.h"

namespace dsv4::cuda::testing {
namespace {

using engine::Backend;
using engine::Engine;
using engine::Mode;
using engine::Session;

std::shared_ptr<Engine> load(Backend backend, Mode mode, const char* preset = "tiny") {
  return load_synthetic_engine(backend, preset, mode);
}

std::vector<int32_t> tokens(int64_t n, int64_t vocab, uint64_t seed) {
  return cpu::testing::test_tokens(n, vocab, seed);
}

double rel(std::span<const float> a, std::span<const float> b) { return rel_l2(a.data(), b.data(), a.size()); }

TEST(CudaEngine, ParsesTheBackendAndSharesTheFingerprint) {
  ASSERT_TRUE(engine::have_cuda_backend());
  EXPECT_EQ(*engine::parse_backend("cuda"), Backend::kCuda);
  auto cpu = load(Backend::kCpu, Mode::kOfficial);
  auto gpu = load(Backend::kCuda, Mode::kOfficial);
  ASSERT_TRUE(cpu && gpu);
  EXPECT_EQ(cpu->fingerprint(), gpu->fingerprint());
}

TEST(CudaEngine, SnapshotsMoveBetweenBackends) {
  for (const char* preset : {"tiny", "small"}) {
    for (Mode mode : {Mode::kOfficial, Mode::kPlain}) {
      SCOPED_TRACE(::testing::Message() << preset << " " << engine::mode_name(mode));
      auto cpu = load(Backend::kCpu, mode, preset);
      auto gpu = load(Backend::kCuda, mode, preset);
      ASSERT_TRUE(cpu && gpu);
      const std::vector<int32_t> t = tokens(170, cpu->config().n_vocab, 3);
      const size_t cut = 131;  // mid-window for every ratio
      for (bool gpu_first : {true, false}) {
        auto from = *(gpu_first ? gpu : cpu)->new_session(256);
        auto to = *(gpu_first ? cpu : gpu)->new_session(256);
        ASSERT_TRUE(from->eval(std::span(t).first(cut)).ok());
        const std::vector<uint8_t> snap = from->save_snapshot();
        Status st = to->restore_snapshot(snap);
        ASSERT_TRUE(st.ok()) << st.message();
        EXPECT_EQ(to->tokens(), from->tokens());
        EXPECT_LE(rel(to->logits(), from->logits()), 1e-6);  // the snapshot's own logits
        for (size_t p = cut; p < t.size(); ++p) {
          ASSERT_TRUE(from->eval(std::span(t).subspan(p, 1)).ok());
          ASSERT_TRUE(to->eval(std::span(t).subspan(p, 1)).ok());
          EXPECT_LE(rel(to->logits(), from->logits()), 1e-3) << "position " << p;
        }
      }
    }
  }
}

TEST(CudaEngine, SnapshotRoundTripOnTheGpuContinuesBitIdentically) {
  auto gpu = load(Backend::kCuda, Mode::kOfficial);
  ASSERT_TRUE(gpu);
  const std::vector<int32_t> t = tokens(90, gpu->config().n_vocab, 4);
  auto a = *gpu->new_session(128);
  ASSERT_TRUE(a->eval(std::span(t).first(53)).ok());
  const std::vector<uint8_t> snap = a->save_snapshot();
  ASSERT_TRUE(a->eval(std::span(t).subspan(53)).ok());
  auto b = *gpu->new_session(128);
  ASSERT_TRUE(b->restore_snapshot(snap).ok());
  ASSERT_TRUE(b->eval(std::span(t).subspan(53)).ok());
  ASSERT_EQ(a->logits().size(), b->logits().size());
  EXPECT_EQ(0, std::memcmp(a->logits().data(), b->logits().data(), a->logits().size() * 4));
  EXPECT_EQ(a->save_snapshot(), b->save_snapshot());
  // Rejections keep the session as it was.
  auto plain = *load(Backend::kCuda, Mode::kPlain)->new_session(128);
  EXPECT_FALSE(plain->restore_snapshot(snap).ok());
  auto small = *gpu->new_session(16);
  EXPECT_FALSE(small->restore_snapshot(snap).ok());
  EXPECT_TRUE(small->tokens().empty());
}

// Random edits of a prefix through sync (checkpoints, rollbacks) agree with evaluating from scratch.
TEST(CudaEngine, SyncToEditedPrefixesMatchesFreshSessions) {
  auto gpu = load(Backend::kCuda, Mode::kOfficial);
  ASSERT_TRUE(gpu);
  const int64_t V = gpu->config().n_vocab;
  auto s = *gpu->new_session(256);
  std::vector<int32_t> current;
  uint64_t rng = 99;
  auto next = [&](uint64_t n) {
    rng = rng * 6364136223846793005ull + 1442695040888963407ull;
    return (rng >> 33) % n;
  };
  for (int round = 0; round < 10; ++round) {
    std::vector<int32_t> prefix = current;
    if (next(2) == 0 && !prefix.empty()) prefix.resize(next(prefix.size()));
    for (uint64_t i = 0, n = 1 + next(40); i < n; ++i) prefix.push_back(static_cast<int32_t>(next(V)));
    if (prefix.size() > 250) prefix.resize(250);
    for (int i = 0; i < 3; ++i) {  // decode steps through sync
      prefix.push_back(static_cast<int32_t>(next(V)));
      ASSERT_TRUE(s->sync(std::span(prefix).first(prefix.size())).ok());
    }
    Result<engine::SyncStats> st = s->sync(prefix);
    ASSERT_TRUE(st.ok()) << st.error().message;
    EXPECT_EQ(s->tokens(), prefix);
    current = prefix;
    auto fresh = *gpu->new_session(256);
    ASSERT_TRUE(fresh->eval(prefix).ok());
    EXPECT_LE(rel(s->logits(), fresh->logits()), 1e-4) << "round " << round;
  }
}

TEST(CudaEngine, SessionSampleMatchesTheHostSampler) {
  auto gpu = load(Backend::kCuda, Mode::kOfficial);
  ASSERT_TRUE(gpu);
  engine::SamplingParams p;
  p.temperature = 0.8f;
  p.top_k = 20;
  p.top_p = 0.9f;
  p.seed = 1234;
  auto s = *gpu->new_session(128);
  ASSERT_TRUE(s->eval(tokens(20, gpu->config().n_vocab, 8)).ok());
  engine::Sampler device_side = *engine::Sampler::create(static_cast<int32_t>(gpu->config().n_vocab), p);
  engine::Sampler host_side = *engine::Sampler::create(static_cast<int32_t>(gpu->config().n_vocab), p);
  for (int step = 0; step < 30; ++step) {
    const std::vector<float> logits(s->logits().begin(), s->logits().end());
    Result<engine::Sample> want = host_side.sample(logits);
    Result<engine::Sample> got = s->sample(device_side);
    ASSERT_TRUE(want.ok() && got.ok());
    ASSERT_EQ(got->token, want->token) << "step " << step;
    ASSERT_TRUE(s->eval(std::span(&got->token, 1)).ok());
  }
}

// A draft's rows drawn on the device (eval_draft without a host buffer, then sample_draft_row) give
// the host sampler's tokens for the same rows, with the same PRNG draws and penalty history; and a
// draw without a step ahead leaves nothing queued that the draft would have to undo.
TEST(CudaEngine, DraftRowsDrawnOnTheDeviceMatchTheHostSampler) {
  auto gpu = load(Backend::kCuda, Mode::kOfficial);
  ASSERT_TRUE(gpu);
  const int64_t V = gpu->config().n_vocab;
  engine::SamplingParams p;
  p.temperature = 0.9f;
  p.min_p = 0.02f;
  p.presence_penalty = 0.4f;
  p.seed = 99;
  engine::Sampler device_side = *engine::Sampler::create(static_cast<int32_t>(V), p);
  engine::Sampler host_side = *engine::Sampler::create(static_cast<int32_t>(V), p);
  auto on_device = *gpu->new_session(128), on_host = *gpu->new_session(128);
  const std::vector<int32_t> prompt = tokens(24, V, 9);
  ASSERT_TRUE(on_device->eval(prompt).ok());
  ASSERT_TRUE(on_host->eval(prompt).ok());
  for (int round = 0; round < 6; ++round) {
    SCOPED_TRACE(round);
    Result<engine::Sample> first = on_device->sample(device_side, engine::Sampler::Mode::kParams, false);
    Result<engine::Sample> first_host = host_side.sample(on_host->logits());
    ASSERT_TRUE(first.ok() && first_host.ok());
    ASSERT_EQ(first->token, first_host->token);
    const std::vector<int32_t> run{first->token, static_cast<int32_t>((round * 31 + 7) % V)};
    std::vector<float> rows(run.size() * static_cast<size_t>(V));
    ASSERT_TRUE(on_device->eval_draft(run, nullptr).ok());
    ASSERT_TRUE(on_host->eval_draft(run, rows.data()).ok());
    size_t kept = 1;
    for (size_t i = 0; i < run.size(); ++i) {
      Result<engine::Sample> got = on_device->sample_draft_row(device_side, engine::Sampler::Mode::kParams, i);
      Result<engine::Sample> want =
          host_side.sample(std::span<const float>(rows).subspan(i * static_cast<size_t>(V), static_cast<size_t>(V)));
      ASSERT_TRUE(got.ok() && want.ok());
      ASSERT_EQ(got->token, want->token) << "row " << i;
      if (i + 1 < run.size() && got->token == run[i + 1]) {
        kept = i + 2;
        continue;
      }
      break;
    }
    ASSERT_TRUE(on_device->keep_draft(kept).ok());
    ASSERT_TRUE(on_host->keep_draft(kept).ok());
  }
}

// The speculative decode step (cuda/session.h) through the engine, as the generator drives it:
// requests that generate until a stop token (sampled, not evaluated) or max tokens, each followed
// by the next request on the same session (prefix reuse, or a rollback to an edited prefix), the
// cached logits and a snapshot read right after each stop. Bit-identical tokens, logits and
// snapshot bytes to a session made without speculation (DSV4_NO_SPECULATION at its creation): a
// cancelled step is undone by copying the state back, and both sessions run the same kernels.
TEST(CudaEngine, SpeculativeStepsKeepGenerationsBitIdentical) {
  auto gpu = load(Backend::kCuda, Mode::kOfficial, "small");
  ASSERT_TRUE(gpu);
  const int64_t V = gpu->config().n_vocab;
  auto spec = *gpu->new_session(400);
  setenv("DSV4_NO_SPECULATION", "1", 1);
  auto plain = *gpu->new_session(400);
  unsetenv("DSV4_NO_SPECULATION");
  engine::SamplingParams params;
  params.temperature = 0.9f;
  params.top_k = 40;
  params.presence_penalty = 0.5f;  // the device sampler gets the history
  params.seed = 77;
  // One request: sync to the prompt, then sample/eval until a token divisible by 13 (the stop
  // token) or max_tokens; returns the sampled tokens.
  auto generate = [&](Session& s, const std::vector<int32_t>& prompt, int max_tokens) {
    std::vector<int32_t> out;
    EXPECT_TRUE(s.sync(prompt).ok());
    engine::Sampler sampler = *engine::Sampler::create(static_cast<int32_t>(V), params);
    for (int i = 0; i < max_tokens; ++i) {
      Result<engine::Sample> next = s.sample(sampler);
      EXPECT_TRUE(next.ok());
      if (!next.ok()) break;
      out.push_back(next->token);
      if (next->token % 13 == 0) break;
      EXPECT_TRUE(s.eval(std::span(&next->token, 1)).ok());
    }
    return out;
  };
  std::vector<int32_t> prompt = tokens(100, V, 11);
  std::vector<uint8_t> snap;
  for (int request = 0; request < 6; ++request) {
    SCOPED_TRACE(::testing::Message() << "request " << request);
    const std::vector<int32_t> a = generate(*spec, prompt, 20);
    const std::vector<int32_t> b = generate(*plain, prompt, 20);
    ASSERT_EQ(a, b);
    ASSERT_EQ(spec->tokens(), plain->tokens());
    EXPECT_EQ(0, std::memcmp(spec->logits().data(), plain->logits().data(), spec->logits().size() * 4));
    snap = spec->save_snapshot();
    EXPECT_EQ(snap, plain->save_snapshot());
    // The next prompt: the conversation so far plus new tokens, or an edit 60 tokens in.
    prompt = request % 2 == 0 ? spec->tokens() : std::vector<int32_t>(prompt.begin(), prompt.begin() + 60);
    const std::vector<int32_t> more = tokens(7, V, 20 + request);
    prompt.insert(prompt.end(), more.begin(), more.end());
  }
  // The last snapshot, taken right after a stop, continues identically on a fresh session.
  auto restored = *gpu->new_session(400);
  ASSERT_TRUE(restored->restore_snapshot(snap).ok());
  ASSERT_EQ(restored->tokens(), spec->tokens());
  std::vector<int32_t> next = spec->tokens();
  const std::vector<int32_t> more = tokens(7, V, 40);
  next.insert(next.end(), more.begin(), more.end());
  EXPECT_EQ(generate(*restored, next, 20), generate(*spec, next, 20));
  EXPECT_EQ(0, std::memcmp(restored->logits().data(), spec->logits().data(), spec->logits().size() * 4));
}

}  // namespace
}  // namespace dsv4::cuda::testing
