// Errors in each API's own shape (PROTOCOL.md §4.7). Before the response has started, an error
// is an HTTP status with a JSON body; once SSE headers are out, it is one final `event: error`
// frame (nothing follows it). Failures in the middle of a generation are not errors here: they
// end the normal response with finish "error" (ApiOutput).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace dsv4::server {

// The four APIs served (§4.2). Each shapes bodies, streams and errors its own way.
enum class Api { kChat, kCompletions, kResponses, kMessages };

struct HttpError {
  int status = 500;
  std::string body;  // JSON text
};

// OpenAI-style APIs: {"error":{"message":M,"type":TYPE}}, TYPE as given.
// Anthropic: {"type":"error","error":{"type":T,"message":M}}, with Anthropic's own type for the
// status (400 invalid_request_error, 401 authentication_error, 403 permission_error,
// 404 not_found_error, 413 request_too_large, 429 rate_limit_error, 503 overloaded_error,
// other 4xx invalid_request_error, 5xx api_error); `type` is not used there.
HttpError api_error(Api api, int status, std::string_view message,
                    std::string_view type = "invalid_request_error");

// 400 for a prompt of n_prompt tokens that does not fit a context of n_ctx (n_prompt >= n_ctx).
// `param` names the request field holding the prompt ("messages", "prompt", "input"); Anthropic
// bodies have no param/code fields.
HttpError context_length_error(Api api, int64_t n_prompt, int64_t n_ctx, std::string_view param);

// The in-stream error frame: `event: error` with {"error":{"message":M,"type":"server_error"}},
// or for Anthropic {"type":"error","error":{"type":"api_error","message":M}}.
std::string sse_error_event(Api api, std::string_view message);

}  // namespace dsv4::server
