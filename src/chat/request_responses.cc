// OpenAI Responses bodies (PROTOCOL.md §2.11, §4.3).
#include <array>

#include "chat/message_json.h"
#include "chat/request.h"
#include "chat/tools_block.h"

namespace dsv4::chat {
namespace {

constexpr std::array<std::string_view, 5> kTextBlockTypes = {"input_text", "output_text", "text",
                                                             "summary_text", "reasoning_text"};

// Message content: a string, or text blocks concatenated; any other block type is refused.
Result<std::string> message_text(const Json& content, const std::string& where) {
  if (content.is_null()) return std::string();
  if (content.is_string()) return content.get<std::string>();
  if (!content.is_array()) return make_error(where + ": expected a string or an array of blocks");
  std::string out;
  for (size_t k = 0; k < content.size(); ++k) {
    const Json& b = content[k];
    std::string type = string_field(b, "type");
    bool known = false;
    for (std::string_view t : kTextBlockTypes) known = known || t == type;
    if (!known)
      return make_error(where + "[" + std::to_string(k) + "]: unsupported content type '" + type +
                        "'");
    out += string_field(b, "text");
  }
  return out;
}

// Hosted tools the client ran itself, replayed in history under these tool names.
struct Hosted {
  std::string_view item;
  std::string_view name;
};
constexpr std::array<Hosted, 4> kHostedCalls = {{{"local_shell_call", "local_shell"},
                                                 {"tool_search_call", "tool_search"},
                                                 {"web_search_call", "web_search"},
                                                 {"image_generation_call", "image_generation"}}};

class InputBuilder {
 public:
  Status add(const Json& item, const std::string& where);
  std::vector<Message> take() { return std::move(out_); }

 private:
  Message& assistant() {
    if (out_.empty() || out_.back().role != Role::assistant) {
      Message a;
      a.role = Role::assistant;
      a.reasoning_content = std::move(pending_reasoning_);
      pending_reasoning_.clear();
      out_.push_back(std::move(a));
    }
    return out_.back();
  }
  void add_call(std::string id, std::string name, std::string arguments) {
    assistant().tool_calls.push_back({std::move(id), std::move(name), std::move(arguments)});
  }
  void add_tool_result(std::string call_id, std::string content) {
    Message t;
    t.role = Role::tool;
    t.tool_call_id = std::move(call_id);
    t.content = std::move(content);
    out_.push_back(std::move(t));
  }

