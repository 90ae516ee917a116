#include "engine/engine.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <cstring>
#include <fstream>

#include "model/synthetic.h"

namespace dsv4::engine {
namespace {

namespace fs = std::filesystem;

class SessionTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = fs::temp_directory_path() / ("dsv4_engine_" + std::to_string(getpid()));
    fs::create_directories(dir_);
    for (uint64_t seed : {1, 2}) {
      model::SyntheticSpec spec;
      spec.preset = "tiny";
      spec.seed = seed;
      ASSERT_TRUE(model::make_synthetic_model(spec)->write(model_path(seed)).ok());
    }
  }
  static void TearDownTestSuite() { fs::remove_all(dir_); }
  static std::string model_path(uint64_t seed) { return (dir_ / ("tiny" + std::to_string(seed) + ".gguf")).string(); }

  static std::shared_ptr<Engine> load(uint64_t seed = 1, Mode mode = Mode::kOfficial) {
    EngineOptions o;
    o.model_path = model_path(seed);
    o.mode = mode;
    Result<std::shared_ptr<Engine>> e = Engine::load(o);
    EXPECT_TRUE(e.ok()) << e.error().message;
    return *e;
  }

  static std::vector<int32_t> tokens(int n, int salt = 0) {
    std::vector<int32_t> t;
    for (int i = 0; i < n; ++i) t.push_back((i * 37 + salt * 11 + 5) % 512);
    return t;
  }

  static fs::path dir_;
};
fs::path SessionTest::dir_;

TEST_F(SessionTest, EvalAppendsAndKeepsLastLogits) {
  auto engine = load();
  auto s = *engine->new_session(64);
  EXPECT_TRUE(s->logits().empty());
  std::vector<int32_t> t = tokens(20);
  std::vector<float> all(20 * 512);
  ASSERT_TRUE(s->eval(t, all.data()).ok());
  EXPECT_EQ(s->tokens(), t);
  ASSERT_EQ(s->logits().size(), 512u);
  EXPECT_TRUE(std::equal(s->logits().begin(), s->logits().end(), all.begin() + 19 * 512));
}

// A speculative draft (eval_draft) and the prefix it keeps (keep_draft): the draft's logits rows
// are those of evaluating its tokens one by one, and after keeping k of them the session continues
// bit-identically to one that evaluated only those k. The draft straddles a ratio-4 compressor's
// emission and the tiny model's 16-token window (its rejected tokens overwrite ring rows the kept
// ones still read), at every k.
TEST_F(SessionTest, DraftsKeepExactlyTheirPrefix) {
  auto engine = load();
  const std::vector<int32_t> prompt = tokens(30), draft = tokens(4, 3), after = tokens(5, 7);
  const size_t V = 512;
  auto stepped = *engine->new_session(64);
  ASSERT_TRUE(stepped->eval(prompt).ok());
  std::vector<std::vector<float>> step_logits;
  for (int32_t t : draft) {
    ASSERT_TRUE(stepped->eval(std::span(&t, 1)).ok());
    step_logits.emplace_back(stepped->logits().begin(), stepped->logits().end());
  }
  for (size_t k = 1; k <= draft.size(); ++k) {
    SCOPED_TRACE(k);
    auto s = *engine->new_session(64);
    ASSERT_TRUE(s->eval(prompt).ok());
    std::vector<float> rows(draft.size() * V);
    ASSERT_TRUE(s->eval_draft(draft, rows.data()).ok());
    for (size_t i = 0; i < draft.size(); ++i) {
      EXPECT_EQ(std::memcmp(rows.data() + i * V, step_logits[i].data(), V * sizeof(float)), 0) << "row " << i;
    }
    ASSERT_TRUE(s->keep_draft(k).ok());
    std::vector<int32_t> want(prompt);
    want.insert(want.end(), draft.begin(), draft.begin() + static_cast<std::ptrdiff_t>(k));
    EXPECT_EQ(s->tokens(), want);
    EXPECT_EQ(std::memcmp(s->logits().data(), step_logits[k - 1].data(), V * sizeof(float)), 0);
    auto reference = *engine->new_session(64);
    ASSERT_TRUE(reference->eval(want).ok());
    std::vector<float> got(after.size() * V), expected(after.size() * V);
    ASSERT_TRUE(s->eval(after, got.data()).ok());
    ASSERT_TRUE(reference->eval(after, expected.data()).ok());
    EXPECT_EQ(std::memcmp(got.data(), expected.data(), got.size() * sizeof(float)), 0);
  }
}

