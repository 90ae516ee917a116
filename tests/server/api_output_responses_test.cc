// OpenAI Responses output (PROTOCOL.md §4.5, §4.6).
#include <gtest/gtest.h>

#include "server/api_output_test_util.h"

namespace dsv4::server {
namespace {

using namespace api_testing;  // NOLINT

// Replays a Responses stream the way the openai SDK's accumulator does (it indexes its snapshot
// by output_index and throws on any mismatch), checking each event's framing on the way.
struct ResponsesStream {
  std::vector<std::string> types;
  Json snapshot;  // the response as accumulated from the events
  Json terminal;  // the response object of the terminal event
};

ResponsesStream read_responses_stream(const std::string& bytes, const OutputContext& c) {
  ResponsesStream s;
  std::vector<SseFrame> frames = frames_of(bytes);
  std::vector<bool> done;  // per output item
  int64_t expected_sequence = 0;
  for (const SseFrame& f : frames) {
    Json ev = data_of(f);
    const std::string type = ev["type"];
    s.types.push_back(type);
    EXPECT_EQ(f.event, type) << "the event line names the data's type";
    auto it = ev.begin();
    EXPECT_EQ(it.key(), "type");
    ++it;
    EXPECT_EQ(it.key(), "sequence_number") << "sequence_number is the second field";
    EXPECT_EQ(ev["sequence_number"], expected_sequence++);
    EXPECT_TRUE(s.terminal.is_null()) << "event after the terminal event: " << type;

    if (type == "response.created") {
      EXPECT_TRUE(s.snapshot.is_null());
      s.snapshot = ev["response"];
      EXPECT_EQ(to_wire_json(s.snapshot),
                R"({"id":")" + c.id + R"(","object":"response","created_at":)" +
                    std::to_string(c.created) + R"(,"status":"in_progress","model":")" + c.model +
                    R"(","output":[]})");
      continue;
    }
    EXPECT_FALSE(s.snapshot.is_null()) << "first event must be response.created";
    if (s.snapshot.is_null()) return s;
    Json& output = s.snapshot["output"];
    if (type == "response.completed" || type == "response.incomplete" ||
        type == "response.failed") {
      s.terminal = ev["response"];
      for (size_t i = 0; i < done.size(); ++i) EXPECT_TRUE(done[i]) << "item " << i << " not done";
      continue;
    }
    const int index = ev["output_index"];
    if (type == "response.output_item.added") {
      EXPECT_EQ(index, static_cast<int>(output.size())) << "items are added in index order";
      EXPECT_EQ(ev["item"]["status"], "in_progress");
      for (size_t i = 0; i < done.size(); ++i) EXPECT_TRUE(done[i]) << "items do not overlap";
      output.push_back(ev["item"]);
      done.push_back(false);
      continue;
    }
    EXPECT_LT(index, static_cast<int>(output.size())) << type;
    if (index >= static_cast<int>(output.size())) return s;
    Json& item = output[index];
    if (type == "response.output_item.done") {
      EXPECT_EQ(ev["item"]["id"], item["id"]);
      EXPECT_EQ(ev["item"]["type"], item["type"]);
      EXPECT_NE(ev["item"]["status"], "in_progress");
      // What the deltas built equals what the item says it is.
      // (tool_search_call items have no argument events: their arguments come with the done.)
      for (auto [type, built] : {std::pair{"message", "content"}, std::pair{"reasoning", "summary"},
                                 std::pair{"function_call", "arguments"}}) {
        if (item["type"] == type) {
          EXPECT_EQ(ev["item"][built], item[built]);
        }
      }
      item = ev["item"];
      done[index] = true;
      continue;
    }
    EXPECT_EQ(ev["item_id"], item["id"]) << type;
    EXPECT_FALSE(done[index]) << type << " after the item was done";
    if (type == "response.content_part.added") {
      EXPECT_EQ(ev["content_index"], item["content"].size());
      item["content"].push_back(ev["part"]);
    } else if (type == "response.output_text.delta") {
      Json& part = item["content"].at(ev["content_index"].get<size_t>());
      part["text"] = part["text"].get<std::string>() + ev["delta"].get<std::string>();
    } else if (type == "response.output_text.done" || type == "response.content_part.done") {
      const Json& part = item["content"].at(ev["content_index"].get<size_t>());
      EXPECT_EQ(type == "response.output_text.done" ? ev["text"] : ev["part"]["text"],
                part["text"]);
    } else if (type == "response.reasoning_summary_part.added") {
      EXPECT_EQ(ev["summary_index"], item["summary"].size());
      item["summary"].push_back(ev["part"]);
    } else if (type == "response.reasoning_summary_text.delta") {
      Json& part = item["summary"].at(ev["summary_index"].get<size_t>());
      part["text"] = part["text"].get<std::string>() + ev["delta"].get<std::string>();
    } else if (type == "response.reasoning_summary_text.done" ||
               type == "response.reasoning_summary_part.done") {
      const Json& part = item["summary"].at(ev["summary_index"].get<size_t>());
      EXPECT_EQ(type == "response.reasoning_summary_text.done" ? ev["text"] : ev["part"]["text"],
                part["text"]);
    } else if (type == "response.function_call_arguments.delta") {
      item["arguments"] = item["arguments"].get<std::string>() + ev["delta"].get<std::string>();
    } else if (type == "response.function_call_arguments.done") {
      EXPECT_EQ(ev["arguments"], item["arguments"]);
      EXPECT_EQ(ev["name"], item["name"]);
      EXPECT_EQ(ev.contains("namespace"), item.contains("namespace"));
    } else {
      ADD_FAILURE() << "unexpected event " << type;
    }
  }
  EXPECT_FALSE(s.terminal.is_null()) << "no terminal event";
  if (!s.terminal.is_null()) {
    EXPECT_EQ(s.terminal["output"], s.snapshot["output"]);
  }
  return s;
}

