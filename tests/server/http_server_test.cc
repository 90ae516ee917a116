// dsv4 serve over real HTTP with the tiny model: endpoints, the four APIs streaming and not,
// SSE framing, errors in each API's shape, limits, API keys and CORS (PROTOCOL.md §4).
#include "server/http_server.h"

#include <gtest/gtest.h>

#include <cctype>
#include <chrono>
#include <string>
#include <thread>

#include "test_server.h"

namespace dsv4::server {
namespace {

using chat::Json;
using testing::json_of;
using testing::sse_frames_of;
using testing::TestServer;
using testing::TestServerOptions;

const char* kJsonType = "application/json";

std::string chat_body(bool stream, int max_tokens = 6, const std::string& extra = "") {
  return R"({"model":"deepseek-v4-flash","messages":[{"role":"user","content":"Say hi"}],"max_tokens":)" +
         std::to_string(max_tokens) + R"(,"thinking":false,"temperature":0)" + (stream ? R"(,"stream":true)" : "") +
         extra + "}";
}

class HttpServerTest : public ::testing::Test {
 protected:
  TestServer server;
};

// With drafts (--draft), a request whose prompt repeats has drafts verified: /metrics counts them
// and the ones kept (at most as many), and without drafts both stay 0.
TEST(HttpServerDrafts, DraftsAreCounted) {
  std::string words;
  for (int i = 0; i < 6; ++i) words += "alpha beta gamma delta epsilon zeta ";
  const std::string body = R"({"model":"deepseek-v4-flash","messages":[{"role":"user","content":")" + words +
                           R"("}],"max_tokens":48,"thinking":false,"temperature":0})";
  for (int draft : {0, 3}) {
    SCOPED_TRACE(draft);
    TestServerOptions o;
    o.draft_tokens = draft;
    TestServer server(o);
    auto c = server.client();
    auto r = c.Post("/v1/chat/completions", body, kJsonType);
    ASSERT_TRUE(r);
    ASSERT_EQ(r->status, 200) << r->body;
    const std::string m = server.metrics().render(0, false);
    const double drafted = testing::metric(m, "dsv4_draft_tokens_total");
    const double kept = testing::metric(m, "dsv4_draft_accepted_tokens_total");
    if (draft == 0) {
      EXPECT_EQ(drafted, 0);
    } else {
      EXPECT_GT(drafted, 0);
    }
    EXPECT_LE(kept, drafted);
  }
}

TEST_F(HttpServerTest, HealthModelsAndMetrics) {
  auto c = server.client();
  auto health = c.Get("/health");
  ASSERT_TRUE(health);
  EXPECT_EQ(health->status, 200);
  EXPECT_EQ(json_of(health->body)["status"], "ok");

  auto models = c.Get("/v1/models");
  ASSERT_TRUE(models);
  EXPECT_EQ(models->status, 200);
  Json list = json_of(models->body);
  EXPECT_EQ(list["object"], "list");
  ASSERT_EQ(list["data"].size(), 1u);
  EXPECT_EQ(list["data"][0]["id"], "deepseek-v4-flash");
  EXPECT_EQ(list["data"][0]["context_length"], 8192);

  auto one = c.Get("/v1/models/deepseek-v4-flash");
  ASSERT_TRUE(one);
  EXPECT_EQ(one->status, 200);
  EXPECT_EQ(json_of(one->body)["object"], "model");

  auto unknown = c.Get("/v1/models/gpt-17");
  ASSERT_TRUE(unknown);
  EXPECT_EQ(unknown->status, 404);
  EXPECT_EQ(json_of(unknown->body)["error"]["type"], "invalid_request_error");

  auto nowhere = c.Get("/v2/whatever");
  ASSERT_TRUE(nowhere);
  EXPECT_EQ(nowhere->status, 404);
  EXPECT_EQ(json_of(nowhere->body)["error"]["message"], "unknown endpoint");

  // A request is counted by the server's logger after its response went out: the client can read
  // /metrics before the last /v1/models answer is counted, so it asks again for a while.
  const std::string counted = "dsv4_http_requests_total{route=\"models\",status=\"200\"} 2";
  auto metrics = c.Get("/metrics");
  for (int i = 0; i < 100 && metrics && metrics->body.find(counted) == std::string::npos; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    metrics = c.Get("/metrics");
  }
  ASSERT_TRUE(metrics);
  EXPECT_EQ(metrics->status, 200);
  EXPECT_EQ(testing::metric(metrics->body, "dsv4_queue_depth"), 0);
  EXPECT_NE(metrics->body.find(counted), std::string::npos);
  EXPECT_NE(metrics->body.find("# TYPE dsv4_prefill_tokens_per_second gauge"), std::string::npos);
}

