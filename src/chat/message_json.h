// Messages from JSON in the reference encoder's shape (and OpenAI chat's, which it extends):
// {role, content, reasoning_content, tool_calls, tool_call_id, tools, response_format, task,
// wo_eos}. Unknown fields are ignored; wrong types and unknown roles or tasks are errors.
#pragma once

#include <vector>

#include "chat/json_text.h"
#include "chat/message.h"
#include "util/status.h"

namespace dsv4::chat {

// `where` prefixes errors ("messages[2].tool_calls[0]: …").
Result<Message> message_from_json(const Json& j, std::string_view where);
Result<std::vector<Message>> messages_from_json(const Json& array,
                                                std::string_view where = "messages");

// Content as a string: a string as is, null as "", an array's string elements and the "text"
// fields of its objects concatenated with no separator (non-text parts dropped, §2.11).
Result<std::string> content_text(const Json& content, std::string_view where);

// A tool call's arguments as JSON text: a string as is, null as "{}", any other value as its
// JSON serialisation (§2.8: an object is serialised first, then handled normally).
std::string arguments_text(const Json& arguments);

}  // namespace dsv4::chat
