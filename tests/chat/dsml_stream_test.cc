// The streaming parser (PROTOCOL.md §3.4–3.5, §6.6). Every case is also fed in random chunk
// sizes over many seeds and must give the same (coalesced) events as the whole string.
#include "chat/dsml_stream.h"

#include <gtest/gtest.h>

#include <random>

#include "chat/utf8.h"

namespace dsv4::chat {
namespace {

using K = StreamEventKind;
using E = StreamErrorKind;

StreamEvent R(std::string t) { return {K::reasoning, std::move(t), "", -1, E::none}; }
StreamEvent C(std::string t) { return {K::content, std::move(t), "", -1, E::none}; }
StreamEvent Begin(int i, std::string name) {
  return {K::tool_call_begin, "", std::move(name), i, E::none};
}
StreamEvent Args(int i, std::string t) {
  return {K::tool_call_arguments, std::move(t), "", i, E::none};
}
StreamEvent End(int i, std::string name, std::string args) {
  return {K::tool_call_end, std::move(args), std::move(name), i, E::none};
}
// Error events are matched on their kind only (the message is for logs).
StreamEvent Err(E kind) { return {K::error, "", "", -1, kind}; }

std::string describe(const StreamEvent& e) {
  const char* kinds[] = {"reasoning", "content", "begin", "args", "end", "error"};
  return std::string(kinds[static_cast<int>(e.kind)]) + "(" + std::to_string(e.index) + ", " +
         e.name + ", «" + e.text + "», " + std::to_string(static_cast<int>(e.error)) + ")";
}

std::string describe(const std::vector<StreamEvent>& v) {
  std::string s;
  for (const auto& e : v) s += describe(e) + "\n";
  return s;
}

bool matches(const StreamEvent& got, const StreamEvent& want) {
  if (want.kind == K::error) return got.kind == K::error && got.error == want.error;
  return got == want;
}

std::vector<StreamEvent> feed_chunked(std::string_view text, StreamOptions o, unsigned seed) {
  std::mt19937 rng(seed);
  DsmlStreamParser p(o);
  std::vector<StreamEvent> out;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t n;
    switch (rng() % 4) {
      case 0:
        n = 1;
        break;
      case 1:
        n = 1 + rng() % 4;
        break;
      case 2:
        n = 1 + rng() % 16;
        break;
      default:
        n = 1 + rng() % 64;
        break;
    }
    n = std::min(n, text.size() - pos);
    p.feed(text.substr(pos, n), out);
    pos += n;
  }
  p.finish(out);
  return out;
}

// Checks the whole-string events against `want`, then chunk invariance over many seeds.
void check(std::string_view text, StreamOptions o, const std::vector<StreamEvent>& want) {
  SCOPED_TRACE(std::string(text));
  std::vector<StreamEvent> whole = coalesce_events(parse_stream(text, o));
  bool ok = whole.size() == want.size();
  for (size_t i = 0; ok && i < want.size(); ++i) ok = matches(whole[i], want[i]);
  EXPECT_TRUE(ok) << "got:\n" << describe(whole) << "want:\n" << describe(want);
  for (unsigned seed = 0; seed < 300; ++seed) {
    std::vector<StreamEvent> raw = feed_chunked(text, o, seed);
    for (const StreamEvent& e : raw) ASSERT_TRUE(is_valid_utf8(e.text)) << describe(e);
    std::vector<StreamEvent> chunked = coalesce_events(raw);
    ASSERT_EQ(chunked, whole) << "seed " << seed << "\nchunked:\n"
                              << describe(chunked) << "whole:\n"
                              << describe(whole);
  }
}

const StreamOptions kThinkTools{ThinkingMode::thinking, true};
const StreamOptions kChatTools{ThinkingMode::chat, true};
const StreamOptions kChatPlain{ThinkingMode::chat, false};

constexpr std::string_view kWeather =
    "\n\n<｜DSML｜tool_calls>\n<｜DSML｜invoke name=\"get_weather\">\n"
    "<｜DSML｜parameter name=\"location\" string=\"true\">Beijing</｜DSML｜parameter>\n"
    "<｜DSML｜parameter name=\"unit\" string=\"true\">celsius</｜DSML｜parameter>\n"
    "</｜DSML｜invoke>\n</｜DSML｜tool_calls>";
const std::string kWeatherArgs = R"({"location": "Beijing", "unit": "celsius"})";

TEST(DsmlStream, ReasoningAndContent) {
  check("<think>Let me think.</think>The answer.", kThinkTools,
        {R("Let me think."), C("The answer.")});
  check("Let me think.</think>The answer.", kThinkTools, {R("Let me think."), C("The answer.")});
  check("</think>x", kThinkTools, {C("x")});
  check("Cut by max_tokens, no close", kThinkTools, {R("Cut by max_tokens, no close")});
  check("<thi", kThinkTools, {R("<thi")});
  check("a </thinking> b</think>", kThinkTools, {R("a </thinking> b")});
  check("Plain answer. 1 < 2 and <tool", kChatTools, {C("Plain answer. 1 < 2 and <tool")});
  check("Trailing spaces  \n\n", kChatTools, {C("Trailing spaces  \n\n")});
  // A closer without an opener is ordinary text.
  check("x</｜DSML｜tool_calls>y", kChatTools, {C("x</｜DSML｜tool_calls>y")});
}

TEST(DsmlStream, CanonicalToolCall) {
  check("R</think>" + std::string(kWeather), kThinkTools,
        {R("R"), Begin(0, "get_weather"), Args(0, kWeatherArgs),
         End(0, "get_weather", kWeatherArgs)});
  check("Checking." + std::string(kWeather), kChatTools,
        {C("Checking."), Begin(0, "get_weather"), Args(0, kWeatherArgs),
         End(0, "get_weather", kWeatherArgs)});
}

TEST(DsmlStream, SeveralCallsWithJsonValues) {
  std::string text =
      "\n\n<｜DSML｜tool_calls>\n<｜DSML｜invoke name=\"a\">\n"
      "<｜DSML｜parameter name=\"xs\" string=\"false\">[1,2,3]</｜DSML｜parameter>\n"
      "<｜DSML｜parameter name=\"o\" string=\"false\">{\"k\": \"v</\"}</｜DSML｜parameter>\n"
      "</｜DSML｜invoke>\n<｜DSML｜invoke name=\"b\">\n\n</｜DSML｜invoke>\n</｜DSML｜tool_calls>";
  std::string a = R"({"xs": [1,2,3], "o": {"k": "v</"}})";
  check(
      text, kChatTools,
      {Begin(0, "a"), Args(0, a), End(0, "a", a), Begin(1, "b"), Args(1, "{}"), End(1, "b", "{}")});
}

TEST(DsmlStream, ShortAndXmlForms) {
  std::string short_form =
      "\n\n<DSML｜tool_calls>\n<DSML｜invoke name=\"a\">\n"
      "<DSML｜parameter name=\"x\" "
      "string=\"true\">1</DSML｜parameter>\n</DSML｜invoke>\n</DSML｜tool_calls>";
  check(short_form, kChatTools,
        {Err(E::strict_violation), Begin(0, "a"), Args(0, R"({"x": "1"})"),
         End(0, "a", R"({"x": "1"})")});
  std::string xml =
      "Sure.<tool_calls><invoke name=\"a\"> <parameter name=\"x\" string=\"false\">2</parameter>"
      "</invoke></tool_calls>";
  check(xml, kChatTools,
        {C("Sure."), Err(E::strict_violation), Err(E::strict_violation), Err(E::strict_violation),
         Begin(0, "a"), Args(0, "{"), Err(E::strict_violation), Args(0, R"("x": 2)"),
         Err(E::strict_violation), Args(0, "}"), End(0, "a", R"({"x": 2})"),
         Err(E::strict_violation)});
}

TEST(DsmlStream, LooseNestedParameters) {
  std::string text =
      "\n\n<｜DSML｜tool_calls>\n<｜DSML｜invoke name=\"edit\">\n"
      "<｜DSML｜parameter name=\"edits\">\n"
      "<｜DSML｜parameter name=\"oldText\" string=\"true\">old <text></｜DSML｜parameter>\n"
      "<｜DSML｜parameter name=\"newText\" string=\"true\">new text</｜DSML｜parameter>\n"
      "</｜DSML｜parameter>\n</｜DSML｜invoke>\n</｜DSML｜tool_calls>";
  std::string a = R"({"edits": {"oldText": "old <text>", "newText": "new text"}})";
  check(text, kChatTools,
        {Begin(0, "edit"), Args(0, "{"), Err(E::strict_violation), Args(0, a.substr(1)),
         End(0, "edit", a)});
}

TEST(DsmlStream, MissingStringAttributeIsAString) {
  std::string text =
      "\n\n<｜DSML｜tool_calls>\n<｜DSML｜invoke name=\"a\">\n"
      "<｜DSML｜parameter name=\"x\">  spaced <b> "
      "</｜DSML｜parameter>\n</｜DSML｜invoke>\n</｜DSML｜tool_calls>";
  std::string a = R"({"x": "  spaced <b> "})";
  check(text, kChatTools,
        {Begin(0, "a"), Args(0, "{"), Err(E::strict_violation), Args(0, a.substr(1)),
         End(0, "a", a)});
}

TEST(DsmlStream, ShellCommandRoundTripsUnchanged) {
  std::string text =
      "\n\n<｜DSML｜tool_calls>\n<｜DSML｜invoke name=\"bash\">\n"
      "<｜DSML｜parameter name=\"command\" string=\"true\">cd /tmp && git diff "
      "2>/dev/null</｜DSML｜parameter>\n"
      "</｜DSML｜invoke>\n</｜DSML｜tool_calls>";
  std::string a = R"({"command": "cd /tmp && git diff 2>/dev/null"})";
  check(text, kChatTools, {Begin(0, "bash"), Args(0, a), End(0, "bash", a)});
}

TEST(DsmlStream, StringBodiesAreJsonEscaped) {
  std::string text =
      "\n\n<｜DSML｜tool_calls>\n<｜DSML｜invoke name=\"w\">\n"
      "<｜DSML｜parameter name=\"s\" "
      "string=\"true\">a\"b\\c\n\td</｜DSML｜par</｜DSML｜parameter>\n"
      "</｜DSML｜invoke>\n</｜DSML｜tool_calls>";
  std::string a = R"({"s": "a\"b\\c\n\td</｜DSML｜par"})";
  check(text, kChatTools, {Begin(0, "w"), Args(0, a), End(0, "w", a)});
}

