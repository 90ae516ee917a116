// Rendering rules beyond the goldens (PROTOCOL.md §2.2–2.10, §6.5).
#include <gtest/gtest.h>

#include "chat/effort.h"
#include "chat/encoder.h"
#include "chat/message_json.h"
#include "chat/special_tokens.h"
#include "util/sha256.h"

namespace dsv4::chat {
namespace {

const std::string BOS(tok::kBos), EOS(tok::kEos), U(tok::kUser), A(tok::kAssistant),
    THINK(tok::kThinkOpen), ENDTHINK(tok::kThinkClose);

std::vector<Message> msgs(std::string_view json) {
  auto j = parse_json(json);
  EXPECT_TRUE(j.ok()) << json;
  auto m = messages_from_json(*j);
  EXPECT_TRUE(m.ok()) << (m.ok() ? "" : m.error().message);
  return m.ok() ? *m : std::vector<Message>{};
}

EncodeOptions opts(ThinkingMode mode, Effort effort = Effort::none,
                   Release release = Release::original) {
  EncodeOptions o;
  o.thinking = mode;
  o.effort = effort;
  o.release = release;
  return o;
}
const EncodeOptions kThink = opts(ThinkingMode::thinking);
const EncodeOptions kChat = opts(ThinkingMode::chat);

std::string render(std::string_view json, const EncodeOptions& o,
                   std::string_view context_json = "[]") {
  auto r = encode_messages(msgs(json), o, msgs(context_json));
  EXPECT_TRUE(r.ok()) << (r.ok() ? "" : r.error().message);
  return r.ok() ? r->text : "";
}

std::string render_error(std::string_view json, const EncodeOptions& o = kThink) {
  auto j = parse_json(json);
  if (!j.ok()) return j.error().message;
  auto m = messages_from_json(*j);
  if (!m.ok()) return m.error().message;
  auto r = encode_messages(*m, o);
  return r.ok() ? "" : r.error().message;
}

constexpr std::string_view kHello = R"([{"role":"user","content":"Hello"}])";

TEST(Encoder, GenerationPrefixes) {
  EXPECT_EQ(render(kHello, kChat), BOS + U + "Hello" + A + ENDTHINK);
  EXPECT_EQ(render(kHello, kThink), BOS + U + "Hello" + A + THINK);
}

TEST(Encoder, EffortPrefixesOriginalRelease) {
  std::string sys = R"([{"role":"system","content":"S"},{"role":"user","content":"Hello"}])";
  std::string body = "S" + U + "Hello" + A + THINK;
  EXPECT_EQ(render(sys, opts(ThinkingMode::thinking, Effort::max)),
            BOS + std::string(kEffortAbsoluteMaximum) + body);
  EXPECT_EQ(render(sys, opts(ThinkingMode::thinking, Effort::high)), BOS + body);
  EXPECT_EQ(render(sys, opts(ThinkingMode::thinking, Effort::low)), BOS + body);
  // Chat mode ignores the effort.
  EXPECT_EQ(render(sys, opts(ThinkingMode::chat, Effort::max)),
            BOS + "S" + U + "Hello" + A + ENDTHINK);
}

TEST(Encoder, EffortPrefixes0731) {
  std::string body = U + "Hello" + A + THINK;
  EXPECT_EQ(render(kHello, opts(ThinkingMode::thinking, Effort::low, Release::v0731)), BOS + body);
  EXPECT_EQ(render(kHello, opts(ThinkingMode::thinking, Effort::none, Release::v0731)), BOS + body);
  EXPECT_EQ(render(kHello, opts(ThinkingMode::thinking, Effort::high, Release::v0731)),
            BOS + std::string(kEffortAbsoluteMaximum) + body);
  EXPECT_EQ(render(kHello, opts(ThinkingMode::thinking, Effort::max, Release::v0731)),
            BOS + std::string(kEffortBeyondMaximum) + body);
}

TEST(Encoder, EffortTextsMatchPublishedDigests) {
  EXPECT_EQ(kEffortAbsoluteMaximum.size(), 476u);
  EXPECT_EQ(dsv4::sha256_hex({reinterpret_cast<const uint8_t*>(kEffortAbsoluteMaximum.data()), kEffortAbsoluteMaximum.size()}),
            "f7a24f3b3050d4a83781e9b755b316aae2ec1d9dc87562541d90bcb04d7350f7");
  EXPECT_EQ(kEffortBeyondMaximum.size(), 528u);
  EXPECT_EQ(dsv4::sha256_hex({reinterpret_cast<const uint8_t*>(kEffortBeyondMaximum.data()), kEffortBeyondMaximum.size()}),
            "53fb31b8392ec5b4a926481943efc67636748f137c1a49d493a7af4d4fa55d2c");
}

constexpr std::string_view kThreeTurns = R"([
  {"role":"user","content":"u1"},
  {"role":"assistant","reasoning_content":"r1","content":"a1"},
  {"role":"user","content":"u2"},
  {"role":"assistant","reasoning_content":"r2","content":"a2"},
  {"role":"user","content":"u3"}])";

