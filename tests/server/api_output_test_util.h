// Shared pieces of the ApiOutput tests: realistic event batches made by running generated text
// through chat::DsmlStreamParser in small pieces (as the generator does token by token), a
// streaming driver, and deterministic ids.
#pragma once

#include <gtest/gtest.h>

#include <cstdio>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "chat/dsml_stream.h"
#include "server/api_output.h"
#include "server/sse_frames.h"

namespace dsv4::server::api_testing {

using chat::Json;
using chat::StreamEvent;
using chat::StreamEventKind;

inline constexpr std::string_view kBlockOpen = "\n\n<｜DSML｜tool_calls>\n";
inline constexpr std::string_view kBlockClose = "</｜DSML｜tool_calls>";

struct Param {
  std::string name;
  std::string value;
  bool is_string = true;
};

// One DSML invoke as the model writes it (PROTOCOL.md §3.1).
inline std::string dsml_invoke(std::string_view name, const std::vector<Param>& params) {
  std::string s = "<｜DSML｜invoke name=\"" + std::string(name) + "\">\n";
  for (const Param& p : params) {
    s += "<｜DSML｜parameter name=\"" + p.name + "\" string=\"" + (p.is_string ? "true" : "false") +
         "\">" + p.value + "</｜DSML｜parameter>\n";
  }
  return s + "</｜DSML｜invoke>\n";
}

inline std::string dsml_block(const std::vector<std::string>& invokes) {
  std::string s(kBlockOpen);
  for (const std::string& i : invokes) s += i;
  return s + std::string(kBlockClose);
}

// The events of `text`, in the batches a generator would forward when the text arrives in
// pieces of `piece` bytes (the parser holds back what it cannot decide yet).
inline std::vector<std::vector<StreamEvent>> event_batches(std::string_view text, bool thinking,
                                                           bool tools, size_t piece = 3) {
  chat::DsmlStreamParser parser(chat::StreamOptions{
      thinking ? chat::ThinkingMode::thinking : chat::ThinkingMode::chat, tools});
  std::vector<std::vector<StreamEvent>> batches;
  for (size_t pos = 0; pos < text.size(); pos += piece) {
    std::vector<StreamEvent> batch;
    parser.feed(text.substr(pos, piece), batch);
    if (!batch.empty()) batches.push_back(std::move(batch));
  }
  std::vector<StreamEvent> last;
  parser.finish(last);
  if (!last.empty()) batches.push_back(std::move(last));
  return batches;
}

inline StreamEvent content_event(std::string text) {
  StreamEvent e;
  e.kind = StreamEventKind::content;
  e.text = std::move(text);
  return e;
}

// Ids like the server's: a prefix and 32 hex digits, counting up from 1.
inline std::function<std::string()> counting_ids(std::string prefix) {
  auto n = std::make_shared<int>(0);
  return [prefix, n] {
    char hex[33];
    std::snprintf(hex, sizeof hex, "%032x", ++*n);
    return prefix + hex;
  };
}

inline OutputContext make_context(Api api, bool stream = true) {
  OutputContext c;
  c.api = api;
  c.model = "deepseek-v4-flash";
  c.created = 1767225600;
  c.stream = stream;
  switch (api) {
    case Api::kChat:
      c.id = "chatcmpl-7";
      c.new_call_id = counting_ids("call_");
      break;
    case Api::kCompletions:
      c.id = "cmpl-7";
      c.new_call_id = counting_ids("call_");
      break;
    case Api::kResponses:
      c.id = "resp_0123456789abcdef01234567";
      c.new_call_id = counting_ids("call_");
      break;
    case Api::kMessages:
      c.id = "msg_0123456789abcdef01234567";
      c.new_call_id = counting_ids("toolu_");
      break;
  }
  return c;
}

inline FinalInfo final_info(FinishReason finish, std::string raw_text, Usage usage = {}) {
  FinalInfo info;
  info.finish = finish;
  info.raw_text = std::move(raw_text);
  info.usage = usage;
  return info;
}

// A whole stream: start, every batch, finish.
inline std::string stream_bytes(ApiOutput& out,
                                const std::vector<std::vector<StreamEvent>>& batches,
                                const FinalInfo& info, const Usage& prompt = {}) {
  std::string bytes = out.start(prompt);
  for (const auto& b : batches) bytes += out.on_events(b);
  bytes += out.finish(info);
  return bytes;
}

// The frames of a stream; fails the test on broken framing or a data line that is not JSON
// (other than [DONE]).
inline std::vector<SseFrame> frames_of(const std::string& bytes) {
  auto frames = parse_sse(bytes);
  EXPECT_TRUE(frames.ok()) << (frames.ok() ? "" : frames.error().message) << "\n" << bytes;
  if (!frames.ok()) return {};
  for (const SseFrame& f : *frames) {
    if (f.data != "[DONE]") {
      EXPECT_TRUE(Json::accept(f.data)) << f.data;
    }
  }
  return *frames;
}

inline Json data_of(const SseFrame& f) { return Json::parse(f.data); }

// Generated texts for whole-stream checks, each with the finish its generation would report.
struct CorpusCase {
  std::string name;
  std::string text;
  bool thinking = false;
  bool tools = false;
  FinishReason finish = FinishReason::kStop;
};

// Texts the model writes as intended: a stream of them must accumulate to exactly the
// non-streaming response.
inline std::vector<CorpusCase> well_formed_corpus() {
  const std::string nested = "{\"a\": [1, 2.5, {\"b\": null}], \"c\": \"d\\\"e\"}";
  return {
      {"plain", "Plain answer, nothing else."},
      {"unicode",
       "日本語のテキスト — ünïcödé ✓ 🦄🦄 and \\ \"quotes\" \n\t done"},
      {"multiline", "line one\nline two\n\n  indented\n"},
      {"thinking", "Reason about it.\nTwice.</think>The answer.", true},
      {"thinking_empty_answer", "Only thoughts.</think>", true},
      {"angle_brackets", "Compare a < b and <div> with </p> tags.", false, true},
      {"call",
       "Let me check.</think>Checking." +
           dsml_block({dsml_invoke("get_weather", {{"city", "Paris"}, {"days", "3", false}})}),
       true, true, FinishReason::kToolCalls},
      {"call_without_content", dsml_block({dsml_invoke("list", {})}), false, true,
       FinishReason::kToolCalls},
      {"thinking_call_without_content",
       "Just call it.</think>" + dsml_block({dsml_invoke("ls", {{"dir", "/"}})}), true, true,
       FinishReason::kToolCalls},
      {"three_calls",
       "Several." +
           dsml_block({dsml_invoke("a", {{"s", "multi\nline \"q\" \\ ✓"}, {"o", nested, false}}),
                       dsml_invoke("b", {{"empty", ""}, {"t", "true", false}}),
                       dsml_invoke("c", {{"list", "[\"x\", 1]", false}})}),
       false, true, FinishReason::kToolCalls},
  };
}

// Texts that depart from the grammar or end early: streams must stay well-formed and parseable
// by clients, but need not equal the non-streaming reading (§3.4 lets them differ).
inline std::vector<CorpusCase> adversarial_corpus() {
  std::string open(kBlockOpen);
  return {
      {"thinking_cut", "Thinking without end", true, false, FinishReason::kLength},
      {"leading_think_tag", "<think>Tagged.</think>Visible.", true},
      {"invoke_without_name",
       "Try." + open + "<｜DSML｜invoke>\n</｜DSML｜invoke>\n" + std::string(kBlockClose), false,
       true, FinishReason::kToolCalls},
      {"broken_after_header",
       "x" + open + "<｜DSML｜invoke name=\"f\">\nnot a parameter" + std::string(kBlockClose),
       false, true, FinishReason::kStop},
      {"unterminated",
       "Working." + open + dsml_invoke("f", {{"k", "v"}}) +
           "<｜DSML｜invoke name=\"g\">\n<｜DSML｜parameter name=\"k\" string=\"true\">half",
       false, true, FinishReason::kError},
      {"invalid_json_value", dsml_block({dsml_invoke("f", {{"n", "{not json", false}})}), false,
       true, FinishReason::kToolCalls},
      {"text_after_block", "a" + dsml_block({dsml_invoke("f", {})}) + " trailing", false, true},
      {"short_form",
       "s\n\n<DSML｜tool_calls>\n<DSML｜invoke name=\"f\">\n<DSML｜parameter "
       "name=\"x\" string=\"true\">1</DSML｜parameter>\n</DSML｜invoke>\n</DSML｜tool_calls>",
       false, true, FinishReason::kToolCalls},
      {"dsml_in_reasoning", "Maybe" + dsml_block({dsml_invoke("f", {})}) + "</think>No call.", true,
       true},
      {"invalid_utf8", std::string("bad \xff\xfe bytes \xe2\x82 end"), false, false},
      {"calls_without_tools", dsml_block({dsml_invoke("f", {})}), false, false},
  };
}

}  // namespace dsv4::server::api_testing