TEST(DsmlStream, InvokeWithoutNameIsMalformedAndBecomesContent) {
  std::string block =
      "\n\n<｜DSML｜tool_calls>\n<｜DSML｜invoke>\n"
      "<｜DSML｜parameter name=\"x\" "
      "string=\"true\">1</｜DSML｜parameter>\n</｜DSML｜invoke>\n</｜DSML｜tool_calls>";
  check("Hi" + block, kChatTools, {C("Hi"), Err(E::malformed), C(block)});
  std::string junk = "\n\n<｜DSML｜tool_calls>\nnot a tag";
  check("Hi" + junk, kChatTools, {C("Hi"), Err(E::malformed), C(junk)});
}

TEST(DsmlStream, DsmlInsideReasoningIsNotExecutable) {
  std::string text = "Maybe" + std::string(kWeather) + "</think>No tools.";
  check(text, kThinkTools, {R("Maybe" + std::string(kWeather)), C("No tools.")});
}

TEST(DsmlStream, WithoutToolsMarkupIsContent) {
  check("A" + std::string(kWeather), kChatPlain, {C("A" + std::string(kWeather))});
}

TEST(DsmlStream, SeparatorWhitespaceIsNotContent) {
  check("Hi \t\n\n" + std::string(kWeather.substr(2)), kChatTools,
        {C("Hi"), Begin(0, "get_weather"), Args(0, kWeatherArgs),
         End(0, "get_weather", kWeatherArgs)});
  // Not preceded by a blank line: accepted, reported.
  check("Hi" + std::string(kWeather.substr(2)), kChatTools,
        {C("Hi"), Err(E::strict_violation), Begin(0, "get_weather"), Args(0, kWeatherArgs),
         End(0, "get_weather", kWeatherArgs)});
}

