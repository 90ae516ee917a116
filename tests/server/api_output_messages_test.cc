// Anthropic Messages output (PROTOCOL.md §4.5, §4.6).
#include <gtest/gtest.h>

#include <map>

#include "server/api_output_test_util.h"

namespace dsv4::server {
namespace {

using namespace api_testing;  // NOLINT

// Replays a Messages stream the way the Anthropic SDK's MessageStream accumulates it, checking
// the framing and block discipline (one open block at a time, indexes counting up).
struct MessagesStream {
  std::vector<std::string> types;  // event names, deltas by their delta type
  Json message;                    // the accumulated message
};

MessagesStream read_messages_stream(const std::string& bytes, const OutputContext& c) {
  MessagesStream s;
  int open = -1;
  bool stopped = false;
  std::map<int, std::string> partial_json;
  for (const SseFrame& f : frames_of(bytes)) {
    Json ev = data_of(f);
    const std::string type = ev["type"];
    EXPECT_EQ(f.event, type) << "every frame has its event line";
    EXPECT_FALSE(stopped) << "event after message_stop";
    if (type == "message_start") {
      EXPECT_TRUE(s.message.is_null());
      s.message = ev["message"];
      EXPECT_EQ(s.message["id"], c.id);
      EXPECT_TRUE(s.message["content"].empty());
      EXPECT_TRUE(s.message["stop_reason"].is_null());
      EXPECT_EQ(s.message["usage"]["output_tokens"], 0);
      s.types.push_back(type);
      continue;
    }
    EXPECT_FALSE(s.message.is_null()) << "first event must be message_start";
    if (s.message.is_null()) return s;
    Json& content = s.message["content"];
    if (type == "content_block_start") {
      EXPECT_EQ(open, -1) << "a block is already open";
      EXPECT_EQ(ev["index"], content.size());
      open = ev["index"];
      content.push_back(ev["content_block"]);
      s.types.push_back(type + ":" + ev["content_block"]["type"].get<std::string>());
    } else if (type == "content_block_delta") {
      EXPECT_EQ(ev["index"], open);
      if (ev["index"] != open || open < 0) return s;
      Json& block = content[open];
      const Json& d = ev["delta"];
      const std::string kind = d["type"];
      s.types.push_back(kind);
      if (kind == "text_delta") {
        EXPECT_EQ(block["type"], "text");
        block["text"] = block["text"].get<std::string>() + d["text"].get<std::string>();
      } else if (kind == "thinking_delta") {
        EXPECT_EQ(block["type"], "thinking");
        EXPECT_EQ(block["signature"], "") << "thinking after the signature";
        block["thinking"] = block["thinking"].get<std::string>() + d["thinking"].get<std::string>();
      } else if (kind == "signature_delta") {
        EXPECT_EQ(block["type"], "thinking");
        block["signature"] = d["signature"];
      } else if (kind == "input_json_delta") {
        EXPECT_EQ(block["type"], "tool_use");
        partial_json[open] += d["partial_json"].get<std::string>();
      } else {
        ADD_FAILURE() << "unknown delta " << kind;
      }
    } else if (type == "content_block_stop") {
      EXPECT_EQ(ev["index"], open);
      // The SDK parses the accumulated partial_json as the input; keep what it could not parse.
      if (partial_json.contains(open)) {
        if (Json::accept(partial_json[open])) {
          content[open]["input"] = Json::parse(partial_json[open]);
        } else {
          content[open]["unparsed_input"] = partial_json[open];
        }
      }
      open = -1;
      s.types.push_back(type);
    } else if (type == "message_delta") {
      EXPECT_EQ(open, -1) << "message_delta with an open block";
      s.message["stop_reason"] = ev["delta"]["stop_reason"];
      s.message["stop_sequence"] = ev["delta"]["stop_sequence"];
      s.message["usage"]["output_tokens"] = ev["usage"]["output_tokens"];
      s.types.push_back(type);
    } else if (type == "message_stop") {
      stopped = true;
      s.types.push_back(type);
    } else {
      ADD_FAILURE() << "unexpected event " << type;
    }
  }
  EXPECT_TRUE(stopped) << "no message_stop";
  return s;
}

std::string messages_stream(const OutputContext& c, std::string_view text, bool thinking,
                            bool tools, const FinalInfo& info, size_t piece = 3,
                            const Usage& prompt = {}) {
  auto out = ApiOutput::create(c);
  return stream_bytes(*out, event_batches(text, thinking, tools, piece), info, prompt);
}

std::vector<std::string> folded(const std::vector<std::string>& types) {
  std::vector<std::string> out;
  for (const std::string& t : types) {
    if (!out.empty() && out.back() == t && t.ends_with("_delta")) continue;
    out.push_back(t);
  }
  return out;
}

TEST(MessagesOutput, PlainTextStreamIsExact) {
  OutputContext c = make_context(Api::kMessages);
  auto out = ApiOutput::create(c);
  Usage prompt{.prompt_tokens = 10, .cached_tokens = 7};
  std::vector<StreamEvent> events = {content_event("Hi!")};
  FinalInfo info = final_info(FinishReason::kStop, "Hi!",
                              {.prompt_tokens = 10, .cached_tokens = 7, .completion_tokens = 2});
  std::string bytes = out->start(prompt);
  bytes += out->on_events(events);
  bytes += out->finish(info);
  EXPECT_EQ(bytes,
            "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":"
            "\"msg_0123456789abcdef01234567\",\"type\":\"message\",\"role\":\"assistant\","
            "\"model\":\"deepseek-v4-flash\",\"content\":[],\"stop_reason\":null,"
            "\"stop_sequence\":null,\"usage\":{\"input_tokens\":0,\"output_tokens\":0,"
            "\"cache_read_input_tokens\":7,\"cache_creation_input_tokens\":3}}}\n\n"
            "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,"
            "\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n"
            "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,"
            "\"delta\":{\"type\":\"text_delta\",\"text\":\"Hi!\"}}\n\n"
            "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n"
            "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":"
            "\"end_turn\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":2}}\n\n"
            "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n");
}

