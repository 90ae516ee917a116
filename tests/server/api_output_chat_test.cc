// OpenAI Chat Completions and Completions output (PROTOCOL.md §4.5, §4.6).
#include <gtest/gtest.h>

#include <map>

#include "chat/completion.h"
#include "server/api_output_test_util.h"

namespace dsv4::server {
namespace {

using namespace api_testing;  // NOLINT

// What an OpenAI client reconstructs from a chat stream, with the shape checks a strict client
// would make along the way.
struct ChatStream {
  std::string reasoning, content;
  struct Call {
    std::string id, name, arguments;
  };
  std::map<int, Call> calls;
  std::string finish_reason;
  Json usage;                      // null unless a usage chunk came
  std::vector<std::string> kinds;  // delta kinds in order: role, reasoning, content, tool
};

ChatStream read_chat_stream(const std::string& bytes, const OutputContext& c) {
  ChatStream s;
  std::vector<SseFrame> frames = frames_of(bytes);
  EXPECT_GE(frames.size(), 3u);
  if (frames.size() < 3) return s;
  EXPECT_EQ(frames.back().data, "[DONE]");
  frames.pop_back();
  bool finished = false;
  for (const SseFrame& f : frames) {
    EXPECT_FALSE(f.event.has_value()) << "chat streams have no event lines";
    Json j = data_of(f);
    // Every chunk: id, object, created, model, choices (and usage on the usage chunk), in order.
    auto it = j.begin();
    EXPECT_EQ(it.key(), "id");
    EXPECT_EQ(j["id"], c.id);
    EXPECT_EQ(j["object"], "chat.completion.chunk");
    EXPECT_EQ(j["created"], c.created);
    EXPECT_EQ(j["model"], c.model);
    if (j["choices"].empty()) {
      EXPECT_TRUE(finished) << "usage chunk before the finish chunk";
      s.usage = j["usage"];
      continue;
    }
    EXPECT_FALSE(finished) << "chunk after the finish chunk";
    EXPECT_FALSE(j.contains("usage"));
    EXPECT_EQ(j["choices"].size(), 1u);
    const Json& choice = j["choices"][0];
    EXPECT_EQ(choice["index"], 0);
    const Json& delta = choice["delta"];
    if (!choice["finish_reason"].is_null()) {
      EXPECT_TRUE(delta.empty());
      s.finish_reason = choice["finish_reason"];
      finished = true;
      continue;
    }
    EXPECT_EQ(delta.size(), 1u) << delta.dump();
    if (delta.contains("role")) {
      EXPECT_EQ(delta["role"], "assistant");
      EXPECT_TRUE(s.kinds.empty()) << "role chunk must come first";
      s.kinds.push_back("role");
    } else if (delta.contains("reasoning_content")) {
      EXPECT_FALSE(delta["reasoning_content"].get<std::string>().empty());
      s.reasoning += delta["reasoning_content"].get<std::string>();
      s.kinds.push_back("reasoning");
    } else if (delta.contains("content")) {
      EXPECT_FALSE(delta["content"].get<std::string>().empty());
      s.content += delta["content"].get<std::string>();
      s.kinds.push_back("content");
    } else {
      EXPECT_TRUE(delta.contains("tool_calls"));
      EXPECT_EQ(delta["tool_calls"].size(), 1u);
      const Json& call = delta["tool_calls"][0];
      int index = call["index"];
      if (!s.calls.contains(index)) {
        // The announcement: index, id, type, function {name, arguments ""}, in this order.
        EXPECT_EQ(index, static_cast<int>(s.calls.size()));
        std::vector<std::string> keys;
        for (auto& [k, v] : call.items()) keys.push_back(k);
        EXPECT_EQ(keys, (std::vector<std::string>{"index", "id", "type", "function"}));
        EXPECT_EQ(call["type"], "function");
        EXPECT_EQ(call["function"]["arguments"], "");
        s.calls[index] = {call["id"], call["function"]["name"], ""};
      } else {
        EXPECT_EQ(call.size(), 2u) << call.dump();
        EXPECT_EQ(call["function"].size(), 1u);
        s.calls[index].arguments += call["function"]["arguments"].get<std::string>();
      }
      s.kinds.push_back("tool");
    }
  }
  EXPECT_TRUE(finished);
  return s;
}

std::string chat_stream(const OutputContext& c, std::string_view text, bool thinking, bool tools,
                        const FinalInfo& info, size_t piece = 3) {
  auto out = ApiOutput::create(c);
  return stream_bytes(*out, event_batches(text, thinking, tools, piece), info);
}

const std::string kHead =
    R"({"id":"chatcmpl-7","object":"chat.completion.chunk","created":1767225600,"model":"deepseek-v4-flash",)";

TEST(ChatOutput, PlainTextStreamIsExact) {
  OutputContext c = make_context(Api::kChat);
  auto out = ApiOutput::create(c);
  std::vector<StreamEvent> events = {content_event("Hello, "), content_event("world!")};
  std::string bytes = out->start();
  bytes += out->on_events(events);
  bytes += out->finish(final_info(FinishReason::kStop, "Hello, world!"));
  EXPECT_EQ(
      bytes,
      "data: " + kHead +
          R"("choices":[{"index":0,"delta":{"role":"assistant"},"finish_reason":null}]})"
          "\n\ndata: " +
          kHead +
          R"("choices":[{"index":0,"delta":{"content":"Hello, world!"},"finish_reason":null}]})"
          "\n\ndata: " +
          kHead +
          R"("choices":[{"index":0,"delta":{},"finish_reason":"stop"}]})"
          "\n\ndata: [DONE]\n\n");
}

TEST(ChatOutput, PlainTextResponseIsExact) {
  OutputContext c = make_context(Api::kChat, false);
  auto out = ApiOutput::create(c);
  Usage u{.prompt_tokens = 10, .cached_tokens = 7, .completion_tokens = 2};
  EXPECT_EQ(to_wire_json(out->response(final_info(FinishReason::kStop, "Hi there", u))),
            R"({"id":"chatcmpl-7","object":"chat.completion","created":1767225600,)"
            R"("model":"deepseek-v4-flash","choices":[{"index":0,"message":{"role":"assistant",)"
            R"("content":"Hi there"},"finish_reason":"stop"}],"usage":{"prompt_tokens":10,)"
            R"("completion_tokens":2,"total_tokens":12,"prompt_tokens_details":{"cached_tokens":7,)"
            R"("cache_write_tokens":3},"completion_tokens_details":{"reasoning_tokens":0},)"
            R"("prompt_cache_hit_tokens":7,"prompt_cache_miss_tokens":3}})");
}

TEST(ChatOutput, EmptyAnswerHasEmptyStringContent) {
  OutputContext c = make_context(Api::kChat, false);
  Json body = ApiOutput::create(c)->response(final_info(FinishReason::kStop, ""));
  const Json& message = body["choices"][0]["message"];
  EXPECT_TRUE(message["content"].is_string());
  EXPECT_EQ(message["content"], "");
  EXPECT_FALSE(message.contains("reasoning_content"));
  EXPECT_FALSE(message.contains("tool_calls"));

  std::string bytes =
      chat_stream(make_context(Api::kChat), "", false, false, final_info(FinishReason::kStop, ""));
  ChatStream s = read_chat_stream(bytes, make_context(Api::kChat));
  EXPECT_EQ(s.kinds, std::vector<std::string>{"role"});
  EXPECT_EQ(s.finish_reason, "stop");
}

TEST(ChatOutput, ThinkingThenText) {
  const std::string text = "The user wants 2+2. That is 4.</think>The answer is **4**.";
  OutputContext c = make_context(Api::kChat);
  c.thinking = true;
  for (size_t piece : {1, 2, 5, 64}) {
    ChatStream s = read_chat_stream(
        chat_stream(c, text, true, false, final_info(FinishReason::kStop, text), piece), c);
    EXPECT_EQ(s.reasoning, "The user wants 2+2. That is 4.");
    EXPECT_EQ(s.content, "The answer is **4**.");
    EXPECT_EQ(s.finish_reason, "stop");
    // role, then all reasoning, then all content.
    EXPECT_EQ(s.kinds.front(), "role");
    auto first_content = std::find(s.kinds.begin(), s.kinds.end(), "content");
    EXPECT_EQ(std::find(first_content, s.kinds.end(), "reasoning"), s.kinds.end());
  }
  c.stream = false;
  Json message = ApiOutput::create(c)->response(
      final_info(FinishReason::kStop, text))["choices"][0]["message"];
  EXPECT_EQ(
      to_wire_json(message),
      R"({"role":"assistant","content":"The answer is **4**.","reasoning_content":"The user wants 2+2. That is 4."})");
}

TEST(ChatOutput, ThinkingCutByMaxTokens) {
  const std::string text = "Let me consider the options carefully";
  OutputContext c = make_context(Api::kChat);
  c.thinking = true;
  ChatStream s = read_chat_stream(
      chat_stream(c, text, true, false, final_info(FinishReason::kLength, text)), c);
  EXPECT_EQ(s.reasoning, text);  // the stream had already sent it as reasoning
  EXPECT_EQ(s.content, "");
  EXPECT_EQ(s.finish_reason, "length");
  // Non-streaming: no "</think>", so the whole text is the answer (§3.4).
  c.stream = false;
  Json body = ApiOutput::create(c)->response(final_info(FinishReason::kLength, text));
  EXPECT_EQ(body["choices"][0]["message"]["content"], text);
  EXPECT_FALSE(body["choices"][0]["message"].contains("reasoning_content"));
  EXPECT_EQ(body["choices"][0]["finish_reason"], "length");
}

const std::string kTwoCalls =
    "Checking both.</think>I will read the files." +
    dsml_block(
        {dsml_invoke("read_file", {{"path", "/tmp/a \"quoted\".txt"}, {"limit", "20", false}}),
         dsml_invoke(
             "grep",
             {{"pattern", "fn\\s+main"},
              {"options", "{\"ignore_case\": true, \"paths\": [\"src\", \"tests\"]}", false}})});

TEST(ChatOutput, ToolCallsStreamLiveAndMatchTheParsedCalls) {
  OutputContext c = make_context(Api::kChat);
  c.thinking = true;
  c.tools_active = true;
  OutputContext nc = c;
  nc.stream = false;
  Json body = ApiOutput::create(nc)->response(final_info(FinishReason::kToolCalls, kTwoCalls));
  const Json& message = body["choices"][0]["message"];
  ASSERT_EQ(message["tool_calls"].size(), 2u);
  EXPECT_EQ(body["choices"][0]["finish_reason"], "tool_calls");
  EXPECT_EQ(message["content"], "I will read the files.");
  EXPECT_EQ(message["reasoning_content"], "Checking both.");
  EXPECT_EQ(
      to_wire_json(message["tool_calls"][0]),
      R"({"id":"call_00000000000000000000000000000001","type":"function","function":)"
      R"({"name":"read_file","arguments":"{\"path\": \"/tmp/a \\\"quoted\\\".txt\", \"limit\": 20}"}})");
  EXPECT_EQ(message["tool_calls"][1]["id"], "call_00000000000000000000000000000002");

