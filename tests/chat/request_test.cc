// API requests onto the encoder (PROTOCOL.md §2.11, §4.3), including the requests real coding
// agents send (testdata/agent-requests).
#include "chat/request.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>

#include "chat/effort.h"
#include "chat/encoder.h"
#include "chat/special_tokens.h"
#include "test_util.h"

namespace dsv4::chat {
namespace {

using testing::read_file;
using testing::read_json;
using testing::shared_path;

const std::string BOS(tok::kBos), EOS(tok::kEos), U(tok::kUser), A(tok::kAssistant),
    THINK(tok::kThinkOpen), ENDTHINK(tok::kThinkClose);

Json J(std::string_view s) {
  auto r = parse_json(s);
  EXPECT_TRUE(r.ok()) << s;
  return r.ok() ? *r : Json();
}

std::string render(const Result<ChatRequest>& req) {
  EXPECT_TRUE(req.ok()) << (req.ok() ? "" : req.error().message);
  if (!req.ok()) return "";
  auto p = encode_messages(req->messages, req->options);
  EXPECT_TRUE(p.ok()) << (p.ok() ? "" : p.error().message);
  return p.ok() ? p->text : "";
}

std::string error_of(const Result<ChatRequest>& req) { return req.ok() ? "" : req.error().message; }

TEST(OpenAiRequest, GoldenOneThroughTheApiMapping) {
  // {tools, messages} is also an OpenAI body: the tools land on the system message.
  Json input = read_json(shared_path("testdata/encoding/test_input_1.json"));
  std::string want = read_file(shared_path("testdata/encoding/test_output_1.txt"));
  EXPECT_EQ(render(map_openai_chat_request(input)), want);
  auto req = map_openai_chat_request(input);
  EXPECT_TRUE(req->tools_active);
}

TEST(OpenAiRequest, ThinkingControls) {
  std::string hello = R"("messages":[{"role":"user","content":"Hi"}])";
  auto mode = [&](std::string extra) {
    auto r = map_openai_chat_request(J("{" + hello + extra + "}"));
    EXPECT_TRUE(r.ok()) << extra << ": " << error_of(r);
    return r.ok() ? r->options : EncodeOptions{};
  };
  EXPECT_EQ(mode("").thinking, ThinkingMode::thinking);
  EXPECT_EQ(mode(R"(,"thinking":{"type":"disabled"})").thinking, ThinkingMode::chat);
  EXPECT_EQ(mode(R"(,"thinking":false)").thinking, ThinkingMode::chat);
  EXPECT_EQ(mode(R"(,"think":false)").thinking, ThinkingMode::chat);
  EXPECT_EQ(mode(R"(,"reasoning_effort":"none")").thinking, ThinkingMode::chat);
  EXPECT_EQ(mode(R"(,"model":"deepseek-chat")").thinking, ThinkingMode::chat);
  EXPECT_EQ(mode(R"(,"model":"deepseek-chat","thinking":{"type":"enabled"})").thinking,
            ThinkingMode::thinking);
  EXPECT_EQ(mode(R"(,"model":"deepseek-reasoner")").thinking, ThinkingMode::thinking);
  EXPECT_EQ(mode(R"(,"reasoning_effort":"xhigh")").effort, Effort::max);
  EXPECT_EQ(mode(R"(,"reasoning_effort":"max")").effort, Effort::max);
  EXPECT_EQ(mode(R"(,"reasoning_effort":"medium")").effort, Effort::high);
  EXPECT_EQ(mode(R"(,"reasoning_effort":"minimal")").effort, Effort::low);
  EXPECT_NE(error_of(map_openai_chat_request(J("{" + hello + R"(,"reasoning_effort":"huge"})")))
                .find("huge"),
            std::string::npos);
  auto o = map_openai_chat_request(J("{" + hello + R"(,"reasoning_effort":"max"})"),
                                   RequestConfig{Release::v0731});
  EXPECT_EQ(o->options.release, Release::v0731);
}

TEST(OpenAiRequest, SystemMessagesAndContentArrays) {
  auto r = map_openai_chat_request(J(R"({"messages":[
      {"role":"system","content":"A"},{"role":"developer","content":[{"type":"text","text":"B"}]},
      {"role":"user","content":["x",{"type":"text","text":"y"},{"type":"image_url","image_url":{}}]},
      {"role":"system","content":"mid"},
      {"role":"assistant","content":"ok"},{"role":"user","content":"z"}],
      "thinking":{"type":"disabled"}})"));
  EXPECT_EQ(render(r),
            BOS + "A\n\nB" + U + "xy\n\nmid" + A + ENDTHINK + "ok" + EOS + U + "z" + A + ENDTHINK);
}

TEST(OpenAiRequest, ToolsAndResponseFormat) {
  std::string tools =
      R"("tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object"}}}])";
  auto r =
      map_openai_chat_request(J(R"({"messages":[{"role":"user","content":"Q"}],)" + tools + "}"));
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->tools_active);
  ASSERT_EQ(r->messages.size(), 2u);
  EXPECT_EQ(r->messages[0].role, Role::system);
  EXPECT_TRUE(render(r).starts_with(BOS + "\n\n## Tools\n\n"));