// A draft whose rows stay with the session: sample_draft_row draws from row i as the sampler
// would from that row (greedy and sampled, the same PRNG draws), and only between eval_draft and
// keep_draft, for rows of the draft the caller did not take.
TEST_F(SessionTest, DraftRowsDrawnWhereTheSessionKeepsThem) {
  auto engine = load();
  const std::vector<int32_t> prompt = tokens(20), draft = tokens(3, 5);
  const size_t V = 512;
  for (float temperature : {0.0f, 0.9f}) {
    SCOPED_TRACE(temperature);
    SamplingParams params;
    params.temperature = temperature;
    params.seed = 3;
    Sampler kept_here = *Sampler::create(V, params), from_rows = *Sampler::create(V, params);
    auto a = *engine->new_session(64), b = *engine->new_session(64);
    ASSERT_TRUE(a->eval(prompt).ok());
    ASSERT_TRUE(b->eval(prompt).ok());
    std::vector<float> rows(draft.size() * V);
    ASSERT_TRUE(a->eval_draft(draft, nullptr).ok());
    ASSERT_TRUE(b->eval_draft(draft, rows.data()).ok());
    for (size_t i = 0; i < draft.size(); ++i) {
      Result<Sample> got = a->sample_draft_row(kept_here, Sampler::Mode::kParams, i);
      Result<Sample> want = from_rows.sample(std::span<const float>(rows).subspan(i * V, V));
      ASSERT_TRUE(got.ok()) << got.error().message;
      EXPECT_EQ(got->token, want->token) << "row " << i;
    }
    EXPECT_FALSE(a->sample_draft_row(kept_here, Sampler::Mode::kParams, draft.size()).ok());
    EXPECT_FALSE(b->sample_draft_row(from_rows, Sampler::Mode::kParams, 0).ok());  // the caller took them
    ASSERT_TRUE(a->keep_draft(2).ok());
    EXPECT_FALSE(a->sample_draft_row(kept_here, Sampler::Mode::kParams, 0).ok());  // settled
  }
}

// keep_draft without a draft, a second draft before the first is settled, k out of range, and a
// draft past the context are errors; the last leaves the session as it was.
TEST_F(SessionTest, DraftMisuseIsAnError) {
  auto engine = load();
  auto s = *engine->new_session(12);
  ASSERT_TRUE(s->eval(tokens(9)).ok());
  EXPECT_FALSE(s->keep_draft(1).ok());
  std::vector<float> rows(4 * 512);
  const Status full = s->eval_draft(tokens(4, 1), rows.data());
  ASSERT_FALSE(full.ok());
  EXPECT_NE(full.message().find("context full"), std::string::npos) << full.message();
  EXPECT_EQ(s->tokens(), tokens(9));
  ASSERT_TRUE(s->eval_draft(tokens(3, 1), rows.data()).ok());
  EXPECT_FALSE(s->eval_draft(tokens(1, 2), rows.data()).ok());
  EXPECT_FALSE(s->keep_draft(0).ok());
  EXPECT_FALSE(s->keep_draft(4).ok());
  EXPECT_TRUE(s->keep_draft(2).ok());
  EXPECT_EQ(s->tokens().size(), 11u);
}

TEST_F(SessionTest, ContextLimitIsAClearErrorAndChangesNothing) {
  auto engine = load();
  auto s = *engine->new_session(10);
  ASSERT_TRUE(s->eval(tokens(8)).ok());
  Status st = s->eval(tokens(3));
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find("context full"), std::string::npos) << st.message();
  EXPECT_EQ(s->tokens().size(), 8u);
  EXPECT_FALSE(engine->new_session(0).ok());
}

TEST_F(SessionTest, SnapshotRoundTripContinuesBitIdentically) {
  auto engine = load();
  const std::vector<int32_t> t = tokens(90);
  auto a = *engine->new_session(128);
  ASSERT_TRUE(a->eval(std::span(t).first(53)).ok());
  const std::string path = (dir_ / "snap.bin").string();
  ASSERT_TRUE(a->save_snapshot_file(path).ok());
  ASSERT_TRUE(a->eval(std::span(t).subspan(53)).ok());

  auto b = *engine->new_session(128);
  ASSERT_TRUE(b->restore_snapshot_file(path).ok());
  EXPECT_EQ(b->tokens().size(), 53u);
  ASSERT_TRUE(b->eval(std::span(t).subspan(53)).ok());
  ASSERT_EQ(a->logits().size(), b->logits().size());
  EXPECT_EQ(0, std::memcmp(a->logits().data(), b->logits().data(), a->logits().size() * 4));
  EXPECT_EQ(a->save_snapshot(), b->save_snapshot());
}

TEST_F(SessionTest, SnapshotsOfAnotherModelModeOrSizeAreRejected) {
  auto engine = load(1);
  auto s = *engine->new_session(64);
  ASSERT_TRUE(s->eval(tokens(30)).ok());
  const std::vector<uint8_t> snap = s->save_snapshot();

  auto other_model = *load(2)->new_session(64);
  Status st = other_model->restore_snapshot(snap);
  EXPECT_NE(st.message().find("another model"), std::string::npos) << st.message();

  auto plain = *load(1, Mode::kPlain)->new_session(64);
  st = plain->restore_snapshot(snap);
  EXPECT_NE(st.message().find("official mode"), std::string::npos) << st.message();

  auto small = *engine->new_session(16);
  st = small->restore_snapshot(snap);
  EXPECT_FALSE(st.ok());
  EXPECT_TRUE(small->tokens().empty());
}

