// API requests (OpenAI chat/completions, Anthropic messages, OpenAI responses) mapped onto the
// encoder's message list (PROTOCOL.md §2.11, §4.3). Pure data transformation: the server
// validates transport and sampling fields; this decides what the prompt says.
//
// dsv4 conventions where the official mapping is not published:
//  * API-level "developer" messages are system instructions (OpenAI's meaning), not the
//    encoder's internal developer turn.
//  * System messages before the first conversation message are joined with "\n\n" into one
//    system message; a system message later in the conversation (Claude Code sends one) joins
//    the surrounding user turn as user text, so every assistant turn keeps its
//    "<｜Assistant｜>" marker.
//  * Request tools and response_format go onto that first system message; without one, an
//    empty system message is inserted for them (vLLM's convention, which reproduces golden 1).
#pragma once

#include <string>
#include <vector>

#include "chat/json_text.h"
#include "chat/message.h"
#include "util/status.h"

namespace dsv4::chat {

// A Responses namespace tool is offered to the model as one flat name; outputs restore it.
struct NamespacedTool {
  std::string flat_name;  // namespace + name
  std::string ns;
  std::string name;
};

struct ChatRequest {
  std::vector<Message> messages;
  EncodeOptions options;
  bool tools_active = false;  // tools offered (and tool_choice not "none"): parse DSML in output
  std::vector<NamespacedTool> namespaced_tools;
};

struct RequestConfig {
  Release release = Release::original;
};

Result<ChatRequest> map_openai_chat_request(const Json& body, const RequestConfig& config = {});
Result<ChatRequest> map_anthropic_request(const Json& body, const RequestConfig& config = {});
Result<ChatRequest> map_responses_request(const Json& body, const RequestConfig& config = {});

// Thinking resolution shared by the three APIs (§4.3): enabled by default; an explicit flag
// wins, effort "none" disables; with neither, the model alias deepseek-chat disables it.
struct ThinkingControls {
  std::optional<bool> enabled;
  std::optional<std::string> effort;
  std::string model;
};
Result<EncodeOptions> resolve_thinking(const ThinkingControls& controls,
                                       const RequestConfig& config);

// The encoder's message list from API-level messages plus request-level tools (an array of
// OpenAI tools, possibly empty) and response_format, by the conventions above.
std::vector<Message> assemble_messages(std::vector<Message> api_messages, Json tools,
                                       std::optional<Json> response_format);

}  // namespace dsv4::chat
