// Errors (PROTOCOL.md §4.7), usage (§4.8, §6.7) and the model object (§4.2), byte for byte.
#include <gtest/gtest.h>

#include "server/api_output.h"
#include "server/sse_frames.h"

namespace dsv4::server {
namespace {

using chat::Json;

TEST(ApiErrors, OpenAiShapeForTheThreeOpenAiApis) {
  for (Api api : {Api::kChat, Api::kCompletions, Api::kResponses}) {
    HttpError e = api_error(api, 400, "missing messages");
    EXPECT_EQ(e.status, 400);
    EXPECT_EQ(e.body, R"({"error":{"message":"missing messages","type":"invalid_request_error"}})");
  }
  HttpError e = api_error(Api::kChat, 503, "server shutting down", "server_error");
  EXPECT_EQ(e.status, 503);
  EXPECT_EQ(e.body, R"({"error":{"message":"server shutting down","type":"server_error"}})");
}

TEST(ApiErrors, AnthropicNativeShapeWithTypeFromStatus) {
  HttpError e = api_error(Api::kMessages, 400, "invalid JSON request");
  EXPECT_EQ(e.status, 400);
  EXPECT_EQ(
      e.body,
      R"({"type":"error","error":{"type":"invalid_request_error","message":"invalid JSON request"}})");
  const std::pair<int, const char*> cases[] = {{401, "authentication_error"},
                                               {403, "permission_error"},
                                               {404, "not_found_error"},
                                               {409, "invalid_request_error"},
                                               {413, "request_too_large"},
                                               {429, "rate_limit_error"},
                                               {500, "api_error"},
                                               {503, "overloaded_error"}};
  for (auto [status, type] : cases) {
    HttpError err = api_error(Api::kMessages, status, "m", "ignored_type");
    EXPECT_EQ(err.status, status);
    EXPECT_EQ(err.body,
              std::string(R"({"type":"error","error":{"type":")") + type + R"(","message":"m"}})");
  }
}

TEST(ApiErrors, MessagesAreEscapedAndAlwaysValidJson) {
  HttpError e = api_error(Api::kChat, 400, std::string("bad \"x\"\n\xff"));
  EXPECT_EQ(e.body,
            "{\"error\":{\"message\":\"bad "
            "\\\"x\\\"\\n\xef\xbf\xbd\",\"type\":\"invalid_request_error\"}}");
  EXPECT_TRUE(Json::accept(api_error(Api::kMessages, 400, "\xc3").body));
}

TEST(ApiErrors, ContextLengthOpenAi) {
  HttpError e = context_length_error(Api::kChat, 70000, 65536, "messages");
  EXPECT_EQ(e.status, 400);
  EXPECT_EQ(
      e.body,
      R"({"error":{"message":"Prompt has 70000 tokens, but the configured context size is 65536 tokens",)"
      R"("type":"invalid_request_error","param":"messages","code":"context_length_exceeded",)"
      R"("n_prompt_tokens":70000,"n_ctx":65536}})");
  EXPECT_NE(context_length_error(Api::kResponses, 5, 4, "input").body.find(R"("param":"input")"),
            std::string::npos);
  EXPECT_NE(
      context_length_error(Api::kCompletions, 5, 4, "prompt").body.find(R"("param":"prompt")"),
      std::string::npos);
}

TEST(ApiErrors, ContextLengthAnthropic) {
  HttpError e = context_length_error(Api::kMessages, 12, 12, "messages");
  EXPECT_EQ(e.status, 400);
  EXPECT_EQ(e.body,
            R"({"type":"error","error":{"type":"invalid_request_error",)"
            R"("message":"Prompt has 12 tokens, but the configured context size is 12 tokens",)"
            R"("n_prompt_tokens":12,"n_ctx":12}})");
}

TEST(ApiErrors, InStreamErrorEvents) {
  EXPECT_EQ(sse_error_event(Api::kChat, "prefill failed"),
            "event: error\ndata: {\"error\":{\"message\":\"prefill "
            "failed\",\"type\":\"server_error\"}}\n\n");
  EXPECT_EQ(sse_error_event(Api::kResponses, "x"),
            "event: error\ndata: {\"error\":{\"message\":\"x\",\"type\":\"server_error\"}}\n\n");
  EXPECT_EQ(sse_error_event(Api::kMessages, "prefill failed"),
            "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"api_error\","
            "\"message\":\"prefill failed\"}}\n\n");
  EXPECT_TRUE(api_testing::parse_sse(sse_error_event(Api::kCompletions, "a\n\nb")).ok());
}

// §6.7: cache_read 7, cache_write 3, prompt 10, completion 2.
TEST(Usage, ShapeVectorOfTheSpec) {
  Usage u{.prompt_tokens = 10, .cached_tokens = 7, .completion_tokens = 2, .reasoning_tokens = 1};
  EXPECT_EQ(to_wire_json(usage_json(Api::kChat, u)),
            R"({"prompt_tokens":10,"completion_tokens":2,"total_tokens":12,)"
            R"("prompt_tokens_details":{"cached_tokens":7,"cache_write_tokens":3},)"
            R"("completion_tokens_details":{"reasoning_tokens":1},)"
            R"("prompt_cache_hit_tokens":7,"prompt_cache_miss_tokens":3})");
  EXPECT_EQ(usage_json(Api::kCompletions, u), usage_json(Api::kChat, u));
  EXPECT_EQ(
      to_wire_json(usage_json(Api::kResponses, u)),
      R"({"input_tokens":10,"input_tokens_details":{"cached_tokens":7,"cache_write_tokens":3},)"
      R"("output_tokens":2,"output_tokens_details":{"reasoning_tokens":1},"total_tokens":12})");
  EXPECT_EQ(to_wire_json(usage_json(Api::kMessages, u)),
            R"({"input_tokens":0,"output_tokens":2,"cache_read_input_tokens":7,)"
            R"("cache_creation_input_tokens":3})");
}

TEST(Usage, MatchesDeepSeekOfficialFields) {
  // testdata/official-api/official/long_code_audit.official.json
  Usage u{.prompt_tokens = 3844, .cached_tokens = 3840, .completion_tokens = 4};
  Json j = usage_json(Api::kChat, u);
  EXPECT_EQ(j["prompt_tokens"], 3844);
  EXPECT_EQ(j["completion_tokens"], 4);
  EXPECT_EQ(j["total_tokens"], 3848);
  EXPECT_EQ(j["prompt_tokens_details"]["cached_tokens"], 3840);
  EXPECT_EQ(j["prompt_cache_hit_tokens"], 3840);
  EXPECT_EQ(j["prompt_cache_miss_tokens"], 4);
}

TEST(Usage, InconsistentCountsAreClamped) {
  Usage u{.prompt_tokens = 5, .cached_tokens = 9, .completion_tokens = 3, .reasoning_tokens = 8};
  Json j = usage_json(Api::kResponses, u);
  EXPECT_EQ(j["input_tokens_details"]["cached_tokens"], 5);
  EXPECT_EQ(j["input_tokens_details"]["cache_write_tokens"], 0);
  EXPECT_EQ(j["output_tokens_details"]["reasoning_tokens"], 3);
  Usage negative{.prompt_tokens = -1, .cached_tokens = -4, .completion_tokens = -2};
  Json a = usage_json(Api::kMessages, negative);
  EXPECT_EQ(
      to_wire_json(a),
      R"({"input_tokens":0,"output_tokens":0,"cache_read_input_tokens":0,"cache_creation_input_tokens":0})");
}

TEST(ModelObject, ShapeOfTheSpec) {
  EXPECT_EQ(
      to_wire_json(model_object("deepseek-v4-flash", 65536, 393216)),
      R"({"id":"deepseek-v4-flash","object":"model","created":1767225600,"owned_by":"dsv4",)"
      R"("name":"DeepSeek V4 Flash","context_length":65536,"top_provider":{"context_length":65536,)"
      R"("max_completion_tokens":65536,"is_moderated":false},"supported_parameters":["tools",)"
      R"("tool_choice","max_tokens","temperature","top_p","top_k","min_p","stop","seed","stream",)"
      R"("reasoning_effort"]})");
  EXPECT_EQ(model_object("m", 65536, 4096)["top_provider"]["max_completion_tokens"], 4096);
}

TEST(ToolSearch, OfferedOnlyByAToolSearchTool) {
  EXPECT_TRUE(responses_offers_tool_search(
      Json::parse(R"({"tools":[{"type":"function","name":"a"},{"type":"tool_search"}]})")));
  EXPECT_FALSE(responses_offers_tool_search(
      Json::parse(R"({"tools":[{"type":"function","name":"tool_search"}]})")));
  EXPECT_FALSE(responses_offers_tool_search(Json::parse(R"({"tools":"tool_search"})")));
  EXPECT_FALSE(responses_offers_tool_search(Json::parse(R"({"tools":[1,null,"x"]})")));
  EXPECT_FALSE(responses_offers_tool_search(Json::parse("[]")));
}

}  // namespace
}  // namespace dsv4::server
