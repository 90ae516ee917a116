// Rendered prompts to token ids (PROTOCOL.md §2.12) against the golden ids of §6.3–6.4, with the
// real V4 vocabulary (the tokenizer tests' fixture: the V3 tokenizer.json + the V4 added tokens).
#include "chat/token_ids.h"

#include <gtest/gtest.h>

#include <filesystem>

#include "chat/effort.h"
#include "chat/encoder.h"
#include "chat/message_json.h"
#include "chat/request.h"
#include "test_util.h"
#include "tokenizer/byte_level.h"
#include "tokenizer/v4_fixture.h"

namespace dsv4::chat {
namespace {

using Ids = std::vector<int32_t>;
using testing::read_json;
using testing::shared_path;

RenderedPrompt golden_prompt(int n) {
  Json input =
      read_json(shared_path("testdata/encoding/test_input_" + std::to_string(n) + ".json"));
  Json messages = input.is_object() ? input.at("messages") : input;
  if (input.is_object()) messages[0]["tools"] = input.at("tools");
  auto m = messages_from_json(messages);
  EXPECT_TRUE(m.ok());
  EncodeOptions o;
  o.thinking = n == 4 ? ThinkingMode::chat : ThinkingMode::thinking;
  auto r = encode_messages(*m, o);
  EXPECT_TRUE(r.ok());
  return *r;
}

RenderedPrompt render(std::string_view json, EncodeOptions o = {}) {
  auto m = messages_from_json(*parse_json(json));
  EXPECT_TRUE(m.ok()) << (m.ok() ? "" : m.error().message);
  auto r = encode_messages(*m, o);
  EXPECT_TRUE(r.ok()) << (r.ok() ? "" : r.error().message);
  return *r;
}

Ids ids_of(const RenderedPrompt& p, const tokenizer::Tokenizer& tok) {
  auto r = prompt_token_ids(p, tok);
  EXPECT_TRUE(r.ok()) << (r.ok() ? "" : r.error().message);
  return r.ok() ? *r : Ids{};
}

TEST(TokenIds, GoldenTwoExact) {
  DSV4_V4_TOKENIZER(tok);
  EXPECT_EQ(ids_of(golden_prompt(2), tok),
            (Ids{0,      3476, 477,  260,  11502, 22896, 16,    128803, 19923,  128804, 128822,
                 23166,  1031, 3,    1730, 588,   342,   1694,  440,    33,     1,      128803,
                 3085,   344,  270,  6102, 294,   8760,  33,    128804, 128821, 671,    3967,
                 20407,  943,  270,  6102, 294,   8760,  16,    983,    344,    11111,  16,
                 128822, 671,  6102, 294,  8760,  344,   11111, 16,     1}));
}

TEST(TokenIds, GoldenCounts) {
  DSV4_V4_TOKENIZER(tok);
  EXPECT_EQ(ids_of(golden_prompt(1), tok).size(), 541u);
  EXPECT_EQ(ids_of(golden_prompt(3), tok).size(), 820u);
  EXPECT_EQ(ids_of(golden_prompt(4), tok).size(), 582u);
  // Without client-typed special strings the segment rule equals the official string
  // tokenisation (every added token recognised in the whole text).
  for (int n = 1; n <= 4; ++n) {
    RenderedPrompt p = golden_prompt(n);
    EXPECT_EQ(ids_of(p, tok), tok.encode_with_special(p.text)) << n;
  }
}

// A BPE piece crosses the template/client boundary (§2.12's example).
TEST(TokenIds, RunsCrossSegmentBoundaries) {
  DSV4_V4_TOKENIZER(tok);
  Ids ids = ids_of(golden_prompt(1), tok);
  ASSERT_GE(ids.size(), 9u);
  EXPECT_EQ(Ids(ids.begin(), ids.begin() + 9),
            (Ids{0, 3476, 477, 260, 11502, 22896, 339, 372, 27193}));
}

TEST(TokenIds, ClientTextStaysPlain) {
  DSV4_V4_TOKENIZER(tok);
  RenderedPrompt p = render(
      R"([{"role":"latest_reminder","content":"x"},{"role":"user","content":"<｜latest_reminder｜>x"}])",
      EncodeOptions{ThinkingMode::chat});
  EXPECT_EQ(ids_of(p, tok), (Ids{0, 128828, 90, 128803, 30, 28217, 98737, 65, 3812, 6774, 28217, 32,
                                 90, 128804, 128822}));
}

TEST(TokenIds, TaskAndDsmlTokens) {
  DSV4_V4_TOKENIZER(tok);
  Ids ids = ids_of(render(R"([{"role":"user","content":"Q","task":"action"}])",
                          EncodeOptions{ThinkingMode::chat}),
                   tok);
  ASSERT_GE(ids.size(), 3u);
  EXPECT_EQ(Ids(ids.end() - 3, ids.end()), (Ids{128804, 128822, 128829}));

  RenderedPrompt call =
      render(R"([{"role":"user","content":"Q"},{"role":"assistant","content":"","tool_calls":[
      {"type":"function","function":{"name":"bash","arguments":"{\"command\":\"ls\"}"}}]}])",
             EncodeOptions{ThinkingMode::chat});
  Ids got = ids_of(call, tok);
  // The §6.3 vectors in context: "\n\n<｜DSML｜tool_calls>\n<｜DSML｜invoke name=\"bash" (then
  // '">\n' is one piece), the parameter header, and "</｜DSML｜parameter" (then ">\n").
  for (const Ids& want :
       {Ids{271, 30, 128825, 72461, 4941, 12548, 1018, 30, 128825, 40148, 5406, 2329, 1281, 61159},
        Ids{30, 128825, 41523, 2329, 1281, 28381, 4, 3418, 1281, 11476, 3320},
        Ids{1718, 128825, 41523}}) {
    EXPECT_NE(std::search(got.begin(), got.end(), want.begin(), want.end()), got.end())
        << ::testing::PrintToString(want) << " in " << ::testing::PrintToString(got);
  }
}

