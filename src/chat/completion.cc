#include "chat/completion.h"

#include "chat/dsml_stream.h"
#include "chat/dsml_strict.h"
#include "chat/json_text.h"
#include "chat/special_tokens.h"

namespace dsv4::chat {
namespace {

bool all_arguments_valid(const ParsedMessage& m) {
  for (const ParsedToolCall& c : m.tool_calls) {
    if (!Json::accept(c.arguments)) return false;
  }
  return true;
}

}  // namespace

namespace {

// The lenient reading: the stream parser over the whole text, with ds4's whole-text rules.
ParsedCompletion parse_lenient(std::string_view text, ThinkingMode mode, bool tools_active) {
  ParsedCompletion result;
  DsmlStreamParser parser(StreamOptions{mode, tools_active});
  std::vector<StreamEvent> events;
  parser.feed(text, events);
  parser.finish(events);
  bool malformed = false;
  for (const StreamEvent& e : events) {
    switch (e.kind) {
      case StreamEventKind::reasoning:
        result.message.reasoning_content += e.text;
        break;
      case StreamEventKind::content:
        result.message.content += e.text;
        break;
      case StreamEventKind::tool_call_end:
        result.message.tool_calls.push_back({e.name, e.text});
        break;
      case StreamEventKind::error:
        result.problems.push_back(e.text);
        if (e.error == StreamErrorKind::malformed) malformed = true;
        if (e.error == StreamErrorKind::unterminated) result.unterminated = true;
        break;
      default:
        break;
    }
  }
  // A block that could not be parsed is content in full (the stream already wrote its raw text
  // as content); calls read from it before the failure are not executed.
  if (malformed) result.message.tool_calls.clear();
  // Cut before "</think>" (e.g. by max_tokens): no reasoning/content split was made, so the
  // whole text is the answer (ds4's rule; the stream has already sent it as reasoning).
  if (mode == ThinkingMode::thinking && !parser.saw_think_end()) {
    result.message.content = std::move(result.message.reasoning_content);
    result.message.reasoning_content.clear();
  }
  return result;
}

}  // namespace

ParsedCompletion parse_completion(std::string_view text, ThinkingMode mode, bool tools_active) {
  if (text.ends_with(tok::kEos)) text.remove_suffix(tok::kEos.size());
  ParsedCompletion lenient = parse_lenient(text, mode, tools_active);
  if (!tools_active) return lenient;

  std::string with_eos(text);
  with_eos += tok::kEos;
  auto strict = parse_completion_strict(with_eos, mode);
  // The official reading wins when it accepts the text, unless it passed over markup the
  // lenient reading executes (the short and XML spellings are plain content to it) or it let
  // through string="false" values that are not JSON (the lenient reading replaces them by {}).
  if (strict.ok() && all_arguments_valid(*strict) &&
      strict->tool_calls.size() >= lenient.message.tool_calls.size()) {
    ParsedCompletion result;
    result.message = std::move(strict).value();
    result.strict = true;
    return result;
  }
  if (!strict.ok()) lenient.problems.insert(lenient.problems.begin(), strict.error().message);
  return lenient;
}

}  // namespace dsv4::chat
