// OpenAI Responses (PROTOCOL.md §4.5, §4.6). Every event is `event: TYPE` + `data: {...}` with
// "sequence_number" as its second field, counted from 0. Output items get their output_index in
// order of first appearance, and clients (the openai SDK's accumulator) index their snapshot by
// it, so items are added strictly in that order: the reasoning summary (only when requested) is
// closed as soon as visible output begins, the message stays open until the end, and function
// calls follow it whole (Codex reads calls from output_item.done; no live argument streaming).
#include "chat/special_tokens.h"
#include "server/api_output_internal.h"

namespace dsv4::server::detail {
namespace {

using chat::Json;
using chat::StreamEvent;
using chat::StreamEventKind;

const char* response_status(FinishReason f) {
  switch (f) {
    case FinishReason::kLength:
      return "incomplete";
    case FinishReason::kError:
      return "failed";
    default:
      return "completed";
  }
}

// Items of a response that did not finish normally are incomplete.
const char* item_status(FinishReason f) {
  return f == FinishReason::kLength || f == FinishReason::kError ? "incomplete" : "completed";
}

class ResponsesOutput final : public ApiOutput {
 public:
  explicit ResponsesOutput(OutputContext context)
      : c_(std::move(context)),
        reasoning_id_("rs_" + std::string(id_suffix(c_.id))),
        message_id_("msg_" + std::string(id_suffix(c_.id))) {}

  std::string start(const Usage&) override {
    Json ev = event("response.created");
    ev["response"] = response_object("in_progress", FinishReason::kStop, Json::array(), nullptr);
    return frame(ev);
  }

  std::string on_events(std::span<const StreamEvent> events) override {
    std::string out;
    for (const StreamEvent& e : coalesce(events)) {
      switch (e.kind) {
        case StreamEventKind::reasoning:
          out += reasoning_delta(e.text);
          break;
        case StreamEventKind::content:
          out += close_reasoning(true);
          out += text_delta(e.text);
          break;
        case StreamEventKind::tool_call_begin:
        case StreamEventKind::tool_call_arguments:
          out += close_reasoning(true);
          break;
        case StreamEventKind::tool_call_end:
          calls_.push_back({e.name, e.text});
          break;
        case StreamEventKind::error:
          break;
      }
    }
    return out;
  }

  std::string finish(const FinalInfo& info) override {
    const FinishReason f = client_finish(info.finish, !calls_.empty());
    // Reasoning that no visible output followed is complete only if "</think>" was written.
    std::string out =
        close_reasoning(info.raw_text.find(chat::tok::kThinkClose) != std::string::npos);
    Json output = Json::array();
    if (reasoning_.index >= 0) output.push_back(reasoning_item(reasoning_status_, reasoning_.text));
    if (message_.index >= 0) {
      out += close_message(item_status(f));
      output.push_back(message_item(item_status(f), message_.text));
    }
    for (const chat::ParsedToolCall& call : calls_) {
      std::string call_id = c_.new_call_id();
      int index = next_index_++;
      out += call_events(call, call_id, index, item_status(f));
      output.push_back(call_item(call, call_id, item_status(f), true));
    }
    const char* type = f == FinishReason::kLength  ? "response.incomplete"
                       : f == FinishReason::kError ? "response.failed"
                                                   : "response.completed";
    Json ev = event(type);
    ev["response"] = response_object(response_status(f), f, std::move(output),
                                     usage_json(Api::kResponses, info.usage));
    out += frame(ev);
    return out;
  }

  Json response(const FinalInfo& info) override {
    chat::ParsedMessage m = parse_final(c_, info);
    const FinishReason f = client_finish(info.finish, !m.tool_calls.empty());
    Json output = Json::array();
    if (summaries_requested() && !m.reasoning_content.empty())
      output.push_back(reasoning_item(item_status(f), m.reasoning_content));
    if (!m.content.empty()) output.push_back(message_item(item_status(f), m.content));
    for (const chat::ParsedToolCall& call : m.tool_calls)
      output.push_back(call_item(call, c_.new_call_id(), item_status(f), true));
    return response_object(response_status(f), f, std::move(output),
                           usage_json(Api::kResponses, info.usage));
  }

