// dsv4's rule for a finished completion (PROTOCOL.md §3.4): strict first, lenient otherwise.
#include "chat/completion.h"

#include <gtest/gtest.h>

#include "chat/special_tokens.h"

namespace dsv4::chat {
namespace {

constexpr std::string_view kCall =
    "\n\n<｜DSML｜tool_calls>\n<｜DSML｜invoke name=\"ls\">\n"
    "<｜DSML｜parameter name=\"path\" string=\"true\">.</｜DSML｜parameter>\n"
    "<｜DSML｜parameter name=\"all\" string=\"false\">true</｜DSML｜parameter>\n"
    "</｜DSML｜invoke>\n</｜DSML｜tool_calls>";

TEST(Completion, StrictWhenWellFormed) {
  auto r =
      parse_completion("Think</think>Listing." + std::string(kCall), ThinkingMode::thinking, true);
  EXPECT_TRUE(r.strict);
  EXPECT_EQ(r.message,
            (ParsedMessage{"Think", "Listing.", {{"ls", R"({"path": ".", "all": true})"}}}));
  // A trailing EOS is accepted too.
  auto r2 =
      parse_completion("T</think>Done." + std::string(tok::kEos), ThinkingMode::thinking, true);
  EXPECT_TRUE(r2.strict);
  EXPECT_EQ(r2.message, (ParsedMessage{"T", "Done.", {}}));
}

TEST(Completion, LenientWhenNot) {
  std::string loose =
      "Listing.\n<tool_calls>\n<invoke name=\"ls\">\n<parameter "
      "name=\"path\">.</parameter>\n</invoke>\n</tool_calls>";
  auto r = parse_completion(loose, ThinkingMode::chat, true);
  EXPECT_FALSE(r.strict);
  EXPECT_FALSE(r.problems.empty());
  EXPECT_EQ(r.message, (ParsedMessage{"", "Listing.", {{"ls", R"({"path": "."})"}}}));
}

TEST(Completion, MalformedBlockIsContent) {
  std::string text =
      "See:\n\n<｜DSML｜tool_calls>\n<｜DSML｜invoke>\n</｜DSML｜invoke>\n</｜DSML｜tool_calls>";
  auto r = parse_completion(text, ThinkingMode::chat, true);
  EXPECT_FALSE(r.strict);
  EXPECT_EQ(r.message.content, text);
  EXPECT_TRUE(r.message.tool_calls.empty());
}

TEST(Completion, InvalidJsonArgumentsBecomeEmptyObject) {
  std::string text =
      "\n\n<｜DSML｜tool_calls>\n<｜DSML｜invoke name=\"f\">\n"
      "<｜DSML｜parameter name=\"n\" string=\"false\">not json</｜DSML｜parameter>\n"
      "</｜DSML｜invoke>\n</｜DSML｜tool_calls>";
  auto r = parse_completion(text, ThinkingMode::chat, true);
  EXPECT_FALSE(r.strict);
  ASSERT_EQ(r.message.tool_calls.size(), 1u);
  EXPECT_EQ(r.message.tool_calls[0].arguments, "{}");
}

TEST(Completion, NoThinkCloseMeansAllContent) {
  auto r = parse_completion("Cut off while thinking", ThinkingMode::thinking, true);
  EXPECT_EQ(r.message, (ParsedMessage{"", "Cut off while thinking", {}}));
}

TEST(Completion, WithoutToolsMarkupIsContent) {
  auto r = parse_completion("R</think>A" + std::string(kCall), ThinkingMode::thinking, false);
  EXPECT_EQ(r.message, (ParsedMessage{"R", "A" + std::string(kCall), {}}));
}

TEST(Completion, Unterminated) {
  std::string text(kCall.substr(0, kCall.find("</｜DSML｜invoke>")));
  auto r = parse_completion("A" + text, ThinkingMode::chat, true);
  EXPECT_TRUE(r.unterminated);
  EXPECT_EQ(r.message.content, "A");
  EXPECT_TRUE(r.message.tool_calls.empty());
}

}  // namespace
}  // namespace dsv4::chat