TEST(DsmlStream, StrictViolationsInsideTheBlock) {
  std::string dup =
      "\n\n<｜DSML｜tool_calls>\n<｜DSML｜invoke name=\"a\">\n"
      "<｜DSML｜parameter name=\"x\" string=\"true\">1</｜DSML｜parameter>\n"
      "<｜DSML｜parameter name=\"x\" "
      "string=\"yes\">2</｜DSML｜parameter>\n</｜DSML｜invoke>\n</｜DSML｜tool_calls>";
  check(dup, kChatTools,
        {Begin(0, "a"), Args(0, R"({"x": "1")"), Err(E::strict_violation), Err(E::strict_violation),
         Args(0, R"(, "x": "2"})"), End(0, "a", R"({"x": "1", "x": "2"})")});
  std::string after = std::string(kWeather) + " trailing";
  check(after, kChatTools,
        {Begin(0, "get_weather"), Args(0, kWeatherArgs), End(0, "get_weather", kWeatherArgs),
         Err(E::strict_violation), C("trailing")});
}

TEST(DsmlStream, JsonValues) {
  std::string bad =
      "\n\n<｜DSML｜tool_calls>\n<｜DSML｜invoke name=\"a\">\n"
      "<｜DSML｜parameter name=\"n\" "
      "string=\"false\">[1,2</｜DSML｜parameter>\n</｜DSML｜invoke>\n</｜DSML｜tool_calls>";
  check(bad, kChatTools,
        {Begin(0, "a"), Args(0, R"({"n": [1,2)"), Err(E::invalid_arguments), Args(0, "}"),
         End(0, "a", "{}")});
  std::string empty =
      "\n\n<｜DSML｜tool_calls>\n<｜DSML｜invoke name=\"a\">\n"
      "<｜DSML｜parameter name=\"n\" string=\"false\"> "
      "</｜DSML｜parameter>\n</｜DSML｜invoke>\n</｜DSML｜tool_calls>";
  check(empty, kChatTools,
        {Begin(0, "a"), Args(0, R"({"n":  null})"), End(0, "a", R"({"n":  null})")});
}

