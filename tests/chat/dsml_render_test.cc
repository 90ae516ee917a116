// Tool calls in history (PROTOCOL.md §2.8): canonical re-rendering from the client's JSON.
#include "chat/dsml_render.h"

#include <gtest/gtest.h>

#include "chat/dsml_strict.h"
#include "chat/message_json.h"
#include "chat/special_tokens.h"

namespace dsv4::chat {
namespace {

std::string render1(std::string name, std::string arguments) {
  return render_tool_calls_text({ToolCall{"id", std::move(name), std::move(arguments)}});
}

TEST(DsmlRender, StringAndJsonParameters) {
  EXPECT_EQ(
      render1("get_weather",
              R"({"location":"Beijing","days":3,"opts":{"units":[1,2.50],"x":null},"ok":true})"),
      "\n\n<｜DSML｜tool_calls>\n<｜DSML｜invoke name=\"get_weather\">\n"
      "<｜DSML｜parameter name=\"location\" string=\"true\">Beijing</｜DSML｜parameter>\n"
      "<｜DSML｜parameter name=\"days\" string=\"false\">3</｜DSML｜parameter>\n"
      "<｜DSML｜parameter name=\"opts\" string=\"false\">{\"units\": [1, 2.5], \"x\": "
      "null}</｜DSML｜parameter>\n"
      "<｜DSML｜parameter name=\"ok\" string=\"false\">true</｜DSML｜parameter>\n"
      "</｜DSML｜invoke>\n</｜DSML｜tool_calls>");
}

TEST(DsmlRender, ZeroParameters) {
  EXPECT_EQ(render1("a", "{}"),
            "\n\n<｜DSML｜tool_calls>\n<｜DSML｜invoke "
            "name=\"a\">\n\n</｜DSML｜invoke>\n</｜DSML｜tool_calls>");
}

TEST(DsmlRender, UnparsableOrNonObjectArgumentsBecomeOneStringParameter) {
  for (const char* raw : {"not json", "[1,2]", "42", "\"s\"", ""}) {
    EXPECT_EQ(render1("a", raw),
              std::string("\n\n<｜DSML｜tool_calls>\n<｜DSML｜invoke name=\"a\">\n"
                          "<｜DSML｜parameter name=\"arguments\" string=\"true\">") +
                  raw + "</｜DSML｜parameter>\n</｜DSML｜invoke>\n</｜DSML｜tool_calls>")
        << raw;
  }
}

TEST(DsmlRender, NoEscaping) {
  EXPECT_EQ(render1("x\"y", R"({"k<":"a</｜DSML｜parameter>\"&amp;\n"})"),
            "\n\n<｜DSML｜tool_calls>\n<｜DSML｜invoke name=\"x\"y\">\n"
            "<｜DSML｜parameter name=\"k<\" "
            "string=\"true\">a</｜DSML｜parameter>\"&amp;\n</｜DSML｜parameter>\n"
            "</｜DSML｜invoke>\n</｜DSML｜tool_calls>");
}

TEST(DsmlRender, ArgumentsGivenAsAnObject) {
  auto j = parse_json(
      R"({"role":"assistant","tool_calls":[{"type":"function","function":{"name":"f","arguments":{"b":1,"a":"x"}}}]})");
  auto m = message_from_json(*j, "m");
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(m->tool_calls[0].arguments, R"({"b": 1, "a": "x"})");
  EXPECT_EQ(render_tool_calls_text(m->tool_calls),
            "\n\n<｜DSML｜tool_calls>\n<｜DSML｜invoke name=\"f\">\n"
            "<｜DSML｜parameter name=\"b\" string=\"false\">1</｜DSML｜parameter>\n"
            "<｜DSML｜parameter name=\"a\" string=\"true\">x</｜DSML｜parameter>\n"
            "</｜DSML｜invoke>\n</｜DSML｜tool_calls>");
}

TEST(DsmlRender, SeveralCalls) {
  std::string out = render_tool_calls_text({{"1", "a", R"({"x":"1"})"}, {"2", "b", "{}"}});
  EXPECT_EQ(
      out,
      "\n\n<｜DSML｜tool_calls>\n<｜DSML｜invoke name=\"a\">\n"
      "<｜DSML｜parameter name=\"x\" string=\"true\">1</｜DSML｜parameter>\n</｜DSML｜invoke>\n"
      "<｜DSML｜invoke name=\"b\">\n\n</｜DSML｜invoke>\n</｜DSML｜tool_calls>");
  EXPECT_EQ(render_tool_calls_text({}), "");
}

// What the renderer writes, the official parser reads back to the same arguments.
TEST(DsmlRender, RoundTripsThroughTheStrictParser) {
  std::vector<ToolCall> calls = {
      {"1", "edit", R"({"path":"a.c","old":"x <y>\n\t\"z\"","n":[1,{"k":false}],"f":-1.5e-7})"},
      {"2", "noop", "{}"},
      {"3", "cmd", R"({"command":"cd /tmp && git diff 2>/dev/null"})"},
  };
  std::string text = std::string("A") + render_tool_calls_text(calls) + std::string(tok::kEos);
  auto parsed = parse_completion_strict(text, ThinkingMode::chat);
  ASSERT_TRUE(parsed.ok()) << parsed.error().message;
  EXPECT_EQ(parsed->content, "A");
  ASSERT_EQ(parsed->tool_calls.size(), 3u);
  EXPECT_EQ(parsed->tool_calls[0].name, "edit");
  EXPECT_EQ(parsed->tool_calls[0].arguments,
            R"({"path": "a.c", "old": "x <y>\n\t\"z\"", "n": [1, {"k": false}], "f": -1.5e-07})");
  EXPECT_EQ(parsed->tool_calls[1].arguments, "{}");
  EXPECT_EQ(parsed->tool_calls[2].arguments, R"({"command": "cd /tmp && git diff 2>/dev/null"})");
  // Re-rendering the parsed arguments gives the same bytes (what KV reuse relies on).
  std::vector<ToolCall> again;
  for (const auto& c : parsed->tool_calls) again.push_back({"", c.name, c.arguments});
  EXPECT_EQ(render_tool_calls_text(again), render_tool_calls_text(calls));
}

}  // namespace
}  // namespace dsv4::chat