std::string responses_stream(const OutputContext& c, std::string_view text, bool thinking,
                             bool tools, const FinalInfo& info, size_t piece = 3) {
  auto out = ApiOutput::create(c);
  return stream_bytes(*out, event_batches(text, thinking, tools, piece), info);
}

// The event types with adjacent deltas of one kind folded into one.
std::vector<std::string> folded(const std::vector<std::string>& types) {
  std::vector<std::string> out;
  for (const std::string& t : types) {
    if (!out.empty() && out.back() == t && t.ends_with(".delta")) continue;
    out.push_back(t);
  }
  return out;
}

const std::vector<std::string> kMessageEvents = {
    "response.output_item.added", "response.content_part.added", "response.output_text.delta",
    "response.output_text.done",  "response.content_part.done",  "response.output_item.done"};
const std::vector<std::string> kReasoningEvents = {"response.output_item.added",
                                                   "response.reasoning_summary_part.added",
                                                   "response.reasoning_summary_text.delta",
                                                   "response.reasoning_summary_text.done",
                                                   "response.reasoning_summary_part.done",
                                                   "response.output_item.done"};
const std::vector<std::string> kCallEvents = {
    "response.output_item.added", "response.function_call_arguments.delta",
    "response.function_call_arguments.done", "response.output_item.done"};

std::vector<std::string> concat(std::initializer_list<std::vector<std::string>> parts) {
  std::vector<std::string> out;
  for (const auto& p : parts) out.insert(out.end(), p.begin(), p.end());
  return out;
}