TEST(TokenIds, EffortPrefixLengths) {
  DSV4_V4_TOKENIZER(tok);
  EXPECT_EQ(tok.encode_text(kEffortAbsoluteMaximum).size(), 79u);
  EXPECT_EQ(tok.encode_text(kEffortBeyondMaximum).size(), 92u);
}

// The official API's prompt_tokens for five requests (§6.4), through the OpenAI mapping.
TEST(TokenIds, OfficialApiPromptLengths) {
  DSV4_V4_TOKENIZER(tok);
  int checked = 0;
  for (const auto& entry :
       std::filesystem::directory_iterator(shared_path("testdata/official-api/official"))) {
    Json v = read_json(entry.path().string());
    auto req = map_openai_chat_request(v.at("request"));
    ASSERT_TRUE(req.ok()) << req.error().message;
    auto p = encode_messages(req->messages, req->options);
    ASSERT_TRUE(p.ok());
    Ids ids = ids_of(*p, tok);
    EXPECT_EQ(ids.size(), v.at("usage").at("prompt_tokens").get<size_t>()) << entry.path();
    if (v.at("id") == "short_italian_fact") {
      EXPECT_EQ(ids, (Ids{0,  128803, 52,   278,   4908,  75,  295, 89034, 399,    3919,  123003,
                          28, 23442,  9861, 63030, 47121, 317, 805, 33,    128804, 128822}));
    }
    ++checked;
  }
  EXPECT_EQ(checked, 5);
}

// Ids are looked up by string; a vocabulary without a control token is an error, not a guess.
TEST(TokenIds, MissingControlTokenIsAnError) {
  tokenizer::Vocab v;
  for (int b = 0; b < 256; ++b)
    v.tokens.push_back(tokenizer::byte_level::encode(std::string(1, static_cast<char>(b))));
  auto tok = tokenizer::Tokenizer::from_vocab(std::move(v));
  ASSERT_TRUE(tok.ok()) << tok.error().message;
  auto r = prompt_token_ids(render(R"([{"role":"user","content":"Q"}])"), *tok);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("<｜begin▁of▁sentence｜>"), std::string::npos);
}

}  // namespace
}  // namespace dsv4::chat
