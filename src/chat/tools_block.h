// The system-prompt sections a system or developer message can carry: the tools block listing
// the tool schemas, and the response-format paragraph (PROTOCOL.md §2.4, §2.7).
#pragma once

#include "chat/json_text.h"
#include "chat/prompt.h"
#include "util/status.h"

namespace dsv4::chat {

// Checks an OpenAI-style tools array: every entry an object whose "function" is an object with
// a non-empty string "name" and, if present, an object "parameters". `where` prefixes errors.
Status validate_tools(const Json& tools, std::string_view where);

// "## Tools\n\n…### Available Tool Schemas\n\n" + one json.dumps line per tools[i].function +
// "\n\nYou MUST strictly follow…tool calls.\n". The caller writes the "\n\n" before it.
// Expects validate_tools to have passed.
void render_tools_block(const Json& tools, PromptBuilder& out);

// "## Response Format:\n\nYou MUST strictly adhere to the following schema to reply:\n" +
// json.dumps(response_format). The caller writes the "\n\n" before it.
void render_response_format(const Json& response_format, PromptBuilder& out);

}  // namespace dsv4::chat