 private:
  struct Item {
    int index = -1;  // output_index once added
    std::string text;
  };

  bool summaries_requested() const { return c_.thinking && c_.reasoning_summary; }

  Json event(const char* type) {
    Json ev = Json::object();
    ev["type"] = type;
    ev["sequence_number"] = sequence_++;
    return ev;
  }
  static std::string frame(const Json& ev) {
    return sse_event(ev["type"].get_ref<const std::string&>(), ev);
  }

  // The first fields of every event about an item's part.
  Json part_event(const char* type, const std::string& item_id, const Item& item,
                  const char* index_key) {
    Json ev = event(type);
    ev["item_id"] = item_id;
    ev["output_index"] = item.index;
    ev[index_key] = 0;
    return ev;
  }

  std::string item_event(const char* type, int index, Json item) {
    Json ev = event(type);
    ev["output_index"] = index;
    ev["item"] = std::move(item);
    return frame(ev);
  }

  std::string reasoning_delta(const std::string& text) {
    if (!summaries_requested() || reasoning_closed_ || text.empty()) return {};
    std::string out;
    if (reasoning_.index < 0) {
      reasoning_.index = next_index_++;
      Json item = Json::object();
      item["id"] = reasoning_id_;
      item["type"] = "reasoning";
      item["status"] = "in_progress";
      item["summary"] = Json::array();
      out += item_event("response.output_item.added", reasoning_.index, std::move(item));
      Json ev = part_event("response.reasoning_summary_part.added", reasoning_id_, reasoning_,
                           "summary_index");
      ev["part"] = summary_part("");
      out += frame(ev);
    }
    Json ev = part_event("response.reasoning_summary_text.delta", reasoning_id_, reasoning_,
                         "summary_index");
    ev["delta"] = text;
    out += frame(ev);
    reasoning_.text += text;
    return out;
  }

  std::string close_reasoning(bool completed) {
    if (reasoning_closed_) return {};
    reasoning_closed_ = true;
    if (reasoning_.index < 0) return {};
    reasoning_status_ = completed ? "completed" : "incomplete";
    Json done = part_event("response.reasoning_summary_text.done", reasoning_id_, reasoning_,
                           "summary_index");
    done["text"] = reasoning_.text;
    Json part = part_event("response.reasoning_summary_part.done", reasoning_id_, reasoning_,
                           "summary_index");
    part["part"] = summary_part(reasoning_.text);
    std::string out = frame(done) + frame(part);
    out += item_event("response.output_item.done", reasoning_.index,
                      reasoning_item(reasoning_status_, reasoning_.text));
    return out;
  }

  std::string text_delta(const std::string& text) {
    if (text.empty()) return {};
    std::string out;
    if (message_.index < 0) {
      message_.index = next_index_++;
      Json item = Json::object();
      item["id"] = message_id_;
      item["type"] = "message";
      item["status"] = "in_progress";
      item["role"] = "assistant";
      item["content"] = Json::array();
      out += item_event("response.output_item.added", message_.index, std::move(item));
      Json ev = part_event("response.content_part.added", message_id_, message_, "content_index");
      ev["part"] = output_text_part("");
      out += frame(ev);
    }
    Json ev = part_event("response.output_text.delta", message_id_, message_, "content_index");
    ev["delta"] = text;
    out += frame(ev);
    message_.text += text;
    return out;
  }

  std::string close_message(const char* status) {
    Json done = part_event("response.output_text.done", message_id_, message_, "content_index");
    done["text"] = message_.text;
    Json part = part_event("response.content_part.done", message_id_, message_, "content_index");
    part["part"] = output_text_part(message_.text);
    std::string out = frame(done) + frame(part);
    out += item_event("response.output_item.done", message_.index,
                      message_item(status, message_.text));
    return out;
  }

