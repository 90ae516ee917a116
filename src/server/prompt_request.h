// A request body turned into what the engine needs (PROTOCOL.md §4.3, validation order of §4.4):
// the API's fields checked, the official prompt rendered and tokenised by the segment rule, its
// typed text for the reuse ladder (§5.3), and what the response side must know. Runs on the HTTP
// thread: no engine involved.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "chat/json_text.h"
#include "chat/request.h"
#include "server/api_errors.h"
#include "server/request_fields.h"
#include "tokenizer/tokenizer.h"
#include "util/status.h"

namespace dsv4::server {

struct PromptRequest {
  Api api = Api::kChat;
  RequestFields fields;
  chat::ThinkingMode thinking = chat::ThinkingMode::chat;
  bool tools_active = false;
  std::vector<chat::NamespacedTool> namespaced_tools;
  bool tool_search = false;  // Responses: a tool_search tool was offered
  // The next turn's canonical prompt will drop this turn's reasoning (thinking mode without any
  // tools, §2.3): the state before the generation prefix is the one worth keeping.
  bool reasoning_dropped_next_turn = false;
  std::vector<int32_t> tokens;
  std::string typed;  // typed text of `tokens`
  const char* prompt_param = "messages";  // the field holding the prompt, for context errors
};

// Errors are client errors (400): malformed fields, unsupported options, unrenderable input.
//
// /v1/completions: the prompt (a string, or an array whose first element is a string) is
// tokenised with special-token recognition and BOS prepended unless already there (§4.3). Its
// output is the raw model text, so it runs in chat mode: no reasoning split and no thinking
// sampling override (the prompt itself decides whether the model thinks).
Result<PromptRequest> build_prompt_request(Api api, const chat::Json& body, const tokenizer::Tokenizer& tokenizer,
                                           const chat::RequestConfig& config);

// Input tokens of an Anthropic messages body (POST /v1/messages/count_tokens).
Result<int64_t> count_message_tokens(const chat::Json& body, const tokenizer::Tokenizer& tokenizer,
                                     const chat::RequestConfig& config);

}  // namespace dsv4::server