TEST_F(HttpServerTest, ChatCompletionNonStreaming) {
  auto c = server.client();
  auto r = c.Post("/v1/chat/completions", chat_body(false), kJsonType);
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  Json b = json_of(r->body);
  EXPECT_EQ(b["object"], "chat.completion");
  EXPECT_TRUE(b["id"].get<std::string>().starts_with("chatcmpl-"));
  EXPECT_EQ(b["model"], "deepseek-v4-flash");
  EXPECT_EQ(b["choices"][0]["message"]["role"], "assistant");
  EXPECT_TRUE(b["choices"][0]["message"]["content"].is_string());
  const std::string finish = b["choices"][0]["finish_reason"];
  EXPECT_TRUE(finish == "stop" || finish == "length") << finish;
  EXPECT_GT(b["usage"]["prompt_tokens"].get<int>(), 3);
  EXPECT_LE(b["usage"]["completion_tokens"].get<int>(), 6);
  EXPECT_EQ(b["usage"]["prompt_tokens_details"]["cached_tokens"], 0);

  // The same request again: everything but the generation prefix comes from the live session.
  auto again = c.Post("/v1/chat/completions", chat_body(false), kJsonType);
  ASSERT_TRUE(again);
  Json b2 = json_of(again->body);
  EXPECT_EQ(b2["usage"]["prompt_tokens_details"]["cached_tokens"], b2["usage"]["prompt_tokens"]);
  EXPECT_EQ(b2["usage"]["prompt_cache_hit_tokens"], b2["usage"]["prompt_tokens"]);
}

TEST_F(HttpServerTest, ChatStreamIsWellFramedSse) {
  auto c = server.client();
  auto r = c.Post("/v1/chat/completions", chat_body(true, 6, R"(,"stream_options":{"include_usage":true})"), kJsonType);
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200);
  EXPECT_EQ(r->get_header_value("Content-Type"), "text/event-stream");
  EXPECT_EQ(r->get_header_value("Cache-Control"), "no-cache");
  auto frames = sse_frames_of(r->body);
  ASSERT_GE(frames.size(), 4u);
  for (const auto& f : frames) EXPECT_FALSE(f.event.has_value());  // OpenAI chat has no event lines
  EXPECT_EQ(json_of(frames[0].data)["choices"][0]["delta"]["role"], "assistant");
  EXPECT_EQ(frames.back().data, "[DONE]");
  Json usage = json_of(frames[frames.size() - 2].data);
  EXPECT_TRUE(usage["choices"].empty());
  EXPECT_GT(usage["usage"]["prompt_tokens"].get<int>(), 0);
  Json finish = json_of(frames[frames.size() - 3].data);
  EXPECT_FALSE(finish["choices"][0]["finish_reason"].is_null());
}

TEST(HttpServerPrefill, LongPrefillsSendKeepAliveComments) {
  TestServerOptions o;
  o.prefill_comment_interval = std::chrono::milliseconds(0);  // at every progress report
  TestServer server(o);
  Json body = {{"messages", Json::array({{{"role", "user"}, {"content", std::string(3000, 'p')}}})},
               {"max_tokens", 2},
               {"stream", true}};
  auto r = server.client().Post("/v1/chat/completions", body.dump(), kJsonType);
  ASSERT_TRUE(r);
  auto frames = sse_frames_of(r->body);
  ASSERT_GE(frames.size(), 3u);
  EXPECT_TRUE(frames[0].comment);
  size_t first_data = 0;
  while (first_data < frames.size() && frames[first_data].comment) ++first_data;
  ASSERT_LT(first_data, frames.size());
  EXPECT_EQ(json_of(frames[first_data].data)["choices"][0]["delta"]["role"], "assistant");
  EXPECT_EQ(r->body.substr(0, 11), ": prefill\n\n");
}

TEST_F(HttpServerTest, AnthropicStreamHasNamedEvents) {
  auto c = server.client();
  const std::string body =
      R"({"model":"claude-x","max_tokens":6,"stream":true,"messages":[{"role":"user","content":"Hi"}]})";
  auto r = c.Post("/v1/messages?beta=true", body, kJsonType);
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200);
  auto frames = sse_frames_of(r->body);
  ASSERT_GE(frames.size(), 3u);
  EXPECT_EQ(frames.front().event, "message_start");
  EXPECT_EQ(json_of(frames.front().data)["message"]["model"], "claude-x");  // echoed
  EXPECT_EQ(frames.back().event, "message_stop");
  EXPECT_EQ(frames[frames.size() - 2].event, "message_delta");
  for (const auto& f : frames) {
    ASSERT_TRUE(f.event.has_value());
    EXPECT_EQ(json_of(f.data)["type"], *f.event);
  }
}

