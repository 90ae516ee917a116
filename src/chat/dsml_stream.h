// Incremental parser for generated text (PROTOCOL.md §3.4–3.5, §4.6): splits it into reasoning,
// visible content and DSML tool calls while the tokens arrive. A tool call is announced as soon
// as its invoke header is complete and its arguments follow as JSON fragments, so clients see
// calls being written. The parser is lenient (what the model writes is not always perfect) and
// reports every departure from the official grammar as an error event instead of failing.
//
// Chunking never changes the result: feeding the same bytes in any pieces yields the same events
// once adjacent text events of one kind are joined (tests check this for every grammar case).
// Emitted text is always whole, valid UTF-8 (invalid bytes become U+FFFD).
#pragma once

#include <cstddef>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "chat/message.h"

namespace dsv4::chat {

enum class StreamEventKind {
  reasoning,            // text: a reasoning delta
  content,              // text: a visible-content delta
  tool_call_begin,      // index, name: a call's invoke header is complete
  tool_call_arguments,  // index, text: the next fragment of the call's JSON arguments
  tool_call_end,        // index, name, text: the call is complete; text = its final arguments
  error,                // error_kind, text: a message for logs
};

enum class StreamErrorKind {
  none,
  // Departed from the official grammar (non-canonical markers or whitespace, missing or invalid
  // string attribute, duplicate parameter, text after the block) but parsed without loss.
  strict_violation,
  // A string="false" value is not valid JSON: the call's final arguments become "{}".
  invalid_arguments,
  // The tool-call block cannot be parsed (e.g. an invoke without a name). The block's raw text
  // follows as content, everything after it is content too, and a call that was begun but not
  // ended is abandoned. Calls that ended before remain valid.
  malformed,
  // The text ended inside a tool-call block (finish: error). Unfinished calls are abandoned.
  unterminated,
};

struct StreamEvent {
  StreamEventKind kind = StreamEventKind::content;
  std::string text;
  std::string name;
  int index = -1;
  StreamErrorKind error = StreamErrorKind::none;

  bool operator==(const StreamEvent&) const = default;
};

struct StreamOptions {
  // Thinking mode: the text starts as reasoning (an optional leading "<think>" is skipped) and
  // turns into content at the first "</think>". DSML inside reasoning is never executable.
  ThinkingMode mode = ThinkingMode::thinking;
  // DSML is recognised only when the request offered tools; otherwise everything is content.
  bool tools_active = true;
};

class DsmlStreamParser {
 public:
  struct Dialect;  // one spelling of the markup (defined in the .cc)

  explicit DsmlStreamParser(StreamOptions options);

  // Appends the events `bytes` completes. Adjacent text events of the same kind are merged.
  void feed(std::string_view bytes, std::vector<StreamEvent>& out);
  // Flushes what was held back (partial markers, incomplete UTF-8) at the end of generation.
  void finish(std::vector<StreamEvent>& out);

  bool saw_think_end() const { return saw_think_end_; }
  // True once a tool-call block was closed: with tools active, generation stops here (§3.4).
  bool block_closed() const { return block_closed_; }
  int calls_completed() const { return calls_completed_; }
  // True while the next bytes belong to tool-call structure: tags, attribute headers, the
  // whitespace between them, or a parameter closer that may be forming (PROTOCOL.md §3.5). A
  // generator samples such tokens greedily; parameter bodies and text outside a block are not
  // structure.
  bool in_tool_structure() const;

 private:
  enum class State {
    think_start,
    reasoning,
    content,
    block_open_nl,  // after "<P tool_calls>": whitespace, then invoke or block close
    between_invokes,
    invoke_header,
    in_frame,
    param_header,
    param_body,
    after_block,
    raw_content,
  };
  enum class BodyMode { string, json, undecided };
  struct Frame {
    bool is_invoke = true;  // false: a nested object parameter (lenient)
    bool first = true;
    std::set<std::string> keys;
  };

  bool step(bool final, std::vector<StreamEvent>& out);
  bool step_reasoning(bool final, std::vector<StreamEvent>& out);
  bool step_content(bool final, std::vector<StreamEvent>& out);
  bool step_between_tags(bool final, std::vector<StreamEvent>& out);
  bool step_header(bool final, std::vector<StreamEvent>& out);
  bool step_param_body(bool final, std::vector<StreamEvent>& out);
  bool step_after_block(bool final, std::vector<StreamEvent>& out);

  // Text output: converts buf_[0, n) to valid UTF-8 (holding an incomplete tail unless `whole`)
  // and emits it; returns the bytes consumed.
  size_t emit_text(StreamEventKind kind, size_t n, bool whole, std::vector<StreamEvent>& out);
  void emit_args(std::string_view fragment, std::vector<StreamEvent>& out);
  void emit_error(StreamErrorKind kind, std::string message, std::vector<StreamEvent>& out);
  void consume(size_t n);  // drops n bytes of buf_, recording them in raw_ inside a block
  void malformed(std::string message, std::vector<StreamEvent>& out);
  void close_param_value(std::vector<StreamEvent>& out);
  void check_separator(std::string_view ws, bool allow_blank_line, std::vector<StreamEvent>& out);

  StreamOptions options_;
  State state_;
  std::string buf_;  // unconsumed input
  std::string raw_;  // the current block's raw bytes, for the malformed fallback
  const Dialect* dialect_ = nullptr;
  std::vector<Frame> frames_;
  bool saw_think_end_ = false;
  bool block_closed_ = false;
  bool header_is_invoke_ = true;

  // The call being parsed.
  int call_index_ = -1;
  int calls_completed_ = 0;
  std::string call_name_;
  std::string call_args_;
  bool call_args_valid_ = true;

  // The parameter being parsed.
  BodyMode body_mode_ = BodyMode::string;
  std::string param_name_;
  std::string json_body_;  // string="false" bodies, validated at the close tag
};

// Whole-text convenience: all events of `text`, as one feed plus finish.
std::vector<StreamEvent> parse_stream(std::string_view text, StreamOptions options);

// Joins adjacent text events of the same kind (and adjacent argument fragments of one call).
std::vector<StreamEvent> coalesce_events(const std::vector<StreamEvent>& events);

}  // namespace dsv4::chat
