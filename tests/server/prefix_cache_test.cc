// The reuse ladder of PROTOCOL.md §5.3 and the store triggers of §5.4 on the tiny model: which
// rung serves each follow-up prompt and exactly how many tokens it evaluates, disk hits after a
// restart and after a switch of conversation, and cache files that are corrupt or truncated.
#include "server/prefix_cache.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <mutex>
#include <string>
#include <vector>

#include "chat/typed_text.h"
#include "server/kv_store_test_util.h"
#include "server/prompt_request.h"
#include "tiny_model.h"
#include "util/log.h"

namespace dsv4::server {
namespace {

using chat::Json;
using testing::TempDir;
using testing::tiny_model;

// Collects warnings while alive.
class LogCapture {
 public:
  LogCapture() {
    log::set_sink([this](log::Level level, std::string_view message) {
      std::lock_guard<std::mutex> l(mu_);
      lines_.emplace_back(std::string(log::level_name(level)) + " " + std::string(message));
    });
  }
  ~LogCapture() { log::set_sink(nullptr); }
  bool contains(const std::string& needle) {
    std::lock_guard<std::mutex> l(mu_);
    return testing::any_contains(lines_, needle);
  }

 private:
  std::mutex mu_;
  std::vector<std::string> lines_;
};

class PrefixCacheTest : public ::testing::Test {
 protected:
  const testing::TinyModel& m = tiny_model();

  // Small thresholds, so that short test prompts are stored and anchors are checkpointed.
  static StoreTriggerOptions small_triggers() {
    StoreTriggerOptions t;
    t.min_tokens = 8;
    return t;
  }

  std::unique_ptr<PrefixCache> make_cache(KvStore* store = nullptr, StoreTriggerOptions triggers = {},
                                          int64_t n_ctx = 8192) {
    Result<std::unique_ptr<engine::Session>> s = m.engine->new_session(n_ctx);
    EXPECT_TRUE(s.ok());
    return std::make_unique<PrefixCache>(std::move(s).value(), *m.tokenizer, m.special, store, triggers);
  }

  std::unique_ptr<KvStore> open_store(const TempDir& dir, int64_t min_tokens = 8) {
    KvStoreOptions o;
    o.dir = dir.str();
    o.min_tokens = min_tokens;
    Result<std::unique_ptr<KvStore>> s =
        KvStore::open(o, m.engine->fingerprint(), kv_mode_flags(m.engine->mode()));
    EXPECT_TRUE(s.ok()) << s.error().message;
    return std::move(s).value();
  }

  PromptRequest chat(const Json& messages, bool thinking = false) {
    Json body = {{"messages", messages}, {"thinking", thinking}};
    Result<PromptRequest> r = build_prompt_request(Api::kChat, body, *m.tokenizer, {});
    EXPECT_TRUE(r.ok()) << r.error().message;
    return std::move(r).value();
  }

  PrefillResult prefill(PrefixCache& cache, const PromptRequest& r) {
    Result<PrefillResult> p = cache.prefill(r.tokens, r.typed);
    EXPECT_TRUE(p.ok()) << p.error().message;
    return std::move(p).value();
  }

  std::vector<int32_t> text(const std::string& s) const { return m.tokenizer->encode_text(s); }

  // What a generation leaves in the session: its tokens, evaluated one by one.
  void generate(PrefixCache& cache, const std::vector<int32_t>& tokens) {
    for (int32_t t : tokens) {
      const int32_t one[1] = {t};
      ASSERT_TRUE(cache.session().eval(one).ok());
    }
  }

  // The same text as single-byte tokens: a valid but non-canonical tokenisation.
  std::vector<int32_t> bytewise(const std::string& s) const {
    std::vector<int32_t> out;
    for (char c : s) out.push_back(*m.tokenizer->token_id_for_text(std::string(1, c)));
    return out;
  }