  std::vector<Message> out_;
  std::string pending_reasoning_;  // a reasoning item belongs to the next assistant message
};

Status InputBuilder::add(const Json& item, const std::string& where) {
  if (!item.is_object()) return make_error(where + ": an input item must be an object");
  auto status = item.find("status");
  if (status != item.end() && !status->is_null() && *status != "completed") {
    return make_error(where + ": items with status other than 'completed' are not supported");
  }
  std::string type = string_field(item, "type", item.contains("role") ? "message" : "");
  if (type == "message") {
    std::string role = string_field(item, "role");
    Message m;
    if (role == "user") {
      m.role = Role::user;
    } else if (role == "assistant") {
      m.role = Role::assistant;
    } else if (role == "system" || role == "developer") {
      m.role = Role::system;
    } else {
      return make_error(where + ": unknown role '" + role + "'");
    }
    DSV4_ASSIGN_OR_RETURN(
        m.content,
        message_text(item.contains("content") ? item["content"] : Json(), where + ".content"));
    if (m.role == Role::assistant) {
      // Consecutive assistant items (text, then calls) form one turn.
      if (!out_.empty() && out_.back().role == Role::assistant && out_.back().tool_calls.empty()) {
        out_.back().content += m.content;
        return {};
      }
      m.reasoning_content = std::move(pending_reasoning_);
      pending_reasoning_.clear();
    }
    out_.push_back(std::move(m));
    return {};
  }
  if (type == "function_call" || type == "custom_tool_call") {
    std::string name = string_field(item, "name");
    if (name.empty()) return make_error(where + ": " + type + " without a name");
    name = string_field(item, "namespace") + name;
    std::string args;
    if (type == "function_call") {
      args = item.contains("arguments") ? arguments_text(item["arguments"]) : "{}";
    } else {
      args = string_field(item, "input");
    }
    add_call(string_field(item, "call_id"), std::move(name), std::move(args));
    return {};
  }
  if (type == "function_call_output" || type == "custom_tool_call_output" ||
      type == "local_shell_call_output") {
    DSV4_ASSIGN_OR_RETURN(
        std::string text,
        content_text(item.contains("output") ? item["output"] : Json(), where + ".output"));
    add_tool_result(string_field(item, "call_id"), std::move(text));
    return {};
  }
  if (type == "tool_search_output") {
    add_tool_result(string_field(item, "call_id"),
                    to_python_json(item.contains("tools") ? item["tools"] : Json::array()));
    return {};
  }
  for (const Hosted& h : kHostedCalls) {
    if (type != h.item) continue;
    std::string args = "{}";
    if (item.contains("arguments")) {
      args = arguments_text(item["arguments"]);
    } else if (item.contains("action")) {
      args = arguments_text(item["action"]);
    }
    std::string id = string_field(item, "call_id", string_field(item, "id"));
    add_call(std::move(id), std::string(h.name), std::move(args));
    return {};
  }
  if (type == "reasoning") {
    std::string text;
    for (const char* key : {"summary", "content"}) {
      if (!item.contains(key) || !item[key].is_array()) continue;
      for (const Json& part : item[key]) {
        std::string t = string_field(part, "text");
        if (t.empty()) continue;
        if (!text.empty()) text += "\n";
        text += t;
      }
    }
    if (!text.empty()) {
      if (!pending_reasoning_.empty()) pending_reasoning_ += "\n";
      pending_reasoning_ += text;
    }
    return {};
  }
  if (type == "compaction" || type == "context_compaction") return {};  // opaque to this model
  return make_error(where + ": unsupported input item type '" + type + "'");
}

// Function tools as OpenAI chat tools (the function object is the item without its "type");
// namespaces flattened; tool_search synthesised; hosted tools are not offered to the model.
Result<Json> convert_tools(const Json& tools, std::vector<NamespacedTool>& namespaced) {
  Json out = Json::array();
  if (tools.is_null()) return out;
  if (!tools.is_array()) return make_error("tools: expected an array");
  auto function_of = [](const Json& t) {
    Json fn = t;
    fn.erase("type");
    return Json{{"type", "function"}, {"function", std::move(fn)}};
  };
  for (size_t i = 0; i < tools.size(); ++i) {
    const Json& t = tools[i];
    std::string w = "tools[" + std::to_string(i) + "]";
    if (!t.is_object()) return make_error(w + ": a tool must be an object");
    std::string type = string_field(t, "type");
    if (type == "function") {
      out.push_back(function_of(t));
    } else if (type == "namespace") {
      std::string ns = string_field(t, "name");
      if (!t.contains("tools") || !t["tools"].is_array())
        return make_error(w + ": a namespace needs tools");
      for (const Json& inner : t["tools"]) {
        if (!inner.is_object() || string_field(inner, "type") != "function") continue;
        Json f = function_of(inner);
        std::string name = string_field(inner, "name");
        f["function"]["name"] = ns + name;
        namespaced.push_back({ns + name, ns, name});
        out.push_back(std::move(f));
      }
    } else if (type == "tool_search") {
      // dsv4 convention: the client's own schema if it sends one, else a single query string.
      Json fn = Json::object();
      fn["name"] = "tool_search";
      fn["description"] = string_field(t, "description", "Search available tools.");
      fn["parameters"] = t.contains("parameters")
                             ? t["parameters"]
                             : Json{{"type", "object"},
                                    {"properties", Json{{"query", Json{{"type", "string"}}}}},
                                    {"required", Json::array({"query"})}};
      out.push_back(Json{{"type", "function"}, {"function", std::move(fn)}});
    }
  }
  return out;
}

}  // namespace

Result<ChatRequest> map_responses_request(const Json& body, const RequestConfig& config) {
  if (!body.is_object()) return make_error("the request must be a JSON object");
  for (const char* key : {"previous_response_id", "conversation"}) {
    if (body.contains(key) && !body[key].is_null()) {
      return make_error(std::string(key) + " is not supported; replay full input instead");
    }
  }
  auto input = body.find("input");
  if (input == body.end() || input->is_null()) return make_error("missing input");

  std::vector<Message> api;
  std::string instructions = string_field(body, "instructions");
  if (!instructions.empty()) {
    Message m;
    m.role = Role::system;
    m.content = std::move(instructions);
    api.push_back(std::move(m));
  }
  if (input->is_string()) {
    Message m;
    m.content = input->get<std::string>();
    api.push_back(std::move(m));
  } else if (input->is_array()) {
    InputBuilder b;
    for (size_t i = 0; i < input->size(); ++i)
      DSV4_TRY(b.add((*input)[i], "input[" + std::to_string(i) + "]"));
    for (Message& m : b.take()) api.push_back(std::move(m));
  } else {
    return make_error("input: expected a string or an array of items");
  }

  ChatRequest req;
  ThinkingControls tc;
  tc.model = string_field(body, "model");
  auto reasoning = body.find("reasoning");
  if (reasoning != body.end() && reasoning->is_object() && reasoning->contains("effort") &&
      !(*reasoning)["effort"].is_null()) {
    if (!(*reasoning)["effort"].is_string())
      return make_error("reasoning.effort: expected a string");
    tc.effort = (*reasoning)["effort"].get<std::string>();
  }
  DSV4_ASSIGN_OR_RETURN(req.options, resolve_thinking(tc, config));

  DSV4_ASSIGN_OR_RETURN(Json tools, convert_tools(body.contains("tools") ? body["tools"] : Json(),
                                                  req.namespaced_tools));
  DSV4_TRY(validate_tools(tools, "request"));
  auto choice = body.find("tool_choice");
  if (choice != body.end() && !choice->is_null()) {
    if (choice->is_object()) return make_error("forced tool_choice not supported");
    if (!choice->is_string()) return make_error("tool_choice: expected a string");
    std::string c = choice->get<std::string>();
    if (c == "none") {
      tools = Json::array();
    } else if (c != "auto") {
      return make_error("tool_choice=" + c + " not supported");
    }
  }
  req.tools_active = !tools.empty();
  req.messages = assemble_messages(std::move(api), std::move(tools), std::nullopt);
  return req;
}

}  // namespace dsv4::chat