  r = map_openai_chat_request(
      J(R"({"messages":[{"role":"user","content":"Q"}],"tool_choice":"none",)" + tools + "}"));
  EXPECT_FALSE(r->tools_active);
  EXPECT_EQ(render(r), BOS + U + "Q" + A + THINK);

  r = map_openai_chat_request(
      J(R"({"messages":[{"role":"user","content":"Q"}],"response_format":{"type":"text"}})"));
  EXPECT_EQ(render(r), BOS + U + "Q" + A + THINK);
  r = map_openai_chat_request(J(
      R"({"messages":[{"role":"system","content":"S"},{"role":"user","content":"Q"}],"response_format":{"type":"json_object"}})"));
  EXPECT_EQ(
      render(r),
      BOS +
          "S\n\n## Response Format:\n\nYou MUST strictly adhere to the following schema to reply:\n"
          "{\"type\": \"json_object\"}" +
          U + "Q" + A + THINK);

  // Non-function tools (OpenAI custom tools) are not offered to the model.
  r = map_openai_chat_request(
      J(R"({"messages":[{"role":"user","content":"Q"}],"tools":[{"type":"custom","name":"c"}]})"));
  ASSERT_TRUE(r.ok()) << error_of(r);
  EXPECT_FALSE(r->tools_active);
  EXPECT_NE(error_of(map_openai_chat_request(J(R"({"messages":[],"tools":[{"type":"function"}]})")))
                .find("function"),
            std::string::npos);
  EXPECT_NE(error_of(map_openai_chat_request(J(R"({"model":"x"})"))).find("missing messages"),
            std::string::npos);
  EXPECT_NE(error_of(map_openai_chat_request(J(R"({"messages":[{"role":"robot","content":"x"}]})")))
                .find("unknown role"),
            std::string::npos);
}

TEST(OpenAiRequest, OfficialApiVectorsAreChatMode) {
  for (const auto& entry :
       std::filesystem::directory_iterator(shared_path("testdata/official-api/official"))) {
    Json v = read_json(entry.path().string());
    std::string prompt = v.at("prompt").get<std::string>();
    EXPECT_EQ(render(map_openai_chat_request(v.at("request"))), BOS + U + prompt + A + ENDTHINK)
        << entry.path();
  }
}