  static Json user(const std::string& s) { return {{"role", "user"}, {"content", s}}; }
  static Json assistant(const std::string& s, const std::string& reasoning = "") {
    Json a = {{"role", "assistant"}, {"content", s}};
    if (!reasoning.empty()) a["reasoning_content"] = reasoning;
    return a;
  }
  static Json system(const std::string& s) { return {{"role", "system"}, {"content", s}}; }
};

TEST_F(PrefixCacheTest, AColdPromptEvaluatesEverythingWithCheckpointsAtItsEnd) {
  auto cache = make_cache();
  PromptRequest r = chat(Json::array({user("Hello there")}));
  PrefillResult p = prefill(*cache, r);
  EXPECT_EQ(p.rung, Rung::kCold);
  EXPECT_EQ(p.tokens, r.tokens);
  EXPECT_EQ(p.evaluated, static_cast<int64_t>(r.tokens.size()));
  EXPECT_EQ(p.cached, 0);
  EXPECT_EQ(cache->session().tokens(), r.tokens);
  const int64_t n = static_cast<int64_t>(r.tokens.size());
  EXPECT_EQ(cache->checkpoints(), (std::vector<int64_t>{n - 1, n}));
}

TEST_F(PrefixCacheTest, AFollowUpOfCanonicalTokensReusesTheLiveTokens) {
  auto cache = make_cache();
  PromptRequest r1 = chat(Json::array({user("Hello there")}));
  prefill(*cache, r1);
  generate(*cache, text("Hi, how can I help?"));
  const int64_t live = static_cast<int64_t>(cache->session().tokens().size());
  cache->finished_turn(r1.reasoning_dropped_next_turn);

  PromptRequest r2 = chat(Json::array({user("Hello there"), assistant("Hi, how can I help?"), user("Tell me more")}));
  PrefillResult p = prefill(*cache, r2);
  EXPECT_EQ(p.rung, Rung::kLiveTokens);
  EXPECT_EQ(p.tokens, r2.tokens);
  EXPECT_EQ(p.cached, live);
  EXPECT_EQ(p.evaluated, static_cast<int64_t>(r2.tokens.size()) - live);
}

TEST_F(PrefixCacheTest, NonCanonicalGeneratedTokensAreKeptThroughTypedText) {
  auto cache = make_cache();
  PromptRequest r1 = chat(Json::array({user("Hello there")}));
  prefill(*cache, r1);
  const std::vector<int32_t> generated = bytewise("Hi, how can I help?");
  ASSERT_NE(generated, text("Hi, how can I help?"));
  generate(*cache, generated);
  const int64_t live = static_cast<int64_t>(cache->session().tokens().size());

  PromptRequest r2 = chat(Json::array({user("Hello there"), assistant("Hi, how can I help?"), user("Tell me more")}));
  PrefillResult p = prefill(*cache, r2);
  EXPECT_EQ(p.rung, Rung::kLiveText);
  EXPECT_EQ(p.cached, live);
  // Only the remaining typed text was tokenised and evaluated: EOS, the new user turn, the prefix.
  const std::string& typed = r2.typed;
  const std::string live_typed = chat::typed_text(std::vector<int32_t>(p.tokens.begin(), p.tokens.begin() + live),
                                                  *m.tokenizer);
  ASSERT_TRUE(typed.starts_with(live_typed));
  EXPECT_EQ(p.evaluated, static_cast<int64_t>(
                             chat::tokens_from_typed_text(typed.substr(live_typed.size()), *m.tokenizer)->size()));
  EXPECT_EQ(chat::typed_text(p.tokens, *m.tokenizer), r2.typed);  // the same text and control tokens
}

TEST_F(PrefixCacheTest, DroppedReasoningIsSkippedThroughTheCheckpointBeforeThink) {
  auto cache = make_cache();
  PromptRequest r1 = chat(Json::array({user("What is 2+2?")}), /*thinking=*/true);
  ASSERT_TRUE(r1.reasoning_dropped_next_turn);
  prefill(*cache, r1);
  std::vector<int32_t> gen = text("Let me add the numbers.");
  gen.push_back(m.special.think_close);
  const std::vector<int32_t> answer = text("It is 4.");
  gen.insert(gen.end(), answer.begin(), answer.end());
  generate(*cache, gen);
  cache->finished_turn(r1.reasoning_dropped_next_turn);

  PromptRequest r2 = chat(Json::array({user("What is 2+2?"), assistant("It is 4.", "Let me add the numbers."),
                                       user("And 3+3?")}),
                          true);
  const int64_t n1 = static_cast<int64_t>(r1.tokens.size());
  PrefillResult p = prefill(*cache, r2);
  EXPECT_EQ(p.rung, Rung::kCheckpoint);
  EXPECT_EQ(p.cached, n1 - 1);  // everything before the first turn's "<think>"
  EXPECT_EQ(p.evaluated, static_cast<int64_t>(r2.tokens.size()) - (n1 - 1));
  EXPECT_EQ(p.tokens, r2.tokens);
}

TEST_F(PrefixCacheTest, AStopSequenceCutReturnsToTheStartOfTheGeneration) {
  auto cache = make_cache();
  PromptRequest r1 = chat(Json::array({user("Count")}));
  prefill(*cache, r1);
  generate(*cache, text("one two three"));  // the client saw "one two" (stop sequence " three")
  PromptRequest r2 = chat(Json::array({user("Count"), assistant("one two"), user("Again")}));
  const int64_t n1 = static_cast<int64_t>(r1.tokens.size());
  PrefillResult p = prefill(*cache, r2);
  EXPECT_EQ(p.rung, Rung::kCheckpoint);
  EXPECT_EQ(p.cached, n1);
  EXPECT_EQ(p.evaluated, static_cast<int64_t>(p.tokens.size()) - n1);
}

TEST_F(PrefixCacheTest, AnEditedHistoryFallsBackToTheLatestUsableCheckpoint) {
  auto cache = make_cache(nullptr, small_triggers());
  PromptRequest r1 = chat(Json::array({system("You are terse. Answer every question in one short line."), user("First question")}));
  prefill(*cache, r1);
  generate(*cache, text("First answer"));
  // A different first question: the system prompt is shared up to the chat anchor.
  PromptRequest r2 = chat(Json::array({system("You are terse. Answer every question in one short line."), user("Another question")}));
  PrefillResult p = prefill(*cache, r2);
  const int64_t anchor = chat_anchor(r1.tokens, m.special.user, m.special.assistant);
  ASSERT_GT(anchor, 0);
  EXPECT_EQ(p.rung, Rung::kCheckpoint);
  EXPECT_EQ(p.cached, anchor);
  EXPECT_EQ(p.evaluated, static_cast<int64_t>(r2.tokens.size()) - anchor);
}

TEST_F(PrefixCacheTest, AnUnrelatedPromptIsCold) {
  auto cache = make_cache();
  prefill(*cache, chat(Json::array({user("alpha")})));
  PromptRequest r2 = chat(Json::array({system("beta"), user("gamma")}));
  PrefillResult p = prefill(*cache, r2);
  EXPECT_EQ(p.cached, 0);  // no checkpoint inside the shared BOS: a full refill
  EXPECT_EQ(p.tokens, r2.tokens);
}

TEST_F(PrefixCacheTest, ColdStoreAtTheChatAnchorServesARestartedServer) {
  TempDir dir;
  auto store = open_store(dir);
  const std::string long_system(400, 'x');
  PromptRequest r = chat(Json::array({system("Rules: " + long_system), user("Question one")}));
  const int64_t anchor = chat_anchor(r.tokens, m.special.user, m.special.assistant);
  {
    auto cache = make_cache(store.get(), small_triggers());
    PrefillResult p = prefill(*cache, r);
    EXPECT_EQ(p.rung, Rung::kCold);
    EXPECT_EQ(p.disk_stores, 1);
    EXPECT_EQ(store->file_count(), 1u);
  }
  // A new process: a new session, the same directory.
  auto store2 = open_store(dir);
  auto cache = make_cache(store2.get(), small_triggers());
  PromptRequest other = chat(Json::array({system("Rules: " + long_system), user("Question two")}));
  PrefillResult p = prefill(*cache, other);
  EXPECT_EQ(p.rung, Rung::kDisk);
  EXPECT_EQ(p.cached, anchor);
  EXPECT_EQ(p.evaluated, static_cast<int64_t>(other.tokens.size()) - anchor);
  EXPECT_EQ(p.tokens, other.tokens);
}

TEST_F(PrefixCacheTest, ASwitchedConversationComesBackFromDisk) {
  TempDir dir;
  auto store = open_store(dir);
  StoreTriggerOptions t;
  t.min_tokens = 8;
  t.cold_max_tokens = 0;  // only evict stores here
  auto cache = make_cache(store.get(), t);
  const std::string a_system = "You help with conversation A. " + std::string(100, 'a');
  PromptRequest a1 = chat(Json::array({system(a_system), user("A question")}));
  prefill(*cache, a1);
  generate(*cache, text("A answer"));
  cache->finished_turn(a1.reasoning_dropped_next_turn);
  const int64_t a_live = static_cast<int64_t>(cache->session().tokens().size());

  PromptRequest b1 = chat(Json::array({system("Conversation B " + std::string(100, 'b')), user("B question")}));
  PrefillResult pb = prefill(*cache, b1);
  EXPECT_EQ(pb.disk_stores, 1);  // A evicted
  generate(*cache, text("B answer"));
  cache->finished_turn(b1.reasoning_dropped_next_turn);

  PromptRequest a2 = chat(Json::array({system(a_system), user("A question"), assistant("A answer"), user("More A")}));
  PrefillResult pa = prefill(*cache, a2);
  EXPECT_EQ(pa.rung, Rung::kDisk);
  EXPECT_EQ(pa.cached, a_live);
  EXPECT_EQ(pa.evaluated, static_cast<int64_t>(pa.tokens.size()) - a_live);
  EXPECT_EQ(chat::typed_text(pa.tokens, *m.tokenizer), a2.typed);
  EXPECT_EQ(store->file_count(), 2u);  // A, then B evicted in turn
}

TEST_F(PrefixCacheTest, ContinuedStoresHappenAtIntervalFrontiersDuringPrefillAndDecode) {
  TempDir dir;
  auto store = open_store(dir);
  StoreTriggerOptions t;
  t.min_tokens = 8;
  t.cold_max_tokens = 0;
  t.continued_interval_tokens = 64;
  t.boundary_align_tokens = 64;
  auto cache = make_cache(store.get(), t);
  PromptRequest r = chat(Json::array({user(std::string(600, 'q') + " tail words to make it longer")}));
  const int64_t n = static_cast<int64_t>(r.tokens.size());
  ASSERT_GT(n, 128);
  PrefillResult p = prefill(*cache, r);
  EXPECT_EQ(p.disk_stores, n / 64);
  EXPECT_EQ(store->file_count(), static_cast<size_t>(n / 64));
  // Decode: the next frontier is stored when the session reaches it, not inside a tool call.
  const int64_t next = (n / 64 + 1) * 64;
  while (static_cast<int64_t>(cache->session().tokens().size()) < next) {
    EXPECT_FALSE(cache->at_decode_step(false));
    generate(*cache, text("z"));
  }
  EXPECT_FALSE(cache->at_decode_step(true));
  EXPECT_TRUE(cache->at_decode_step(false));
  EXPECT_FALSE(cache->at_decode_step(false));  // once per frontier
  EXPECT_EQ(store->file_count(), static_cast<size_t>(n / 64 + 1));
}

TEST_F(PrefixCacheTest, ShutdownStoresTheLiveSessionWithoutTheDroppedReasoning) {
  TempDir dir;
  auto store = open_store(dir);
  StoreTriggerOptions t;
  t.min_tokens = 8;
  t.cold_max_tokens = 0;
  PromptRequest r1 = chat(Json::array({user("Explain " + std::string(50, 'e'))}), true);
  {
    auto cache = make_cache(store.get(), t);
    prefill(*cache, r1);
    std::vector<int32_t> gen = text("reasoning");
    gen.push_back(m.special.think_close);
    generate(*cache, gen);
    cache->finished_turn(r1.reasoning_dropped_next_turn);
    cache->store_at_shutdown();
    EXPECT_EQ(store->file_count(), 1u);
  }
  auto cache = make_cache(store.get(), t);
  PromptRequest r2 = chat(Json::array({user("Explain " + std::string(50, 'e')), assistant("Done.", "reasoning"),
                                       user("Next")}),
                          true);
  PrefillResult p = prefill(*cache, r2);
  EXPECT_EQ(p.rung, Rung::kDisk);
  EXPECT_EQ(p.cached, static_cast<int64_t>(r1.tokens.size()) - 1);
}

TEST_F(PrefixCacheTest, CorruptOrTruncatedCacheFilesAreIgnoredWithAWarning) {
  TempDir dir;
  const std::string long_system(300, 's');
  PromptRequest r = chat(Json::array({system(long_system), user("Q")}));
  {
    auto store = open_store(dir);
    auto cache = make_cache(store.get(), small_triggers());
    ASSERT_EQ(prefill(*cache, r).disk_stores, 1);
  }
  const std::vector<std::string> names = testing::list_names(dir.path());
  ASSERT_EQ(names.size(), 1u);
  const auto file = dir.path() / names[0];
  const std::vector<uint8_t> good = testing::read_bytes(file);

  for (int variant = 0; variant < 3; ++variant) {
    std::vector<uint8_t> bad = good;
    if (variant == 0) bad[bad.size() - 40] ^= 0x55;  // payload
    if (variant == 1) bad.resize(bad.size() / 2);    // truncated
    if (variant == 2) bad[200] ^= 0x01;              // key
    testing::write_bytes(file, bad);
    LogCapture logs;
    auto store = open_store(dir);
    auto cache = make_cache(store.get(), small_triggers());
    PrefillResult p = prefill(*cache, r);
    EXPECT_NE(p.rung, Rung::kDisk) << variant;
    EXPECT_EQ(p.evaluated, static_cast<int64_t>(r.tokens.size())) << variant;
    EXPECT_TRUE(logs.contains("warn")) << variant;
    // The cold store wrote a good file again under the same name: the same key and snapshot (the
    // header differs only in its dates).
    const std::vector<uint8_t> rewritten = testing::read_bytes(file);
    ASSERT_EQ(rewritten.size(), good.size()) << variant;
    EXPECT_TRUE(std::equal(rewritten.begin() + kKvHeaderSize, rewritten.end(), good.begin() + kKvHeaderSize))
        << variant;
  }
}

}  // namespace
}  // namespace dsv4::server