TEST_F(SessionTest, CorruptOrTruncatedSnapshotsAreRejected) {
  auto engine = load();
  auto s = *engine->new_session(64);
  ASSERT_TRUE(s->eval(tokens(30)).ok());
  const std::vector<uint8_t> snap = s->save_snapshot();
  auto target = *engine->new_session(64);
  ASSERT_TRUE(target->eval(tokens(5, 3)).ok());
  for (size_t cut : {size_t{0}, size_t{7}, size_t{60}, snap.size() / 2, snap.size() - 1}) {
    Status st = target->restore_snapshot(std::span(snap).first(cut));
    EXPECT_FALSE(st.ok()) << cut;
  }
  for (size_t at : {size_t{3}, size_t{20}, snap.size() / 3, snap.size() - 40, snap.size() - 2}) {
    std::vector<uint8_t> bad = snap;
    bad[at] ^= 0x40;
    Status st = target->restore_snapshot(bad);
    EXPECT_FALSE(st.ok()) << at;
  }
  // The failed restores left the session as it was.
  EXPECT_EQ(target->tokens(), tokens(5, 3));
  Status st = target->restore_snapshot_file((dir_ / "missing.bin").string());
  EXPECT_NE(st.message().find("cannot open"), std::string::npos) << st.message();
}

}  // namespace
}  // namespace dsv4::engine

namespace dsv4::engine {
namespace {

// Random edits of a prefix: sync must give exactly what a fresh session evaluating the same
// tokens gives, while evaluating no more than the tokens after the last usable checkpoint.
TEST_F(SessionTest, SyncToRandomEditsEqualsFromScratch) {
  auto engine = load();
  auto s = *engine->new_session(256);
  std::vector<int32_t> current;
  uint64_t rng = 12345;
  auto next = [&](uint64_t n) {
    rng = rng * 6364136223846793005ull + 1442695040888963407ull;
    return (rng >> 33) % n;
  };
  for (int round = 0; round < 14; ++round) {
    std::vector<int32_t> prefix = current;
    switch (next(4)) {
      case 0:  // append a turn
        for (uint64_t i = 0, n = 1 + next(40); i < n; ++i) prefix.push_back(static_cast<int32_t>(next(512)));
        break;
      case 1:  // edit somewhere, then continue differently
        if (!prefix.empty()) {
          prefix.resize(next(prefix.size()));
          for (uint64_t i = 0, n = next(30); i < n; ++i) prefix.push_back(static_cast<int32_t>(next(512)));
        }
        break;
      case 2:  // truncate (a shorter prefix of the same timeline)
        prefix.resize(prefix.empty() ? 0 : next(prefix.size() + 1));
        break;
      default:  // single-token decode steps
        for (int i = 0; i < 5; ++i) {
          prefix.push_back(static_cast<int32_t>(next(512)));
          ASSERT_TRUE(s->sync(prefix).ok());
        }
    }
    if (prefix.size() > 250) prefix.resize(250);
    Result<SyncStats> st = s->sync(prefix);
    ASSERT_TRUE(st.ok()) << st.error().message;
    EXPECT_EQ(st->reused + st->evaluated, static_cast<int64_t>(prefix.size()));
    EXPECT_EQ(s->tokens(), prefix);
    current = prefix;
    if (prefix.empty()) {
      EXPECT_TRUE(s->logits().empty());
      continue;
    }
    auto fresh = *engine->new_session(256);
    ASSERT_TRUE(fresh->eval(prefix).ok());
    ASSERT_EQ(0, std::memcmp(fresh->logits().data(), s->logits().data(), s->logits().size() * 4)) << "round " << round;
    EXPECT_EQ(fresh->save_snapshot(), s->save_snapshot()) << "round " << round;
  }
}

TEST_F(SessionTest, SyncReusesCheckpointsAfterDivergence) {
  auto engine = load();
  auto s = *engine->new_session(256);
  std::vector<int32_t> system_and_user = tokens(100);
  ASSERT_TRUE(s->sync(system_and_user).ok());  // records a checkpoint at 100
  std::vector<int32_t> with_answer = system_and_user;
  for (int i = 0; i < 20; ++i) {
    with_answer.push_back(400 + i);
    ASSERT_TRUE(s->sync(with_answer).ok());  // decode steps
  }
  // The client re-sends the conversation with a differently rendered answer.
  std::vector<int32_t> follow_up = system_and_user;
  for (int i = 0; i < 30; ++i) follow_up.push_back(300 + i);
  Result<SyncStats> st = s->sync(follow_up);
  ASSERT_TRUE(st.ok());
  EXPECT_EQ(st->reused, 100);
  EXPECT_EQ(st->evaluated, 30);
  // Exactly the same prefix again: nothing to do.
  st = s->sync(follow_up);
  EXPECT_EQ(st->reused, 130);
  EXPECT_EQ(st->evaluated, 0);
  EXPECT_FALSE(s->sync(tokens(300)).ok());  // beyond the context
}

}  // namespace
}  // namespace dsv4::engine
