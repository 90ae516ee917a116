#include "server/api_output.h"

#include <algorithm>

#include "chat/completion.h"
#include "chat/utf8.h"
#include "server/api_output_internal.h"

namespace dsv4::server {

using chat::Json;

std::unique_ptr<ApiOutput> ApiOutput::create(OutputContext context) {
  switch (context.api) {
    case Api::kResponses:
      return detail::make_responses_output(std::move(context));
    case Api::kMessages:
      return detail::make_messages_output(std::move(context));
    case Api::kChat:
    case Api::kCompletions:
      break;
  }
  return detail::make_openai_output(std::move(context));
}

std::string_view finish_reason_name(FinishReason finish) {
  switch (finish) {
    case FinishReason::kLength:
      return "length";
    case FinishReason::kToolCalls:
      return "tool_calls";
    case FinishReason::kError:
      return "error";
    case FinishReason::kStop:
      break;
  }
  return "stop";
}

Json usage_json(Api api, const Usage& usage) {
  const int64_t prompt = std::max<int64_t>(usage.prompt_tokens, 0);
  const int64_t cached = std::clamp<int64_t>(usage.cached_tokens, 0, prompt);
  const int64_t written = prompt - cached;
  const int64_t completion = std::max<int64_t>(usage.completion_tokens, 0);
  const int64_t reasoning = std::clamp<int64_t>(usage.reasoning_tokens, 0, completion);
  Json u = Json::object();
  switch (api) {
    case Api::kMessages:
      // Anthropic counts uncached, unwritten input separately; every prompt token here is
      // either reused or evaluated (and then kept), so it is 0.
      u["input_tokens"] = prompt - cached - written;
      u["output_tokens"] = completion;
      u["cache_read_input_tokens"] = cached;
      u["cache_creation_input_tokens"] = written;
      return u;
    case Api::kResponses:
      u["input_tokens"] = prompt;
      u["input_tokens_details"] = Json{{"cached_tokens", cached}, {"cache_write_tokens", written}};
      u["output_tokens"] = completion;
      u["output_tokens_details"] = Json{{"reasoning_tokens", reasoning}};
      u["total_tokens"] = prompt + completion;
      return u;
    case Api::kChat:
    case Api::kCompletions:
      break;
  }
  u["prompt_tokens"] = prompt;
  u["completion_tokens"] = completion;
  u["total_tokens"] = prompt + completion;
  u["prompt_tokens_details"] = Json{{"cached_tokens", cached}, {"cache_write_tokens", written}};
  u["completion_tokens_details"] = Json{{"reasoning_tokens", reasoning}};
  // DeepSeek's own API reports these too (testdata/official-api/official/*.json).
  u["prompt_cache_hit_tokens"] = cached;
  u["prompt_cache_miss_tokens"] = written;
  return u;
}

Json model_object(std::string_view id, int64_t n_ctx, int64_t default_max_tokens) {
  Json provider = Json::object();
  provider["context_length"] = n_ctx;
  provider["max_completion_tokens"] = std::min(default_max_tokens, n_ctx);
  provider["is_moderated"] = false;
  Json m = Json::object();
  m["id"] = id;
  m["object"] = "model";
  m["created"] = 1767225600;
  m["owned_by"] = "dsv4";
  m["name"] = "DeepSeek V4 Flash";
  m["context_length"] = n_ctx;
  m["top_provider"] = std::move(provider);
  m["supported_parameters"] =
      Json::array({"tools", "tool_choice", "max_tokens", "temperature", "top_p", "top_k", "min_p",
                   "stop", "seed", "stream", "reasoning_effort"});
  return m;
}

bool responses_offers_tool_search(const Json& body) {
  if (!body.is_object()) return false;
  auto tools = body.find("tools");
  if (tools == body.end() || !tools->is_array()) return false;
  return std::any_of(tools->begin(), tools->end(),
                     [](const Json& t) { return chat::string_field(t, "type") == "tool_search"; });
}

namespace detail {

FinishReason client_finish(FinishReason finish, bool has_calls) {
  if (finish == FinishReason::kToolCalls && !has_calls) return FinishReason::kStop;
  if (finish == FinishReason::kStop && has_calls) return FinishReason::kToolCalls;
  return finish;
}

chat::ParsedMessage parse_final(const OutputContext& context, const FinalInfo& info) {
  chat::ParsedMessage m =
      chat::parse_completion(
          info.raw_text, context.thinking ? chat::ThinkingMode::thinking : chat::ThinkingMode::chat,
          context.tools_active)
          .message;
  if (!info.stop_sequence.empty()) {
    size_t at = m.content.find(info.stop_sequence);
    if (at != std::string::npos) {
      m.content.resize(at);
      m.tool_calls.clear();
    }
  }
  m.reasoning_content = valid_utf8(m.reasoning_content);
  m.content = valid_utf8(m.content);
  return m;
}

std::string valid_utf8(std::string_view text) {
  std::string out;
  chat::take_utf8(text, true, out);
  return out;
}

std::vector<chat::StreamEvent> coalesce(std::span<const chat::StreamEvent> events) {
  return chat::coalesce_events(std::vector<chat::StreamEvent>(events.begin(), events.end()));
}

std::string_view id_suffix(std::string_view id) {
  size_t underscore = id.find('_');
  return underscore == std::string_view::npos ? id : id.substr(underscore + 1);
}

Json arguments_object(std::string_view arguments) {
  // nlohmann's own parser, not chat::parse_json: huge integers may become doubles here, but
  // they must not become the binary values chat uses to keep prompts exact.
  Json value = Json::parse(arguments, nullptr, false);
  if (value.is_discarded() || !value.is_object()) return Json::object();
  return value;
}

}  // namespace detail
}  // namespace dsv4::server
