// The encoder's input: a list of messages in the shape of DeepSeek's reference encoder
// (PROTOCOL.md §2.2), typed. API adapters (request_*.h) and message_json.h build these.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "chat/json_text.h"

namespace dsv4::chat {

enum class Role { system, user, assistant, tool, developer, latest_reminder };

std::string_view role_name(Role role);
std::optional<Role> parse_role(std::string_view name);

// Quick-instruction tasks (§2.5): they replace the normal transition after a message.
enum class Task { none, action, query, authority, domain, title, read_url };

std::string_view task_name(Task task);
std::optional<Task> parse_task(std::string_view name);

struct ToolCall {
  std::string id;  // used only to order tool results (§2.2 step 2)
  std::string name;
  std::string arguments;  // JSON text as the client sent it (an object: its JSON serialisation)
};

// A part of a tool result given as a block list: "text" parts render their text, any other type
// renders as "[Unsupported TYPE]" (§2.4).
struct ContentPart {
  std::string type;
  std::string text;
};

struct Message {
  Role role = Role::user;
  std::string content;  // null contents are normalised to "" (§2.10)
  // Tool messages only: content given as a list of parts instead of a string.
  std::optional<std::vector<ContentPart>> content_parts;
  std::string reasoning_content;
  std::vector<ToolCall> tool_calls;     // assistant
  std::string tool_call_id;             // tool
  Json tools;                           // system/developer: null or an array of OpenAI tools
  std::optional<Json> response_format;  // system/developer
  Task task = Task::none;
  bool wo_eos = false;  // assistant: leave the turn open (no EOS) so that it can be continued
};

enum class ThinkingMode { chat, thinking };

// Which release's effort prompts to use (§2.6, §7 decision (b)).
enum class Release { original, v0731 };

// Encoder-level reasoning effort. Original release: only `max` adds a prefix. 0731: `high` and
// `max` add prefixes; `none` and `low` (its default) add nothing.
enum class Effort { none, low, high, max };

struct EncodeOptions {
  ThinkingMode thinking = ThinkingMode::thinking;
  Effort effort = Effort::none;
  Release release = Release::original;
  bool drop_thinking = true;  // drop earlier turns' reasoning when no tools are present (§2.3)
  bool add_bos = true;        // only when there is no context
};

}  // namespace dsv4::chat