TEST(Encoder, EarlierReasoningDroppedWithoutTools) {
  EXPECT_EQ(render(kThreeTurns, kThink), BOS + U + "u1" + A + ENDTHINK + "a1" + EOS + U + "u2" + A +
                                             ENDTHINK + "a2" + EOS + U + "u3" + A + THINK);
}

TEST(Encoder, EarlierReasoningKeptWhenDropDisabled) {
  EncodeOptions o = kThink;
  o.drop_thinking = false;
  EXPECT_EQ(render(kThreeTurns, o), BOS + U + "u1" + A + THINK + "r1" + ENDTHINK + "a1" + EOS + U +
                                        "u2" + A + THINK + "r2" + ENDTHINK + "a2" + EOS + U + "u3" +
                                        A + THINK);
}

TEST(Encoder, EarlierReasoningKeptWhenToolsPresent) {
  std::string with_tools =
      R"([{"role":"system","content":"S","tools":[{"type":"function","function":{"name":"f"}}]},)" +
      std::string(kThreeTurns.substr(1));
  std::string out = render(with_tools, kThink);
  EXPECT_NE(out.find(U + "u1" + A + THINK + "r1" + ENDTHINK + "a1" + EOS), std::string::npos)
      << out;
  EXPECT_NE(out.find(U + "u2" + A + THINK + "r2" + ENDTHINK + "a2" + EOS), std::string::npos)
      << out;
}

TEST(Encoder, ChatModeHasNoReasoning) {
  EXPECT_EQ(render(kThreeTurns, kChat), BOS + U + "u1" + A + ENDTHINK + "a1" + EOS + U + "u2" + A +
                                            ENDTHINK + "a2" + EOS + U + "u3" + A + ENDTHINK);
}

TEST(Encoder, DeveloperIsAUserTurn) {
  EXPECT_EQ(
      render(R"([{"role":"system","content":"S"},{"role":"developer","content":"D"}])", kThink),
      BOS + "S" + U + "D" + A + THINK);
}

TEST(Encoder, DeveloperBeforeLastUserIsDroppedInThinkingMode) {
  std::string in = R"([{"role":"system","content":"You are a helpful assistant."},
    {"role":"developer","content":"Q"},{"role":"assistant","content":"Yes."},
    {"role":"user","content":"Again?"}])";
  EXPECT_EQ(render(in, kThink),
            BOS + "You are a helpful assistant.Yes." + EOS + U + "Again?" + A + THINK);
  EXPECT_EQ(render(in, kChat), BOS + "You are a helpful assistant." + U + "Q" + A + ENDTHINK +
                                   "Yes." + EOS + U + "Again?" + A + ENDTHINK);
}

TEST(Encoder, LatestReminder) {
  std::string R(tok::kLatestReminder);
  EXPECT_EQ(
      render(
          R"([{"role":"system","content":"S"},{"role":"latest_reminder","content":"2026-02-21,App"},
                      {"role":"user","content":"Q"}])",
          kThink),
      BOS + "S" + R + "2026-02-21,App" + U + "Q" + A + THINK);
  // A turn followed by a reminder still gets its transition; the reminder itself gets none.
  EXPECT_EQ(
      render(R"([{"role":"user","content":"Q"},{"role":"latest_reminder","content":"x"}])", kChat),
      BOS + U + "Q" + A + ENDTHINK + R + "x");
}