TEST(ResponsesOutput, PlainTextStreamIsExact) {
  OutputContext c = make_context(Api::kResponses);
  auto out = ApiOutput::create(c);
  Usage u{.prompt_tokens = 10, .cached_tokens = 7, .completion_tokens = 2};
  std::vector<StreamEvent> events = {content_event("Hi")};
  std::string bytes = out->start();
  bytes += out->on_events(events);
  bytes += out->finish(final_info(FinishReason::kStop, "Hi", u));

  const std::string resp =
      R"("id":"resp_0123456789abcdef01234567","object":"response","created_at":1767225600,)";
  const std::string ref =
      R"("item_id":"msg_0123456789abcdef01234567","output_index":0,"content_index":0,)";
  const std::string item = R"({"id":"msg_0123456789abcdef01234567","type":"message",)";
  const std::string part = R"({"type":"output_text","text":"Hi","annotations":[]})";
  const std::string done_item =
      item + R"("status":"completed","role":"assistant","content":[)" + part + "]}";
  // (type, the data after "type" and "sequence_number")
  const std::vector<std::pair<std::string, std::string>> expected = {
      {"response.created",
       R"("response":{)" + resp +
           R"("status":"in_progress","model":"deepseek-v4-flash","output":[]})"},
      {"response.output_item.added",
       R"("output_index":0,"item":)" + item +
           R"("status":"in_progress","role":"assistant","content":[]})"},
      {"response.content_part.added",
       ref + R"("part":{"type":"output_text","text":"","annotations":[]})"},
      {"response.output_text.delta", ref + R"("delta":"Hi")"},
      {"response.output_text.done", ref + R"("text":"Hi")"},
      {"response.content_part.done", ref + R"("part":)" + part},
      {"response.output_item.done", R"("output_index":0,"item":)" + done_item},
      {"response.completed",
       R"("response":{)" + resp + R"("status":"completed","model":"deepseek-v4-flash","output":[)" +
           done_item + R"(],"usage":)" + to_wire_json(usage_json(Api::kResponses, u)) + "}"},
  };
  std::string want;
  for (size_t k = 0; k < expected.size(); ++k) {
    const auto& [type, rest] = expected[k];
    want += "event: " + type + "\ndata: {\"type\":\"" + type +
            "\",\"sequence_number\":" + std::to_string(k) + "," + rest + "}\n\n";
  }
  EXPECT_EQ(bytes, want);
  read_responses_stream(bytes, c);
}

TEST(ResponsesOutput, PlainTextResponseIsExact) {
  OutputContext c = make_context(Api::kResponses, false);
  Usage u{.prompt_tokens = 10, .cached_tokens = 7, .completion_tokens = 2};
  EXPECT_EQ(
      to_wire_json(ApiOutput::create(c)->response(final_info(FinishReason::kStop, "Hi", u))),
      R"({"id":"resp_0123456789abcdef01234567","object":"response","created_at":1767225600,)"
      R"("status":"completed","model":"deepseek-v4-flash","output":[{"id":"msg_0123456789abcdef01234567",)"
      R"("type":"message","status":"completed","role":"assistant","content":[{"type":"output_text",)"
      R"("text":"Hi","annotations":[]}]}],"usage":{"input_tokens":10,"input_tokens_details":)"
      R"({"cached_tokens":7,"cache_write_tokens":3},"output_tokens":2,"output_tokens_details":)"
      R"({"reasoning_tokens":0},"total_tokens":12}})");
}

const std::string kThought = "I should greet back.</think>Hello! How can I help?";

