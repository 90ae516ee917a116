// Anthropic Messages (PROTOCOL.md §4.5, §4.6): `event: NAME` + `data: {...}` frames, no ping.
// Content blocks are opened as their kind of output begins and closed when another kind starts:
// thinking (closed with a signature_delta carrying the message id, which Claude Code needs to
// send the block back), text, and tool_use blocks streamed live with input_json_delta fragments.
// A response with no text and no tool_use gets an empty text block.
#include "server/api_output_internal.h"

namespace dsv4::server::detail {
namespace {

using chat::Json;
using chat::StreamEvent;
using chat::StreamEventKind;

const char* stop_reason(FinishReason f, const std::string& stop_sequence) {
  switch (f) {
    case FinishReason::kToolCalls:
      return "tool_use";
    case FinishReason::kLength:
      return "max_tokens";
    case FinishReason::kStop:
      if (!stop_sequence.empty()) return "stop_sequence";
      break;
    case FinishReason::kError:
      break;
  }
  return "end_turn";
}

Json stop_sequence_value(FinishReason f, const std::string& stop_sequence) {
  if (f != FinishReason::kStop || stop_sequence.empty()) return nullptr;
  return stop_sequence;
}

Json text_block(const std::string& text) { return Json{{"type", "text"}, {"text", text}}; }

class MessagesOutput final : public ApiOutput {
 public:
  explicit MessagesOutput(OutputContext context) : c_(std::move(context)) {}

  std::string start(const Usage& prompt) override {
    Usage u = prompt;
    u.completion_tokens = 0;
    u.reasoning_tokens = 0;
    Json message = Json::object();
    message["id"] = c_.id;
    message["type"] = "message";
    message["role"] = "assistant";
    message["model"] = c_.model;
    message["content"] = Json::array();
    message["stop_reason"] = nullptr;
    message["stop_sequence"] = nullptr;
    message["usage"] = usage_json(Api::kMessages, u);
    Json ev = Json::object();
    ev["type"] = "message_start";
    ev["message"] = std::move(message);
    return frame(ev);
  }

  std::string on_events(std::span<const StreamEvent> events) override {
    std::string out;
    for (const StreamEvent& e : coalesce(events)) {
      switch (e.kind) {
        case StreamEventKind::reasoning:
          if (e.text.empty()) break;
          if (open_ != Block::thinking) {
            Json block = Json::object();
            block["type"] = "thinking";
            block["thinking"] = "";
            block["signature"] = "";
            out += open(Block::thinking, std::move(block));
          }
          out += delta(Json{{"type", "thinking_delta"}, {"thinking", e.text}});
          break;
        case StreamEventKind::content:
          if (e.text.empty()) break;
          if (open_ != Block::text) out += open(Block::text, text_block(""));
          out += delta(Json{{"type", "text_delta"}, {"text", e.text}});
          break;
        case StreamEventKind::tool_call_begin: {
          Json block = Json::object();
          block["type"] = "tool_use";
          block["id"] = c_.new_call_id();
          block["name"] = e.name;
          block["input"] = Json::object();
          out += open(Block::tool_use, std::move(block));
          tool_event_index_ = e.index;
          break;
        }
        case StreamEventKind::tool_call_arguments:
          if (open_ == Block::tool_use && e.index == tool_event_index_ && !e.text.empty())
            out += delta(Json{{"type", "input_json_delta"}, {"partial_json", e.text}});
          break;
        case StreamEventKind::tool_call_end:
          if (open_ == Block::tool_use && e.index == tool_event_index_) {
            out += close();
            ++calls_completed_;
          }
          break;
        case StreamEventKind::error:
          break;
      }
    }
    return out;
  }

  std::string finish(const FinalInfo& info) override {
    std::string out = close();
    if (!wrote_answer_) {
      out += open(Block::text, text_block(""));
      out += close();
    }
    const FinishReason f = client_finish(info.finish, calls_completed_ > 0);
    Json d = Json::object();
    d["stop_reason"] = stop_reason(f, info.stop_sequence);
    d["stop_sequence"] = stop_sequence_value(f, info.stop_sequence);
    Json ev = Json::object();
    ev["type"] = "message_delta";
    ev["delta"] = std::move(d);
    ev["usage"] = Json{{"output_tokens", std::max<int64_t>(info.usage.completion_tokens, 0)}};
    out += frame(ev);
    out += frame(Json{{"type", "message_stop"}});
    return out;
  }

  Json response(const FinalInfo& info) override {
    chat::ParsedMessage m = parse_final(c_, info);
    const FinishReason f = client_finish(info.finish, !m.tool_calls.empty());
    Json content = Json::array();
    if (!m.reasoning_content.empty()) {
      Json block = Json::object();
      block["type"] = "thinking";
      block["thinking"] = m.reasoning_content;
      block["signature"] = c_.id;
      content.push_back(std::move(block));
    }
    if (!m.content.empty() || m.tool_calls.empty()) content.push_back(text_block(m.content));
    for (const chat::ParsedToolCall& call : m.tool_calls) {
      Json block = Json::object();
      block["type"] = "tool_use";
      block["id"] = c_.new_call_id();
      block["name"] = call.name;
      block["input"] = arguments_object(call.arguments);
      content.push_back(std::move(block));
    }
    Json body = Json::object();
    body["id"] = c_.id;
    body["type"] = "message";
    body["role"] = "assistant";
    body["model"] = c_.model;
    body["content"] = std::move(content);
    body["stop_reason"] = stop_reason(f, info.stop_sequence);
    body["stop_sequence"] = stop_sequence_value(f, info.stop_sequence);
    body["usage"] = usage_json(Api::kMessages, info.usage);
    return body;
  }

 private:
  enum class Block { none, thinking, text, tool_use };

  static std::string frame(const Json& ev) {
    return sse_event(ev["type"].get_ref<const std::string&>(), ev);
  }

  std::string open(Block kind, Json content_block) {
    std::string out = close();
    open_ = kind;
    if (kind != Block::thinking) wrote_answer_ = true;
    Json ev = Json::object();
    ev["type"] = "content_block_start";
    ev["index"] = index_;
    ev["content_block"] = std::move(content_block);
    return out + frame(ev);
  }

  std::string delta(Json d) {
    Json ev = Json::object();
    ev["type"] = "content_block_delta";
    ev["index"] = index_;
    ev["delta"] = std::move(d);
    return frame(ev);
  }

  // Closes the open block (a thinking block gets its signature first); a tool_use block closed
  // before its call ended (the markup broke) is abandoned as it is.
  std::string close() {
    if (open_ == Block::none) return {};
    std::string out;
    if (open_ == Block::thinking)
      out += delta(Json{{"type", "signature_delta"}, {"signature", c_.id}});
    Json ev = Json::object();
    ev["type"] = "content_block_stop";
    ev["index"] = index_;
    out += frame(ev);
    ++index_;
    open_ = Block::none;
    return out;
  }

  OutputContext c_;
  Block open_ = Block::none;
  int index_ = 0;              // the open block's index, or the next block's
  bool wrote_answer_ = false;  // a text or tool_use block was written
  int tool_event_index_ = -1;  // parser call index of the open tool_use block
  int calls_completed_ = 0;
};

}  // namespace

std::unique_ptr<ApiOutput> make_messages_output(OutputContext context) {
  return std::make_unique<MessagesOutput>(std::move(context));
}

}  // namespace dsv4::server::detail