TEST(MessagesOutput, PlainTextResponseIsExact) {
  OutputContext c = make_context(Api::kMessages, false);
  FinalInfo info = final_info(FinishReason::kStop, "Hi!",
                              {.prompt_tokens = 10, .cached_tokens = 7, .completion_tokens = 2});
  EXPECT_EQ(to_wire_json(ApiOutput::create(c)->response(info)),
            R"({"id":"msg_0123456789abcdef01234567","type":"message","role":"assistant",)"
            R"("model":"deepseek-v4-flash","content":[{"type":"text","text":"Hi!"}],)"
            R"("stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":0,)"
            R"("output_tokens":2,"cache_read_input_tokens":7,"cache_creation_input_tokens":3}})");
}

const std::string kThought = "Greeting; answer briefly.</think>Hello there.";

TEST(MessagesOutput, ThinkingThenTextWithSignature) {
  OutputContext c = make_context(Api::kMessages);
  c.thinking = true;
  for (size_t piece : {1, 5, 100}) {
    MessagesStream s = read_messages_stream(
        messages_stream(c, kThought, true, false, final_info(FinishReason::kStop, kThought), piece),
        c);
    EXPECT_EQ(folded(s.types),
              (std::vector<std::string>{"message_start", "content_block_start:thinking",
                                        "thinking_delta", "signature_delta", "content_block_stop",
                                        "content_block_start:text", "text_delta",
                                        "content_block_stop", "message_delta", "message_stop"}));
    EXPECT_EQ(to_wire_json(s.message["content"]),
              R"([{"type":"thinking","thinking":"Greeting; answer briefly.","signature":)"
              R"("msg_0123456789abcdef01234567"},{"type":"text","text":"Hello there."}])");
    EXPECT_EQ(s.message["stop_reason"], "end_turn");
  }
  c.stream = false;
  Json body = ApiOutput::create(c)->response(final_info(FinishReason::kStop, kThought));
  EXPECT_EQ(to_wire_json(body["content"]),
            R"([{"type":"thinking","thinking":"Greeting; answer briefly.","signature":)"
            R"("msg_0123456789abcdef01234567"},{"type":"text","text":"Hello there."}])");
}

