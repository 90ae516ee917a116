// The request fields that shape a generation rather than its prompt (PROTOCOL.md §4.3–4.4):
// max tokens, sampling, stop sequences, streaming and usage options, per API, with their types
// checked. The prompt side (messages, tools, thinking controls) is chat/request.h's.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "chat/json_text.h"
#include "chat/message.h"
#include "engine/sampler.h"
#include "server/api_errors.h"
#include "util/status.h"

namespace dsv4::server {

struct RequestFields {
  std::string model;               // echoed back; empty when the request named none
  bool stream = false;
  bool include_usage = false;      // chat/completions: stream_options.include_usage
  bool reasoning_summary = false;  // Responses: reasoning.summary is auto|concise|detailed
  std::optional<int64_t> max_tokens;
  engine::SamplingParams sampling;  // as requested; seed 0 = none given
  std::vector<std::string> stop;    // empty strings dropped
};

// Which fields each API reads (unknown fields are ignored, §4.1):
//   chat         max_completion_tokens | max_tokens, temperature, top_p, min_p, top_k, seed,
//                presence_penalty, frequency_penalty, stop, stream, stream_options
//   completions  max_tokens and the same sampling, stop and stream fields
//   responses    max_output_tokens | max_tokens, temperature, top_p, stream, reasoning.summary
//   messages     max_tokens, temperature, top_p, top_k, stop_sequences, stream
// A field of the wrong type or out of range is an error whose message starts with its name.
Result<RequestFields> parse_request_fields(Api api, const chat::Json& body);

// The sampling a generation uses (§4.4): in thinking mode temperature, top_p, top_k and min_p are
// forced to their defaults (as the official API ignores them there); a missing seed (0) becomes
// `fallback_seed`.
engine::SamplingParams effective_sampling(const RequestFields& fields, chat::ThinkingMode mode,
                                          uint64_t fallback_seed);

// Tokens a generation may produce: the request's limit (or the server default), clipped to the
// context left after the prompt.
int64_t effective_max_tokens(const std::optional<int64_t>& requested, int64_t server_default,
                             int64_t n_ctx, int64_t n_prompt);

}  // namespace dsv4::server
