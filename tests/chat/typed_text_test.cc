// Typed text (PROTOCOL.md §5.3) on the real V4 vocabulary: the §6.8 vector, equality of the
// segment and token forms on every golden prompt and captured agent request, round trips, and
// rejection of malformed escapes.
#include "chat/typed_text.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <random>

#include "chat/encoder.h"
#include "chat/message_json.h"
#include "chat/request.h"
#include "chat/token_ids.h"
#include "test_util.h"
#include "tokenizer/byte_level.h"
#include "tokenizer/v4_fixture.h"

namespace dsv4::chat {
namespace {

using Ids = std::vector<int32_t>;
using testing::read_json;
using testing::shared_path;

std::string escape(uint32_t id) {
  std::string s(1, '\xFF');
  for (int i = 0; i < 4; ++i) s.push_back(static_cast<char>((id >> (8 * i)) & 0xFF));
  return s;
}

Ids ids_of(const RenderedPrompt& p, const tokenizer::Tokenizer& tok) {
  auto r = prompt_token_ids(p, tok);
  EXPECT_TRUE(r.ok()) << (r.ok() ? "" : r.error().message);
  return r.ok() ? *r : Ids{};
}

Ids from_typed(std::string_view typed, const tokenizer::Tokenizer& tok) {
  auto r = tokens_from_typed_text(typed, tok);
  EXPECT_TRUE(r.ok()) << (r.ok() ? "" : r.error().message);
  return r.ok() ? *r : Ids{};
}

RenderedPrompt render(std::string_view messages_json, EncodeOptions o = {}) {
  auto m = messages_from_json(*parse_json(messages_json));
  EXPECT_TRUE(m.ok()) << (m.ok() ? "" : m.error().message);
  auto r = encode_messages(*m, o);
  EXPECT_TRUE(r.ok()) << (r.ok() ? "" : r.error().message);
  return r.ok() ? *r : RenderedPrompt{};
}

// Every prompt the goldens describe: the four encoder goldens, the five official-API requests
// and every captured agent request, through the same mapping the server uses.
std::vector<std::pair<std::string, RenderedPrompt>> golden_prompts() {
  std::vector<std::pair<std::string, RenderedPrompt>> out;
  for (int n = 1; n <= 4; ++n) {
    Json input = read_json(shared_path("testdata/encoding/test_input_" + std::to_string(n) + ".json"));
    Json messages = input.is_object() ? input.at("messages") : input;
    if (input.is_object()) messages[0]["tools"] = input.at("tools");
    auto m = messages_from_json(messages);
    EXPECT_TRUE(m.ok());
    EncodeOptions o;
    o.thinking = n == 4 ? ThinkingMode::chat : ThinkingMode::thinking;
    auto r = encode_messages(*m, o);
    EXPECT_TRUE(r.ok());
    if (r.ok()) out.emplace_back("encoding " + std::to_string(n), *r);
  }
  auto add_request = [&](const std::string& name, const Result<ChatRequest>& req) {
    EXPECT_TRUE(req.ok()) << name << ": " << (req.ok() ? "" : req.error().message);
    if (!req.ok()) return;
    auto r = encode_messages(req->messages, req->options);
    EXPECT_TRUE(r.ok()) << name;
    if (r.ok()) out.emplace_back(name, *r);
  };
  namespace fs = std::filesystem;
  for (const auto& e : fs::directory_iterator(shared_path("testdata/official-api/official"))) {
    add_request(e.path().string(), map_openai_chat_request(read_json(e.path().string()).at("request")));
  }
  for (const auto& folder : fs::directory_iterator(shared_path("testdata/agent-requests"))) {
    if (!folder.is_directory()) continue;
    const std::string client = folder.path().filename().string();
    for (const auto& e : fs::directory_iterator(folder.path())) {
      const Json body = read_json(e.path().string()).at("body");
      if (!body.is_object()) continue;  // Claude Code's HEAD probe
      if (client.starts_with("claude")) {
        add_request(e.path().string(), map_anthropic_request(body));
      } else if (client.starts_with("codex")) {
        add_request(e.path().string(), map_responses_request(body));
      } else {
        add_request(e.path().string(), map_openai_chat_request(body));
      }
    }
  }
  return out;
}

TEST(TypedText, SpecVector) {
  DSV4_V4_TOKENIZER(tok);
  ASSERT_EQ(tok.token(0), "<｜begin▁of▁sentence｜>");
  ASSERT_EQ(tok.piece(19923), "Hello");
  const Ids ids{0, 19923};
  const std::string want("\xFF\x00\x00\x00\x00Hello", 10);
  EXPECT_EQ(typed_text(ids, tok), want);
  EXPECT_EQ(from_typed(want, tok), ids);
}

TEST(TypedText, SegmentsAndTokensAgreeOnEveryGoldenPrompt) {
  DSV4_V4_TOKENIZER(tok);
  const auto prompts = golden_prompts();
  EXPECT_GE(prompts.size(), 4u + 5u + 10u);
  for (const auto& [name, p] : prompts) {
    const Ids ids = ids_of(p, tok);
    const std::string typed = typed_text(p, tok);
    EXPECT_EQ(typed_text(ids, tok), typed) << name;
    // The prompt ids are canonical: re-tokenising their typed text gives them back.
    EXPECT_EQ(from_typed(typed, tok), ids) << name;
  }
}

TEST(TypedText, ClientTypedSpecialStringsStayText) {
  DSV4_V4_TOKENIZER(tok);
  const RenderedPrompt p = render(R"([{"role":"user","content":"a<｜User｜>b"}])");
  const std::string typed = typed_text(p, tok);
  const int32_t user = *tok.token_id("<｜User｜>");
  EXPECT_NE(typed.find("a<｜User｜>b"), std::string::npos);
  // The template's own <｜User｜> is an escape, the client's is text.
  EXPECT_NE(typed.find(escape(user)), std::string::npos);
  EXPECT_EQ(typed_text(ids_of(p, tok), tok), typed);
  const Ids back = from_typed(typed, tok);
  EXPECT_EQ(std::count(back.begin(), back.end(), user), 1);
}

// Generated text is often not the canonical BPE of itself; typed text does not care.
TEST(TypedText, NonCanonicalTokenisationsHaveEqualTypedText) {
  DSV4_V4_TOKENIZER(tok);
  const Ids canonical = tok.encode_text("Hello world");
  Ids split;
  for (char c : std::string("Hello world")) split.push_back(*tok.token_id_for_text(std::string(1, c)));
  ASSERT_NE(split, canonical);
  EXPECT_EQ(typed_text(split, tok), typed_text(canonical, tok));
  EXPECT_EQ(typed_text(split, tok), "Hello world");
  EXPECT_EQ(from_typed("Hello world", tok), canonical);
}

// The byte token 0xFF (ill-formed UTF-8 a model may still sample) is escaped, so text never
// holds 0xFF; the segment form agrees when a client sends that byte.
TEST(TypedText, ByteFFIsEscaped) {
  DSV4_V4_TOKENIZER(tok);
  const std::optional<int32_t> ff = tok.token_id_for_text("\xFF");
  ASSERT_TRUE(ff.has_value());
  EXPECT_FALSE(tok.is_added(*ff));
  const Ids ids{19923, *ff, 19923};
  const std::string typed = typed_text(ids, tok);
  EXPECT_EQ(typed, "Hello" + escape(*ff) + "Hello");
  EXPECT_EQ(from_typed(typed, tok), ids);

  RenderedPrompt p;
  PromptBuilder b;
  b.add_template("<｜begin▁of▁sentence｜>");
  b.add_client("x\xFFy \xFF\xFF");
  b.add_template("<｜Assistant｜>");
  p = b.take();
  const Ids pid = ids_of(p, tok);
  EXPECT_EQ(typed_text(p, tok), typed_text(pid, tok));
  EXPECT_EQ(typed_text(p, tok).find("\xFF\xFF"), std::string::npos);
}

TEST(TypedText, InvalidIdsAreEscapedAndRejectedOnTheWayBack) {
  DSV4_V4_TOKENIZER(tok);
  const Ids ids{19923, tok.vocab_size()};
  const std::string typed = typed_text(ids, tok);
  EXPECT_EQ(typed, "Hello" + escape(static_cast<uint32_t>(tok.vocab_size())));
  EXPECT_FALSE(tokens_from_typed_text(typed, tok).ok());
}

// prompt_token_ids rejects a prompt whose control token the vocabulary lacks; typed text, which
// cannot fail, writes it as text rather than inventing an id.
TEST(TypedText, ControlTokenMissingFromTheVocabularyIsText) {
  tokenizer::Vocab v;
  for (int b = 0; b < 256; ++b) {
    v.tokens.push_back(tokenizer::byte_level::encode(std::string(1, static_cast<char>(b))));
  }
  auto tok = tokenizer::Tokenizer::from_vocab(std::move(v));
  ASSERT_TRUE(tok.ok()) << tok.error().message;
  PromptBuilder b;
  b.add_template("<｜User｜>");
  b.add_client("Q");
  const RenderedPrompt p = b.take();
  ASSERT_TRUE(p.segments.front().is_control);
  EXPECT_FALSE(prompt_token_ids(p, *tok).ok());
  EXPECT_EQ(typed_text(p, *tok), "<｜User｜>Q");
}

TEST(TypedText, MalformedEscapesAreRejected) {
  DSV4_V4_TOKENIZER(tok);
  const std::string bos = escape(0);
  for (size_t cut = 1; cut < 5; ++cut) {
    auto r = tokens_from_typed_text("Hi" + bos.substr(0, cut), tok);
    ASSERT_FALSE(r.ok()) << cut;
    EXPECT_NE(r.error().message.find("truncated escape at byte 2"), std::string::npos) << r.error().message;
  }
  for (uint32_t id : {static_cast<uint32_t>(tok.vocab_size()), 0x7FFFFFFFu, 0xFFFFFFFFu}) {
    auto r = tokens_from_typed_text("Hi" + escape(id) + "x", tok);
    ASSERT_FALSE(r.ok()) << id;
    EXPECT_NE(r.error().message.find("outside the vocabulary"), std::string::npos) << r.error().message;
  }
  // An escape of a token typed text writes as bytes is not typed text.
  auto r = tokens_from_typed_text(escape(19923), tok);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("writes as its bytes"), std::string::npos) << r.error().message;
  // A lone 0xFF between text is a truncated escape too, never a text byte.
  EXPECT_FALSE(tokens_from_typed_text("a\xFF" "b", tok).ok());
  EXPECT_TRUE(tokens_from_typed_text("", tok).ok());
}

// Random typed texts (arbitrary non-0xFF bytes, i.e. mostly ill-formed UTF-8, between escapes of
// added tokens and of the 0xFF token) survive typed -> tokens -> typed unchanged.
TEST(TypedText, RandomRoundTrips) {
  DSV4_V4_TOKENIZER(tok);
  std::vector<int32_t> escapable;
  for (int32_t id = 0; id < tok.vocab_size(); ++id) {
    if (tok.is_added(id)) escapable.push_back(id);
  }
  escapable.push_back(*tok.token_id_for_text("\xFF"));
  ASSERT_GT(escapable.size(), 10u);
  std::mt19937 rng(20240605);
  const std::string alphabet = "ab <|>\n\t{}\":é中🙂";
  for (int trial = 0; trial < 300; ++trial) {
    std::string typed;
    const int parts = static_cast<int>(rng() % 8);
    for (int i = 0; i < parts; ++i) {
      switch (rng() % 3) {
        case 0:
          typed += escape(static_cast<uint32_t>(escapable[rng() % escapable.size()]));
          break;
        case 1:
          for (int n = static_cast<int>(rng() % 20); n > 0; --n) typed.push_back(static_cast<char>(rng() % 255));
          break;
        default:
          for (int n = static_cast<int>(rng() % 20); n > 0; --n) typed.push_back(alphabet[rng() % alphabet.size()]);
      }
    }
    auto ids = tokens_from_typed_text(typed, tok);
    ASSERT_TRUE(ids.ok()) << trial << ": " << ids.error().message;
    ASSERT_EQ(typed_text(*ids, tok), typed) << trial;
  }
}

}  // namespace
}  // namespace dsv4::chat
