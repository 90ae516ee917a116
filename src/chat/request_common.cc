#include "chat/effort.h"
#include "chat/request.h"

namespace dsv4::chat {

Result<EncodeOptions> resolve_thinking(const ThinkingControls& c, const RequestConfig& config) {
  EncodeOptions o;
  o.release = config.release;
  std::optional<std::string_view> effort;
  if (c.effort) effort = *c.effort;
  DSV4_ASSIGN_OR_RETURN(ThinkingChoice choice, map_request_effort(effort));
  o.effort = choice.effort;
  o.thinking = choice.mode;
  if (c.enabled) {
    if (!*c.enabled) o.thinking = ThinkingMode::chat;
  } else if (!c.effort) {
    // The official aliases: deepseek-chat is the non-thinking model name.
    if (c.model == "deepseek-chat") o.thinking = ThinkingMode::chat;
  }
  return o;
}

std::vector<Message> assemble_messages(std::vector<Message> api, Json tools,
                                       std::optional<Json> response_format) {
  std::vector<Message> out;
  size_t i = 0;
  // The leading system block becomes one system message.
  if (!api.empty() && api[0].role == Role::system) {
    Message sys = std::move(api[0]);
    for (i = 1; i < api.size() && api[i].role == Role::system; ++i) {
      if (!api[i].content.empty()) {
        if (!sys.content.empty()) sys.content += "\n\n";
        sys.content += api[i].content;
      }
    }
    out.push_back(std::move(sys));
  }
  for (; i < api.size(); ++i) {
    Message m = std::move(api[i]);
    // A system message inside the conversation: user text (the encoder would otherwise glue it
    // to the previous turn without a marker).
    if (m.role == Role::system) m.role = Role::user;
    out.push_back(std::move(m));
  }

  bool has_tools = tools.is_array() && !tools.empty();
  if (!has_tools && !response_format) return out;
  if (out.empty() || out[0].role != Role::system) {
    Message sys;
    sys.role = Role::system;
    out.insert(out.begin(), std::move(sys));
  }
  if (has_tools) out[0].tools = std::move(tools);
  if (response_format) out[0].response_format = std::move(response_format);
  return out;
}

}  // namespace dsv4::chat