TEST(MessagesOutput, OnlyThinkingGetsAnEmptyTextBlock) {
  const std::string text = "Considering whether";
  OutputContext c = make_context(Api::kMessages);
  c.thinking = true;
  MessagesStream s = read_messages_stream(
      messages_stream(c, text, true, false, final_info(FinishReason::kLength, text)), c);
  EXPECT_EQ(
      folded(s.types),
      (std::vector<std::string>{"message_start", "content_block_start:thinking", "thinking_delta",
                                "signature_delta", "content_block_stop", "content_block_start:text",
                                "content_block_stop", "message_delta", "message_stop"}));
  EXPECT_EQ(s.message["content"][1], Json::parse(R"({"type":"text","text":""})"));
  EXPECT_EQ(s.message["stop_reason"], "max_tokens");

  // Thinking that ended, then nothing: same rule, in both forms.
  const std::string ended = "Nothing more to say.</think>";
  OutputContext nc = c;
  nc.stream = false;
  Json body = ApiOutput::create(nc)->response(final_info(FinishReason::kStop, ended));
  EXPECT_EQ(to_wire_json(body["content"]),
            R"([{"type":"thinking","thinking":"Nothing more to say.","signature":)"
            R"("msg_0123456789abcdef01234567"},{"type":"text","text":""}])");
  // Nothing at all: one empty text block.
  s = read_messages_stream(messages_stream(c, "", true, false, final_info(FinishReason::kStop, "")),
                           c);
  EXPECT_EQ(to_wire_json(s.message["content"]), R"([{"type":"text","text":""}])");
  body = ApiOutput::create(nc)->response(final_info(FinishReason::kStop, ""));
  EXPECT_EQ(to_wire_json(body["content"]), R"([{"type":"text","text":""}])");
}

const std::string kCalls =
    "Need the file.</think>Let me read it." +
    dsml_block({dsml_invoke("Read", {{"file_path", "/home/user/project/notes.txt"},
                                     {"limit", "50", false}}),
                dsml_invoke("Bash", {{"command", "ls -la && echo \"done\""},
                                     {"flags", "{\"sandbox\": false, \"env\": null}", false}})});

TEST(MessagesOutput, ToolUseStreamsLive) {
  OutputContext c = make_context(Api::kMessages);
  c.thinking = true;
  c.tools_active = true;
  OutputContext nc = c;
  nc.stream = false;
  Json body = ApiOutput::create(nc)->response(final_info(FinishReason::kToolCalls, kCalls));
  EXPECT_EQ(body["stop_reason"], "tool_use");
  EXPECT_EQ(
      to_wire_json(body["content"]),
      R"([{"type":"thinking","thinking":"Need the file.","signature":"msg_0123456789abcdef01234567"},)"
      R"({"type":"text","text":"Let me read it."},)"
      R"({"type":"tool_use","id":"toolu_00000000000000000000000000000001","name":"Read",)"
      R"("input":{"file_path":"/home/user/project/notes.txt","limit":50}},)"
      R"({"type":"tool_use","id":"toolu_00000000000000000000000000000002","name":"Bash",)"
      R"("input":{"command":"ls -la && echo \"done\"","flags":{"sandbox":false,"env":null}}}])");

  for (size_t piece : {1, 3, 8, 500}) {
    c.new_call_id = counting_ids("toolu_");
    std::string bytes =
        messages_stream(c, kCalls, true, true, final_info(FinishReason::kToolCalls, kCalls), piece);
    MessagesStream s = read_messages_stream(bytes, c);
    EXPECT_EQ(folded(s.types),
              (std::vector<std::string>{
                  "message_start", "content_block_start:thinking", "thinking_delta",
                  "signature_delta", "content_block_stop", "content_block_start:text", "text_delta",
                  "content_block_stop", "content_block_start:tool_use", "input_json_delta",
                  "content_block_stop", "content_block_start:tool_use", "input_json_delta",
                  "content_block_stop", "message_delta", "message_stop"}));
    // The concatenated partial_json of each block is the call's input.
    EXPECT_EQ(s.message["content"], body["content"]);
    EXPECT_EQ(s.message["stop_reason"], "tool_use");
    // Blocks start with an empty input object.
    for (const SseFrame& f : frames_of(bytes)) {
      Json ev = data_of(f);
      if (ev["type"] == "content_block_start" && ev["content_block"]["type"] == "tool_use") {
        EXPECT_EQ(to_wire_json(ev["content_block"]["input"]), "{}");
      }
    }
  }
}

TEST(MessagesOutput, StreamsAccumulateToTheResponse) {
  for (const CorpusCase& k : well_formed_corpus()) {
    for (size_t piece : {1, 2, 3, 7, 1000}) {
      SCOPED_TRACE(k.name + " in pieces of " + std::to_string(piece));
      OutputContext c = make_context(Api::kMessages);
      c.thinking = k.thinking;
      c.tools_active = k.tools;
      OutputContext nc = c;
      nc.stream = false;
      nc.new_call_id = counting_ids("toolu_");
      const Usage usage{.prompt_tokens = 5, .cached_tokens = 2, .completion_tokens = 3};
      const FinalInfo info = final_info(k.finish, k.text, usage);
      MessagesStream s = read_messages_stream(
          messages_stream(c, k.text, k.thinking, k.tools, info, piece, usage), c);
      EXPECT_EQ(s.message, ApiOutput::create(nc)->response(info));
    }
  }
}

