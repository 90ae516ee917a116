// dsv4 render: the exact prompt a request turns into (PROTOCOL.md §2), and its token ids when a
// model's tokenizer is given. Reads an OpenAI chat, Anthropic messages or OpenAI Responses body,
// a captured request {method, url, body} (testdata/agent-requests), or the reference encoder's
// own input (a message array, or {tools, messages} as in the official golden tests).
#include <cstdio>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "chat/effort.h"
#include "chat/encoder.h"
#include "chat/json_text.h"
#include "chat/message_json.h"
#include "chat/request.h"
#include "chat/token_ids.h"
#include "cli/commands.h"
#include "gguf/gguf.h"
#include "tokenizer/tokenizer.h"

namespace dsv4::cli {
namespace {

struct RenderOptions {
  std::string request;
  std::string model;
  std::string think;  // "" = as the request says
  std::string release = "original";
  std::string api = "auto";
  std::string format;  // "" = text, or both when --model is given
};

Result<std::string> read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return make_error(path + ": cannot open");
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

bool has_anthropic_blocks(const chat::Json& messages) {
  if (!messages.is_array()) return false;
  for (const auto& m : messages) {
    if (!m.is_object() || !m.contains("content") || !m["content"].is_array()) continue;
    for (const auto& b : m["content"]) {
      std::string type = chat::string_field(b, "type");
      if (type == "tool_use" || type == "tool_result" || type == "thinking") return true;
    }
  }
  return false;
}

// Which mapping a request body needs when --api is auto.
std::string detect_api(const chat::Json& body, const std::string& url) {
  if (!url.empty()) {
    if (url.starts_with("/v1/messages")) return "anthropic";
    if (url.starts_with("/v1/responses")) return "responses";
    return "openai";
  }
  if (body.is_array()) return "encoder";
  if (body.contains("input")) return "responses";
  if (body.contains("system") || body.contains("output_config") ||
      has_anthropic_blocks(body.value("messages", chat::Json()))) {
    return "anthropic";
  }
  return "openai";
}

// The reference encoder's input: messages as they are (developer and latest_reminder roles,
// tasks), thinking mode unless --think none.
Result<chat::ChatRequest> encoder_input(const chat::Json& input) {
  chat::Json messages = input;
  if (input.is_object()) {
    if (!input.contains("messages"))
      return make_error("expected a message array or {tools, messages}");
    messages = input["messages"];
    if (input.contains("tools") && messages.is_array() && !messages.empty() &&
        messages[0].is_object()) {
      messages[0]["tools"] = input["tools"];
    }
  }
  chat::ChatRequest req;
  DSV4_ASSIGN_OR_RETURN(req.messages, chat::messages_from_json(messages));
  for (const auto& m : req.messages)
    req.tools_active = req.tools_active || (m.tools.is_array() && !m.tools.empty());
  return req;
}

Result<chat::ChatRequest> map_request(const RenderOptions& o, const chat::Json& doc) {
  chat::Json body = doc;
  std::string url;
  if (doc.is_object() && doc.contains("body") && doc.contains("url")) {
    body = doc["body"];
    url = chat::string_field(doc, "url");
    if (!body.is_object()) return make_error("the captured request has no JSON body");
  }
  std::string api = o.api == "auto" ? detect_api(body, url) : o.api;
  auto release = chat::parse_release(o.release);
  if (!release) return make_error("unknown release '" + o.release + "'");
  chat::RequestConfig config{*release};
  Result<chat::ChatRequest> req = api == "encoder"     ? encoder_input(body)
                                  : api == "anthropic" ? chat::map_anthropic_request(body, config)
                                  : api == "responses"
                                      ? chat::map_responses_request(body, config)
                                      : chat::map_openai_chat_request(body, config);
  if (!req.ok()) return req.error().with_context(api + " request");
  if (api == "encoder") req->options.release = *release;
  if (o.think == "none") {
    req->options.thinking = chat::ThinkingMode::chat;
  } else if (!o.think.empty()) {
    req->options.thinking = chat::ThinkingMode::thinking;
    req->options.effort = o.think == "low"    ? chat::Effort::low
                          : o.think == "high" ? chat::Effort::high
                                              : chat::Effort::max;
  }
  return req;
}

std::string ids_line(const std::vector<int32_t>& ids) {
  std::string s = "[";
  for (size_t i = 0; i < ids.size(); ++i) {
    if (i) s += ", ";
    s += std::to_string(ids[i]);
  }
  return s + "]";
}

Status run(const RenderOptions& o) {
  DSV4_ASSIGN_OR_RETURN(std::string text, read_file(o.request));
  auto doc = chat::parse_json(text);
  if (!doc.ok()) return doc.error().with_context(o.request);
  DSV4_ASSIGN_OR_RETURN(chat::ChatRequest req, map_request(o, *doc));
  DSV4_ASSIGN_OR_RETURN(chat::RenderedPrompt prompt,
                        chat::encode_messages(req.messages, req.options));

  std::string format = o.format.empty() ? (o.model.empty() ? "text" : "both") : o.format;
  std::vector<int32_t> ids;
  if (!o.model.empty()) {
    DSV4_ASSIGN_OR_RETURN(gguf::File file, gguf::File::open(o.model));
    DSV4_ASSIGN_OR_RETURN(tokenizer::Tokenizer tok, tokenizer::Tokenizer::from_gguf(file));
    DSV4_ASSIGN_OR_RETURN(ids, chat::prompt_token_ids(prompt, tok));
  } else if (format == "ids" || format == "both") {
    return make_error("--format " + format + " needs --model for the tokenizer");
  }

  if (format == "text" || format == "both")
    std::fwrite(prompt.text.data(), 1, prompt.text.size(), stdout);
  if (format == "both") std::printf("\n%s\n", ids_line(ids).c_str());
  if (format == "ids") std::printf("%s\n", ids_line(ids).c_str());
  if (format == "json") {
    chat::Json segs = chat::Json::array();
    for (const auto& s : prompt.segments) {
      segs.push_back({{"text", s.text}, {"control", s.is_control}, {"client", s.from_client}});
    }
    chat::Json out = {{"text", prompt.text},
                      {"thinking", req.options.thinking == chat::ThinkingMode::thinking},
                      {"tools_active", req.tools_active},
                      {"segments", segs}};
    if (!o.model.empty()) {
      out["ids"] = ids;
      out["count"] = ids.size();
    }
    std::printf("%s\n", out.dump().c_str());
  }
  if (!o.model.empty()) std::fprintf(stderr, "%zu tokens\n", ids.size());
  return Status();
}

}  // namespace

void register_render(CLI::App& app) {
  auto o = std::make_shared<RenderOptions>();
  CLI::App* cmd = app.add_subcommand(
      "render", "Print the prompt a chat request renders to (and its token ids)");
  cmd->add_option("--request,-r", o->request,
                  "Request JSON: an OpenAI/Anthropic/Responses body, a captured {method,url,body}, "
                  "or encoder input (message array or {tools, messages})")
      ->required();
  cmd->add_option("--model,-m", o->model, "GGUF model whose tokenizer gives the token ids");
  cmd->add_option("--think", o->think, "Override thinking: none (chat mode), low, high or max")
      ->check(CLI::IsMember({"none", "low", "high", "max"}));
  cmd->add_option("--release", o->release, "Effort prompts of: original (default) or 0731")
      ->check(CLI::IsMember({"original", "0731"}));
  cmd->add_option("--api", o->api,
                  "Request shape: auto (default), openai, anthropic, responses or encoder")
      ->check(CLI::IsMember({"auto", "openai", "anthropic", "responses", "encoder"}));
  cmd->add_option(
         "--format", o->format,
         "text (the exact prompt bytes; default), ids, both (text, newline, ids; default with "
         "--model) or json (text, segments, ids)")
      ->check(CLI::IsMember({"text", "ids", "both", "json"}));
  cmd->callback([o] {
    Status s = run(*o);
    if (!s.ok()) std::fprintf(stderr, "dsv4 render: %s\n", s.message().c_str());
    set_exit_code(s.ok() ? 0 : 1);
  });
}

}  // namespace dsv4::cli
