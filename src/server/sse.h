// Wire text of the HTTP APIs (PROTOCOL.md §4.5–4.6): compact JSON and Server-Sent Events frames.
// Everything the server writes to a client goes through to_wire_json, so a response is valid
// UTF-8 JSON even when a string in it (an echoed model name, an error message quoting client
// bytes) is not valid UTF-8: such bytes become U+FFFD instead of throwing.
#pragma once

#include <string>
#include <string_view>

#include "chat/json_text.h"

namespace dsv4::server {

// Compact JSON (no spaces), keys in the value's own order, non-ASCII written as UTF-8.
std::string to_wire_json(const chat::Json& value);

// "data: JSON\n\n": a frame without an event name (OpenAI chat and completions chunks).
std::string sse_data(const chat::Json& value);
// "event: NAME\ndata: JSON\n\n" (Anthropic events, Responses events, in-stream errors).
std::string sse_event(std::string_view name, const chat::Json& value);
// "data: [DONE]\n\n": the end of an OpenAI chat or completions stream.
std::string sse_done();
// ": prefill\n\n": a comment that keeps the connection alive while a long prompt is evaluated.
std::string sse_prefill_comment();

}  // namespace dsv4::server
