// The generation loop on a scripted session: the "model" predicts a fixed token sequence, so
// every rule of generator.h can be checked exactly (EOS, stop sequences, max_tokens, tool-call
// stop, greedy tool structure, cancellation, what the session evaluated).
#include "generation/generator.h"

#include <gtest/gtest.h>

#include <optional>
#include <string>
#include <vector>

#include "model/synthetic_vocab.h"

namespace dsv4::generation {
namespace {

tokenizer::Tokenizer make_tokenizer() {
  Result<model::SyntheticVocab> v = model::make_synthetic_vocab(1024);
  EXPECT_TRUE(v.ok());
  tokenizer::Vocab vocab{v->tokens, v->types, v->merges};
  Result<tokenizer::Tokenizer> tok = tokenizer::Tokenizer::from_vocab(std::move(vocab));
  EXPECT_TRUE(tok.ok());
  return std::move(tok).value();
}

// Predicts script[i] after the prompt and i generated tokens, then EOS forever. A "weak" position
// has its token only slightly ahead of all others (sampling at temperature 1 almost never picks
// it; greedy always does).
class ScriptedSession final : public engine::Session {
 public:
  ScriptedSession(int32_t vocab, int32_t eos, std::vector<int32_t> prompt, std::vector<int32_t> script,
                  std::vector<bool> weak, int64_t n_ctx)
      : vocab_(vocab), eos_(eos), prompt_size_(prompt.size()), tokens_(std::move(prompt)),
        script_(std::move(script)), weak_(std::move(weak)), n_ctx_(n_ctx) {
    update_logits();
  }
  Result<engine::SyncStats> sync(std::span<const int32_t>, const engine::ProgressFn&) override { return make_error("unused"); }
  void checkpoint() override {}
  Status eval(std::span<const int32_t> tokens, float*) override {
    tokens_.insert(tokens_.end(), tokens.begin(), tokens.end());
    update_logits();
    return Status();
  }
  // The script does not depend on the tokens: the logits after each draft token are those of its
  // position.
  // The rows stay here when the caller takes none (sample_draft_row).
  Status eval_draft(std::span<const int32_t> tokens, float* all_logits) override {
    draft_ = tokens.size();
    rows_.clear();
    for (int32_t t : tokens) {
      tokens_.push_back(t);
      update_logits();
      if (all_logits) {
        std::copy(logits_.begin(), logits_.end(), all_logits);
        all_logits += logits_.size();
      } else {
        rows_.insert(rows_.end(), logits_.begin(), logits_.end());
      }
    }
    return Status();
  }
  Result<engine::Sample> sample_draft_row(engine::Sampler& sampler, engine::Sampler::Mode mode,
                                          size_t row) override {
    if (draft_ == 0 || row >= draft_ || rows_.empty()) return make_error("sample_draft_row: no such row");
    return sampler.sample(std::span<const float>(rows_).subspan(row * static_cast<size_t>(vocab_),
                                                                static_cast<size_t>(vocab_)),
                          mode);
  }
  Status keep_draft(size_t k) override {
    if (k < 1 || k > draft_) return make_error("keep_draft out of range");
    tokens_.resize(tokens_.size() - (draft_ - k));
    update_logits();
    drafts_.push_back({draft_, k});
    draft_ = 0;
    return Status();
  }
  struct Draft {
    size_t evaluated, kept;
  };
  const std::vector<Draft>& drafts() const { return drafts_; }
  int64_t draft_run_length(int64_t most) const override { return std::min<int64_t>(most, 4); }
  std::span<const float> logits() const override { return logits_; }
  const std::vector<int32_t>& tokens() const override { return tokens_; }
  int64_t n_ctx() const override { return n_ctx_; }
  std::vector<uint8_t> save_snapshot() const override { return {}; }
  Status restore_snapshot(std::span<const uint8_t>) override { return make_error("unused"); }
  // With an MTP block (set_mtp): its guess after `next` is the script's token there, except every
  // third guess, which is wrong.
  bool has_mtp() const override { return mtp_; }
  Result<std::optional<int32_t>> mtp_draft(int32_t next) override {
    if (!mtp_) return engine::Session::mtp_draft(next);
    if (draft_ != 0) return make_error("mtp_draft while a draft waits");
    const size_t i = tokens_.size() - prompt_size_ + 1;  // the guessed token's index in the script
    const int32_t right = i < script_.size() ? script_[i] : eos_;
    ++mtp_guesses_;
    return std::optional<int32_t>(mtp_guesses_ % 3 == 0 ? (right + 1) % vocab_ : right);
  }
  void set_mtp() { mtp_ = true; }
  int mtp_guesses() const { return mtp_guesses_; }