TEST(ResponsesOutput, ReasoningSummaryOnlyWhenRequested) {
  OutputContext c = make_context(Api::kResponses);
  c.thinking = true;
  c.reasoning_summary = true;
  for (size_t piece : {1, 4, 100}) {
    ResponsesStream s =
        read_responses_stream(responses_stream(c, kThought, true, false,
                                               final_info(FinishReason::kStop, kThought), piece),
                              c);
    EXPECT_EQ(
        folded(s.types),
        concat({{"response.created"}, kReasoningEvents, kMessageEvents, {"response.completed"}}));
    const Json& output = s.terminal["output"];
    ASSERT_EQ(output.size(), 2u);
    EXPECT_EQ(to_wire_json(output[0]),
              R"({"id":"rs_0123456789abcdef01234567","type":"reasoning","status":"completed",)"
              R"("summary":[{"type":"summary_text","text":"I should greet back."}]})");
    EXPECT_EQ(output[1]["content"][0]["text"], "Hello! How can I help?");
  }
  // The same response without streaming.
  OutputContext nc = c;
  nc.stream = false;
  Json body = ApiOutput::create(nc)->response(final_info(FinishReason::kStop, kThought));
  ASSERT_EQ(body["output"].size(), 2u);
  EXPECT_EQ(body["output"][0]["summary"][0]["text"], "I should greet back.");

  // Not requested, or thinking off: no reasoning item, the message is output 0.
  for (auto [thinking, summary] : {std::pair{true, false}, std::pair{false, true}}) {
    c.thinking = thinking;
    c.reasoning_summary = summary;
    ResponsesStream s = read_responses_stream(
        responses_stream(c, kThought, true, false, final_info(FinishReason::kStop, kThought)), c);
    EXPECT_EQ(folded(s.types),
              concat({{"response.created"}, kMessageEvents, {"response.completed"}}));
    nc = c;
    nc.stream = false;
    body = ApiOutput::create(nc)->response(final_info(FinishReason::kStop, kThought));
    ASSERT_EQ(body["output"].size(), 1u);
    EXPECT_EQ(body["output"][0]["type"], "message");
  }
}

TEST(ResponsesOutput, ReasoningCutByMaxTokensIsIncomplete) {
  const std::string text = "Still weighing the first option";
  OutputContext c = make_context(Api::kResponses);
  c.thinking = true;
  c.reasoning_summary = true;
  ResponsesStream s = read_responses_stream(
      responses_stream(c, text, true, false, final_info(FinishReason::kLength, text)), c);
  EXPECT_EQ(folded(s.types),
            concat({{"response.created"}, kReasoningEvents, {"response.incomplete"}}));
  EXPECT_EQ(s.terminal["status"], "incomplete");
  EXPECT_EQ(to_wire_json(s.terminal["incomplete_details"]), R"({"reason":"max_tokens"})");
  EXPECT_EQ(s.terminal["output"][0]["status"], "incomplete");
  EXPECT_EQ(s.terminal["output"][0]["summary"][0]["text"], text);

  // "</think>" written, then nothing visible: the reasoning is complete.
  const std::string ended = "Nothing to add.</think>";
  s = read_responses_stream(
      responses_stream(c, ended, true, false, final_info(FinishReason::kStop, ended)), c);
  EXPECT_EQ(folded(s.types),
            concat({{"response.created"}, kReasoningEvents, {"response.completed"}}));
  EXPECT_EQ(s.terminal["output"][0]["status"], "completed");
}

const std::string kCalls =
    "Let me look.</think>Reading it now." +
    dsml_block(
        {dsml_invoke("exec_command", {{"cmd", "cat notes.txt"}, {"timeout_ms", "5000", false}}),
         dsml_invoke("mcp__fs__read", {{"path", "/home/user/project/notes.txt"}})});

