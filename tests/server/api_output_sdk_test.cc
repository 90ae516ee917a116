// The official client SDKs (npm openai and @anthropic-ai/sdk, installed in tools/js by
// scripts/setup.sh) read every response shape ApiOutput writes: streams, bodies and errors are
// written to files and api_output_sdk_check.mjs replays them through the SDKs with a fetch that
// returns the stored bytes. Streams are expected to accumulate to the non-streaming body.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "server/api_output_test_util.h"

namespace dsv4::server {
namespace {

using namespace api_testing;  // NOLINT
namespace fs = std::filesystem;

const char* api_name(Api api) {
  switch (api) {
    case Api::kChat:
      return "chat";
    case Api::kCompletions:
      return "completions";
    case Api::kResponses:
      return "responses";
    case Api::kMessages:
      return "messages";
  }
  return "";
}

class SdkCases {
 public:
  explicit SdkCases(fs::path dir) : dir_(std::move(dir)) {}

  void add(const std::string& name, Api api, bool stream, int status, const std::string& bytes,
           Json expect, Json error = nullptr) {
    std::ofstream(dir_ / (name + ".body"), std::ios::binary) << bytes;
    Json c = Json::object();
    c["name"] = name;
    c["api"] = api_name(api);
    c["stream"] = stream;
    c["status"] = status;
    c["file"] = name + ".body";
    c["expect"] = std::move(expect);
    c["error"] = std::move(error);
    manifest_.push_back(std::move(c));
  }

  void write_manifest() const { std::ofstream(dir_ / "manifest.json") << manifest_.dump(2); }

