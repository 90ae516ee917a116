#include "server/prompt_request.h"

#include <algorithm>

#include "chat/encoder.h"
#include "chat/token_ids.h"
#include "chat/typed_text.h"
#include "server/api_output.h"
#include "tokenizer/special_tokens.h"

namespace dsv4::server {
namespace {

using chat::Json;

Result<chat::ChatRequest> map_request(Api api, const Json& body, const chat::RequestConfig& config) {
  switch (api) {
    case Api::kChat: return chat::map_openai_chat_request(body, config);
    case Api::kResponses: return chat::map_responses_request(body, config);
    case Api::kMessages: return chat::map_anthropic_request(body, config);
    case Api::kCompletions: break;
  }
  return make_error("completions requests carry no messages");
}

const char* prompt_param(Api api) {
  switch (api) {
    case Api::kCompletions: return "prompt";
    case Api::kResponses: return "input";
    case Api::kChat:
    case Api::kMessages: break;
  }
  return "messages";
}

Result<std::string> completion_prompt(const Json& body) {
  auto p = body.find("prompt");
  if (p == body.end() || p->is_null()) return make_error("missing prompt");
  if (p->is_string()) return p->get<std::string>();
  if (p->is_array() && !p->empty() && (*p)[0].is_string()) return (*p)[0].get<std::string>();
  return make_error("prompt: expected a string or an array of strings");
}

bool any_tools(const std::vector<chat::Message>& messages) {
  return std::any_of(messages.begin(), messages.end(),
                     [](const chat::Message& m) { return m.tools.is_array() && !m.tools.empty(); });
}

struct RenderedRequest {
  chat::ChatRequest chat;
  std::vector<int32_t> tokens;
  std::string typed;
};

Result<RenderedRequest> render(Api api, const Json& body, const tokenizer::Tokenizer& tokenizer,
                               const chat::RequestConfig& config) {
  RenderedRequest r;
  DSV4_ASSIGN_OR_RETURN(r.chat, map_request(api, body, config));
  DSV4_ASSIGN_OR_RETURN(chat::RenderedPrompt rendered, chat::encode_messages(r.chat.messages, r.chat.options));
  DSV4_ASSIGN_OR_RETURN(r.tokens, chat::prompt_token_ids(rendered, tokenizer));
  r.typed = chat::typed_text(rendered, tokenizer);
  return r;
}

}  // namespace

Result<PromptRequest> build_prompt_request(Api api, const Json& body, const tokenizer::Tokenizer& tokenizer,
                                           const chat::RequestConfig& config) {
  if (!body.is_object()) return make_error("the request must be a JSON object");
  PromptRequest req;
  req.api = api;
  req.prompt_param = prompt_param(api);
  DSV4_ASSIGN_OR_RETURN(req.fields, parse_request_fields(api, body));

  if (api == Api::kCompletions) {
    DSV4_ASSIGN_OR_RETURN(std::string prompt, completion_prompt(body));
    if (!prompt.starts_with(tokenizer::kBosString)) prompt.insert(0, tokenizer::kBosString);
    req.tokens = tokenizer.encode_with_special(prompt);
    req.typed = chat::typed_text(req.tokens, tokenizer);
    req.thinking = chat::ThinkingMode::chat;
    return req;
  }

  DSV4_ASSIGN_OR_RETURN(RenderedRequest r, render(api, body, tokenizer, config));
  req.thinking = r.chat.options.thinking;
  req.tools_active = r.chat.tools_active;
  req.namespaced_tools = std::move(r.chat.namespaced_tools);
  req.tool_search = api == Api::kResponses && req.tools_active && responses_offers_tool_search(body);
  req.reasoning_dropped_next_turn = req.thinking == chat::ThinkingMode::thinking &&
                                    r.chat.options.drop_thinking && !any_tools(r.chat.messages);
  req.tokens = std::move(r.tokens);
  req.typed = std::move(r.typed);
  return req;
}

Result<int64_t> count_message_tokens(const Json& body, const tokenizer::Tokenizer& tokenizer,
                                     const chat::RequestConfig& config) {
  if (!body.is_object()) return make_error("the request must be a JSON object");
  DSV4_ASSIGN_OR_RETURN(RenderedRequest r, render(Api::kMessages, body, tokenizer, config));
  return static_cast<int64_t>(r.tokens.size());
}

}  // namespace dsv4::server