TEST(ResponsesOutput, FunctionCallsFollowTheMessageWhole) {
  OutputContext c = make_context(Api::kResponses);
  c.thinking = true;
  c.tools_active = true;
  c.namespaced_tools = {{"mcp__fs__read", "mcp__fs__", "read"}};
  ResponsesStream s = read_responses_stream(
      responses_stream(c, kCalls, true, true, final_info(FinishReason::kToolCalls, kCalls)), c);
  EXPECT_EQ(folded(s.types), concat({{"response.created"},
                                     kMessageEvents,
                                     kCallEvents,
                                     kCallEvents,
                                     {"response.completed"}}));
  const Json& output = s.terminal["output"];
  ASSERT_EQ(output.size(), 3u);
  EXPECT_EQ(output[0]["content"][0]["text"], "Reading it now.");
  EXPECT_EQ(
      to_wire_json(output[1]),
      R"({"id":"fc_00000000000000000000000000000001","type":"function_call","status":"completed",)"
      R"("name":"exec_command","call_id":"call_00000000000000000000000000000001",)"
      R"("arguments":"{\"cmd\": \"cat notes.txt\", \"timeout_ms\": 5000}"})");
  // The namespace tool comes back under its own name and namespace.
  EXPECT_EQ(
      to_wire_json(output[2]),
      R"({"id":"fc_00000000000000000000000000000002","type":"function_call","status":"completed",)"
      R"("name":"read","namespace":"mcp__fs__","call_id":"call_00000000000000000000000000000002",)"
      R"("arguments":"{\"path\": \"/home/user/project/notes.txt\"}"})");
  // Added with empty arguments; one delta carries the whole JSON text.
  std::vector<SseFrame> frames = frames_of(responses_stream(
      [&] {
        OutputContext fresh = c;
        fresh.new_call_id = counting_ids("call_");
        return fresh;
      }(),
      kCalls, true, true, final_info(FinishReason::kToolCalls, kCalls)));
  for (const SseFrame& f : frames) {
    Json ev = data_of(f);
    if (ev["type"] == "response.output_item.added" && ev["item"]["type"] == "function_call") {
      EXPECT_EQ(ev["item"]["arguments"], "");
    }
    if (ev["type"] == "response.function_call_arguments.delta") {
      EXPECT_TRUE(Json::parse(ev["delta"].get<std::string>()).is_object());
    }
    if (ev["type"] == "response.function_call_arguments.done" && ev["output_index"] == 2) {
      EXPECT_EQ(ev["name"], "read");
      EXPECT_EQ(ev["namespace"], "mcp__fs__");
    }
  }

  OutputContext nc = c;
  nc.stream = false;
  nc.new_call_id = counting_ids("call_");
  Json body = ApiOutput::create(nc)->response(final_info(FinishReason::kToolCalls, kCalls));
  EXPECT_EQ(body["status"], "completed");
  EXPECT_EQ(body["output"], output);  // the same items as the stream's (same ids here)
}

TEST(ResponsesOutput, ToolSearchCallsAreHostedItems) {
  const std::string text = dsml_block({dsml_invoke("tool_search", {{"query", "calendar events"}})});
  OutputContext c = make_context(Api::kResponses);
  c.tools_active = true;
  c.tool_search = true;
  ResponsesStream s = read_responses_stream(
      responses_stream(c, text, false, true, final_info(FinishReason::kToolCalls, text)), c);
  EXPECT_EQ(s.types, (std::vector<std::string>{"response.created", "response.output_item.added",
                                               "response.output_item.done", "response.completed"}));
  EXPECT_EQ(
      to_wire_json(s.terminal["output"][0]),
      R"({"id":"fc_00000000000000000000000000000001","type":"tool_search_call","status":"completed",)"
      R"("call_id":"call_00000000000000000000000000000001","execution":"client",)"
      R"("arguments":{"query":"calendar events"}})");
  EXPECT_EQ(s.snapshot["output"][0]["arguments"], s.terminal["output"][0]["arguments"]);

  OutputContext nc = c;
  nc.stream = false;
  nc.new_call_id = counting_ids("call_");
  EXPECT_EQ(ApiOutput::create(nc)->response(final_info(FinishReason::kToolCalls, text))["output"],
            s.terminal["output"]);

  // A client function that happens to be called tool_search stays a function call.
  c.tool_search = false;
  c.new_call_id = counting_ids("call_");
  s = read_responses_stream(
      responses_stream(c, text, false, true, final_info(FinishReason::kToolCalls, text)), c);
  EXPECT_EQ(s.terminal["output"][0]["type"], "function_call");
  EXPECT_EQ(s.terminal["output"][0]["name"], "tool_search");
}

TEST(ResponsesOutput, StreamsAccumulateToTheResponse) {
  for (const CorpusCase& k : well_formed_corpus()) {
    for (bool summary : {false, true}) {
      for (size_t piece : {1, 2, 5, 1000}) {
        SCOPED_TRACE(k.name + " in pieces of " + std::to_string(piece) +
                     (summary ? " with summary" : ""));
        OutputContext c = make_context(Api::kResponses);
        c.thinking = k.thinking;
        c.tools_active = k.tools;
        c.reasoning_summary = summary;
        OutputContext nc = c;
        nc.stream = false;
        nc.new_call_id = counting_ids("call_");
        const FinalInfo info =
            final_info(k.finish, k.text, {.prompt_tokens = 5, .completion_tokens = 3});
        ResponsesStream s =
            read_responses_stream(responses_stream(c, k.text, k.thinking, k.tools, info, piece), c);
        EXPECT_EQ(s.terminal, ApiOutput::create(nc)->response(info));
      }
    }
  }
}