TEST(AnthropicRequest, Mapping) {
  auto r = map_anthropic_request(J(R"({"model":"m","max_tokens":10,
      "system":[{"type":"text","text":"x-anthropic-billing-header: v"},{"type":"text","text":"S1"},{"type":"text","text":"S2"}],
      "thinking":{"type":"adaptive"},"output_config":{"effort":"max"},
      "tools":[{"name":"Read","description":"read","input_schema":{"type":"object","properties":{"p":{"type":"string"}}}},
               {"type":"web_search_20250305","name":"web_search"}],
      "messages":[
        {"role":"user","content":[{"type":"text","text":"<r>"},{"type":"text","text":"Read it"}]},
        {"role":"assistant","content":[{"type":"thinking","thinking":"T","signature":"s"},{"type":"text","text":"On it."},
                                       {"type":"tool_use","id":"tu1","name":"Read","input":{"p":"a.txt"}}]},
        {"role":"user","content":[{"type":"tool_result","tool_use_id":"tu1","content":[{"type":"text","text":"data"}]},
                                  {"type":"text","text":"go on"}]}]})"));
  ASSERT_TRUE(r.ok()) << error_of(r);
  EXPECT_TRUE(r->tools_active);
  EXPECT_EQ(r->options.thinking, ThinkingMode::thinking);
  EXPECT_EQ(r->options.effort, Effort::max);
  std::string out = render(r);
  EXPECT_TRUE(out.starts_with(BOS + std::string(kEffortAbsoluteMaximum) + "S1\nS2\n\n## Tools"))
      << out.substr(0, 600);
  EXPECT_NE(out.find("{\"name\": \"Read\", \"description\": \"read\", \"parameters\": {\"type\": "
                     "\"object\", \"properties\": {\"p\": {\"type\": \"string\"}}}}\n\nYou MUST"),
            std::string::npos);
  EXPECT_EQ(out.find("web_search"), std::string::npos);
  EXPECT_TRUE(out.ends_with(
      U + "<r>Read it" + A + THINK + "T" + ENDTHINK +
      "On it.\n\n<｜DSML｜tool_calls>\n<｜DSML｜invoke name=\"Read\">\n"
      "<｜DSML｜parameter name=\"p\" "
      "string=\"true\">a.txt</｜DSML｜parameter>\n</｜DSML｜invoke>\n</｜DSML｜tool_calls>" +
      EOS + U + "<tool_result>data</tool_result>\n\ngo on" + A + THINK))
      << out.substr(out.size() - 400);

  auto none = map_anthropic_request(
      J(R"({"messages":[{"role":"user","content":"Q"}],"tool_choice":{"type":"none"},
      "tools":[{"name":"Read","input_schema":{"type":"object"}}],"thinking":{"type":"disabled"}})"));
  EXPECT_EQ(render(none), BOS + U + "Q" + A + ENDTHINK);
  EXPECT_FALSE(none->tools_active);
}

TEST(ResponsesRequest, Mapping) {
  auto r = map_responses_request(J(R"({"model":"m","instructions":"I",
      "reasoning":{"effort":"high","summary":"auto"},"tool_choice":"auto",
      "tools":[{"type":"function","name":"exec","description":"run","strict":false,"parameters":{"type":"object"}},
               {"type":"namespace","name":"ns__","tools":[{"type":"function","name":"go","parameters":{"type":"object"}}]},
               {"type":"web_search"}],
      "input":[{"type":"message","role":"developer","content":[{"type":"input_text","text":"D"}]},
               {"type":"message","role":"user","content":[{"type":"input_text","text":"U"}]},
               {"type":"reasoning","summary":[{"type":"summary_text","text":"R"}],"encrypted_content":"zz"},
               {"type":"function_call","status":"completed","name":"exec","arguments":"{\"cmd\":\"ls\"}","call_id":"c1"},
               {"type":"function_call","name":"go","namespace":"ns__","arguments":"{}","call_id":"c2"},
               {"type":"function_call_output","call_id":"c2","output":"two"},
               {"type":"function_call_output","call_id":"c1","output":[{"type":"input_text","text":"one"}]}]})"));
  ASSERT_TRUE(r.ok()) << error_of(r);
  EXPECT_TRUE(r->tools_active);
  ASSERT_EQ(r->namespaced_tools.size(), 1u);
  EXPECT_EQ(r->namespaced_tools[0].flat_name, "ns__go");
  std::string out = render(r);
  EXPECT_TRUE(out.starts_with(BOS + "I\n\nD\n\n## Tools")) << out.substr(0, 300);
  EXPECT_NE(out.find("{\"name\": \"exec\", \"description\": \"run\", \"strict\": false, "
                     "\"parameters\": {\"type\": \"object\"}}\n"
                     "{\"name\": \"ns__go\", \"parameters\": {\"type\": \"object\"}}\n\nYou MUST"),
            std::string::npos)
      << out;
  EXPECT_TRUE(out.ends_with(
      U + "U" + A + THINK + "R" + ENDTHINK +
      "\n\n<｜DSML｜tool_calls>\n<｜DSML｜invoke name=\"exec\">\n"
      "<｜DSML｜parameter name=\"cmd\" string=\"true\">ls</｜DSML｜parameter>\n</｜DSML｜invoke>\n"
      "<｜DSML｜invoke name=\"ns__go\">\n\n</｜DSML｜invoke>\n</｜DSML｜tool_calls>" +
      EOS + U + "<tool_result>one</tool_result>\n\n<tool_result>two</tool_result>" + A + THINK))
      << out;
}