  std::string call_events(const chat::ParsedToolCall& call, const std::string& call_id, int index,
                          const char* status) {
    std::string out = item_event("response.output_item.added", index,
                                 call_item(call, call_id, "in_progress", false));
    if (!is_tool_search(call)) {
      const std::string item_id = function_item_id(call_id);
      Json delta = event("response.function_call_arguments.delta");
      delta["item_id"] = item_id;
      delta["output_index"] = index;
      delta["delta"] = call.arguments;
      out += frame(delta);
      Json done = event("response.function_call_arguments.done");
      done["item_id"] = item_id;
      done["output_index"] = index;
      add_name(done, call.name);
      done["arguments"] = call.arguments;
      out += frame(done);
    }
    out += item_event("response.output_item.done", index, call_item(call, call_id, status, true));
    return out;
  }

  static Json summary_part(const std::string& text) {
    return Json{{"type", "summary_text"}, {"text", text}};
  }
  static Json output_text_part(const std::string& text) {
    Json part = Json::object();
    part["type"] = "output_text";
    part["text"] = text;
    part["annotations"] = Json::array();
    return part;
  }

  Json reasoning_item(const char* status, const std::string& text) const {
    Json item = Json::object();
    item["id"] = reasoning_id_;
    item["type"] = "reasoning";
    item["status"] = status;
    item["summary"] = Json::array({summary_part(text)});
    return item;
  }

  Json message_item(const char* status, const std::string& text) const {
    Json item = Json::object();
    item["id"] = message_id_;
    item["type"] = "message";
    item["status"] = status;
    item["role"] = "assistant";
    item["content"] = Json::array({output_text_part(text)});
    return item;
  }

  bool is_tool_search(const chat::ParsedToolCall& call) const {
    return c_.tool_search && call.name == "tool_search";
  }

  static std::string function_item_id(std::string_view call_id) {
    return "fc_" + std::string(id_suffix(call_id));
  }

  // name, and namespace when the model called a flattened namespace tool (§4.3).
  void add_name(Json& j, const std::string& flat_name) const {
    for (const chat::NamespacedTool& t : c_.namespaced_tools) {
      if (t.flat_name != flat_name) continue;
      j["name"] = t.name;
      j["namespace"] = t.ns;
      return;
    }
    j["name"] = flat_name;
  }

  Json call_item(const chat::ParsedToolCall& call, const std::string& call_id, const char* status,
                 bool with_arguments) const {
    Json item = Json::object();
    item["id"] = function_item_id(call_id);
    if (is_tool_search(call)) {
      item["type"] = "tool_search_call";
      item["status"] = status;
      item["call_id"] = call_id;
      item["execution"] = "client";
      item["arguments"] = with_arguments ? arguments_object(call.arguments) : Json::object();
      return item;
    }
    item["type"] = "function_call";
    item["status"] = status;
    add_name(item, call.name);
    item["call_id"] = call_id;
    item["arguments"] = with_arguments ? call.arguments : "";
    return item;
  }

  Json response_object(const char* status, FinishReason f, Json output, Json usage) const {
    Json r = Json::object();
    r["id"] = c_.id;
    r["object"] = "response";
    r["created_at"] = c_.created;
    r["status"] = status;
    r["model"] = c_.model;
    if (f == FinishReason::kError) {
      r["error"] = Json{{"code", "server_error"}, {"message", "generation failed"}};
    } else if (f == FinishReason::kLength) {
      r["incomplete_details"] = Json{{"reason", "max_tokens"}};
    }
    r["output"] = std::move(output);
    if (!usage.is_null()) r["usage"] = std::move(usage);
    return r;
  }

  OutputContext c_;
  const std::string reasoning_id_;
  const std::string message_id_;
  int64_t sequence_ = 0;
  int next_index_ = 0;
  Item reasoning_;
  bool reasoning_closed_ = false;  // reasoning after visible output is not shown
  const char* reasoning_status_ = "completed";
  Item message_;
  std::vector<chat::ParsedToolCall> calls_;  // completed calls, emitted at the end
};

}  // namespace

std::unique_ptr<ApiOutput> make_responses_output(OutputContext context) {
  return std::make_unique<ResponsesOutput>(std::move(context));
}

}  // namespace dsv4::server::detail