  std::vector<int32_t> generated() const {
    return std::vector<int32_t>(tokens_.begin() + static_cast<ptrdiff_t>(prompt_size_), tokens_.end());
  }

 private:
  void update_logits() {
    size_t i = tokens_.size() - prompt_size_;
    logits_.assign(static_cast<size_t>(vocab_), 0.0f);
    int32_t next = i < script_.size() ? script_[i] : eos_;
    bool weak = i < weak_.size() && weak_[i];
    logits_[static_cast<size_t>(next)] = weak ? 0.5f : 40.0f;
  }
  int32_t vocab_;
  int32_t eos_;
  size_t prompt_size_;
  std::vector<int32_t> tokens_;
  std::vector<int32_t> script_;
  std::vector<bool> weak_;
  int64_t n_ctx_;
  std::vector<float> logits_;
  size_t draft_ = 0;
  std::vector<float> rows_;  // the draft's logits when the caller took none
  std::vector<Draft> drafts_;
  bool mtp_ = false;
  int mtp_guesses_ = 0;
};

class GeneratorTest : public ::testing::Test {
 protected:
  GeneratorTest() : tok_(make_tokenizer()), special_(tokenizer::SpecialTokens::resolve(tok_).value()) {}

  std::vector<int32_t> ids(const std::string& text) const { return tok_.encode_with_special(text); }

  ScriptedSession session(const std::string& script, int64_t n_ctx = 4096, std::vector<bool> weak = {}) {
    return ScriptedSession(1024, special_.eos, {special_.bos, special_.user}, ids(script), std::move(weak), n_ctx);
  }

  GenerateOptions options(chat::ThinkingMode mode, bool tools = false) const {
    GenerateOptions o;
    o.sampling.temperature = 0.0f;
    o.sampling.seed = 1;
    o.max_tokens = 1000;
    o.stream = {mode, tools};
    return o;
  }

  // Runs and collects the streamed events; checks they add up to the result.
  GenerateResult run(ScriptedSession& s, const GenerateOptions& o, GenerateCallbacks cb = {}) {
    Generator gen(tok_, special_);
    std::string reasoning, content;
    auto user_events = cb.on_events;
    cb.on_events = [&](std::span<const chat::StreamEvent> events) {
      for (const chat::StreamEvent& e : events) {
        if (e.kind == chat::StreamEventKind::reasoning) reasoning += e.text;
        if (e.kind == chat::StreamEventKind::content) content += e.text;
        streamed_.push_back(e);
      }
      return user_events ? user_events(events) : true;
    };
    Result<GenerateResult> r = gen.generate(s, o, cb);
    EXPECT_TRUE(r.ok());
    EXPECT_EQ(reasoning, r->reasoning);
    EXPECT_EQ(content, r->content);
    return std::move(r).value();
  }

