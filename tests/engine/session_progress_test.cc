// Session::sync with a progress callback (chunked, reported, stoppable, in the chunks the backend
// plans) and the host-memory check that new_session applies to the context size.
#include <gtest/gtest.h>

#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <numeric>
#include <vector>

#include "engine/engine.h"
#include "engine/host_memory.h"
#include "engine/session.h"
#include "model/synthetic.h"

namespace dsv4::engine {
namespace {

namespace fs = std::filesystem;

class SessionProgressTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = fs::temp_directory_path() / ("dsv4_progress_" + std::to_string(getpid()));
    fs::create_directories(dir_);
    model::SyntheticSpec spec;
    spec.preset = "tiny";
    ASSERT_TRUE(model::make_synthetic_model(spec)->write((dir_ / "tiny.gguf").string()).ok());
    EngineOptions o;
    o.model_path = (dir_ / "tiny.gguf").string();
    Result<std::shared_ptr<Engine>> e = Engine::load(o);
    ASSERT_TRUE(e.ok()) << e.error().message;
    engine_ = *e;
  }
  static void TearDownTestSuite() {
    engine_.reset();
    fs::remove_all(dir_);
  }

  static std::vector<int32_t> tokens(int n) {
    std::vector<int32_t> t;
    for (int i = 0; i < n; ++i) t.push_back((i * 53 + 7) % 512);
    return t;
  }

  static fs::path dir_;
  static std::shared_ptr<Engine> engine_;
};
fs::path SessionProgressTest::dir_;
std::shared_ptr<Engine> SessionProgressTest::engine_;

TEST_F(SessionProgressTest, ReportsIncreasingProgressAndMatchesUnchunkedSync) {
  const std::vector<int32_t> t = tokens(300);
  auto plain = *engine_->new_session(512);
  ASSERT_TRUE(plain->sync(t).ok());

  auto reported = *engine_->new_session(512);
  std::vector<std::pair<int64_t, int64_t>> calls;
  Result<SyncStats> st = reported->sync(t, [&](int64_t done, int64_t total) {
    calls.emplace_back(done, total);
    return true;
  });
  ASSERT_TRUE(st.ok()) << st.error().message;
  EXPECT_EQ(st->evaluated, 300);
  ASSERT_GE(calls.size(), 2u);  // the first chunk is smaller than 300 tokens
  for (size_t i = 0; i < calls.size(); ++i) {
    EXPECT_EQ(calls[i].second, 300);
    if (i > 0) {
      EXPECT_GT(calls[i].first, calls[i - 1].first);
    }
  }
  EXPECT_EQ(calls.back().first, 300);
  EXPECT_EQ(reported->tokens(), t);
  // Chunking changes nothing: the same logits, bit for bit.
  ASSERT_EQ(plain->logits().size(), reported->logits().size());
  EXPECT_TRUE(std::equal(plain->logits().begin(), plain->logits().end(), reported->logits().begin()));
}

TEST_F(SessionProgressTest, OnlyTheSuffixIsReported) {
  const std::vector<int32_t> t = tokens(200);
  auto s = *engine_->new_session(512);
  ASSERT_TRUE(s->sync(std::span(t).first(150)).ok());
  int64_t last_total = -1;
  Result<SyncStats> st = s->sync(t, [&](int64_t, int64_t total) {
    last_total = total;
    return true;
  });
  ASSERT_TRUE(st.ok());
  EXPECT_EQ(st->reused, 150);
  EXPECT_EQ(last_total, 50);
}

TEST_F(SessionProgressTest, StoppingLeavesAConsistentPrefixThatLaterSyncsExtend) {
  const std::vector<int32_t> t = tokens(300);
  auto s = *engine_->new_session(512);
  Result<SyncStats> st = s->sync(t, [](int64_t, int64_t) { return false; });
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.error().message.find("prefill stopped after"), std::string::npos) << st.error().message;
  const size_t kept = s->tokens().size();
  ASSERT_GT(kept, 0u);
  ASSERT_LT(kept, t.size());
  EXPECT_TRUE(std::equal(s->tokens().begin(), s->tokens().end(), t.begin()));

  st = s->sync(t);
  ASSERT_TRUE(st.ok());
  EXPECT_EQ(st->reused, static_cast<int64_t>(kept));
  auto fresh = *engine_->new_session(512);
  ASSERT_TRUE(fresh->sync(t).ok());
  EXPECT_TRUE(std::equal(fresh->logits().begin(), fresh->logits().end(), s->logits().begin()));
}

