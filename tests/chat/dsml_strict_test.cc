// The official parser (PROTOCOL.md §3.3).
#include "chat/dsml_strict.h"

#include <gtest/gtest.h>

#include "chat/special_tokens.h"
#include "test_util.h"

namespace dsv4::chat {
namespace {

const std::string EOS(tok::kEos);

constexpr std::string_view kCall =
    "\n\n<｜DSML｜tool_calls>\n<｜DSML｜invoke name=\"get_weather\">\n"
    "<｜DSML｜parameter name=\"location\" string=\"true\">Beijing</｜DSML｜parameter>\n"
    "<｜DSML｜parameter name=\"days\" string=\"false\">3</｜DSML｜parameter>\n"
    "</｜DSML｜invoke>\n</｜DSML｜tool_calls>";

// The reference test parses golden 1's first assistant turn back (§2.13).
TEST(DsmlStrict, GoldenOneAssistantSegment) {
  std::string out = testing::read_file(testing::shared_path("testdata/encoding/test_output_1.txt"));
  std::string open = std::string(tok::kAssistant) + std::string(tok::kThinkOpen);
  size_t start = out.find(open);
  ASSERT_NE(start, std::string::npos);
  start += open.size();
  size_t end = out.find(tok::kUser, start);
  auto r = parse_completion_strict(std::string_view(out).substr(start, end - start),
                                   ThinkingMode::thinking);
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->reasoning_content,
            "The user wants to know the weather in Beijing. I should use the get_weather tool.");
  EXPECT_EQ(r->content, "");
  ASSERT_EQ(r->tool_calls.size(), 1u);
  EXPECT_EQ(r->tool_calls[0].name, "get_weather");
  EXPECT_EQ(*parse_json(r->tool_calls[0].arguments),
            *parse_json(R"({"location": "Beijing", "unit": "celsius"})"));
}

TEST(DsmlStrict, PlainAndToolCompletions) {
  auto r = parse_completion_strict("Reason</think>Answer" + EOS, ThinkingMode::thinking);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(*r, (ParsedMessage{"Reason", "Answer", {}}));

  r = parse_completion_strict("Hi" + std::string(kCall) + EOS, ThinkingMode::chat);
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->content, "Hi");
  ASSERT_EQ(r->tool_calls.size(), 1u);
  EXPECT_EQ(r->tool_calls[0],
            (ParsedToolCall{"get_weather", R"({"location": "Beijing", "days": 3})"}));

  // Zero parameters: the header is followed by a blank line (Python's `$` allows it).
  r = parse_completion_strict(
      "\n\n<｜DSML｜tool_calls>\n<｜DSML｜invoke "
      "name=\"a\">\n\n</｜DSML｜invoke>\n</｜DSML｜tool_calls>" +
          EOS,
      ThinkingMode::chat);
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->tool_calls[0], (ParsedToolCall{"a", "{}"}));
}

std::string replace(std::string s, std::string_view from, std::string_view to) {
  size_t at = s.find(from);
  EXPECT_NE(at, std::string::npos) << from;
  return s.replace(at, from.size(), to);
}

TEST(DsmlStrict, FailureCases) {
  std::string ok = "Hi" + std::string(kCall) + EOS;
  ASSERT_TRUE(parse_completion_strict(ok, ThinkingMode::chat).ok());
  const std::pair<std::string, std::string> bad[] = {
      {"missing string attribute", replace(ok, " string=\"true\"", "")},
      {"invalid string attribute", replace(ok, "string=\"true\"", "string=\"yes\"")},
      {"duplicate parameter", replace(ok, "name=\"days\"", "name=\"location\"")},
      {"no newline after invoke header", replace(ok, "\"get_weather\">\n", "\"get_weather\">")},
      {"no newline after parameter",
       replace(ok, "Beijing</｜DSML｜parameter>\n", "Beijing</｜DSML｜parameter>")},
      {"no newline after block open",
       replace(ok, "<｜DSML｜tool_calls>\n", "<｜DSML｜tool_calls>")},
      {"text after the block", replace(ok, "</｜DSML｜tool_calls>", "</｜DSML｜tool_calls>more")},
      {"truncated block", "Hi" + std::string(kCall.substr(0, 90)) + EOS},
      {"missing EOS", "Hi" + std::string(kCall)},
      {"text after EOS", "Hi" + EOS + "x"},
      {"invoke without name", replace(ok, "name=\"get_weather\"", "id=\"get_weather\"")},
      {"DSML token inside content", "A <｜DSML｜tool_calls> B" + EOS},
      {"think token inside content", "A <think> B" + EOS},
  };
  for (const auto& [what, text] : bad) {
    EXPECT_FALSE(parse_completion_strict(text, ThinkingMode::chat).ok()) << what;
  }
  EXPECT_FALSE(parse_completion_strict("no close" + EOS, ThinkingMode::thinking).ok());
  EXPECT_FALSE(
      parse_completion_strict("R" + std::string(kCall) + EOS, ThinkingMode::thinking).ok());
  EXPECT_FALSE(parse_completion_strict("R</think>A<think>" + EOS, ThinkingMode::thinking).ok());
}

}  // namespace
}  // namespace dsv4::chat
