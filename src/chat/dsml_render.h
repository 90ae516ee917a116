// Tool calls of an assistant turn in history, re-rendered canonically from the client's JSON
// (PROTOCOL.md §2.8, §7 decision (a)): the same bytes the official encoder writes, with no
// escaping of names, keys or values.
#pragma once

#include <string>
#include <vector>

#include "chat/json_text.h"
#include "chat/message.h"
#include "chat/prompt.h"

namespace dsv4::chat {

struct ToolParameter {
  std::string name;
  Json value;  // a string renders raw with string="true"; anything else as JSON, string="false"
};

// The parameters a call renders with: the keys of its parsed `arguments` object in order. Text
// that is not a JSON object (unparsable, an array, a number) becomes one string parameter named
// "arguments" holding the raw text.
std::vector<ToolParameter> tool_call_parameters(const ToolCall& call);

// "\n\n<｜DSML｜tool_calls>\n" + invokes + "\n</｜DSML｜tool_calls>"; nothing for no calls.
void render_tool_calls(const std::vector<ToolCall>& calls, PromptBuilder& out);
std::string render_tool_calls_text(const std::vector<ToolCall>& calls);

}  // namespace dsv4::chat