TEST_F(HttpServerTest, ResponsesStreamNumbersItsEvents) {
  auto c = server.client();
  const std::string body = R"({"model":"m","max_output_tokens":6,"stream":true,"input":"Hi","reasoning":{"effort":"none"}})";
  auto r = c.Post("/v1/responses", body, kJsonType);
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200);
  auto frames = sse_frames_of(r->body);
  ASSERT_GE(frames.size(), 2u);
  int64_t seq = 0;
  for (const auto& f : frames) {
    Json e = json_of(f.data);
    EXPECT_EQ(e["sequence_number"], seq++);
    EXPECT_EQ(std::next(e.begin()).key(), "sequence_number");  // the second field
  }
  EXPECT_EQ(json_of(frames.front().data)["type"], "response.created");
  const std::string last = json_of(frames.back().data)["type"];
  EXPECT_TRUE(last == "response.completed" || last == "response.incomplete") << last;
}

TEST_F(HttpServerTest, RawCompletionsAndCountTokens) {
  auto c = server.client();
  auto r = c.Post("/v1/completions", R"({"prompt":"Once upon a time","max_tokens":5,"temperature":0})", kJsonType);
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  Json b = json_of(r->body);
  EXPECT_EQ(b["object"], "text_completion");
  EXPECT_TRUE(b["choices"][0]["text"].is_string());

  auto n = c.Post("/v1/messages/count_tokens", R"({"model":"x","messages":[{"role":"user","content":"Hi"}]})",
                  kJsonType);
  ASSERT_TRUE(n);
  ASSERT_EQ(n->status, 200);
  EXPECT_GT(json_of(n->body)["input_tokens"].get<int>(), 2);
}

TEST_F(HttpServerTest, StopSequencesCutTheText) {
  auto c = server.client();
  // Greedy, so the first run tells which text comes; then stop on a piece of it.
  auto first = c.Post("/v1/completions", R"({"prompt":"abc","max_tokens":12,"temperature":0})", kJsonType);
  ASSERT_TRUE(first);
  const std::string text = json_of(first->body)["choices"][0]["text"];
  // A stop string from the middle of the text, on character boundaries (two ASCII letters).
  size_t at = 1;
  while (at + 1 < text.size() && !(std::isalpha(static_cast<unsigned char>(text[at])) &&
                                   std::isalpha(static_cast<unsigned char>(text[at + 1])))) {
    ++at;
  }
  ASSERT_LT(at + 1, text.size()) << "no two ASCII letters in a row after the start: " << text;
  const std::string stop = text.substr(at, 2);
  Json req = {{"prompt", "abc"}, {"max_tokens", 12}, {"temperature", 0}, {"stop", stop}};
  auto cut = c.Post("/v1/completions", req.dump(), kJsonType);
  ASSERT_TRUE(cut);
  Json b = json_of(cut->body);
  EXPECT_EQ(b["choices"][0]["text"], text.substr(0, text.find(stop)));
  EXPECT_EQ(b["choices"][0]["finish_reason"], "stop");
}

struct ErrorCase {
  const char* path;
  std::string body;
  int status;
  const char* message_start;
};

TEST_F(HttpServerTest, BadRequestsGetErrorsInTheirApisShape) {
  const ErrorCase cases[] = {
      {"/v1/chat/completions", "{not json", 400, "invalid JSON request"},
      {"/v1/chat/completions", "[1,2]", 400, "the request must be a JSON object"},
      {"/v1/chat/completions", R"({"model":"x"})", 400, "missing messages"},
      {"/v1/chat/completions", chat_body(false, 5, R"(,"temperature":"hot")"), 400, "temperature"},
      {"/v1/chat/completions", chat_body(false, 5, R"(,"stop":[1])"), 400, "stop"},
      {"/v1/chat/completions", R"({"messages":[{"role":"user","content":"x"}],"reasoning_effort":"extreme"})", 400, ""},
      {"/v1/completions", R"({"max_tokens":3})", 400, "missing prompt"},
      {"/v1/responses", R"({"input":"x","previous_response_id":"resp_1"})", 400, "previous_response_id is not supported"},
      {"/v1/responses", R"({"input":"x","tool_choice":{"type":"function","name":"f"}})", 400,
       "forced tool_choice not supported"},
      {"/v1/messages", R"({"messages":"hello"})", 400, ""},
  };
  auto c = server.client();
  for (const ErrorCase& e : cases) {
    auto r = c.Post(e.path, e.body, kJsonType);
    ASSERT_TRUE(r) << e.body;
    EXPECT_EQ(r->status, e.status) << e.body;
    Json b = json_of(r->body);
    const bool anthropic = std::string(e.path) == "/v1/messages";
    if (anthropic) {
      EXPECT_EQ(b["type"], "error");
      EXPECT_EQ(b["error"]["type"], "invalid_request_error");
    } else {
      EXPECT_EQ(b["error"]["type"], "invalid_request_error") << r->body;
      EXPECT_TRUE(b["error"]["message"].get<std::string>().starts_with(e.message_start)) << r->body;
    }
  }
  // Nothing reached the engine.
  EXPECT_EQ(testing::metric(server.metrics().render(0, false), "dsv4_prompt_tokens_total"), 0);
}

