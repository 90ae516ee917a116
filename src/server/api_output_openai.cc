// OpenAI Chat Completions and legacy Completions (PROTOCOL.md §4.5, §4.6).
//
// Chat streams: a role chunk, reasoning_content / content deltas, each tool call announced with
// its id, type and name (arguments "") then its argument fragments, a finish chunk, an optional
// usage chunk and `data: [DONE]`; no `event:` lines. Completions streams carry the raw model
// output as `text` chunks: the caller generates them without thinking-mode splitting and without
// tools, so every event is content (reasoning, should any come, is written as text as well).
#include <unordered_map>

#include "chat/special_tokens.h"
#include "server/api_output_internal.h"

namespace dsv4::server::detail {
namespace {

using chat::Json;
using chat::StreamEvent;
using chat::StreamEventKind;

class OpenAiOutput final : public ApiOutput {
 public:
  explicit OpenAiOutput(OutputContext context)
      : c_(std::move(context)), chat_(c_.api == Api::kChat) {}

  std::string start(const Usage&) override {
    if (!chat_) return {};
    return sse_data(chat_chunk(Json{{"role", "assistant"}}, nullptr));
  }

  std::string on_events(std::span<const StreamEvent> events) override {
    std::string out;
    for (const StreamEvent& e : coalesce(events)) {
      switch (e.kind) {
        case StreamEventKind::reasoning:
        case StreamEventKind::content:
          if (e.text.empty()) break;
          if (!chat_) {
            out += sse_data(completion_chunk(e.text, nullptr));
          } else {
            const char* key =
                e.kind == StreamEventKind::reasoning ? "reasoning_content" : "content";
            out += sse_data(chat_chunk(Json{{key, e.text}}, nullptr));
          }
          break;
        case StreamEventKind::tool_call_begin:
          if (chat_) out += call_begin(e);
          break;
        case StreamEventKind::tool_call_arguments:
          if (chat_) out += call_arguments(e);
          break;
        case StreamEventKind::tool_call_end:
          if (slots_.contains(e.index)) ++calls_completed_;
          break;
        case StreamEventKind::error:
          break;
      }
    }
    return out;
  }

  std::string finish(const FinalInfo& info) override {
    FinishReason f = client_finish(info.finish, calls_completed_ > 0);
    Json reason = finish_reason_name(f);
    std::string out =
        sse_data(chat_ ? chat_chunk(Json::object(), reason) : completion_chunk("", reason));
    if (c_.include_usage) {
      Json chunk = head(chat_ ? "chat.completion.chunk" : "text_completion");
      chunk["choices"] = Json::array();
      chunk["usage"] = usage_json(c_.api, info.usage);
      out += sse_data(chunk);
    }
    out += sse_done();
    return out;
  }

  Json response(const FinalInfo& info) override {
    Json body = head(chat_ ? "chat.completion" : "text_completion");
    if (!chat_) {
      std::string_view text = info.raw_text;
      if (text.ends_with(chat::tok::kEos)) text.remove_suffix(chat::tok::kEos.size());
      if (!info.stop_sequence.empty()) text = text.substr(0, text.find(info.stop_sequence));
      Json choice = Json::object();
      choice["text"] = valid_utf8(text);
      choice["index"] = 0;
      choice["finish_reason"] = finish_reason_name(client_finish(info.finish, false));
      body["choices"] = Json::array({std::move(choice)});
    } else {
      chat::ParsedMessage m = parse_final(c_, info);
      Json message = Json::object();
      message["role"] = "assistant";
      message["content"] = m.content;
      if (!m.reasoning_content.empty()) message["reasoning_content"] = m.reasoning_content;
      if (!m.tool_calls.empty()) {
        Json calls = Json::array();
        for (const chat::ParsedToolCall& call : m.tool_calls) {
          Json fn = Json::object();
          fn["name"] = call.name;
          fn["arguments"] = call.arguments;
          Json c = Json::object();
          c["id"] = c_.new_call_id();
          c["type"] = "function";
          c["function"] = std::move(fn);
          calls.push_back(std::move(c));
        }
        message["tool_calls"] = std::move(calls);
      }
      Json choice = Json::object();
      choice["index"] = 0;
      choice["message"] = std::move(message);
      choice["finish_reason"] =
          finish_reason_name(client_finish(info.finish, !m.tool_calls.empty()));
      body["choices"] = Json::array({std::move(choice)});
    }
    body["usage"] = usage_json(c_.api, info.usage);
    return body;
  }

 private:
  Json head(const char* object) const {
    Json j = Json::object();
    j["id"] = c_.id;
    j["object"] = object;
    j["created"] = c_.created;
    j["model"] = c_.model;
    return j;
  }

  // finish_reason: null while streaming, the reason in the last chunk.
  Json chat_chunk(Json delta, Json finish_reason) const {
    Json choice = Json::object();
    choice["index"] = 0;
    choice["delta"] = std::move(delta);
    choice["finish_reason"] = std::move(finish_reason);
    Json chunk = head("chat.completion.chunk");
    chunk["choices"] = Json::array({std::move(choice)});
    return chunk;
  }

  Json completion_chunk(std::string_view text, Json finish_reason) const {
    Json choice = Json::object();
    choice["text"] = text;
    choice["index"] = 0;
    choice["finish_reason"] = std::move(finish_reason);
    Json chunk = head("text_completion");
    chunk["choices"] = Json::array({std::move(choice)});
    return chunk;
  }

  Json tool_calls_delta(Json call) const {
    return Json{{"tool_calls", Json::array({std::move(call)})}};
  }

  std::string call_begin(const StreamEvent& e) {
    int slot = static_cast<int>(slots_.size());
    slots_[e.index] = slot;
    Json fn = Json::object();
    fn["name"] = e.name;
    fn["arguments"] = "";
    Json call = Json::object();
    call["index"] = slot;
    call["id"] = c_.new_call_id();
    call["type"] = "function";
    call["function"] = std::move(fn);
    return sse_data(chat_chunk(tool_calls_delta(std::move(call)), nullptr));
  }

  std::string call_arguments(const StreamEvent& e) {
    auto slot = slots_.find(e.index);
    if (slot == slots_.end() || e.text.empty()) return {};
    Json call = Json::object();
    call["index"] = slot->second;
    call["function"] = Json{{"arguments", e.text}};
    return sse_data(chat_chunk(tool_calls_delta(std::move(call)), nullptr));
  }

  OutputContext c_;
  bool chat_;
  std::unordered_map<int, int> slots_;  // parser call index -> tool_calls[].index
  int calls_completed_ = 0;
};

}  // namespace

std::unique_ptr<ApiOutput> make_openai_output(OutputContext context) {
  return std::make_unique<OpenAiOutput>(std::move(context));
}

}  // namespace dsv4::server::detail
