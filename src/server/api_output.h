// The response side of the four HTTP APIs (PROTOCOL.md §4.5–4.8): non-streaming bodies, SSE
// event streams, usage and the model object, built from the generator's stream events and its
// final result. Pure: no sockets, threads or engine; ids and clocks come from the caller, so the
// same inputs always give the same bytes.
//
// Streaming, per request:
//   auto out = ApiOutput::create(context);
//   write(out->start(prompt_usage));  // once the prompt is in the session
//   write(out->on_events(events));    // for each batch of generator events
//   write(out->finish(info));         // terminal events ([DONE] where the API has it)
// Non-streaming: body = to_wire_json(out->response(info)); no other call is needed.
//
// The events are those of chat::DsmlStreamParser as the generator forwards them: reasoning and
// content deltas, tool calls announced at their invoke header with argument fragments that
// concatenate to the final arguments, and error events (logged by the caller, never shown to
// clients). Tool calls therefore always stream live; Responses buffers them to the end (§4.6).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "chat/dsml_stream.h"
#include "chat/json_text.h"
#include "chat/request.h"
#include "server/api_errors.h"
#include "server/sse.h"

namespace dsv4::server {

struct OutputContext {
  Api api = Api::kChat;
  std::string model;  // the request's model field, echoed back
  // chatcmpl-<n> / cmpl-<n> / resp_<24hex> / msg_<...>, made by the caller. Responses item ids
  // are derived from it (rs_<hex>, msg_<hex>); the Anthropic thinking signature is this id.
  std::string id;
  int64_t created = 0;  // unix seconds
  bool stream = false;
  bool include_usage = false;      // chat/completions: stream_options.include_usage
  bool thinking = false;           // thinking mode on for this request
  bool reasoning_summary = false;  // Responses: reasoning.summary is auto|concise|detailed
  bool tools_active = false;       // tools offered: DSML in the output is parsed into calls
  std::vector<chat::NamespacedTool> namespaced_tools;  // Responses: restores name + namespace
  // Responses: the request offered a {type: "tool_search"} tool, so calls of the synthesised
  // function "tool_search" become tool_search_call items (responses_offers_tool_search).
  bool tool_search = false;
  // call_<32hex> (OpenAI, Responses) / toolu_<32hex> (Anthropic), unique within the turn (§3.6).
  // Required whenever tools are active. Responses function-call item ids are "fc_" + the part
  // of the call id after its first '_'.
  std::function<std::string()> new_call_id;
};

// Token counts of one request (§4.8). prompt_tokens is the effective prompt length; cached_tokens
// of them were reused (live session, checkpoint or disk), the rest were evaluated ("written").
struct Usage {
  int64_t prompt_tokens = 0;
  int64_t cached_tokens = 0;
  int64_t completion_tokens = 0;
  int64_t reasoning_tokens = 0;  // sampled before the end of reasoning
};

// A generator finish of "cancelled" has no response: the client is gone.
enum class FinishReason { kStop, kLength, kToolCalls, kError };
std::string_view finish_reason_name(FinishReason finish);  // stop, length, tool_calls, error

struct FinalInfo {
  FinishReason finish = FinishReason::kStop;
  std::string stop_sequence;  // the matched stop sequence (finish stop), if any
  std::string error_message;  // what went wrong (finish error), for logs
  Usage usage;
  // The whole generated text. Non-streaming responses are parsed from it with chat's dsv4 rule
  // (§3.4); content is cut at the first occurrence of stop_sequence if the text still holds it.
  // /v1/completions returns it as it is (raw model output). Streams use it only to tell whether
  // "</think>" was generated when no visible text followed it (Responses reasoning item status).
  std::string raw_text;
};

class ApiOutput {
 public:
  // context.api selects the shape. context.new_call_id must be set when tools are active.
  static std::unique_ptr<ApiOutput> create(OutputContext context);
  virtual ~ApiOutput() = default;

  // Streaming: the bytes to write, in order. start() before any event: the role chunk (chat),
  // response.created (Responses) or message_start (Anthropic, which reports the prompt's token
  // counts there: pass them once known; completion counts are ignored). Completions has no
  // opening frame (empty string).
  virtual std::string start(const Usage& prompt = {}) = 0;
  virtual std::string on_events(std::span<const chat::StreamEvent> events) = 0;
  // Closes open blocks/items and writes the terminal events: finish chunk, usage chunk (chat,
  // completions with include_usage) and [DONE]; response.completed|incomplete|failed; or
  // message_delta + message_stop. Finish tool_calls without a completed call is reported as stop
  // and a completed call turns stop into tool_calls (§3.4).
  virtual std::string finish(const FinalInfo& info) = 0;

  // Non-streaming: the response body (§4.5) from info alone; no events need have been fed. Key
  // order is the documented one (an ordered_json; dump with to_wire_json).
  virtual chat::Json response(const FinalInfo& info) = 0;
};

// USAGE (chat, completions), RUSAGE (Responses) or AUSAGE (Anthropic) of §4.8.
chat::Json usage_json(Api api, const Usage& usage);

// The MODEL object of GET /v1/models (§4.2).
chat::Json model_object(std::string_view id, int64_t n_ctx, int64_t default_max_tokens);

// Whether a Responses request body offers the hosted tool_search tool (OutputContext.tool_search).
bool responses_offers_tool_search(const chat::Json& body);

}  // namespace dsv4::server