TEST(Encoder, Tasks) {
  std::string action(tok::kAction), query(tok::kQuery), title(tok::kTitle);
  constexpr std::string_view kAct = R"([{"role":"user","content":"Q","task":"action"}])";
  EXPECT_EQ(render(kAct, kChat), BOS + U + "Q" + A + ENDTHINK + action);
  EXPECT_EQ(render(kAct, kThink), BOS + U + "Q" + A + THINK + action);
  EXPECT_EQ(render(R"([{"role":"user","content":"Q","task":"query"}])", kThink),
            BOS + U + "Q" + query);
  EXPECT_EQ(
      render(R"([{"role":"user","content":"Q"},{"role":"assistant","content":"A","task":"title"}])",
             kChat),
      BOS + U + "Q" + A + ENDTHINK + "A" + EOS + title);
  // An assistant turn right after a task has no thinking part, even in thinking mode.
  EXPECT_EQ(
      render(
          R"([{"role":"user","content":"Q","task":"action"},{"role":"assistant","content":"Search","reasoning_content":"r"}])",
          kThink),
      BOS + U + "Q" + A + THINK + action + "Search" + EOS);
  // A user message with a task is never merged with the next user message.
  EXPECT_EQ(
      render(R"([{"role":"user","content":"Q","task":"query"},{"role":"user","content":"Z"}])",
             kChat),
      BOS + U + "Q" + U + "Z" + A + ENDTHINK);
}

TEST(Encoder, BosAndEosOptions) {
  EncodeOptions o = kChat;
  o.add_bos = false;
  EXPECT_EQ(render(kHello, o), U + "Hello" + A + ENDTHINK);
  EXPECT_EQ(
      render(
          R"([{"role":"user","content":"Q"},{"role":"assistant","content":"Part","wo_eos":true}])",
          kChat),
      BOS + U + "Q" + A + ENDTHINK + "Part");
}

TEST(Encoder, ConsecutiveUsersShareATurn) {
  EXPECT_EQ(render(R"([{"role":"user","content":"One"},{"role":"user","content":"Two"}])", kChat),
            BOS + U + "One\n\nTwo" + A + ENDTHINK);
}

TEST(Encoder, ContextIsNotRerendered) {
  std::string ctx = R"([{"role":"system","content":"S"},{"role":"user","content":"U"},
                        {"role":"assistant","content":"A","reasoning_content":"R"}])";
  EXPECT_EQ(
      render(R"([{"role":"user","content":"U2"}])", opts(ThinkingMode::thinking, Effort::max), ctx),
      U + "U2" + A + THINK);
  EXPECT_EQ(render(R"([{"role":"user","content":"U2"}])", kChat, ctx), U + "U2" + A + ENDTHINK);
}

constexpr std::string_view kParallel = R"([
  {"role":"user","content":"Weather?"},
  {"role":"assistant","content":"","tool_calls":[
    {"id":"a","type":"function","function":{"name":"w","arguments":"{\"city\":\"Beijing\"}"}},
    {"id":"b","type":"function","function":{"name":"w","arguments":"{\"city\":\"Shanghai\"}"}}]},
  {"role":"tool","tool_call_id":"b","content":"{\"temperature\": 26}"},
  {"role":"tool","tool_call_id":"a","content":"{\"temperature\": 22}"},
  {"role":"user","content":"Thanks"}])";

TEST(Encoder, ToolResultsSortedByCallOrderAndJoined) {
  std::string out = render(kParallel, kChat);
  EXPECT_NE(out.find(EOS + U +
                     "<tool_result>{\"temperature\": 22}</tool_result>\n\n"
                     "<tool_result>{\"temperature\": 26}</tool_result>\n\nThanks" +
                     A + ENDTHINK),
            std::string::npos)
      << out;
}

TEST(Encoder, ToolResultParts) {
  std::string out = render(
      R"([{"role":"tool","content":[{"type":"text","text":"a"},{"type":"image"},{"type":"text","text":"b"}]}])",
      kChat);
  EXPECT_EQ(out,
            BOS + U + "<tool_result>a\n\n[Unsupported image]\n\nb</tool_result>" + A + ENDTHINK);
}

