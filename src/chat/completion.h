// Parsing a finished completion into reasoning, content and tool calls with dsv4's rule
// (PROTOCOL.md §3.4): the official strict parser's reading when it accepts the text (and did not
// pass over markup that the lenient reading executes), otherwise the lenient stream parser's.
// Never fails: broken tool markup degrades to content.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "chat/message.h"
#include "chat/parsed_message.h"

namespace dsv4::chat {

struct ParsedCompletion {
  ParsedMessage message;
  bool strict = false;                // the official parser accepted the text as it is
  bool unterminated = false;          // generation ended inside a tool-call block (finish: error)
  std::vector<std::string> problems;  // what the lenient reading had to repair, for logs
};

// `text` is the generated text (a trailing EOS string, if present, is ignored). With
// `tools_active` false, DSML markup is ordinary content.
ParsedCompletion parse_completion(std::string_view text, ThinkingMode mode, bool tools_active);

}  // namespace dsv4::chat
