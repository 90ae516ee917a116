// Anthropic messages bodies (PROTOCOL.md §2.11, §4.3).
#include "chat/message_json.h"
#include "chat/request.h"
#include "chat/tools_block.h"

namespace dsv4::chat {
namespace {

std::string at(std::string_view where, std::string_view field) {
  return std::string(where) + "." + std::string(field);
}

// `system`: a string or text blocks joined with "\n"; Claude Code's "x-anthropic-…" header
// parts (billing metadata, not instructions) are dropped.
Result<std::string> system_text(const Json& system) {
  if (system.is_null()) return std::string();
  if (system.is_string()) return system.get<std::string>();
  if (!system.is_array()) return make_error("system: expected a string or an array of text blocks");
  std::string out;
  bool first = true;
  for (const Json& b : system) {
    std::string text;
    if (b.is_string()) {
      text = b.get<std::string>();
    } else if (b.is_object() && string_field(b, "type", "") == "text" && b.contains("text") &&
               b["text"].is_string()) {
      text = b["text"].get<std::string>();
    } else {
      continue;
    }
    if (text.starts_with("x-anthropic-")) continue;
    if (!first) out += "\n";
    first = false;
    out += text;
  }
  return out;
}

// A tool_result's content: a string, or text blocks concatenated.
Result<std::string> tool_result_text(const Json& block, std::string_view where) {
  auto c = block.find("content");
  if (c == block.end()) return std::string();
  return content_text(*c, at(where, "content"));
}

// One Anthropic message -> encoder messages: tool_result blocks become tool messages, the
// user's text blocks a user message, an assistant's thinking/text/tool_use one assistant message.
Status append_message(const Json& m, std::string_view where, std::vector<Message>& out) {
  if (!m.is_object()) return make_error(std::string(where) + ": a message must be an object");
  std::string role = string_field(m, "role", "");
  auto content = m.find("content");
  Json blocks = Json::array();
  if (content != m.end() && content->is_string()) {
    blocks.push_back(Json{{"type", "text"}, {"text", *content}});
  } else if (content != m.end() && content->is_array()) {
    blocks = *content;
  } else if (content != m.end() && !content->is_null()) {
    return make_error(at(where, "content") + ": expected a string or an array of blocks");
  }

  if (role == "assistant") {
    Message a;
    a.role = Role::assistant;
    for (size_t k = 0; k < blocks.size(); ++k) {
      const Json& b = blocks[k];
      std::string bw = at(where, "content[" + std::to_string(k) + "]");
      if (!b.is_object()) return make_error(bw + ": expected a block object");
      std::string type = string_field(b, "type", "");
      if (type == "text" && b.contains("text") && b["text"].is_string()) {
        a.content += b["text"].get<std::string>();
      } else if (type == "thinking" && b.contains("thinking") && b["thinking"].is_string()) {
        a.reasoning_content += b["thinking"].get<std::string>();
      } else if (type == "tool_use") {
        ToolCall c;
        c.id = string_field(b, "id", "");
        c.name = string_field(b, "name", "");
        if (c.name.empty()) return make_error(bw + ": tool_use without a name");
        c.arguments = b.contains("input") ? arguments_text(b["input"]) : "{}";
        a.tool_calls.push_back(std::move(c));
      }
      // redacted_thinking, images and server-tool blocks carry nothing the model can read.
    }
    out.push_back(std::move(a));
    return {};
  }
  if (role != "user" && role != "system") {
    return make_error(std::string(where) + ": unknown role '" + role +
                      "' (expected user or assistant)");
  }
  Message text;
  text.role = role == "system" ? Role::system : Role::user;
  bool has_text = false;
  for (size_t k = 0; k < blocks.size(); ++k) {
    const Json& b = blocks[k];
    std::string bw = at(where, "content[" + std::to_string(k) + "]");
    if (!b.is_object()) return make_error(bw + ": expected a block object");
    std::string type = string_field(b, "type", "");
    if (type == "text" && b.contains("text") && b["text"].is_string()) {
      text.content += b["text"].get<std::string>();
      has_text = true;
    } else if (type == "tool_result") {
      if (has_text) {
        out.push_back(text);
        text.content.clear();
        has_text = false;
      }
      Message t;
      t.role = Role::tool;
      t.tool_call_id = string_field(b, "tool_use_id", "");
      DSV4_ASSIGN_OR_RETURN(t.content, tool_result_text(b, bw));
      out.push_back(std::move(t));
    }
  }
  if (has_text || blocks.empty()) out.push_back(std::move(text));
  return {};
}

// Anthropic tools {name, description, input_schema} as OpenAI function tools. Server tools
// (web search and the like, which carry a "type" and no schema) are not offered to the model.
Result<Json> convert_tools(const Json& tools) {
  Json out = Json::array();
  if (tools.is_null()) return out;
  if (!tools.is_array()) return make_error("tools: expected an array");
  for (size_t i = 0; i < tools.size(); ++i) {
    const Json& t = tools[i];
    std::string w = "tools[" + std::to_string(i) + "]";
    if (!t.is_object()) return make_error(w + ": a tool must be an object");
    std::string type = string_field(t, "type", "custom");
    if (type != "custom") continue;
    Json fn = Json::object();
    auto name = t.find("name");
    if (name == t.end() || !name->is_string() || name->get_ref<const std::string&>().empty()) {
      return make_error(w + ": missing tool name");
    }
    fn["name"] = *name;
    if (t.contains("description")) fn["description"] = t["description"];
    if (t.contains("input_schema")) fn["parameters"] = t["input_schema"];
    out.push_back(Json{{"type", "function"}, {"function", std::move(fn)}});
  }
  return out;
}

}  // namespace

Result<ChatRequest> map_anthropic_request(const Json& body, const RequestConfig& config) {
  if (!body.is_object()) return make_error("the request must be a JSON object");
  auto messages = body.find("messages");
  if (messages == body.end() || !messages->is_array()) return make_error("missing messages");

  std::vector<Message> api;
  if (body.contains("system")) {
    DSV4_ASSIGN_OR_RETURN(std::string sys, system_text(body["system"]));
    if (!sys.empty()) {
      Message m;
      m.role = Role::system;
      m.content = std::move(sys);
      api.push_back(std::move(m));
    }
  }
  for (size_t i = 0; i < messages->size(); ++i) {
    DSV4_TRY(append_message((*messages)[i], "messages[" + std::to_string(i) + "]", api));
  }

  ChatRequest req;
  ThinkingControls tc;
  tc.model = string_field(body, "model", "");
  auto thinking = body.find("thinking");
  if (thinking != body.end() && thinking->is_object() && thinking->contains("type") &&
      (*thinking)["type"].is_string()) {
    tc.enabled = (*thinking)["type"].get<std::string>() != "disabled";
  }
  auto oc = body.find("output_config");
  if (oc != body.end() && oc->is_object() && oc->contains("effort") && !(*oc)["effort"].is_null()) {
    if (!(*oc)["effort"].is_string()) return make_error("output_config.effort: expected a string");
    tc.effort = (*oc)["effort"].get<std::string>();
  }
  auto re = body.find("reasoning_effort");
  if (re != body.end() && !re->is_null()) {
    if (!re->is_string()) return make_error("reasoning_effort: expected a string");
    tc.effort = re->get<std::string>();
  }
  DSV4_ASSIGN_OR_RETURN(req.options, resolve_thinking(tc, config));

  DSV4_ASSIGN_OR_RETURN(Json tools, convert_tools(body.contains("tools") ? body["tools"] : Json()));
  DSV4_TRY(validate_tools(tools, "request"));
  auto choice = body.find("tool_choice");
  if (choice != body.end() && choice->is_object() && string_field(*choice, "type", "") == "none")
    tools = Json::array();
  req.tools_active = !tools.empty();
  req.messages = assemble_messages(std::move(api), std::move(tools), std::nullopt);
  return req;
}

}  // namespace dsv4::chat
