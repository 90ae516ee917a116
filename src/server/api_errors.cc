#include "server/api_errors.h"

#include <string>

#include "chat/json_text.h"
#include "server/sse.h"

namespace dsv4::server {
namespace {

using chat::Json;

std::string_view anthropic_error_type(int status) {
  switch (status) {
    case 400:
      return "invalid_request_error";
    case 401:
      return "authentication_error";
    case 403:
      return "permission_error";
    case 404:
      return "not_found_error";
    case 413:
      return "request_too_large";
    case 429:
      return "rate_limit_error";
    case 503:
      return "overloaded_error";
    default:
      return status < 500 ? "invalid_request_error" : "api_error";
  }
}

Json anthropic_error_body(std::string_view type, std::string_view message) {
  Json error = Json::object();
  error["type"] = type;
  error["message"] = message;
  Json body = Json::object();
  body["type"] = "error";
  body["error"] = std::move(error);
  return body;
}

Json openai_error_body(std::string_view message, std::string_view type) {
  Json error = Json::object();
  error["message"] = message;
  error["type"] = type;
  Json body = Json::object();
  body["error"] = std::move(error);
  return body;
}

}  // namespace

HttpError api_error(Api api, int status, std::string_view message, std::string_view type) {
  Json body = api == Api::kMessages ? anthropic_error_body(anthropic_error_type(status), message)
                                    : openai_error_body(message, type);
  return HttpError{status, to_wire_json(body)};
}

HttpError context_length_error(Api api, int64_t n_prompt, int64_t n_ctx, std::string_view param) {
  std::string message = "Prompt has " + std::to_string(n_prompt) +
                        " tokens, but the configured context size is " + std::to_string(n_ctx) +
                        " tokens";
  Json body;
  if (api == Api::kMessages) {
    body = anthropic_error_body("invalid_request_error", message);
    body["error"]["n_prompt_tokens"] = n_prompt;
    body["error"]["n_ctx"] = n_ctx;
  } else {
    body = openai_error_body(message, "invalid_request_error");
    Json& error = body["error"];
    error["param"] = param;
    error["code"] = "context_length_exceeded";
    error["n_prompt_tokens"] = n_prompt;
    error["n_ctx"] = n_ctx;
  }
  return HttpError{400, to_wire_json(body)};
}

std::string sse_error_event(Api api, std::string_view message) {
  Json body = api == Api::kMessages ? anthropic_error_body("api_error", message)
                                    : openai_error_body(message, "server_error");
  return sse_event("error", body);
}

}  // namespace dsv4::server