// A backend that evaluates instantly and records the length of each forward() call.
class RecordingState final : public BackendState {
 public:
  RecordingState(ReportedChunks plan, std::vector<int64_t>* calls) : plan_(plan), calls_(calls) {}
  int64_t n() const override { return n_; }
  Status forward(std::span<const int32_t> tokens, float*) override {
    calls_->push_back(static_cast<int64_t>(tokens.size()));
    n_ += static_cast<int64_t>(tokens.size());
    return Status();
  }
  ReportedChunks reported_chunks() const override { return plan_; }
  std::span<const float> logits() const override { return logits_; }
  int64_t draft_run_length(int64_t) const override { return 1; }
  std::unique_ptr<BackendCheckpoint> checkpoint() override { return std::make_unique<Checkpoint>(n_); }
  Status rollback(const BackendCheckpoint& c) override {
    n_ = c.n();
    return Status();
  }
  void reset() override { n_ = 0; }
  std::vector<uint8_t> serialize() const override { return {}; }
  Status restore(std::span<const uint8_t>, int64_t n) override {
    n_ = n;
    return Status();
  }

 private:
  struct Checkpoint final : BackendCheckpoint {
    explicit Checkpoint(int64_t n) : n_(n) {}
    int64_t n() const override { return n_; }
    int64_t n_;
  };
  ReportedChunks plan_;
  std::vector<int64_t>* calls_;
  std::vector<float> logits_ = std::vector<float>(8, 0.0f);
  int64_t n_ = 0;
};

std::vector<int64_t> reported_calls(BackendState::ReportedChunks plan, int n_tokens) {
  std::vector<int64_t> calls;
  model::Config config;
  config.n_vocab = 8;
  std::unique_ptr<Session> s =
      make_session(std::make_unique<RecordingState>(plan, &calls), config, Fingerprint{}, Mode::kOfficial, 1 << 20);
  std::vector<int32_t> t(static_cast<size_t>(n_tokens), 1);
  EXPECT_TRUE(s->sync(t, [](int64_t, int64_t) { return true; }).ok());
  EXPECT_EQ(std::accumulate(calls.begin(), calls.end(), int64_t{0}), n_tokens);
  return calls;
}

TEST(SessionReportedChunks, AGpuPlanRunsWholePassesFromTheFirstToken) {
  // The CUDA backend's plan: its max chunk from the start (the server's prefill used to ramp from
  // 32 tokens and stop at 1024 on the full model, ≈ 1.5× the time).
  EXPECT_EQ(reported_calls({8192, 8192}, 25000), (std::vector<int64_t>{8192, 8192, 8192, 424}));
}

TEST(SessionReportedChunks, ASmallFirstChunkGrowsToTheLongestAndNeverPastIt) {
  // The CPU backend's plan; this backend is instant, so every chunk grows (8× under 1/8 s).
  const std::vector<int64_t> calls = reported_calls({32, 4096}, 20000);
  ASSERT_GE(calls.size(), 3u);
  EXPECT_EQ(calls.front(), 32);
  EXPECT_LE(*std::max_element(calls.begin(), calls.end()), 4096);
  EXPECT_NE(std::find(calls.begin(), calls.end(), 4096), calls.end());
}

TEST_F(SessionProgressTest, NewSessionRefusesAContextThatCannotFitInMemory) {
  // 2^40 positions of even the tiny model's state exceed any machine's memory.
  Result<std::unique_ptr<Session>> s = engine_->new_session(int64_t{1} << 40);
  if (!host_memory_available()) GTEST_SKIP() << "no /proc/meminfo on this system";
  ASSERT_FALSE(s.ok());
  const std::string& m = s.error().message;
  EXPECT_NE(m.find("a context of 1099511627776 tokens"), std::string::npos) << m;
  EXPECT_NE(m.find("GiB of memory but only"), std::string::npos) << m;
  EXPECT_NE(m.find("is available"), std::string::npos) << m;
  EXPECT_TRUE(engine_->new_session(4096).ok());
}

TEST(HostMemory, ParsesMemAvailable) {
  EXPECT_EQ(parse_mem_available("MemTotal:       24683656 kB\nMemFree: 1 kB\nMemAvailable:   23290136 kB\n"),
            23290136ull * 1024);
  EXPECT_FALSE(parse_mem_available("MemTotal: 5 kB\n").has_value());
  EXPECT_FALSE(parse_mem_available("MemAvailable: lots\n").has_value());
  EXPECT_FALSE(parse_mem_available("").has_value());
}

TEST(HostMemory, CheckNamesBothFigures) {
  EXPECT_TRUE(check_host_memory(100, 200, "x").ok());
  EXPECT_TRUE(check_host_memory(100, std::nullopt, "x").ok());
  Status s = check_host_memory(3ull << 30, 1ull << 30, "a context of 9 tokens");
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.message(), "a context of 9 tokens needs 3.0 GiB of memory but only 1.0 GiB is available");
}

}  // namespace
}  // namespace dsv4::engine
