// The conversations that Claude Code, Codex, pi and opencode really send
// (testdata/agent-requests): each one's last two requests are a tool call and its follow-up. The
// server answers the first (the tiny model writes something else than the recorded reply), then
// the follow-up must evaluate only its new suffix plus at most the previous assistant turn
// (issue item 4): counted from the usage the server reports and from its prefill counter.
#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <sstream>
#include <string>

#include "server/prompt_request.h"
#include "test_server.h"

namespace dsv4::server {
namespace {

using chat::Json;
using testing::json_of;
using testing::TestServer;
using testing::TestServerOptions;

struct Replay {
  const char* folder;
  const char* first;
  const char* second;
  Api api;
};

void PrintTo(const Replay& r, std::ostream* os) { *os << r.folder << " " << r.first << " -> " << r.second; }

Json load_body(const std::string& folder, const std::string& file) {
  std::ifstream in(std::string(DSV4_SHARED_DIR) + "/testdata/agent-requests/" + folder + "/" + file);
  EXPECT_TRUE(in) << folder << "/" << file;
  std::stringstream ss;
  ss << in.rdbuf();
  Json request = json_of(ss.str());
  // Answers are short (the point is the prompt side) and read whole.
  Json body = request["body"];
  body["stream"] = false;
  body.erase("stream_options");
  if (body.contains("max_output_tokens") || request["url"].get<std::string>().starts_with("/v1/responses")) {
    body["max_output_tokens"] = 8;
  } else {
    body["max_tokens"] = 8;
  }
  return body;
}

const char* path_of(Api api) {
  switch (api) {
    case Api::kChat: return "/v1/chat/completions";
    case Api::kResponses: return "/v1/responses";
    case Api::kMessages: return "/v1/messages";
    case Api::kCompletions: break;
  }
  return "/v1/completions";
}

// (prompt tokens, cached tokens) from a response body's usage.
std::pair<int64_t, int64_t> usage_of(Api api, const Json& body) {
  const Json& u = body["usage"];
  switch (api) {
    case Api::kMessages: {
      const int64_t cached = u["cache_read_input_tokens"];
      return {u["input_tokens"].get<int64_t>() + cached + u["cache_creation_input_tokens"].get<int64_t>(), cached};
    }
    case Api::kResponses: return {u["input_tokens"], u["input_tokens_details"]["cached_tokens"]};
    default: return {u["prompt_tokens"], u["prompt_tokens_details"]["cached_tokens"]};
  }
}

class AgentReplay : public ::testing::TestWithParam<Replay> {};

TEST_P(AgentReplay, TheFollowUpEvaluatesOnlyTheNewSuffixAndTheLastTurn) {
  const Replay& r = GetParam();
  TestServerOptions o;
  o.n_ctx = 65536;
  TestServer server(o);
  const auto& m = testing::tiny_model();
  const Json first = load_body(r.folder, r.first);
  const Json second = load_body(r.folder, r.second);
  const int64_t n1 = static_cast<int64_t>(build_prompt_request(r.api, first, *m.tokenizer, {})->tokens.size());
  const int64_t n2 = static_cast<int64_t>(build_prompt_request(r.api, second, *m.tokenizer, {})->tokens.size());
  ASSERT_GT(n2, n1);

  auto c = server.client();
  auto a = c.Post(path_of(r.api), first.dump(), "application/json");
  ASSERT_TRUE(a);
  ASSERT_EQ(a->status, 200) << a->body;
  const auto [p1, cached1] = usage_of(r.api, json_of(a->body));
  EXPECT_EQ(p1, n1);
  EXPECT_EQ(cached1, 0);

  const double prefilled_before = testing::metric(server.metrics().render(0, false), "dsv4_prefill_tokens_total");
  auto b = c.Post(path_of(r.api), second.dump(), "application/json");
  ASSERT_TRUE(b);
  ASSERT_EQ(b->status, 200) << b->body;
  const auto [p2, cached2] = usage_of(r.api, json_of(b->body));
  const int64_t evaluated = p2 - cached2;
  // The first request's prompt (up to and including its generation prefix) is reused; what is
  // evaluated is the recorded assistant turn and the tool result that follows it.
  EXPECT_GE(cached2, n1 - 1) << r.folder;
  EXPECT_LE(evaluated, n2 - n1 + 1) << r.folder;
  EXPECT_GT(evaluated, 0);
  const double prefilled = testing::metric(server.metrics().render(0, false), "dsv4_prefill_tokens_total") -
                           prefilled_before;
  EXPECT_EQ(prefilled, static_cast<double>(evaluated));
  std::printf("%s: first prompt %lld tokens, follow-up %lld tokens, evaluated %lld\n", r.folder,
              static_cast<long long>(n1), static_cast<long long>(n2), static_cast<long long>(evaluated));
}

INSTANTIATE_TEST_SUITE_P(Agents, AgentReplay,
                         ::testing::Values(Replay{"pi-tool", "001.json", "002.json", Api::kChat},
                                           Replay{"opencode-tool", "002.json", "003.json", Api::kChat},
                                           Replay{"codex-tool", "001.json", "002.json", Api::kResponses},
                                           Replay{"claude-tool", "002.json", "003.json", Api::kMessages}),
                         [](const auto& info) {
                           std::string name = info.param.folder;
                           std::replace(name.begin(), name.end(), '-', '_');
                           return name;
                         });

}  // namespace
}  // namespace dsv4::server