 private:
  fs::path dir_;
  Json manifest_ = Json::array();
};

struct Scenario {
  std::string name;
  std::string text;
  bool thinking = false;
  bool tools = false;
  FinishReason finish = FinishReason::kStop;
  std::string stop_sequence = {};
};

const Usage kUsage{
    .prompt_tokens = 30, .cached_tokens = 20, .completion_tokens = 9, .reasoning_tokens = 4};

OutputContext scenario_context(Api api, bool stream, const Scenario& s) {
  OutputContext c = make_context(api, stream);
  c.thinking = s.thinking;
  c.tools_active = s.tools;
  c.include_usage = true;
  c.reasoning_summary = true;
  c.namespaced_tools = {{"mcp__fs__read", "mcp__fs__", "read"}};
  return c;
}

FinalInfo scenario_info(const Scenario& s) {
  FinalInfo info = final_info(s.finish, s.text, kUsage);
  info.stop_sequence = s.stop_sequence;
  return info;
}

// What the SDK's view of the streamed response must contain, from dsv4's own non-streaming body.
Json stream_expectation(Api api, const Json& body) {
  Json e = Json::object();
  switch (api) {
    case Api::kChat: {
      const Json& choice = body["choices"][0];
      Json message = Json::object();
      message["content"] = choice["message"]["content"];
      if (choice["message"].contains("tool_calls"))
        message["tool_calls"] = choice["message"]["tool_calls"];
      e["choices"] =
          Json::array({Json{{"message", message}, {"finish_reason", choice["finish_reason"]}}});
      e["usage"] = body["usage"];
      return e;
    }
    case Api::kCompletions:
      e["text"] = body["choices"][0]["text"];
      e["finish_reason"] = body["choices"][0]["finish_reason"];
      e["usage"] = body["usage"];
      return e;
    case Api::kResponses:
      for (const char* key : {"id", "status", "output", "usage"}) e[key] = body[key];
      return e;
    case Api::kMessages:
      for (const char* key : {"id", "content", "stop_reason", "stop_sequence", "usage"})
        e[key] = body[key];
      return e;
  }
  return e;
}

TEST(ApiOutputSdk, OfficialClientsReadEveryShape) {
  const fs::path source = DSV4_SOURCE_DIR;
  const fs::path modules = source / "tools/js/node_modules";
  if (std::system("node --version > /dev/null 2>&1") != 0 ||
      !fs::exists(modules / "openai/index.mjs") ||
      !fs::exists(modules / "@anthropic-ai/sdk/index.mjs")) {
    GTEST_SKIP() << "node or the SDKs in tools/js are missing (run scripts/setup.sh)";
  }
  std::string dir_template = (fs::temp_directory_path() / "dsv4_api_sdk_XXXXXX").string();
  ASSERT_NE(mkdtemp(dir_template.data()), nullptr);
  const fs::path dir = dir_template;
  SdkCases cases(dir);

  const std::vector<Scenario> scenarios = {
      {"plain", "Hello from dsv4. Ünïcödé ✓ 🦄"},
      {"thinking", "Think first.</think>Then answer.", true},
      {"thinking_cut", "Still thinking about", true, false, FinishReason::kLength},
      {"tools",
       "Plan.</think>Reading." +
           dsml_block({dsml_invoke("read_file", {{"path", "a \"b\".txt"}, {"n", "3", false}}),
                       dsml_invoke("mcp__fs__read", {{"path", "/x"}})}),
       true, true, FinishReason::kToolCalls},
      {"stop_sequence", "alpha beta\nUser: gamma", false, false, FinishReason::kStop, "\nUser:"},
      {"error", "partial answ", false, false, FinishReason::kError},
  };
  for (Api api : {Api::kChat, Api::kCompletions, Api::kResponses, Api::kMessages}) {
    for (const Scenario& s : scenarios) {
      if (api == Api::kCompletions && (s.thinking || s.tools)) continue;  // raw text only
      const std::string base = std::string(api_name(api)) + "_" + s.name;
      Json body = ApiOutput::create(scenario_context(api, false, s))->response(scenario_info(s));
      cases.add(base, api, false, 200, to_wire_json(body), body);

      // The stream carries what the client would see; for a completions stop sequence, the
      // generator has already cut the text before it.
      std::string streamed = s.text;
      if (!s.stop_sequence.empty()) streamed = streamed.substr(0, streamed.find(s.stop_sequence));
      auto out = ApiOutput::create(scenario_context(api, true, s));
      Usage prompt = kUsage;
      std::string bytes = stream_bytes(*out, event_batches(streamed, s.thinking, s.tools, 2),
                                       scenario_info(s), prompt);
      // Thinking cut before "</think>": the stream sent reasoning, the body holds it as the
      // answer (§3.4); the SDK check covers the stream's acceptance, not that equality.
      Json expect = s.name == "thinking_cut" ? Json::object() : stream_expectation(api, body);
      cases.add(base + "_stream", api, true, 200, bytes, expect);
    }
    const std::string name = api_name(api);
    HttpError e = api_error(api, 400, "missing messages");
    Json error = {{"status", 400}, {"message", "missing messages"}};
    if (api == Api::kMessages) error["type"] = "invalid_request_error";
    cases.add(name + "_error_400", api, false, e.status, e.body, nullptr, error);
    e = context_length_error(api, 9000, 8192, "messages");
    cases.add(name + "_context_length", api, false, e.status, e.body, nullptr,
              Json{{"status", 400}, {"message", "Prompt has 9000 tokens"}});
    auto out = ApiOutput::create(make_context(api, true));
    std::string bytes = out->start();
    bytes += sse_error_event(api, "prefill failed: out of memory");
    Json stream_error = {{"status", nullptr}, {"message", "prefill failed: out of memory"}};
    if (api == Api::kMessages) stream_error["type"] = "api_error";
    cases.add(name + "_stream_error", api, true, 200, bytes, nullptr, stream_error);
  }
  cases.write_manifest();

  const fs::path log = dir / "log.txt";
  const std::string command = "node '" +
                              (source / "tests/server/api_output_sdk_check.mjs").string() + "' '" +
                              dir.string() + "' > '" + log.string() + "' 2>&1";
  const int rc = std::system(command.c_str());
  std::ifstream in(log);
  std::string output((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_EQ(rc, 0) << output;
  EXPECT_NE(output.find("ok   chat_tools_stream"), std::string::npos) << output;
  if (rc == 0) fs::remove_all(dir);
}

}  // namespace
}  // namespace dsv4::server
