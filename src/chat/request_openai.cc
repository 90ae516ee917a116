// OpenAI chat/completions bodies (PROTOCOL.md §2.11, §4.3).
#include "chat/message_json.h"
#include "chat/request.h"
#include "chat/tools_block.h"

namespace dsv4::chat {
namespace {

// A string-or-null field; anything else is an error naming it.
Result<std::optional<std::string>> optional_string_field(const Json& body, const char* key) {
  auto it = body.find(key);
  if (it == body.end() || it->is_null()) return std::optional<std::string>();
  if (!it->is_string()) return make_error(std::string(key) + ": expected a string");
  return std::optional<std::string>(it->get<std::string>());
}

// `thinking`: a bool or {type: enabled|disabled|adaptive}; `think`: a bool.
Result<std::optional<bool>> thinking_flag(const Json& body) {
  std::optional<bool> flag;
  auto think = body.find("think");
  if (think != body.end() && !think->is_null()) {
    if (!think->is_boolean()) return make_error("think: expected a boolean");
    flag = think->get<bool>();
  }
  auto thinking = body.find("thinking");
  if (thinking != body.end() && !thinking->is_null()) {
    if (thinking->is_boolean()) {
      flag = thinking->get<bool>();
    } else if (thinking->is_object()) {
      auto type = thinking->find("type");
      if (type != thinking->end() && type->is_string())
        flag = type->get<std::string>() != "disabled";
    } else {
      return make_error("thinking: expected a boolean or an object");
    }
  }
  return flag;
}

}  // namespace

Result<ChatRequest> map_openai_chat_request(const Json& body, const RequestConfig& config) {
  if (!body.is_object()) return make_error("the request must be a JSON object");
  auto messages = body.find("messages");
  if (messages == body.end() || !messages->is_array()) return make_error("missing messages");

  std::vector<Message> api;
  for (size_t i = 0; i < messages->size(); ++i) {
    std::string where = "messages[" + std::to_string(i) + "]";
    Json m = (*messages)[i];
    if (m.is_object()) {
      // Content arrays: text parts concatenated, other parts dropped (the model is text-only).
      auto content = m.find("content");
      if (content != m.end() && content->is_array()) {
        DSV4_ASSIGN_OR_RETURN(std::string text, content_text(*content, where + ".content"));
        *content = text;
      }
      auto role = m.find("role");
      if (role != m.end() && role->is_string() && *role == "developer") *role = "system";
    }
    DSV4_ASSIGN_OR_RETURN(Message msg, message_from_json(m, where));
    api.push_back(std::move(msg));
  }

  ChatRequest req;
  DSV4_ASSIGN_OR_RETURN(auto effort, optional_string_field(body, "reasoning_effort"));
  DSV4_ASSIGN_OR_RETURN(auto flag, thinking_flag(body));
  DSV4_ASSIGN_OR_RETURN(auto model, optional_string_field(body, "model"));
  DSV4_ASSIGN_OR_RETURN(req.options, resolve_thinking({flag, effort, model.value_or("")}, config));

  Json tools = Json::array();
  auto t = body.find("tools");
  if (t != body.end() && !t->is_null()) {
    if (!t->is_array()) return make_error("tools: expected an array");
    // Only function tools can be offered to the model (OpenAI's "custom" free-form tools and
    // the like are dropped); the rest must be well-formed.
    for (const Json& tool : *t) {
      if (!tool.is_object() || string_field(tool, "type", "function") == "function")
        tools.push_back(tool);
    }
    DSV4_TRY(validate_tools(tools, "request"));
  }
  auto choice = body.find("tool_choice");
  if (choice != body.end() && choice->is_string() && *choice == "none") tools = Json::array();
  req.tools_active = !tools.empty();

  std::optional<Json> response_format;
  auto rf = body.find("response_format");
  // {"type": "text"} is the API's default and asks for nothing.
  if (rf != body.end() && rf->is_object() &&
      !(rf->size() == 1 && string_field(*rf, "type", "") == "text")) {
    response_format = *rf;
  }
  req.messages = assemble_messages(std::move(api), std::move(tools), std::move(response_format));
  return req;
}

}  // namespace dsv4::chat
