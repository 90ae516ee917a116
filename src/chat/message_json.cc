#include "chat/message_json.h"

#include <string>

namespace dsv4::chat {
namespace {

std::string at(std::string_view where, std::string_view field) {
  return std::string(where) + "." + std::string(field);
}

// A field that must be a string when present; null and absent give "".
Result<std::string> optional_string(const Json& obj, const char* key, std::string_view where) {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return std::string();
  if (!it->is_string()) return make_error(at(where, key) + ": expected a string");
  return it->get<std::string>();
}

Result<ToolCall> tool_call_from_json(const Json& j, std::string_view where) {
  if (!j.is_object()) return make_error(std::string(where) + ": a tool call must be an object");
  ToolCall call;
  auto fn = j.find("function");
  if (fn == j.end() || !fn->is_object()) {
    return make_error(std::string(where) + ": tool call without a \"function\" object");
  }
  DSV4_ASSIGN_OR_RETURN(call.id, optional_string(j, "id", where));
  if (call.id.empty()) {
    DSV4_ASSIGN_OR_RETURN(call.id, optional_string(*fn, "id", at(where, "function")));
  }
  DSV4_ASSIGN_OR_RETURN(call.name, optional_string(*fn, "name", at(where, "function")));
  if (call.name.empty())
    return make_error(std::string(where) + ": tool call without a function name");
  auto args = fn->find("arguments");
  call.arguments = args == fn->end() ? std::string("{}") : arguments_text(*args);
  return call;
}

}  // namespace

std::string arguments_text(const Json& arguments) {
  if (arguments.is_string()) return arguments.get<std::string>();
  if (arguments.is_null()) return "{}";
  return to_python_json(arguments);
}

Result<std::string> content_text(const Json& content, std::string_view where) {
  if (content.is_null()) return std::string();
  if (content.is_string()) return content.get<std::string>();
  if (!content.is_array())
    return make_error(std::string(where) + ": content must be a string, an array or null");
  std::string out;
  for (const Json& part : content) {
    if (part.is_string()) {
      out += part.get_ref<const std::string&>();
    } else if (part.is_object()) {
      auto text = part.find("text");
      if (text != part.end() && text->is_string()) out += text->get_ref<const std::string&>();
    }
  }
  return out;
}

Result<Message> message_from_json(const Json& j, std::string_view where) {
  if (!j.is_object()) return make_error(std::string(where) + ": a message must be an object");
  Message m;
  auto role = j.find("role");
  if (role == j.end() || !role->is_string())
    return make_error(std::string(where) + ": missing role");
  auto r = parse_role(role->get_ref<const std::string&>());
  if (!r) {
    return make_error(std::string(where) + ": unknown role '" + role->get<std::string>() +
                      "' (expected system, user, assistant, tool, developer or latest_reminder)");
  }
  m.role = *r;

  auto content = j.find("content");
  if (content != j.end()) {
    if (m.role == Role::tool && content->is_array()) {
      // The reference renders a tool result given as parts part by part (§2.4).
      std::vector<ContentPart> parts;
      for (const Json& p : *content) {
        if (p.is_string()) {
          parts.push_back({"text", p.get<std::string>()});
        } else if (p.is_object()) {
          ContentPart part;
          DSV4_ASSIGN_OR_RETURN(part.type, optional_string(p, "type", at(where, "content[]")));
          DSV4_ASSIGN_OR_RETURN(part.text, optional_string(p, "text", at(where, "content[]")));
          parts.push_back(std::move(part));
        } else {
          return make_error(at(where, "content") + ": parts must be strings or objects");
        }
      }
      m.content_parts = std::move(parts);
    } else {
      DSV4_ASSIGN_OR_RETURN(m.content, content_text(*content, at(where, "content")));
    }
  }

  DSV4_ASSIGN_OR_RETURN(m.reasoning_content, optional_string(j, "reasoning_content", where));
  if (m.reasoning_content.empty()) {
    // vLLM's copy of the encoder calls the field "reasoning".
    DSV4_ASSIGN_OR_RETURN(m.reasoning_content, optional_string(j, "reasoning", where));
  }

  auto calls = j.find("tool_calls");
  if (calls != j.end() && !calls->is_null()) {
    if (!calls->is_array()) return make_error(at(where, "tool_calls") + ": expected an array");
    for (size_t k = 0; k < calls->size(); ++k) {
      DSV4_ASSIGN_OR_RETURN(
          ToolCall c,
          tool_call_from_json((*calls)[k], at(where, "tool_calls[" + std::to_string(k) + "]")));
      m.tool_calls.push_back(std::move(c));
    }
  }

  DSV4_ASSIGN_OR_RETURN(m.tool_call_id, optional_string(j, "tool_call_id", where));

  auto tools = j.find("tools");
  if (tools != j.end() && !tools->is_null()) m.tools = *tools;

  auto rf = j.find("response_format");
  if (rf != j.end() && !rf->is_null()) m.response_format = *rf;

  DSV4_ASSIGN_OR_RETURN(std::string task, optional_string(j, "task", where));
  if (!task.empty()) {
    auto t = parse_task(task);
    if (!t) {
      return make_error(at(where, "task") + ": unknown task '" + task +
                        "' (expected action, query, authority, domain, title or read_url)");
    }
    m.task = *t;
  }

  auto wo_eos = j.find("wo_eos");
  if (wo_eos != j.end() && !wo_eos->is_null()) {
    if (!wo_eos->is_boolean()) return make_error(at(where, "wo_eos") + ": expected a boolean");
    m.wo_eos = wo_eos->get<bool>();
  }
  return m;
}

Result<std::vector<Message>> messages_from_json(const Json& array, std::string_view where) {
  if (!array.is_array()) return make_error(std::string(where) + ": expected an array of messages");
  std::vector<Message> out;
  out.reserve(array.size());
  for (size_t i = 0; i < array.size(); ++i) {
    DSV4_ASSIGN_OR_RETURN(
        Message m, message_from_json(array[i], std::string(where) + "[" + std::to_string(i) + "]"));
    out.push_back(std::move(m));
  }
  return out;
}

}  // namespace dsv4::chat