TEST(MessagesOutput, ImperfectOutputStillStreamsWellFormed) {
  for (const CorpusCase& k : adversarial_corpus()) {
    for (size_t piece : {1, 4, 1000}) {
      SCOPED_TRACE(k.name + " in pieces of " + std::to_string(piece));
      OutputContext c = make_context(Api::kMessages);
      c.thinking = k.thinking;
      c.tools_active = k.tools;
      MessagesStream s = read_messages_stream(
          messages_stream(c, k.text, k.thinking, k.tools, final_info(k.finish, k.text), piece), c);
      EXPECT_FALSE(s.message["stop_reason"].is_null());
      EXPECT_FALSE(s.message["content"].empty());
      c.stream = false;
      Json body = ApiOutput::create(c)->response(final_info(k.finish, k.text));
      EXPECT_TRUE(Json::accept(to_wire_json(body)));
      EXPECT_FALSE(body["content"].empty());
    }
  }
}

TEST(MessagesOutput, StopSequenceIsReportedWithItsString) {
  OutputContext c = make_context(Api::kMessages);
  FinalInfo info = final_info(FinishReason::kStop, "Answer: 42\nUser:");
  info.stop_sequence = "\nUser:";
  MessagesStream s = read_messages_stream(messages_stream(c, "Answer: 42", false, false, info), c);
  EXPECT_EQ(s.message["stop_reason"], "stop_sequence");
  EXPECT_EQ(s.message["stop_sequence"], "\nUser:");
  c.stream = false;
  Json body = ApiOutput::create(c)->response(info);
  EXPECT_EQ(body["stop_reason"], "stop_sequence");
  EXPECT_EQ(body["stop_sequence"], "\nUser:");
  EXPECT_EQ(to_wire_json(body["content"]), R"([{"type":"text","text":"Answer: 42"}])");
}

TEST(MessagesOutput, FinishMapping) {
  OutputContext c = make_context(Api::kMessages, false);
  struct Case {
    FinishReason finish;
    const char* stop_reason;
  };
  for (Case k : {Case{FinishReason::kStop, "end_turn"}, Case{FinishReason::kLength, "max_tokens"},
                 Case{FinishReason::kError, "end_turn"},
                 Case{FinishReason::kToolCalls, "end_turn"}}) {  // no call was made
    Json body = ApiOutput::create(c)->response(final_info(k.finish, "text"));
    EXPECT_EQ(body["stop_reason"], k.stop_reason);
    EXPECT_TRUE(body["stop_sequence"].is_null());
    OutputContext sc = make_context(Api::kMessages);
    MessagesStream s = read_messages_stream(
        messages_stream(sc, "text", false, false, final_info(k.finish, "text")), sc);
    EXPECT_EQ(s.message["stop_reason"], k.stop_reason);
  }
}

TEST(MessagesOutput, BrokenMarkupAfterACallStartClosesTheBlock) {
  // The invoke header is complete (the call is announced), then the markup breaks: the tool_use
  // block is closed as it is and the raw text follows as a text block.
  const std::string text = std::string(kBlockOpen) + "<｜DSML｜invoke name=\"Read\">\n" +
                           "garbage that is no parameter" + std::string(kBlockClose);
  OutputContext c = make_context(Api::kMessages);
  c.tools_active = true;
  std::string bytes = messages_stream(c, text, false, true, final_info(FinishReason::kStop, text));
  auto frames = frames_of(bytes);
  std::vector<std::string> types;
  for (const SseFrame& f : frames) {
    Json ev = data_of(f);
    types.push_back(ev["type"] == "content_block_start"
                        ? "start:" + ev["content_block"]["type"].get<std::string>()
                        : ev["type"].get<std::string>());
  }
  types = folded(types);
  EXPECT_EQ(types,
            (std::vector<std::string>{"message_start", "start:tool_use", "content_block_delta",
                                      "content_block_stop", "start:text", "content_block_delta",
                                      "content_block_stop", "message_delta", "message_stop"}));
  Json last_delta = data_of(frames[frames.size() - 2]);
  EXPECT_EQ(last_delta["delta"]["stop_reason"], "end_turn");
}

}  // namespace
}  // namespace dsv4::server