TEST(ResponsesRequest, Errors) {
  EXPECT_NE(error_of(map_responses_request(J(R"({"input":"x","previous_response_id":"r"})")))
                .find("replay full input"),
            std::string::npos);
  EXPECT_NE(error_of(map_responses_request(J(R"({"input":"x","tool_choice":"required"})")))
                .find("tool_choice=required"),
            std::string::npos);
  EXPECT_NE(error_of(map_responses_request(
                         J(R"({"input":"x","tool_choice":{"type":"function","name":"f"}})")))
                .find("forced"),
            std::string::npos);
  EXPECT_NE(error_of(map_responses_request(J(R"({"input":[{"type":"bogus"}]})"))).find("bogus"),
            std::string::npos);
  EXPECT_NE(
      error_of(map_responses_request(
                   J(R"({"input":[{"type":"function_call","name":"f","status":"in_progress"}]})")))
          .find("status"),
      std::string::npos);
  EXPECT_NE(error_of(map_responses_request(
                         J(R"({"input":[{"role":"user","content":[{"type":"input_image"}]}]})")))
                .find("input_image"),
            std::string::npos);
  EXPECT_NE(error_of(map_responses_request(J(R"({"model":"m"})"))).find("missing input"),
            std::string::npos);
  EXPECT_EQ(render(map_responses_request(J(R"({"input":"hi","reasoning":{"effort":"none"}})"))),
            BOS + U + "hi" + A + ENDTHINK);
}

// Every captured agent request maps and renders; in the last request of each *-tool folder the
// tool call and its result appear in the canonical forms.
TEST(AgentRequests, AllRender) {
  int rendered = 0;
  for (const auto& dir :
       std::filesystem::directory_iterator(shared_path("testdata/agent-requests"))) {
    if (!dir.is_directory()) continue;
    std::vector<std::filesystem::path> files;
    for (const auto& f : std::filesystem::directory_iterator(dir.path())) files.push_back(f.path());
    std::sort(files.begin(), files.end());
    for (const auto& path : files) {
      SCOPED_TRACE(path.string());
      Json rec = read_json(path.string());
      if (!rec.at("body").is_object()) continue;  // a HEAD probe
      std::string url = rec.at("url").get<std::string>();
      const Json& body = rec.at("body");
      Result<ChatRequest> req = url.starts_with("/v1/messages")    ? map_anthropic_request(body)
                                : url.starts_with("/v1/responses") ? map_responses_request(body)
                                                                   : map_openai_chat_request(body);
      std::string out = render(req);
      ASSERT_FALSE(out.empty());
      EXPECT_TRUE(out.ends_with(A + THINK) || out.ends_with(A + ENDTHINK))
          << out.substr(out.size() - 200);
      if (req->tools_active) {
        EXPECT_NE(out.find("### Available Tool Schemas"), std::string::npos);
      }
      if (dir.path().filename().string().ends_with("-tool") && path == files.back()) {
        EXPECT_NE(out.find("</think>\n\n<｜DSML｜tool_calls>\n<｜DSML｜invoke name=\""),
                  std::string::npos);
        EXPECT_NE(out.find("</｜DSML｜tool_calls>" + EOS + U), std::string::npos);
        EXPECT_NE(out.find("<tool_result>"), std::string::npos);
        EXPECT_NE(out.find("4711"), std::string::npos);
      }
      ++rendered;
    }
  }
  EXPECT_EQ(rendered, 14);
}

}  // namespace
}  // namespace dsv4::chat
