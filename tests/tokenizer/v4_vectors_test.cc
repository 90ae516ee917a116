// Fixed vectors of PROTOCOL.md §6.2-6.4 on the real V4 vocabulary.
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "tokenizer/prompt_encoder.h"
#include "tokenizer/special_tokens.h"
#include "v4_fixture.h"

namespace dsv4::tokenizer {
namespace {

using Ids = std::vector<int32_t>;

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

TEST(V4Vocab, Shape) {
  DSV4_V4_TOKENIZER(tok);
  EXPECT_EQ(tok.vocab_size(), 129280);
  EXPECT_EQ(tok.merge_count(), 127741u);
  EXPECT_EQ(tok.added_count(), 1283u);
  EXPECT_EQ(tok.type(0), kTokenControl);       // special in tokenizer.json
  EXPECT_EQ(tok.type(128805), kTokenControl);  // <|EOT|>
  EXPECT_EQ(tok.type(128803), kTokenUserDefined);
  EXPECT_EQ(tok.type(128825), kTokenUserDefined);
  EXPECT_EQ(tok.type(19923), kTokenNormal);
  EXPECT_EQ(tok.token(2058), "Ġworld");
  EXPECT_EQ(tok.piece(2058), " world");
}

TEST(V4Vocab, SpecialTokensResolveByString) {
  DSV4_V4_TOKENIZER(tok);
  auto s = SpecialTokens::resolve(tok);
  ASSERT_TRUE(s.ok()) << s.error().message;
  EXPECT_EQ(s->bos, 0);
  EXPECT_EQ(s->eos, 1);
  EXPECT_EQ(s->user, 128803);
  EXPECT_EQ(s->assistant, 128804);
  EXPECT_EQ(s->think_open, 128821);
  EXPECT_EQ(s->think_close, 128822);
  EXPECT_EQ(s->dsml, 128825);
  EXPECT_EQ(s->latest_reminder, 128828);
  EXPECT_EQ(tok.token_id("<｜begin▁of▁repo▁name｜>"), 128815);
  EXPECT_EQ(tok.token_id("<｜action｜>"), 128829);
  EXPECT_EQ(tok.token_id("<｜read_url｜>"), 128845);
  EXPECT_EQ(tok.token_id("<|place_holder_mm_span_0435|>"), 129261);
  EXPECT_EQ(tok.token_id("<｜/table>｜"), 129265);
  EXPECT_EQ(tok.token_id("<｜image｜>"), 129279);
}

struct Vector {
  const char* text;
  Ids ids;
};

// §6.2: plain-text BPE.
TEST(V4Vectors, PlainText) {
  DSV4_V4_TOKENIZER(tok);
  const Vector vectors[] = {
      {"Hello", {19923}},
      {"Hello world", {19923, 2058}},
      {" Hello", {45948}},
      {"hello", {33310}},
      {"Hello, world!", {19923, 14, 2058, 3}},
      {"    int x;", {361, 688, 1527, 29}},
      {"12345", {6895, 1883}},
      {"1234567", {6895, 18009, 25}},
      {"3.14159", {21, 16, 9926, 3318}},
      {">;\n", {49962}},
      {"a\n\n\nb", {67, 6328, 68}},
      {"  leading", {223, 6646}},
      {"trailing  ", {19660, 7400, 262}},
      {"tabs\tand\r\ncr", {86, 10284, 200, 458, 204, 201, 18977}},
      {"你好，世界。", {30594, 303, 3427, 320}},
      {"Perché è così?", {8032, 29897, 7269, 49299, 33}},
      {"🦀", {3574, 102, 225}},
      {" ", {223}},
      {"\n", {201}},
      {"\n\n", {271}},
      {"\t", {200}},
      {"  ", {262}},
      {"You are a helpful assistant.\n\n## Tools", {3476, 477, 260, 11502, 22896, 339, 372, 27193}},
      {"", {}},
  };
  for (const auto& v : vectors) {
    EXPECT_EQ(tok.encode_text(v.text), v.ids) << "text: \"" << v.text << "\"";
    auto back = tok.decode(v.ids);
    ASSERT_TRUE(back.ok());
    EXPECT_EQ(*back, v.text);
  }
}

// §6.3: special-token aware.
TEST(V4Vectors, WithSpecialTokens) {
  DSV4_V4_TOKENIZER(tok);
  const Vector vectors[] = {
      {"<｜begin▁of▁sentence｜>You are a helpful assistant.<｜User｜>Hello<｜Assistant｜><think>",
       {0, 3476, 477, 260, 11502, 22896, 16, 128803, 19923, 128804, 128821}},
      {"<｜begin▁of▁sentence｜><｜User｜>Hello<｜Assistant｜></think>",
       {0, 128803, 19923, 128804, 128822}},
      {"</｜DSML｜parameter>", {1718, 128825, 41523, 32}},
      {"<｜DSML｜tool_calls>", {30, 128825, 72461, 4941, 12548, 32}},
      {"</｜DSML｜tool_calls>", {1718, 128825, 72461, 4941, 12548, 32}},
      {"<｜DSML｜invoke name=\"bash\">", {30, 128825, 40148, 5406, 2329, 1281, 61159, 3320}},
      {"<｜DSML｜parameter name=\"command\" string=\"true\">",
       {30, 128825, 41523, 2329, 1281, 28381, 4, 3418, 1281, 11476, 3320}},
      {"</｜DSML｜invoke>", {1718, 128825, 40148, 5406, 32}},
      {"\n\n<｜DSML｜tool_calls>\n", {271, 30, 128825, 72461, 4941, 12548, 1018}},
      {"<tool_result>", {30, 72461, 46148, 32}},
      {"</tool_result>", {1718, 72461, 46148, 32}},
      {"<｜latest_reminder｜>x", {128828, 90}},
      {"<|EOT|>", {128805}},
      {"<｜Assistant｜></think><｜action｜>", {128804, 128822, 128829}},
  };
  for (const auto& v : vectors) {
    EXPECT_EQ(tok.encode_with_special(v.text), v.ids) << "text: \"" << v.text << "\"";
    auto back = tok.decode(v.ids);
    ASSERT_TRUE(back.ok());
    EXPECT_EQ(*back, v.text);
  }
  // Client text keeps special strings as plain text (§7 decision (d)).
  EXPECT_EQ(tok.encode_text("<｜latest_reminder｜>x"),
            (Ids{30, 28217, 98737, 65, 3812, 6774, 28217, 32, 90}));
}

TEST(V4Vectors, GoldenRenderings) {
  DSV4_V4_TOKENIZER(tok);
  const std::string dir = std::string(DSV4_SHARED_DIR) + "/testdata/encoding/";
  const Ids golden2 = {0,      3476,   477,    260,    11502, 22896, 16,    128803, 19923,
                       128804, 128822, 23166,  1031,   3,     1730,  588,   342,    1694,
                       440,    33,     1,      128803, 3085,  344,   270,   6102,   294,
                       8760,   33,     128804, 128821, 671,   3967,  20407, 943,    270,
                       6102,   294,    8760,   16,     983,   344,   11111, 16,     128822,
                       671,    6102,   294,    8760,   344,   11111, 16,    1};
  EXPECT_EQ(tok.encode_with_special(read_file(dir + "test_output_2.txt")), golden2);
  EXPECT_EQ(tok.encode_with_special(read_file(dir + "test_output_1.txt")).size(), 541u);
  EXPECT_EQ(tok.encode_with_special(read_file(dir + "test_output_3.txt")).size(), 820u);
  EXPECT_EQ(tok.encode_with_special(read_file(dir + "test_output_4.txt")).size(), 582u);
}

// §6.4: BOS <｜User｜> TEXT <｜Assistant｜> </think> reproduces the API's prompt_tokens.
TEST(V4Vectors, OfficialApiPromptLengths) {
  DSV4_V4_TOKENIZER(tok);
  const std::string dir = std::string(DSV4_SHARED_DIR) + "/testdata/official-api/official/";
  const std::pair<const char*, size_t> cases[] = {{"short_italian_fact", 21},
                                                  {"short_code_completion", 27},
                                                  {"short_reasoning_plain", 18},
                                                  {"long_memory_archive", 3353},
                                                  {"long_code_audit", 3844}};
  for (const auto& [name, expected] : cases) {
    const auto j = nlohmann::json::parse(read_file(dir + name + ".official.json"));
    const std::string prompt = j["request"]["messages"][0]["content"];
    EXPECT_EQ(j["usage"]["prompt_tokens"].get<size_t>(), expected) << name;
    PromptEncoder enc(tok);
    enc.add_template("<｜begin▁of▁sentence｜><｜User｜>");
    enc.add_client(prompt);
    enc.add_template("<｜Assistant｜></think>");
    EXPECT_EQ(enc.finish().size(), expected) << name;
    // The prompts file holds the same text.
    EXPECT_EQ(
        read_file(std::string(DSV4_SHARED_DIR) + "/testdata/official-api/prompts/" + name + ".txt"),
        prompt);
  }
  EXPECT_EQ(tok.encode_with_special("<｜begin▁of▁sentence｜><｜User｜>Rispondi in italiano con una "
                                    "frase: chi era Ada Lovelace?<｜Assistant｜></think>"),
            (Ids{0,  128803, 52,   278,   4908,  75,  295, 89034, 399,    3919,  123003,
                 28, 23442,  9861, 63030, 47121, 317, 805, 33,    128804, 128822}));
  EXPECT_EQ(tok.encode_text("Answer with only the number: 2048 divided by 128 is"),
            (Ids{7805, 418, 1353, 270, 1167, 28, 223, 11154, 26, 7203, 513, 223, 7833, 344}));
}

// Every token the official API emitted (greedy steps and top-logprob candidates) is one token
// of the vocabulary, except its display of EOS (§1.2 item 2).
TEST(V4Vectors, OfficialApiTokensAreSingleTokens) {
  DSV4_V4_TOKENIZER(tok);
  const std::string dir = std::string(DSV4_SHARED_DIR) + "/testdata/official-api/official/";
  size_t checked = 0;
  for (const char* name : {"short_italian_fact", "short_code_completion", "short_reasoning_plain",
                           "long_memory_archive", "long_code_audit"}) {
    const auto j = nlohmann::json::parse(read_file(dir + name + ".official.json"));
    for (const auto& step : j["steps"]) {
      std::vector<nlohmann::json> tokens{step["token"]};
      for (const auto& alt : step["top_logprobs"]) tokens.push_back(alt["token"]);
      for (const auto& t : tokens) {
        std::string bytes;
        for (const auto& b : t["bytes"]) bytes.push_back(static_cast<char>(b.get<int>()));
        if (bytes == "<｜｜end▁of▁sentence｜｜>") continue;
        EXPECT_TRUE(tok.token_id_for_text(bytes).has_value()) << name << ": \"" << bytes << "\"";
        ++checked;
      }
    }
  }
  EXPECT_GT(checked, 300u);
}

// §6.3: the effort prefixes of §2.6 (original max / 0731 high, and 0731 max).
TEST(V4Vectors, EffortPrefixes) {
  DSV4_V4_TOKENIZER(tok);
  const std::string original_max =
      "Reasoning Effort: Absolute maximum with no shortcuts permitted.\nYou MUST be very thorough "
      "in your thinking and comprehensively decompose the problem to resolve the root cause, "
      "rigorously stress-testing your logic against all potential paths, edge cases, and "
      "adversarial scenarios.\nExplicitly write out your entire deliberation process, documenting "
      "every intermediate step, considered alternative, and rejected hypothesis to ensure "
      "absolutely no assumption is left unchecked.\n\n";
  const std::string max_0731 =
      "Reasoning Effort: Beyond maximum \u2014 exhaustive, relentless, and uncompromising.\nYou "
      "MUST reason with the utmost depth and rigor, leaving absolutely nothing to chance: "
      "exhaustively decompose the problem into its most fundamental components, trace every "
      "causal chain to its root, and resolve the underlying cause rather than any surface "
      "symptom.\nDo not stop reasoning until you have independently verified the solution from "
      "multiple angles and are certain that no assumption remains unchecked and no error remains "
      "undiscovered.\n\n";
  ASSERT_EQ(original_max.size(), 476u);
  ASSERT_EQ(max_0731.size(), 528u);
  EXPECT_EQ(tok.encode_text(original_max).size(), 79u);
  EXPECT_EQ(tok.encode_text(max_0731).size(), 92u);
}

// §2.12: BPE pieces cross template/client boundaries; client text never yields control tokens.
TEST(V4Vectors, PromptEncoderSegmentRule) {
  DSV4_V4_TOKENIZER(tok);
  PromptEncoder enc(tok);
  enc.add_client("You are a helpful assistant.");
  enc.add_template("\n\n## Tools");
  EXPECT_EQ(enc.finish(), (Ids{3476, 477, 260, 11502, 22896, 339, 372, 27193}));

  enc.add_template("<｜User｜>");
  enc.add_client("<｜latest_reminder｜>x");
  enc.add_template("<｜Assistant｜>");
  EXPECT_EQ(enc.finish(), (Ids{128803, 30, 28217, 98737, 65, 3812, 6774, 28217, 32, 90, 128804}));
}

}  // namespace
}  // namespace dsv4::tokenizer
