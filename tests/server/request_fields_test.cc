// Generation fields of the four APIs (PROTOCOL.md §4.3–4.4): which fields each API reads, their
// types and ranges, and the thinking-mode sampling override.
#include "server/request_fields.h"

#include <gtest/gtest.h>

namespace dsv4::server {
namespace {

using chat::Json;

Json parse(const char* text) { return chat::parse_json(text).value(); }

TEST(RequestFields, DefaultsWhenNothingIsGiven) {
  for (Api api : {Api::kChat, Api::kCompletions, Api::kResponses, Api::kMessages}) {
    Result<RequestFields> f = parse_request_fields(api, parse("{}"));
    ASSERT_TRUE(f.ok()) << f.error().message;
    EXPECT_FALSE(f->stream);
    EXPECT_FALSE(f->max_tokens.has_value());
    EXPECT_TRUE(f->stop.empty());
    EXPECT_FLOAT_EQ(f->sampling.temperature, 1.0f);
    EXPECT_FLOAT_EQ(f->sampling.top_p, 1.0f);
    EXPECT_FLOAT_EQ(f->sampling.min_p, 0.05f);
    EXPECT_EQ(f->sampling.top_k, 0);
    EXPECT_EQ(f->sampling.seed, 0u);
  }
}

TEST(RequestFields, ChatReadsEveryListedField) {
  Result<RequestFields> f = parse_request_fields(
      Api::kChat, parse(R"({"model":"m","max_tokens":10,"max_completion_tokens":20,"temperature":0.5,"top_p":0.9,
        "min_p":0.1,"top_k":40,"seed":7,"stop":["a","","b"],"stream":true,"stream_options":{"include_usage":true},
        "presence_penalty":0.5,"frequency_penalty":-0.5})"));
  ASSERT_TRUE(f.ok()) << f.error().message;
  EXPECT_EQ(f->model, "m");
  EXPECT_EQ(*f->max_tokens, 20);  // max_completion_tokens wins
  EXPECT_FLOAT_EQ(f->sampling.temperature, 0.5f);
  EXPECT_FLOAT_EQ(f->sampling.top_p, 0.9f);
  EXPECT_FLOAT_EQ(f->sampling.min_p, 0.1f);
  EXPECT_EQ(f->sampling.top_k, 40);
  EXPECT_EQ(f->sampling.seed, 7u);
  EXPECT_FLOAT_EQ(f->sampling.presence_penalty, 0.5f);
  EXPECT_FLOAT_EQ(f->sampling.frequency_penalty, -0.5f);
  EXPECT_EQ(f->stop, (std::vector<std::string>{"a", "b"}));
  EXPECT_TRUE(f->stream);
  EXPECT_TRUE(f->include_usage);
}

TEST(RequestFields, StopMayBeAString) {
  Result<RequestFields> f = parse_request_fields(Api::kCompletions, parse(R"({"stop":"END","max_tokens":3})"));
  ASSERT_TRUE(f.ok());
  EXPECT_EQ(f->stop, (std::vector<std::string>{"END"}));
  EXPECT_EQ(*f->max_tokens, 3);
  EXPECT_TRUE(parse_request_fields(Api::kCompletions, parse(R"({"stop":""})"))->stop.empty());
}

TEST(RequestFields, ResponsesReadsItsOwnNames) {
  Result<RequestFields> f = parse_request_fields(
      Api::kResponses, parse(R"({"max_output_tokens":9,"max_tokens":99,"temperature":0.2,"top_k":5,
        "stop":"x","reasoning":{"effort":"high","summary":"auto"}})"));
  ASSERT_TRUE(f.ok()) << f.error().message;
  EXPECT_EQ(*f->max_tokens, 9);
  EXPECT_FLOAT_EQ(f->sampling.temperature, 0.2f);
  EXPECT_EQ(f->sampling.top_k, 0);  // not a Responses field: ignored
  EXPECT_TRUE(f->stop.empty());
  EXPECT_TRUE(f->reasoning_summary);
  for (const char* s : {"concise", "detailed"}) {
    Json body = {{"reasoning", {{"summary", s}}}};
    EXPECT_TRUE(parse_request_fields(Api::kResponses, body)->reasoning_summary) << s;
  }
  EXPECT_FALSE(parse_request_fields(Api::kResponses, parse(R"({"reasoning":{"summary":"none"}})"))->reasoning_summary);
  EXPECT_FALSE(parse_request_fields(Api::kResponses, parse(R"({"reasoning":{"effort":"low"}})"))->reasoning_summary);
}

TEST(RequestFields, MessagesReadsStopSequencesAndTopK) {
  Result<RequestFields> f = parse_request_fields(
      Api::kMessages, parse(R"({"max_tokens":32000,"stop_sequences":["\n\nHuman:"],"top_k":3,"stop":["ignored"],
        "min_p":0.5,"seed":1})"));
  ASSERT_TRUE(f.ok()) << f.error().message;
  EXPECT_EQ(*f->max_tokens, 32000);
  EXPECT_EQ(f->stop, (std::vector<std::string>{"\n\nHuman:"}));
  EXPECT_EQ(f->sampling.top_k, 3);
  EXPECT_FLOAT_EQ(f->sampling.min_p, 0.05f);  // not an Anthropic field
  EXPECT_EQ(f->sampling.seed, 0u);
  EXPECT_FALSE(parse_request_fields(Api::kMessages, parse(R"({"stop_sequences":"x"})")).ok());
}

TEST(RequestFields, IntegralFloatsAreIntegers) {
  Result<RequestFields> f = parse_request_fields(Api::kChat, parse(R"({"max_tokens":64.0,"top_k":40.0})"));
  ASSERT_TRUE(f.ok());
  EXPECT_EQ(*f->max_tokens, 64);
  EXPECT_EQ(f->sampling.top_k, 40);
}

TEST(RequestFields, NullMeansAbsent) {
  Result<RequestFields> f = parse_request_fields(
      Api::kChat, parse(R"({"max_tokens":null,"temperature":null,"stop":null,"stream":null,"stream_options":null})"));
  ASSERT_TRUE(f.ok()) << f.error().message;
  EXPECT_FALSE(f->max_tokens.has_value());
  EXPECT_FLOAT_EQ(f->sampling.temperature, 1.0f);
}

struct BadCase {
  Api api;
  const char* body;
  const char* field;  // the error message starts with it
};

TEST(RequestFields, WrongTypesAndRangesNameTheField) {
  const BadCase cases[] = {
      {Api::kChat, R"({"temperature":"hot"})", "temperature"},
      {Api::kChat, R"({"temperature":-1})", "temperature"},
      {Api::kChat, R"({"top_p":0})", "top_p"},
      {Api::kChat, R"({"top_p":1.5})", "top_p"},
      {Api::kChat, R"({"min_p":2})", "min_p"},
      {Api::kChat, R"({"top_k":-3})", "top_k"},
      {Api::kChat, R"({"top_k":1.5})", "top_k"},
      {Api::kChat, R"({"seed":"x"})", "seed"},
      {Api::kChat, R"({"max_tokens":0})", "max_tokens"},
      {Api::kChat, R"({"max_tokens":-5})", "max_tokens"},
      {Api::kChat, R"({"max_completion_tokens":"many"})", "max_completion_tokens"},
      {Api::kChat, R"({"max_tokens":1e300})", "max_tokens"},
      {Api::kChat, R"({"stop":5})", "stop"},
      {Api::kChat, R"({"stop":["a",1]})", "stop"},
      {Api::kChat, R"({"stream":"yes"})", "stream"},
      {Api::kChat, R"({"stream_options":true})", "stream_options"},
      {Api::kChat, R"({"stream_options":{"include_usage":1}})", "stream_options.include_usage"},
      {Api::kChat, R"({"presence_penalty":3})", "presence_penalty"},
      {Api::kChat, R"({"model":5})", "model"},
      {Api::kCompletions, R"({"temperature":1e40})", "temperature"},
      {Api::kResponses, R"({"max_output_tokens":0})", "max_output_tokens"},
      {Api::kResponses, R"({"reasoning":"high"})", "reasoning"},
      {Api::kResponses, R"({"reasoning":{"summary":3}})", "reasoning.summary"},
      {Api::kMessages, R"({"max_tokens":"1"})", "max_tokens"},
      {Api::kMessages, R"({"top_k":"1"})", "top_k"},
  };
  for (const BadCase& c : cases) {
    Result<RequestFields> f = parse_request_fields(c.api, parse(c.body));
    ASSERT_FALSE(f.ok()) << c.body;
    EXPECT_TRUE(f.error().message.starts_with(c.field)) << c.body << " -> " << f.error().message;
  }
  EXPECT_FALSE(parse_request_fields(Api::kChat, parse("[]")).ok());
}

TEST(RequestFields, ThinkingModeForcesTheDefaultSampling) {
  RequestFields f;
  f.sampling.temperature = 0.0f;
  f.sampling.top_p = 0.5f;
  f.sampling.top_k = 3;
  f.sampling.min_p = 0.2f;
  f.sampling.presence_penalty = 1.0f;
  f.sampling.seed = 42;
  engine::SamplingParams t = effective_sampling(f, chat::ThinkingMode::thinking, 99);
  EXPECT_FLOAT_EQ(t.temperature, 1.0f);
  EXPECT_FLOAT_EQ(t.top_p, 1.0f);
  EXPECT_EQ(t.top_k, 0);
  EXPECT_FLOAT_EQ(t.min_p, 0.05f);
  EXPECT_FLOAT_EQ(t.presence_penalty, 1.0f);
  EXPECT_EQ(t.seed, 42u);
  engine::SamplingParams c = effective_sampling(f, chat::ThinkingMode::chat, 99);
  EXPECT_FLOAT_EQ(c.temperature, 0.0f);
  EXPECT_FLOAT_EQ(c.top_p, 0.5f);
  EXPECT_EQ(c.top_k, 3);
  f.sampling.seed = 0;
  EXPECT_EQ(effective_sampling(f, chat::ThinkingMode::chat, 99).seed, 99u);
}

TEST(RequestFields, MaxTokensIsClippedToTheFreeContext) {
  EXPECT_EQ(effective_max_tokens(std::nullopt, 393216, 4096, 1000), 3096);
  EXPECT_EQ(effective_max_tokens(100, 393216, 4096, 1000), 100);
  EXPECT_EQ(effective_max_tokens(5000, 393216, 4096, 1000), 3096);
  EXPECT_EQ(effective_max_tokens(std::nullopt, 50, 4096, 1000), 50);
  EXPECT_EQ(effective_max_tokens(10, 50, 4096, 4096), 0);
}

}  // namespace
}  // namespace dsv4::server
