// What a parsed model completion turns into: the pieces an API response is built from.
#pragma once

#include <string>
#include <vector>

namespace dsv4::chat {

struct ParsedToolCall {
  std::string name;
  // A JSON object as text, in the official form {"k": v, "k2": v2} (Python separators) so that
  // a client echoing it back re-renders identically (PROTOCOL.md §3.4).
  std::string arguments;

  bool operator==(const ParsedToolCall&) const = default;
};

struct ParsedMessage {
  std::string reasoning_content;
  std::string content;
  std::vector<ParsedToolCall> tool_calls;

  bool operator==(const ParsedMessage&) const = default;
};

}  // namespace dsv4::chat