TEST(Encoder, ResponseFormat) {
  std::string out = render(
      R"([{"role":"system","content":"S","response_format":{"type":"json_object"}},{"role":"user","content":"Q"}])",
      kChat);
  EXPECT_EQ(
      out,
      BOS +
          "S\n\n## Response Format:\n\nYou MUST strictly adhere to the following schema to reply:\n"
          "{\"type\": \"json_object\"}" +
          U + "Q" + A + ENDTHINK);
}

TEST(Encoder, ToolsOnEmptySystemStartRightAfterBos) {
  std::string out = render(
      R"([{"role":"system","content":"","tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object"}}}]},{"role":"user","content":"Q"}])",
      kChat);
  EXPECT_TRUE(out.starts_with(BOS + "\n\n## Tools\n\n")) << out;
  EXPECT_NE(
      out.find("\n\n{\"name\": \"f\", \"parameters\": {\"type\": \"object\"}}\n\nYou MUST strictly "
               "follow the above defined tool name and parameter schemas to invoke tool calls.\n" +
               U + "Q"),
      std::string::npos)
      << out;
}

TEST(Encoder, NullContentsAreEmpty) {
  EXPECT_EQ(
      render(
          R"([{"role":"user","content":"Q"},{"role":"assistant","content":null,"tool_calls":[{"type":"function","function":{"name":"f","arguments":"{}"}}]},{"role":"tool","content":null}])",
          kChat),
      BOS + U + "Q" + A + ENDTHINK +
          "\n\n<｜DSML｜tool_calls>\n<｜DSML｜invoke "
          "name=\"f\">\n\n</｜DSML｜invoke>\n</｜DSML｜tool_calls>" +
          EOS + U + "<tool_result></tool_result>" + A + ENDTHINK);
}

TEST(Encoder, MalformedInputsAreErrors) {
  EXPECT_NE(render_error(R"([{"role":"wizard","content":"x"}])").find("unknown role 'wizard'"),
            std::string::npos);
  EXPECT_NE(render_error(R"([{"content":"x"}])").find("missing role"), std::string::npos);
  EXPECT_NE(
      render_error(
          R"([{"role":"assistant","tool_calls":[{"type":"function","function":{"arguments":"{}"}}]}])")
          .find("without a function name"),
      std::string::npos);
  EXPECT_NE(
      render_error(R"([{"role":"assistant","tool_calls":[{"type":"function"}]}])").find("function"),
      std::string::npos);
  EXPECT_NE(
      render_error(
          R"([{"role":"system","content":"S","tools":[{"type":"function","function":{"name":"f","parameters":"no"}}]}])")
          .find("must be a JSON object"),
      std::string::npos);
  EXPECT_NE(render_error(
                R"([{"role":"system","content":"S","tools":[{"type":"function","function":"f"}]}])")
                .find("\"function\" object"),
            std::string::npos);
  EXPECT_NE(
      render_error(R"([{"role":"system","content":"S","tools":{"a":1}}])").find("must be an array"),
      std::string::npos);
  EXPECT_NE(render_error(R"([{"role":"developer","content":""}])").find("developer"),
            std::string::npos);
  EXPECT_NE(render_error(R"([{"role":"user","content":"Q","task":"dance"}])").find("unknown task"),
            std::string::npos);
  EXPECT_NE(render_error(R"([{"role":"user","content":42}])").find("content"), std::string::npos);
  EXPECT_NE(render_error(R"({"role":"user"})").find("array"), std::string::npos);
  EXPECT_NE(render_error("[{\"role\":\"user\",\"content\":\"\xC3\"}]").find("invalid JSON"),
            std::string::npos);

  // Text built in C++ is checked too.
  Message m;
  m.content = "bad \xFF byte";
  auto r = encode_messages({m}, kThink);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("messages[0].content: invalid UTF-8 at byte 4"),
            std::string::npos);
  Message sys;
  sys.role = Role::system;
  sys.tools = Json::array(
      {Json{{"type", "function"}, {"function", Json{{"name", "f"}, {"description", "\xC0"}}}}});
  r = encode_messages({sys}, kThink);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("invalid UTF-8"), std::string::npos);
}

}  // namespace
}  // namespace dsv4::chat
