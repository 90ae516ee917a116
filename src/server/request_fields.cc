#include "server/request_fields.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace dsv4::server {
namespace {

using chat::Json;

// The field's value, or nullptr when absent or null (both mean "not given").
const Json* field(const Json& body, const char* key) {
  auto it = body.find(key);
  if (it == body.end() || it->is_null()) return nullptr;
  return &*it;
}

Error type_error(const std::string& name, const char* expected) {
  return make_error(name + ": expected " + expected);
}

Status read_number(const Json& body, const char* key, float& out) {
  const Json* v = field(body, key);
  if (!v) return {};
  if (!v->is_number()) return type_error(key, "a number");
  const double d = v->get<double>();
  if (!std::isfinite(d) || std::fabs(d) > 1e30) return make_error(std::string(key) + ": out of range");
  out = static_cast<float>(d);
  return {};
}

// Integers may arrive as 40.0 from clients that keep every number a double.
Result<std::optional<int64_t>> read_integer(const Json& body, const char* key) {
  const Json* v = field(body, key);
  if (!v) return std::optional<int64_t>();
  if (v->is_number_integer()) {
    if (v->is_number_unsigned() && v->get<uint64_t>() > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
      return make_error(std::string(key) + ": out of range");
    return std::optional<int64_t>(v->get<int64_t>());
  }
  if (v->is_number_float()) {
    const double d = v->get<double>();
    if (std::isfinite(d) && d == std::floor(d) && std::fabs(d) < 9.0e18)
      return std::optional<int64_t>(static_cast<int64_t>(d));
  }
  return type_error(key, "an integer");
}

Status read_bool(const Json& body, const char* key, bool& out) {
  const Json* v = field(body, key);
  if (!v) return {};
  if (!v->is_boolean()) return type_error(key, "a boolean");
  out = v->get<bool>();
  return {};
}

// A string or an array of strings; empty strings are ignored (§4.9).
Status read_stop(const Json& body, const char* key, bool allow_string, std::vector<std::string>& out) {
  const Json* v = field(body, key);
  if (!v) return {};
  if (v->is_string()) {
    if (!allow_string) return type_error(key, "an array of strings");
    if (!v->get_ref<const std::string&>().empty()) out.push_back(v->get<std::string>());
    return {};
  }
  if (!v->is_array()) return type_error(key, allow_string ? "a string or an array of strings" : "an array of strings");
  for (const Json& s : *v) {
    if (!s.is_string()) return type_error(key, "an array of strings");
    if (!s.get_ref<const std::string&>().empty()) out.push_back(s.get<std::string>());
  }
  return {};
}

Status read_max_tokens(const Json& body, std::initializer_list<const char*> keys, RequestFields& f) {
  for (const char* key : keys) {  // the first present key wins
    DSV4_ASSIGN_OR_RETURN(std::optional<int64_t> n, read_integer(body, key));
    if (!n) continue;
    if (*n < 1) return make_error(std::string(key) + ": must be at least 1, got " + std::to_string(*n));
    f.max_tokens = n;
    return {};
  }
  return {};
}

Status read_openai_sampling(const Json& body, RequestFields& f) {
  DSV4_TRY(read_number(body, "temperature", f.sampling.temperature));
  DSV4_TRY(read_number(body, "top_p", f.sampling.top_p));
  DSV4_TRY(read_number(body, "min_p", f.sampling.min_p));
  DSV4_TRY(read_number(body, "presence_penalty", f.sampling.presence_penalty));
  DSV4_TRY(read_number(body, "frequency_penalty", f.sampling.frequency_penalty));
  DSV4_ASSIGN_OR_RETURN(std::optional<int64_t> top_k, read_integer(body, "top_k"));
  if (top_k) {
    if (*top_k < 0) return make_error("top_k: must be >= 0 (0 = off)");
    f.sampling.top_k = static_cast<int32_t>(std::min<int64_t>(*top_k, engine::kMaxTopK));
  }
  DSV4_ASSIGN_OR_RETURN(std::optional<int64_t> seed, read_integer(body, "seed"));
  if (seed) f.sampling.seed = static_cast<uint64_t>(*seed);
  return {};
}

Status read_stream_options(const Json& body, RequestFields& f) {
  const Json* o = field(body, "stream_options");
  if (!o) return {};
  if (!o->is_object()) return type_error("stream_options", "an object");
  const Json* u = field(*o, "include_usage");
  if (!u) return {};
  if (!u->is_boolean()) return type_error("stream_options.include_usage", "a boolean");
  f.include_usage = u->get<bool>();
  return {};
}

Status read_reasoning_summary(const Json& body, RequestFields& f) {
  const Json* r = field(body, "reasoning");
  if (!r) return {};
  if (!r->is_object()) return type_error("reasoning", "an object");
  const Json* s = field(*r, "summary");
  if (!s) return {};
  if (!s->is_string()) return type_error("reasoning.summary", "a string");
  const std::string& v = s->get_ref<const std::string&>();
  f.reasoning_summary = v == "auto" || v == "concise" || v == "detailed";
  return {};
}

}  // namespace

Result<RequestFields> parse_request_fields(Api api, const Json& body) {
  if (!body.is_object()) return make_error("the request must be a JSON object");
  RequestFields f;
  if (const Json* m = field(body, "model")) {
    if (!m->is_string()) return type_error("model", "a string");
    f.model = m->get<std::string>();
  }
  DSV4_TRY(read_bool(body, "stream", f.stream));
  switch (api) {
    case Api::kChat:
      DSV4_TRY(read_max_tokens(body, {"max_completion_tokens", "max_tokens"}, f));
      DSV4_TRY(read_openai_sampling(body, f));
      DSV4_TRY(read_stop(body, "stop", true, f.stop));
      DSV4_TRY(read_stream_options(body, f));
      break;
    case Api::kCompletions:
      DSV4_TRY(read_max_tokens(body, {"max_tokens"}, f));
      DSV4_TRY(read_openai_sampling(body, f));
      DSV4_TRY(read_stop(body, "stop", true, f.stop));
      DSV4_TRY(read_stream_options(body, f));
      break;
    case Api::kResponses:
      DSV4_TRY(read_max_tokens(body, {"max_output_tokens", "max_tokens"}, f));
      DSV4_TRY(read_number(body, "temperature", f.sampling.temperature));
      DSV4_TRY(read_number(body, "top_p", f.sampling.top_p));
      DSV4_TRY(read_reasoning_summary(body, f));
      break;
    case Api::kMessages: {
      DSV4_TRY(read_max_tokens(body, {"max_tokens"}, f));
      DSV4_TRY(read_number(body, "temperature", f.sampling.temperature));
      DSV4_TRY(read_number(body, "top_p", f.sampling.top_p));
      DSV4_ASSIGN_OR_RETURN(std::optional<int64_t> top_k, read_integer(body, "top_k"));
      if (top_k) {
        if (*top_k < 0) return make_error("top_k: must be >= 0 (0 = off)");
        f.sampling.top_k = static_cast<int32_t>(std::min<int64_t>(*top_k, engine::kMaxTopK));
      }
      DSV4_TRY(read_stop(body, "stop_sequences", false, f.stop));
      break;
    }
  }
  DSV4_TRY(engine::validate(f.sampling));
  return f;
}

engine::SamplingParams effective_sampling(const RequestFields& fields, chat::ThinkingMode mode,
                                          uint64_t fallback_seed) {
  engine::SamplingParams p = fields.sampling;
  if (mode == chat::ThinkingMode::thinking) {
    const engine::SamplingParams defaults;
    p.temperature = defaults.temperature;
    p.top_p = defaults.top_p;
    p.top_k = defaults.top_k;
    p.min_p = defaults.min_p;
  }
  if (p.seed == 0) p.seed = fallback_seed;
  return p;
}

int64_t effective_max_tokens(const std::optional<int64_t>& requested, int64_t server_default, int64_t n_ctx,
                             int64_t n_prompt) {
  const int64_t want = requested.value_or(server_default);
  return std::max<int64_t>(0, std::min(want, n_ctx - n_prompt));
}

}  // namespace dsv4::server