  for (size_t piece : {1, 3, 7, 200}) {
    c.new_call_id = counting_ids("call_");  // the same ids as the response above
    ChatStream s =
        read_chat_stream(chat_stream(c, kTwoCalls, true, true,
                                     final_info(FinishReason::kToolCalls, kTwoCalls), piece),
                         c);
    EXPECT_EQ(s.reasoning, "Checking both.");
    EXPECT_EQ(s.content, "I will read the files.");  // no "\n\n" separator, no markup
    ASSERT_EQ(s.calls.size(), 2u);
    for (int i = 0; i < 2; ++i) {
      const Json& parsed = message["tool_calls"][i];
      EXPECT_EQ(s.calls[i].id, parsed["id"]);
      EXPECT_EQ(s.calls[i].name, parsed["function"]["name"]);
      // The concatenated fragments are the final arguments, byte for byte.
      EXPECT_EQ(s.calls[i].arguments, parsed["function"]["arguments"]);
      EXPECT_TRUE(Json::parse(s.calls[i].arguments).is_object());
    }
    EXPECT_EQ(Json::parse(s.calls[1].arguments)["options"]["paths"][1], "tests");
    EXPECT_EQ(s.finish_reason, "tool_calls");
    // Calls are announced before all their arguments: some fragment frames follow each name.
    EXPECT_GT(std::count(s.kinds.begin(), s.kinds.end(), "tool"), 4);
  }
}

TEST(ChatOutput, ArgumentFragmentsArriveBeforeTheCallEnds) {
  OutputContext c = make_context(Api::kChat);
  c.tools_active = true;
  auto out = ApiOutput::create(c);
  std::string prefix =
      std::string(kBlockOpen) +
      "<｜DSML｜invoke name=\"run\">\n<｜DSML｜parameter name=\"xs\" string=\"false\">[1,2,3";
  chat::DsmlStreamParser parser(chat::StreamOptions{chat::ThinkingMode::chat, true});
  std::vector<StreamEvent> events;
  parser.feed(prefix, events);
  std::string bytes = out->start();
  bytes += out->on_events(events);
  auto frames = frames_of(bytes);
  ASSERT_GE(frames.size(), 3u);
  EXPECT_EQ(data_of(frames[1])["choices"][0]["delta"]["tool_calls"][0]["function"]["name"], "run");
  std::string args;
  for (size_t i = 2; i < frames.size(); ++i)
    args += data_of(frames[i])["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"];
  EXPECT_EQ(args, "{\"xs\": [1,2,3");  // raw JSON streamed as it arrives (§6.6)
}

TEST(ChatOutput, BrokenToolMarkupEndsAsStop) {
  const std::string text = "Sure." + std::string(kBlockOpen) +
                           "<｜DSML｜invoke>\n</｜DSML｜invoke>\n" + std::string(kBlockClose);
  OutputContext c = make_context(Api::kChat);
  c.tools_active = true;
  ChatStream s = read_chat_stream(
      chat_stream(c, text, false, true, final_info(FinishReason::kToolCalls, text)), c);
  EXPECT_TRUE(s.calls.empty());
  EXPECT_EQ(s.finish_reason, "stop");
  EXPECT_NE(s.content.find("<｜DSML｜invoke>"), std::string::npos);  // raw text as content

  c.stream = false;
  Json body = ApiOutput::create(c)->response(final_info(FinishReason::kToolCalls, text));
  EXPECT_EQ(body["choices"][0]["finish_reason"], "stop");
  EXPECT_FALSE(body["choices"][0]["message"].contains("tool_calls"));
}

TEST(ChatOutput, StopSequenceCutsTheNonStreamedContent) {
  OutputContext c = make_context(Api::kChat, false);
  FinalInfo info = final_info(FinishReason::kStop, "one two STOP three STOP");
  info.stop_sequence = "STOP";
  Json body = ApiOutput::create(c)->response(info);
  EXPECT_EQ(body["choices"][0]["message"]["content"], "one two ");
  EXPECT_EQ(body["choices"][0]["finish_reason"], "stop");
  // Already cut by the caller: nothing more to cut.
  info.raw_text = "one two ";
  EXPECT_EQ(ApiOutput::create(c)->response(info)["choices"][0]["message"]["content"], "one two ");
}

TEST(ChatOutput, ErrorMidStreamIsAFinishReason) {
  OutputContext c = make_context(Api::kChat);
  FinalInfo info = final_info(FinishReason::kError, "partial");
  info.error_message = "backend failed";
  ChatStream s = read_chat_stream(chat_stream(c, "partial", false, false, info), c);
  EXPECT_EQ(s.content, "partial");
  EXPECT_EQ(s.finish_reason, "error");
  c.stream = false;
  Json body = ApiOutput::create(c)->response(info);
  EXPECT_EQ(body["choices"][0]["finish_reason"], "error");
  EXPECT_EQ(body["choices"][0]["message"]["content"], "partial");
}

TEST(ChatOutput, UsageChunkOnlyWhenAskedFor) {
  Usage u{.prompt_tokens = 10, .cached_tokens = 7, .completion_tokens = 2};
  OutputContext c = make_context(Api::kChat);
  ChatStream without = read_chat_stream(
      chat_stream(c, "ok", false, false, final_info(FinishReason::kStop, "ok", u)), c);
  EXPECT_TRUE(without.usage.is_null());

  c.include_usage = true;
  std::string bytes = chat_stream(c, "ok", false, false, final_info(FinishReason::kStop, "ok", u));
  ChatStream with = read_chat_stream(bytes, c);
  EXPECT_EQ(with.usage, usage_json(Api::kChat, u));
  auto frames = frames_of(bytes);
  ASSERT_GE(frames.size(), 2u);
  EXPECT_EQ(frames[frames.size() - 2].data,
            kHead + R"("choices":[],"usage":)" + to_wire_json(usage_json(Api::kChat, u)) + "}");
}

TEST(ChatOutput, StreamsAccumulateToTheResponse) {
  for (const CorpusCase& k : well_formed_corpus()) {
    for (size_t piece : {1, 2, 3, 5, 8, 13, 1000}) {
      SCOPED_TRACE(k.name + " in pieces of " + std::to_string(piece));
      OutputContext c = make_context(Api::kChat);
      c.thinking = k.thinking;
      c.tools_active = k.tools;
      c.include_usage = true;
      OutputContext nc = c;
      nc.stream = false;
      nc.new_call_id = counting_ids("call_");
      const FinalInfo info =
          final_info(k.finish, k.text, {.prompt_tokens = 5, .completion_tokens = 3});
      ChatStream s = read_chat_stream(chat_stream(c, k.text, k.thinking, k.tools, info, piece), c);
      Json body = ApiOutput::create(nc)->response(info);
      const Json& m = body["choices"][0]["message"];
      EXPECT_EQ(s.content, m["content"]);
      EXPECT_EQ(s.reasoning, m.contains("reasoning_content") ? m["reasoning_content"] : Json(""));
      Json calls = Json::array();
      for (auto& [index, call] : s.calls) {
        calls.push_back(
            Json{{"id", call.id},
                 {"type", "function"},
                 {"function", Json{{"name", call.name}, {"arguments", call.arguments}}}});
      }
      EXPECT_EQ(calls, m.contains("tool_calls") ? m["tool_calls"] : Json::array());
      EXPECT_EQ(s.finish_reason, body["choices"][0]["finish_reason"]);
      EXPECT_EQ(s.usage, body["usage"]);
    }
  }
}

TEST(ChatOutput, ImperfectOutputStillStreamsWellFormed) {
  for (const CorpusCase& k : adversarial_corpus()) {
    for (size_t piece : {1, 4, 1000}) {
      SCOPED_TRACE(k.name + " in pieces of " + std::to_string(piece));
      OutputContext c = make_context(Api::kChat);
      c.thinking = k.thinking;
      c.tools_active = k.tools;
      ChatStream s = read_chat_stream(
          chat_stream(c, k.text, k.thinking, k.tools, final_info(k.finish, k.text), piece), c);
      EXPECT_FALSE(s.finish_reason.empty());
      c.stream = false;
      Json body = ApiOutput::create(c)->response(final_info(k.finish, k.text));
      EXPECT_TRUE(Json::accept(to_wire_json(body)));
      EXPECT_TRUE(body["choices"][0]["message"]["content"].is_string());
      for (const Json& call : body["choices"][0]["message"].value("tool_calls", Json::array()))
        EXPECT_TRUE(Json::parse(call["function"]["arguments"].get<std::string>()).is_object());
    }
  }
}

// --- legacy completions -------------------------------------------------------------------

TEST(CompletionsOutput, StreamIsExact) {
  OutputContext c = make_context(Api::kCompletions);
  c.include_usage = true;
  auto out = ApiOutput::create(c);
  std::vector<StreamEvent> events = {content_event("<think>x</think>y")};
  Usage u{.prompt_tokens = 3, .completion_tokens = 4};
  std::string bytes = out->start();
  bytes += out->on_events(events);
  bytes += out->finish(final_info(FinishReason::kLength, "<think>x</think>y", u));
  const std::string head =
      R"({"id":"cmpl-7","object":"text_completion","created":1767225600,"model":"deepseek-v4-flash",)";
  EXPECT_EQ(bytes, "data: " + head +
                       R"("choices":[{"text":"<think>x</think>y","index":0,"finish_reason":null}]})"
                       "\n\ndata: " +
                       head +
                       R"("choices":[{"text":"","index":0,"finish_reason":"length"}]})"
                       "\n\ndata: " +
                       head + R"("choices":[],"usage":)" +
                       to_wire_json(usage_json(Api::kCompletions, u)) + "}\n\ndata: [DONE]\n\n");
}

TEST(CompletionsOutput, ResponseIsTheRawText) {
  OutputContext c = make_context(Api::kCompletions, false);
  Usage u{.prompt_tokens = 3, .completion_tokens = 4};
  FinalInfo info =
      final_info(FinishReason::kStop, "def f():\n    return 1<｜end▁of▁sentence｜>", u);
  EXPECT_EQ(to_wire_json(ApiOutput::create(c)->response(info)),
            R"({"id":"cmpl-7","object":"text_completion","created":1767225600,)"
            R"("model":"deepseek-v4-flash","choices":[{"text":"def f():\n    return 1","index":0,)"
            R"("finish_reason":"stop"}],"usage":)" +
                to_wire_json(usage_json(Api::kCompletions, u)) + "}");
  info.raw_text = "a b\nc";
  info.stop_sequence = "\n";
  EXPECT_EQ(ApiOutput::create(c)->response(info)["choices"][0]["text"], "a b");
  // Thinking markup is part of the raw output, not parsed away.
  info = final_info(FinishReason::kStop, "r</think>t");
  EXPECT_EQ(ApiOutput::create(c)->response(info)["choices"][0]["text"], "r</think>t");
}

TEST(CompletionsOutput, StreamsAccumulateToTheResponse) {
  for (const CorpusCase& k : well_formed_corpus()) {
    for (size_t piece : {1, 3, 1000}) {
      SCOPED_TRACE(k.name + " in pieces of " + std::to_string(piece));
      OutputContext c = make_context(Api::kCompletions);
      const FinalInfo info = final_info(k.finish, k.text);
      std::string streamed;
      auto frames = frames_of(chat_stream(c, k.text, false, false, info, piece));
      for (const SseFrame& f : frames) {
        if (f.data != "[DONE]") streamed += data_of(f)["choices"][0]["text"].get<std::string>();
      }
      c.stream = false;
      EXPECT_EQ(streamed, ApiOutput::create(c)->response(info)["choices"][0]["text"]);
    }
  }
}

TEST(CompletionsOutput, InvalidBytesBecomeTheSameReplacementsAsInTheStream) {
  const std::string raw = "bad \xff\xfe bytes \xe2\x82 end \xf0\x9f\xa6";
  for (Api api : {Api::kCompletions, Api::kChat}) {
    OutputContext c = make_context(api);
    std::string streamed;
    for (const SseFrame& f :
         frames_of(chat_stream(c, raw, false, false, final_info(FinishReason::kStop, raw), 1))) {
      if (f.data == "[DONE]") continue;
      const Json chunk = data_of(f);
      const Json& choice = chunk["choices"][0];
      if (api == Api::kCompletions) streamed += choice["text"].get<std::string>();
      if (api == Api::kChat) streamed += choice["delta"].value("content", "");
    }
    EXPECT_EQ(streamed, "bad \ufffd\ufffd bytes \ufffd end \ufffd");
    c.stream = false;
    Json body = ApiOutput::create(c)->response(final_info(FinishReason::kStop, raw));
    const Json& choice = body["choices"][0];
    EXPECT_EQ(api == Api::kCompletions ? choice["text"] : choice["message"]["content"], streamed);
  }
}

TEST(CompletionsOutput, StreamTextConcatenatesToTheRawText) {
  const std::string text = "Once upon a time,\n there was \xe2\x9c\x93 a 🦄.";
  OutputContext c = make_context(Api::kCompletions);
  std::string bytes = chat_stream(c, text, false, false, final_info(FinishReason::kStop, text), 1);
  std::string streamed;
  auto frames = frames_of(bytes);
  ASSERT_FALSE(frames.empty());
  EXPECT_EQ(frames.back().data, "[DONE]");
  frames.pop_back();
  for (const SseFrame& f : frames) {
    EXPECT_FALSE(f.event.has_value());
    Json j = data_of(f);
    EXPECT_EQ(j["object"], "text_completion");
    EXPECT_FALSE(j["choices"][0].contains("delta"));
    streamed += j["choices"][0]["text"].get<std::string>();
  }
  EXPECT_EQ(streamed, text);
  EXPECT_EQ(data_of(frames.back())["choices"][0]["finish_reason"], "stop");
}

}  // namespace
}  // namespace dsv4::server