TEST(HttpServerLimits, HugeBodiesAndLongPromptsAreRefusedWith4xx) {
  TestServerOptions o;
  o.max_body_bytes = 4096;
  o.n_ctx = 64;
  TestServer server(o);
  auto c = server.client();
  std::string huge = R"({"messages":[{"role":"user","content":")" + std::string(10000, 'x') + R"("}]})";
  auto r = c.Post("/v1/chat/completions", huge, kJsonType);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 413);
  EXPECT_EQ(json_of(r->body)["error"]["message"], "request body too large");

  std::string long_prompt = R"({"messages":[{"role":"user","content":")" + std::string(3000, 'y') + R"("}]})";
  auto ctx = c.Post("/v1/chat/completions", long_prompt, kJsonType);
  ASSERT_TRUE(ctx);
  EXPECT_EQ(ctx->status, 400);
  Json e = json_of(ctx->body)["error"];
  EXPECT_EQ(e["code"], "context_length_exceeded");
  EXPECT_EQ(e["n_ctx"], 64);
  EXPECT_EQ(e["param"], "messages");
  auto anthropic = c.Post("/v1/messages", long_prompt, kJsonType);
  ASSERT_TRUE(anthropic);
  EXPECT_EQ(anthropic->status, 400);
  EXPECT_EQ(json_of(anthropic->body)["type"], "error");
  EXPECT_EQ(json_of(anthropic->body)["error"]["n_ctx"], 64);

  // The server is still there.
  auto h = c.Get("/health");
  ASSERT_TRUE(h);
  EXPECT_EQ(h->status, 200);
}

TEST(HttpServerAuth, TheApiKeyIsRequiredExceptForHealth) {
  TestServerOptions o;
  o.api_key = "sekret";
  TestServer server(o);
  auto c = server.client();
  auto none = c.Post("/v1/chat/completions", chat_body(false), kJsonType);
  ASSERT_TRUE(none);
  EXPECT_EQ(none->status, 401);
  EXPECT_EQ(json_of(none->body)["error"]["type"], "authentication_error");
  auto models = c.Get("/v1/models");
  ASSERT_TRUE(models);
  EXPECT_EQ(models->status, 401);
  auto wrong = c.Post("/v1/messages", httplib::Headers{{"x-api-key", "sekreT"}}, R"({"messages":[]})", kJsonType);
  ASSERT_TRUE(wrong);
  EXPECT_EQ(wrong->status, 401);
  EXPECT_EQ(json_of(wrong->body)["error"]["type"], "authentication_error");
  EXPECT_EQ(json_of(wrong->body)["type"], "error");
  auto health = c.Get("/health");
  ASSERT_TRUE(health);
  EXPECT_EQ(health->status, 200);

  auto bearer = c.Get("/v1/models", httplib::Headers{{"Authorization", "Bearer sekret"}});
  ASSERT_TRUE(bearer);
  EXPECT_EQ(bearer->status, 200);
  auto xkey = c.Get("/v1/models", httplib::Headers{{"x-api-key", "sekret"}});
  ASSERT_TRUE(xkey);
  EXPECT_EQ(xkey->status, 200);
}

TEST(HttpServerCors, PreflightAndHeadersWhenEnabled) {
  TestServerOptions o;
  o.cors = true;
  TestServer server(o);
  auto c = server.client();
  auto pre = c.Options("/v1/chat/completions");
  ASSERT_TRUE(pre);
  EXPECT_EQ(pre->status, 204);
  EXPECT_EQ(pre->get_header_value("Access-Control-Allow-Origin"), "*");
  EXPECT_EQ(pre->get_header_value("Access-Control-Allow-Methods"), "GET, POST, OPTIONS");
  EXPECT_EQ(pre->get_header_value("Access-Control-Allow-Headers"), "*");
  auto get = c.Get("/v1/models");
  ASSERT_TRUE(get);
  EXPECT_EQ(get->get_header_value("Access-Control-Allow-Origin"), "*");

  TestServer plain;
  auto p = plain.client().Get("/v1/models");
  ASSERT_TRUE(p);
  EXPECT_FALSE(p->has_header("Access-Control-Allow-Origin"));
}

}  // namespace
}  // namespace dsv4::server