TEST(ResponsesOutput, ImperfectOutputStillStreamsWellFormed) {
  for (const CorpusCase& k : adversarial_corpus()) {
    for (size_t piece : {1, 4, 1000}) {
      SCOPED_TRACE(k.name + " in pieces of " + std::to_string(piece));
      OutputContext c = make_context(Api::kResponses);
      c.thinking = k.thinking;
      c.tools_active = k.tools;
      c.reasoning_summary = true;
      ResponsesStream s = read_responses_stream(
          responses_stream(c, k.text, k.thinking, k.tools, final_info(k.finish, k.text), piece), c);
      EXPECT_FALSE(s.terminal.is_null());
      c.stream = false;
      EXPECT_TRUE(
          Json::accept(to_wire_json(ApiOutput::create(c)->response(final_info(k.finish, k.text)))));
    }
  }
}

TEST(ResponsesOutput, ErrorEndsWithResponseFailed) {
  OutputContext c = make_context(Api::kResponses);
  FinalInfo info = final_info(FinishReason::kError, "half an ans");
  info.error_message = "device lost";
  ResponsesStream s =
      read_responses_stream(responses_stream(c, "half an ans", false, false, info), c);
  EXPECT_EQ(folded(s.types), concat({{"response.created"}, kMessageEvents, {"response.failed"}}));
  EXPECT_EQ(s.terminal["status"], "failed");
  EXPECT_EQ(to_wire_json(s.terminal["error"]),
            R"({"code":"server_error","message":"generation failed"})");
  EXPECT_FALSE(s.terminal.contains("incomplete_details"));
  EXPECT_EQ(s.terminal["output"][0]["status"], "incomplete");

  c.stream = false;
  Json body = ApiOutput::create(c)->response(info);
  EXPECT_EQ(body["status"], "failed");
  EXPECT_EQ(body["error"]["code"], "server_error");
  EXPECT_EQ(body["output"][0]["status"], "incomplete");
  // Field order: error between model and output.
  std::vector<std::string> keys;
  for (auto& [k, v] : body.items()) keys.push_back(k);
  EXPECT_EQ(keys, (std::vector<std::string>{"id", "object", "created_at", "status", "model",
                                            "error", "output", "usage"}));
}

TEST(ResponsesOutput, LengthResponseIsIncomplete) {
  OutputContext c = make_context(Api::kResponses, false);
  Json body = ApiOutput::create(c)->response(final_info(FinishReason::kLength, "cut of"));
  EXPECT_EQ(body["status"], "incomplete");
  EXPECT_EQ(body["incomplete_details"]["reason"], "max_tokens");
  EXPECT_EQ(body["output"][0]["status"], "incomplete");
}

TEST(ResponsesOutput, StopSequenceAndEmptyOutput) {
  OutputContext c = make_context(Api::kResponses, false);
  FinalInfo info = final_info(FinishReason::kStop, "abc###def");
  info.stop_sequence = "###";
  Json body = ApiOutput::create(c)->response(info);
  EXPECT_EQ(body["output"][0]["content"][0]["text"], "abc");
  // Nothing generated: no items at all.
  EXPECT_TRUE(
      ApiOutput::create(c)->response(final_info(FinishReason::kStop, ""))["output"].empty());
  c.stream = true;
  ResponsesStream s = read_responses_stream(
      responses_stream(c, "", false, false, final_info(FinishReason::kStop, "")), c);
  EXPECT_EQ(s.types, (std::vector<std::string>{"response.created", "response.completed"}));
}

}  // namespace
}  // namespace dsv4::server