  tokenizer::Tokenizer tok_;
  tokenizer::SpecialTokens special_;
  std::vector<chat::StreamEvent> streamed_;
};

TEST_F(GeneratorTest, EosEndsAndIsNotEvaluated) {
  ScriptedSession s = session("Hello world");
  GenerateResult r = run(s, options(chat::ThinkingMode::chat));
  EXPECT_EQ(r.finish, Finish::kStop);
  EXPECT_EQ(r.content, "Hello world");
  EXPECT_EQ(s.generated(), ids("Hello world"));
  ASSERT_FALSE(r.tokens.empty());
  EXPECT_EQ(r.tokens.back(), special_.eos);
  EXPECT_EQ(r.tokens.size(), ids("Hello world").size() + 1);
}

TEST_F(GeneratorTest, ThinkingSplitsReasoningAndCountsItsTokens) {
  ScriptedSession s = session("let me see</think>The answer.");
  GenerateResult r = run(s, options(chat::ThinkingMode::thinking));
  EXPECT_EQ(r.reasoning, "let me see");
  EXPECT_EQ(r.content, "The answer.");
  EXPECT_EQ(r.reasoning_tokens, static_cast<int64_t>(ids("let me see</think>").size()));
}

TEST_F(GeneratorTest, MaxTokensGivesLength) {
  ScriptedSession s = session("one two three four five six");
  GenerateOptions o = options(chat::ThinkingMode::chat);
  o.max_tokens = 3;
  GenerateResult r = run(s, o);
  EXPECT_EQ(r.finish, Finish::kLength);
  EXPECT_EQ(r.tokens.size(), 3u);
  EXPECT_EQ(s.generated().size(), 3u);
}

TEST_F(GeneratorTest, MaxTokensIsClippedToTheFreeContext) {
  ScriptedSession s = session("one two three four five six", /*n_ctx=*/4);
  GenerateResult r = run(s, options(chat::ThinkingMode::chat));
  EXPECT_EQ(r.finish, Finish::kLength);
  EXPECT_EQ(s.tokens().size(), 4u);
}

TEST_F(GeneratorTest, StopSequenceCutsAndEnds) {
  ScriptedSession s = session("alpha beta gamma delta");
  GenerateOptions o = options(chat::ThinkingMode::chat);
  o.stop = {"gam"};
  GenerateResult r = run(s, o);
  EXPECT_EQ(r.finish, Finish::kStop);
  EXPECT_EQ(r.stop_sequence, "gam");
  EXPECT_EQ(r.content, "alpha beta ");
  // The token that completed the stop sequence was sampled but not evaluated.
  EXPECT_EQ(s.generated().size() + 1, r.tokens.size());
}

TEST_F(GeneratorTest, StopSequencesIgnoreReasoning) {
  ScriptedSession s = session("stop here</think>visible stop");
  GenerateOptions o = options(chat::ThinkingMode::thinking);
  o.stop = {"stop"};
  GenerateResult r = run(s, o);
  EXPECT_EQ(r.reasoning, "stop here");
  EXPECT_EQ(r.content, "visible ");
  EXPECT_EQ(r.finish, Finish::kStop);
}

const char* kToolBlock =
    "Checking.\n\n<｜DSML｜tool_calls>\n"
    "<｜DSML｜invoke name=\"read_file\">\n"
    "<｜DSML｜parameter name=\"path\" string=\"true\">src/main.cc</｜DSML｜parameter>\n"
    "<｜DSML｜parameter name=\"limit\" string=\"false\">20</｜DSML｜parameter>\n"
    "</｜DSML｜invoke>\n"
    "</｜DSML｜tool_calls>";

TEST_F(GeneratorTest, ToolCallBlockEndsTheGeneration) {
  // A control token after the block keeps the block's tokens apart from what follows.
  ScriptedSession s = session(std::string("</think>") + kToolBlock + "<｜User｜>trailing text");
  GenerateResult r = run(s, options(chat::ThinkingMode::thinking, /*tools=*/true));
  EXPECT_EQ(r.finish, Finish::kToolCalls);
  EXPECT_EQ(r.content, "Checking.");
  EXPECT_EQ(s.generated(), ids(std::string("</think>") + kToolBlock));  // the closer was evaluated
  ASSERT_FALSE(r.tool_events.empty());
  EXPECT_EQ(r.tool_events.front().kind, chat::StreamEventKind::tool_call_begin);
  EXPECT_EQ(r.tool_events.front().name, "read_file");
  EXPECT_EQ(r.tool_events.back().kind, chat::StreamEventKind::tool_call_end);
  EXPECT_EQ(r.tool_events.back().text, "{\"path\": \"src/main.cc\", \"limit\": 20}");
}

TEST_F(GeneratorTest, WithoutToolsMarkupIsContent) {
  ScriptedSession s = session(kToolBlock);
  GenerateResult r = run(s, options(chat::ThinkingMode::chat, /*tools=*/false));
  EXPECT_EQ(r.finish, Finish::kStop);
  EXPECT_EQ(r.content, kToolBlock);
  EXPECT_TRUE(r.tool_events.empty());
}

// Tool structure is weakly predicted (sampling at temperature 1 over 1024 tokens would almost
// surely leave it), bodies strongly: the call comes out intact only if structure is greedy.
TEST_F(GeneratorTest, ToolStructureIsSampledGreedily) {
  const std::string opener = "\n\n<｜DSML｜tool_calls>";
  const std::string head = "\n<｜DSML｜invoke name=\"";
  const std::string name = "ls";
  const std::string mid = "\">\n<｜DSML｜parameter name=\"dir\" string=\"true\">";
  const std::string body = "src";
  const std::string tail = "</｜DSML｜parameter>\n</｜DSML｜invoke>\n</｜DSML｜tool_calls>";
  std::vector<int32_t> script;
  std::vector<bool> weak;
  auto add = [&](const std::string& text, bool is_weak) {
    for (int32_t id : ids(text)) {
      script.push_back(id);
      weak.push_back(is_weak);
    }
  };
  // Text and the block opener are sampled as the request says (the opener is the model's choice
  // to call a tool): strong. Structure inside the block: weak.
  add("Ok." + opener, false);
  add(head, true);
  add(name, false);
  add(mid, true);
  add(body, false);
  // Where a body ends is the model's choice too: the closer's first token is strong, the rest of
  // the closer (held back as a possible closer) and the structure after it are weak.
  std::vector<int32_t> tail_ids = ids(tail);
  script.push_back(tail_ids[0]);
  weak.push_back(false);
  for (size_t i = 1; i < tail_ids.size(); ++i) {
    script.push_back(tail_ids[i]);
    weak.push_back(true);
  }
  ASSERT_EQ(script.size(), ids("Ok." + opener + head + name + mid + body + tail).size())
      << "the pieces must tokenise as the whole";
  ScriptedSession s(1024, special_.eos, {special_.bos}, script, weak, 4096);
  GenerateOptions o = options(chat::ThinkingMode::chat, /*tools=*/true);
  o.sampling.temperature = 1.0f;
  o.sampling.min_p = 0.0f;
  GenerateResult r = run(s, o);
  EXPECT_EQ(r.finish, Finish::kToolCalls) << r.content;
  ASSERT_FALSE(r.tool_events.empty());
  EXPECT_EQ(r.tool_events.back().text, "{\"dir\": \"src\"}");
}

TEST_F(GeneratorTest, UnterminatedToolCallIsAnError) {
  ScriptedSession s = session("\n\n<｜DSML｜tool_calls>\n<｜DSML｜invoke name=\"x\">\n");
  GenerateResult r = run(s, options(chat::ThinkingMode::chat, /*tools=*/true));
  EXPECT_EQ(r.finish, Finish::kError);
  EXPECT_EQ(r.error, "unterminated tool call");
}

TEST_F(GeneratorTest, CancelStopsWithinOneStep) {
  ScriptedSession s = session("a b c d e f g h i j");
  int steps = 0;
  GenerateCallbacks cb;
  cb.should_cancel = [&] { return ++steps > 3; };
  GenerateResult r = run(s, options(chat::ThinkingMode::chat), cb);
  EXPECT_EQ(r.finish, Finish::kCancelled);
  EXPECT_EQ(r.tokens.size(), 3u);
  EXPECT_EQ(s.generated().size(), 3u);
}

TEST_F(GeneratorTest, OnEventsFalseCancels) {
  ScriptedSession s = session("a b c d e f g h i j");
  GenerateCallbacks cb;
  cb.on_events = [](std::span<const chat::StreamEvent>) { return false; };
  GenerateResult r = run(s, options(chat::ThinkingMode::chat), cb);
  EXPECT_EQ(r.finish, Finish::kCancelled);
  EXPECT_EQ(r.tokens.size(), 1u);
}

TEST_F(GeneratorTest, OnTokenSeesEveryTokenWithLogprobs) {
  ScriptedSession s = session("x y");
  GenerateOptions o = options(chat::ThinkingMode::chat);
  o.sampling.logprobs = true;
  o.sampling.top_logprobs = 2;
  std::vector<engine::Sample> seen;
  GenerateCallbacks cb;
  cb.on_token = [&](const engine::Sample& sample) { seen.push_back(sample); };
  GenerateResult r = run(s, o, cb);
  ASSERT_EQ(seen.size(), r.tokens.size());
  for (const engine::Sample& sample : seen) {
    EXPECT_EQ(sample.n_top, 2);
    EXPECT_NEAR(sample.logprob, 0.0f, 1e-6f);  // one-hot-like: logprob ~ 0
  }
}

TEST_F(GeneratorTest, EmptySessionIsAnError) {
  ScriptedSession s(1024, special_.eos, {}, {}, {}, 16);
  Generator gen(tok_, special_);
  EXPECT_FALSE(gen.generate(s, options(chat::ThinkingMode::chat), {}).ok());
}


namespace {

struct DraftCase {
  std::string name;
  std::string script;
  std::vector<bool> weak;
  chat::ThinkingMode mode = chat::ThinkingMode::chat;
  bool tools = false;
  float temperature = 0.0f;
  int64_t max_tokens = 1000;
  std::vector<std::string> stop;
  int cancel_after = 0;  // should_cancel polls answered false, then true; 0: never
};

}  // namespace

// Speculative decoding with prompt-lookup drafts, with the MTP block's one-token guesses (a third
// of them wrong) and with both: the same generation as without, whatever ends it (EOS inside a
// draft, a stop sequence, max_tokens, a closed tool call, cancellation), greedy and sampled (weak
// positions make the sampler leave the script, so drafts are rejected there); and repetitive text
// is drafted and accepted.
TEST_F(GeneratorTest, DraftsGiveTheSameGeneration) {
  const std::string verse = "alpha beta gamma delta epsilon ";
  std::string verses;
  for (int i = 0; i < 6; ++i) verses += verse;
  std::vector<bool> every_fifth_weak(ids(verses).size());
  for (size_t i = 4; i < every_fifth_weak.size(); i += 5) every_fifth_weak[i] = true;
  // A cut a few tokens into the third verse, where drafts are being verified.
  const int64_t cut = 2 * static_cast<int64_t>(ids(verse).size()) + 3;
  auto make = [](std::string name, std::string script) {
    DraftCase c;
    c.name = std::move(name);
    c.script = std::move(script);
    return c;
  };
  std::vector<DraftCase> cases = {make("repeats to EOS", verses), make("stop sequence in a repeat", verses),
                                  make("max_tokens inside a draft", verses),
                                  make("thinking, then a tool call", "</think>" + verses + kToolBlock + "<｜User｜>more"),
                                  make("sampled, drafts rejected where weak", verses), make("cancelled", verses)};
  cases[1].stop = {"delta epsilon alpha beta"};
  cases[2].max_tokens = cut;
  cases[3].mode = chat::ThinkingMode::thinking;
  cases[3].tools = true;
  cases[4].weak = every_fifth_weak;
  cases[4].temperature = 1.0f;
  cases[5].cancel_after = static_cast<int>(cut);
  for (const DraftCase& c : cases) {
    SCOPED_TRACE(c.name);
    std::vector<GenerateResult> results;
    std::vector<std::vector<int32_t>> evaluated;
    struct Drafting {
      int lookup;
      bool mtp;
    };
    const std::vector<Drafting> draftings{{0, false}, {3, false}, {0, true}, {3, true}};
    std::vector<int64_t> accepted;
    for (const Drafting& drafting : draftings) {
      const int draft = drafting.lookup;
      ScriptedSession s = session(c.script, 4096, c.weak);
      if (drafting.mtp) s.set_mtp();
      GenerateOptions o = options(c.mode, c.tools);
      o.sampling.temperature = c.temperature;
      o.sampling.min_p = 0.0f;
      o.max_tokens = c.max_tokens;
      o.stop = c.stop;
      o.draft_tokens = draft;
      int polls = 0;
      GenerateCallbacks cb;
      if (c.cancel_after > 0) cb.should_cancel = [&] { return ++polls > c.cancel_after; };
      results.push_back(run(s, o, cb));
      evaluated.push_back(s.generated());
      if (draft == 0 && !drafting.mtp) {
        EXPECT_TRUE(s.drafts().empty());
      }
      if (drafting.mtp && draft == 0) {
        EXPECT_GT(s.mtp_guesses(), 0) << "the MTP block was never asked";
      }
      for (const ScriptedSession::Draft& d : s.drafts()) {
        EXPECT_GE(d.kept, 1u);
        EXPECT_LE(d.kept, d.evaluated);
        EXPECT_LE(d.evaluated, 4u);
      }
      accepted.push_back(results.back().draft_accepted);
    }
    const GenerateResult& plain = results[0];
    EXPECT_EQ(plain.drafted, 0);
    for (size_t k = 1; k < results.size(); ++k) {
      SCOPED_TRACE(std::to_string(draftings[k].lookup) + (draftings[k].mtp ? " + mtp" : ""));
      const GenerateResult& drafted = results[k];
      EXPECT_EQ(drafted.tokens, plain.tokens);
      EXPECT_EQ(evaluated[k], evaluated[0]);
      EXPECT_EQ(drafted.finish, plain.finish);
      EXPECT_EQ(drafted.stop_sequence, plain.stop_sequence);
      EXPECT_EQ(drafted.content, plain.content);
      EXPECT_EQ(drafted.reasoning, plain.reasoning);
      EXPECT_EQ(drafted.reasoning_tokens, plain.reasoning_tokens);
      ASSERT_EQ(drafted.tool_events.size(), plain.tool_events.size());
      for (size_t i = 0; i < plain.tool_events.size(); ++i) {
        EXPECT_EQ(drafted.tool_events[i].kind, plain.tool_events[i].kind);
        EXPECT_EQ(drafted.tool_events[i].text, plain.tool_events[i].text);
      }
      EXPECT_GT(drafted.drafted, 0) << "the case never drafted";
      if (c.temperature == 0.0f) {
        EXPECT_GT(accepted[k], 0) << "a draft was never accepted";
      }
      // Sampled, weak positions reject drafts; greedy, the MTP block's wrong guesses do.
      if (c.temperature != 0.0f || draftings[k].mtp) {
        EXPECT_LT(drafted.draft_accepted, drafted.drafted) << "no draft was rejected";
      }
    }
  }
}

}  // namespace
}  // namespace dsv4::generation
