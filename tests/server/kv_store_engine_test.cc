// The disk KV cache with a real engine (the tiny synthetic model): store a session under the
// typed text of its tokens, restart, find it by the longest typed-text prefix of a longer prompt,
// restore, tokenise the remaining typed text and continue — bit-identical to evaluating the same
// tokens from scratch (PROTOCOL.md §5.3 step 4).
#include <gtest/gtest.h>

#include "chat/typed_text.h"
#include "engine/engine.h"
#include "engine/snapshot.h"
#include "gguf/gguf.h"
#include "kv_store_test_util.h"
#include "model/synthetic.h"
#include "model/weights.h"
#include "server/kv_store.h"
#include "tokenizer/tokenizer.h"

namespace dsv4::server {
namespace {

using namespace testing;

class KvStoreEngineTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    models_ = new TempDir();
    fs::create_directories(models_->path());
    for (uint64_t seed : {1, 2}) {
      model::SyntheticSpec spec;
      spec.preset = "tiny";
      spec.seed = seed;
      auto w = model::make_synthetic_model(spec);
      ASSERT_TRUE(w.ok()) << w.error().message;
      ASSERT_TRUE(w->write(model_path(seed)).ok());
    }
  }
  static void TearDownTestSuite() {
    delete models_;
    models_ = nullptr;
  }
  static std::string model_path(uint64_t seed) {
    return (models_->path() / ("tiny" + std::to_string(seed) + ".gguf")).string();
  }
  static std::shared_ptr<engine::Engine> load(uint64_t seed, engine::Mode mode = engine::Mode::kOfficial) {
    engine::EngineOptions o;
    o.model_path = model_path(seed);
    o.mode = mode;
    auto e = engine::Engine::load(o);
    EXPECT_TRUE(e.ok()) << e.error().message;
    return e.ok() ? *e : nullptr;
  }
  static tokenizer::Tokenizer tokenizer_of(uint64_t seed) {
    auto file = gguf::File::open(model_path(seed));
    EXPECT_TRUE(file.ok()) << file.error().message;
    auto tok = tokenizer::Tokenizer::from_gguf(*file);
    EXPECT_TRUE(tok.ok()) << tok.error().message;
    return *tok;
  }
  std::unique_ptr<KvStore> open_store(const engine::Engine& e) {
    KvStoreOptions o;
    o.dir = cache_.str();
    o.min_tokens = 8;
    auto s = KvStore::open(o, e.fingerprint(), kv_mode_flags(e.mode()));
    EXPECT_TRUE(s.ok()) << s.error().message;
    return s.ok() ? std::move(s).value() : nullptr;
  }

  static constexpr int64_t kCtx = 256;
  static inline TempDir* models_ = nullptr;
  TempDir cache_;
};

TEST_F(KvStoreEngineTest, FingerprintIsTheOneSnapshotsCarry) {
  auto e = load(1);
  ASSERT_TRUE(e);
  auto file = gguf::File::open(model_path(1));
  ASSERT_TRUE(file.ok());
  EXPECT_EQ(e->fingerprint(), model::model_fingerprint(*file));
  auto s = *e->new_session(kCtx);
  const std::vector<int32_t> t = {5, 6, 7};
  ASSERT_TRUE(s->eval(t).ok());
  auto snap = engine::decode_snapshot(s->save_snapshot());
  ASSERT_TRUE(snap.ok());
  EXPECT_EQ(snap->model, e->fingerprint());
  EXPECT_NE(load(2)->fingerprint(), e->fingerprint());
  EXPECT_NE(kv_mode_flags(engine::Mode::kOfficial), kv_mode_flags(engine::Mode::kPlain));
}

TEST_F(KvStoreEngineTest, StoreRestartLookupRestoreContinue) {
  auto e = load(1);
  ASSERT_TRUE(e);
  const tokenizer::Tokenizer tok = tokenizer_of(1);
  const std::string first = "<｜begin▁of▁sentence｜>You are terse.<｜User｜>Name three primes.<｜Assistant｜></think>";
  const std::string answer = "2, 3 and 5.";
  const std::vector<int32_t> stored_tokens = [&] {
    std::vector<int32_t> t = tok.encode_with_special(first);
    // The answer as generated: one token per byte, not the canonical BPE.
    for (char c : answer) t.push_back(*tok.token_id_for_text(std::string(1, c)));
    return t;
  }();
  ASSERT_GE(stored_tokens.size(), 20u);
  {
    auto s = *e->new_session(kCtx);
    ASSERT_TRUE(s->eval(stored_tokens).ok());
    auto store = open_store(*e);
    auto r = store->store(chat::typed_text(stored_tokens, tok), stored_tokens, StoreReason::kEvict, kCtx,
                          s->save_snapshot());
    ASSERT_TRUE(r.ok() && *r) << (r.ok() ? "skipped" : r.error().message);
  }

  // The next request renders the same history canonically and adds a turn.
  const std::string next = first + answer + "<｜end▁of▁sentence｜><｜User｜>And two more.<｜Assistant｜></think>";
  const std::vector<int32_t> prompt = tok.encode_with_special(next);
  ASSERT_NE(std::vector<int32_t>(prompt.begin(), prompt.begin() + stored_tokens.size()), stored_tokens);
  const std::string prompt_typed = chat::typed_text(prompt, tok);

  auto store = open_store(*e);
  auto hit = store->lookup(prompt_typed, kCtx);
  ASSERT_TRUE(hit.ok()) << hit.error().message;
  ASSERT_TRUE(hit->has_value());
  EXPECT_EQ((*hit)->tokens, stored_tokens);
  EXPECT_EQ((*hit)->key, chat::typed_text(stored_tokens, tok));

  auto resumed = *e->new_session(kCtx);
  ASSERT_TRUE(resumed->restore_snapshot((*hit)->snapshot).ok());
  auto suffix = chat::tokens_from_typed_text(std::string_view(prompt_typed).substr((*hit)->key.size()), tok);
  ASSERT_TRUE(suffix.ok()) << suffix.error().message;
  ASSERT_FALSE(suffix->empty());
  ASSERT_TRUE(resumed->eval(*suffix).ok());

  std::vector<int32_t> all = stored_tokens;
  all.insert(all.end(), suffix->begin(), suffix->end());
  EXPECT_EQ(resumed->tokens(), all);
  EXPECT_EQ(chat::typed_text(all, tok), prompt_typed);
  auto fresh = *e->new_session(kCtx);
  ASSERT_TRUE(fresh->eval(all).ok());
  ASSERT_EQ(resumed->logits().size(), fresh->logits().size());
  EXPECT_TRUE(std::equal(resumed->logits().begin(), resumed->logits().end(), fresh->logits().begin()));

  // The same cache seen from another model, another mode, or a smaller context: no hit.
  auto other_model = load(2);
  EXPECT_FALSE(open_store(*other_model)->lookup(prompt_typed, kCtx)->has_value());
  auto plain = load(1, engine::Mode::kPlain);
  EXPECT_FALSE(open_store(*plain)->lookup(prompt_typed, kCtx)->has_value());
  EXPECT_FALSE(store->lookup(prompt_typed, kCtx - 1)->has_value());
  EXPECT_TRUE(store->lookup(prompt_typed, kCtx)->has_value());
  EXPECT_TRUE(store->warnings().empty());
}

}  // namespace
}  // namespace dsv4::server