TEST(DsmlStream, UnterminatedBlock) {
  std::string text(kWeather.substr(0, kWeather.find("</｜DSML｜invoke>")));
  check("A" + text, kChatTools,
        {C("A"), Begin(0, "get_weather"), Args(0, R"({"location": "Beijing", "unit": "celsius")"),
         Err(E::unterminated)});
  check("A\n\n<｜DSML｜tool_calls>", kChatTools, {C("A"), Err(E::unterminated)});
}

TEST(DsmlStream, QuotedGreaterThanInHeader) {
  std::string text =
      "\n\n<｜DSML｜tool_calls>\n<｜DSML｜invoke "
      "name=\"a>b\">\n\n</｜DSML｜invoke>\n</｜DSML｜tool_calls>";
  check(text, kChatTools, {Begin(0, "a>b"), Args(0, "{}"), End(0, "a>b", "{}")});
}

TEST(DsmlStream, Utf8IsNeverSplit) {
  // A 4-byte character in content, reasoning and a string argument; plus invalid bytes.
  std::string crab = "\xF0\x9F\xA6\x80";
  std::string text = "r" + crab + "</think>c" + crab +
                     "\n\n<｜DSML｜tool_calls>\n<｜DSML｜invoke name=\"" + crab +
                     "\">\n<｜DSML｜parameter name=\"s\" string=\"true\">" + crab +
                     "</｜DSML｜parameter>\n</｜DSML｜invoke>\n</｜DSML｜tool_calls>";
  std::string a = "{\"s\": \"" + crab + "\"}";
  check(text, kThinkTools,
        {R("r" + crab), C("c" + crab), Begin(0, crab), Args(0, a), End(0, crab, a)});
  check("bad \xFF\xF0\x9F end \xE2\x82", kChatTools,
        {C("bad \xEF\xBF\xBD\xEF\xBF\xBD end \xEF\xBF\xBD")});

  // Byte by byte, the 4-byte character comes out whole, once.
  DsmlStreamParser p(kChatTools);
  std::vector<StreamEvent> out;
  for (char c : "x" + crab) {
    size_t before = out.size();
    p.feed(std::string(1, c), out);
    for (size_t i = before; i < out.size(); ++i) EXPECT_TRUE(is_valid_utf8(out[i].text));
  }
  p.finish(out);
  EXPECT_EQ(coalesce_events(out), (std::vector<StreamEvent>{C("x" + crab)}));
}

// Calls are announced when the invoke header is complete; argument bytes follow as they come.
TEST(DsmlStream, LiveAnnouncementAndFragments) {
  DsmlStreamParser p(kChatTools);
  std::vector<StreamEvent> out;
  p.feed("Hi\n\n<｜DSML｜tool_calls>\n<｜DSML｜invoke name=\"bash\"", out);
  EXPECT_EQ(coalesce_events(out), (std::vector<StreamEvent>{C("Hi")}));
  p.feed(">\n", out);
  EXPECT_EQ(out.back(), Args(0, "{"));
  EXPECT_EQ(out[out.size() - 2], Begin(0, "bash"));
  p.feed("<｜DSML｜parameter name=\"command\" string=\"true\">ls -", out);
  EXPECT_EQ(out.back(), Args(0, "{\"command\": \"ls -"));
  p.feed("la</｜DSML｜param", out);
  EXPECT_EQ(out.back(), Args(0, "{\"command\": \"ls -la"));
  p.feed("eter>\n<｜DSML｜parameter name=\"n\" string=\"false\">[1,2,3", out);
  EXPECT_EQ(out.back(), Args(0, "{\"command\": \"ls -la\", \"n\": [1,2,3"));
  p.feed("]</｜DSML｜parameter>\n</｜DSML｜invoke>\n</｜DSML｜tool_calls>", out);
  EXPECT_TRUE(p.block_closed());
  EXPECT_EQ(out.back(), End(0, "bash", R"({"command": "ls -la", "n": [1,2,3]})"));
  EXPECT_EQ(p.calls_completed(), 1);
}

}  // namespace
}  // namespace dsv4::chat
