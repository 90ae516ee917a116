#include "chat/dsml_stream.h"

#include <algorithm>
#include <cctype>
#include <utility>

#include "chat/json_text.h"
#include "chat/special_tokens.h"
#include "chat/utf8.h"

namespace dsv4::chat {

// The three spellings of the markup the model has been seen to write (§3.4): the canonical one,
// the "short" one that lost the first bar, and plain XML. A block keeps the spelling it began
// with for all its tags.
struct DsmlStreamParser::Dialect {
  std::string_view block_open;
  std::string_view block_close;
  std::string_view invoke_open;
  std::string_view invoke_close;
  std::string_view param_open;
  std::string_view param_close;
  bool canonical;
};

namespace {

using Dialect = DsmlStreamParser::Dialect;

constexpr DsmlStreamParser::Dialect kDialects[] = {
    {"<｜DSML｜tool_calls>", "</｜DSML｜tool_calls>", "<｜DSML｜invoke", "</｜DSML｜invoke>",
     "<｜DSML｜parameter", "</｜DSML｜parameter>", true},
    {"<DSML｜tool_calls>", "</DSML｜tool_calls>", "<DSML｜invoke", "</DSML｜invoke>",
     "<DSML｜parameter", "</DSML｜parameter>", false},
    {"<tool_calls>", "</tool_calls>", "<invoke", "</invoke>", "<parameter", "</parameter>", false},
};

// A tag header longer than this without its '>' is not a tag.
constexpr size_t kMaxHeader = 4096;
// Nested object parameters deeper than this are refused.
constexpr size_t kMaxFrames = 16;

bool is_space(char c) {
  return c == ' ' || c == '\n' || c == '\r' || c == '\t' || c == '\f' || c == '\v';
}

size_t leading_space(std::string_view s) {
  size_t i = 0;
  while (i < s.size() && is_space(s[i])) ++i;
  return i;
}

bool is_proper_prefix(std::string_view s, std::string_view of) {
  return s.size() < of.size() && of.substr(0, s.size()) == s;
}

// Length of the longest suffix of `s` that is a proper prefix of `marker`: bytes that must be
// held back because they may be the start of the marker.
size_t partial_suffix(std::string_view s, std::string_view marker) {
  size_t max = std::min(s.size(), marker.size() - 1);
  for (size_t len = max; len > 0; --len) {
    if (s.substr(s.size() - len) == marker.substr(0, len)) return len;
  }
  return 0;
}

bool is_text_kind(StreamEventKind k) {
  return k == StreamEventKind::reasoning || k == StreamEventKind::content ||
         k == StreamEventKind::tool_call_arguments;
}

void push_event(std::vector<StreamEvent>& out, StreamEvent ev) {
  if (is_text_kind(ev.kind) && !out.empty() && out.back().kind == ev.kind &&
      out.back().index == ev.index) {
    out.back().text += ev.text;
    return;
  }
  out.push_back(std::move(ev));
}

// The first '>' that is not inside a double-quoted attribute value.
size_t header_end(std::string_view s) {
  bool quoted = false;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '"') quoted = !quoted;
    if (s[i] == '>' && !quoted) return i;
  }
  return std::string_view::npos;
}

struct Attributes {
  std::vector<std::pair<std::string, std::string>> list;
  const std::string* get(std::string_view key) const {
    for (const auto& [k, v] : list) {
      if (k == key) return &v;
    }
    return nullptr;
  }
};

// key="value" pairs separated by whitespace (single quotes and bare values tolerated); parsing
// stops at the first thing that is not an attribute.
Attributes parse_attributes(std::string_view h) {
  Attributes a;
  size_t i = 0;
  while (true) {
    i += leading_space(h.substr(i));
    size_t k = i;
    while (k < h.size() && (std::isalnum(static_cast<unsigned char>(h[k])) || h[k] == '_' ||
                            h[k] == '-' || h[k] == ':'))
      ++k;
    if (k == i) break;
    std::string key(h.substr(i, k - i));
    i = k + leading_space(h.substr(k));
    if (i >= h.size() || h[i] != '=') break;
    ++i;
    i += leading_space(h.substr(i));
    if (i >= h.size()) break;
    std::string value;
    if (h[i] == '"' || h[i] == '\'') {
      size_t close = h.find(h[i], i + 1);
      if (close == std::string_view::npos) break;
      value = std::string(h.substr(i + 1, close - i - 1));
      i = close + 1;
    } else {
      size_t e = i;
      while (e < h.size() && !is_space(h[e])) ++e;
      value = std::string(h.substr(i, e - i));
      i = e;
    }
    a.list.emplace_back(std::move(key), std::move(value));
  }
  return a;
}

// The official header forms: invoke `\s*name="N"` (no newline in N), parameter
// ` name="N" string="true|false"`.
bool canonical_invoke_header(std::string_view h, std::string_view name) {
  h.remove_prefix(leading_space(h));
  return name.find('\n') == std::string_view::npos && h == "name=\"" + std::string(name) + "\"";
}

bool canonical_param_header(std::string_view h, std::string_view name, std::string_view str) {
  return h == " name=\"" + std::string(name) + "\" string=\"" + std::string(str) + "\"";
}

}  // namespace

DsmlStreamParser::DsmlStreamParser(StreamOptions options)
    : options_(options),
      state_(options.mode == ThinkingMode::thinking ? State::think_start : State::content) {}

void DsmlStreamParser::feed(std::string_view bytes, std::vector<StreamEvent>& out) {
  buf_.append(bytes);
  while (step(false, out)) {
  }
}

void DsmlStreamParser::finish(std::vector<StreamEvent>& out) {
  switch (state_) {
    case State::block_open_nl:
    case State::between_invokes:
    case State::invoke_header:
    case State::in_frame:
    case State::param_header:
    case State::param_body:
      emit_error(StreamErrorKind::unterminated, "unterminated tool call", out);
      buf_.clear();
      return;
    default:
      break;
  }
  while (step(true, out)) {
  }
}

bool DsmlStreamParser::step(bool final, std::vector<StreamEvent>& out) {
  switch (state_) {
    case State::think_start:
      if (buf_.starts_with(tok::kThinkOpen)) {
        consume(tok::kThinkOpen.size());
      } else if (!final && is_proper_prefix(buf_, tok::kThinkOpen)) {
        return false;  // could still become "<think>"
      }
      state_ = State::reasoning;
      return true;
    case State::reasoning:
      return step_reasoning(final, out);
    case State::content:
      return step_content(final, out);
    case State::block_open_nl:
    case State::between_invokes:
    case State::in_frame:
      return step_between_tags(final, out);
    case State::invoke_header:
    case State::param_header:
      return step_header(final, out);
    case State::param_body:
      return step_param_body(final, out);
    case State::after_block:
      return step_after_block(final, out);
    case State::raw_content:
      return emit_text(StreamEventKind::content, buf_.size(), final, out) > 0;
  }
  return false;
}

bool DsmlStreamParser::step_reasoning(bool final, std::vector<StreamEvent>& out) {
  size_t at = buf_.find(tok::kThinkClose);
  if (at != std::string::npos) {
    emit_text(StreamEventKind::reasoning, at, true, out);
    consume(tok::kThinkClose.size());
    saw_think_end_ = true;
    state_ = State::content;
    return true;
  }
  size_t hold = final ? 0 : partial_suffix(buf_, tok::kThinkClose);
  return emit_text(StreamEventKind::reasoning, buf_.size() - hold, final, out) > 0;
}

bool DsmlStreamParser::step_content(bool final, std::vector<StreamEvent>& out) {
  if (!options_.tools_active)
    return emit_text(StreamEventKind::content, buf_.size(), final, out) > 0;

  size_t at = std::string::npos;
  const Dialect* found = nullptr;
  for (const Dialect& d : kDialects) {
    size_t p = buf_.find(d.block_open);
    if (p < at) {
      at = p;
      found = &d;
    }
  }
  if (found) {
    // Whitespace before the marker is the separator, not content (§3.4).
    size_t ws = at;
    while (ws > 0 && is_space(buf_[ws - 1])) --ws;
    emit_text(StreamEventKind::content, ws, true, out);
    std::string_view sep(buf_.data(), at - ws);
    if (!found->canonical) {
      emit_error(StreamErrorKind::strict_violation, "non-canonical tool-call markers", out);
    }
    if (!sep.ends_with("\n\n")) {
      emit_error(StreamErrorKind::strict_violation, "tool-call block not preceded by a blank line",
                 out);
    }
    dialect_ = found;
    raw_.clear();
    frames_.clear();
    state_ = State::block_open_nl;  // consume() records into raw_ from here on
    consume(sep.size() + found->block_open.size());
    return true;
  }
  size_t hold = 0;
  if (!final) {
    for (const Dialect& d : kDialects) hold = std::max(hold, partial_suffix(buf_, d.block_open));
    while (hold < buf_.size() && is_space(buf_[buf_.size() - hold - 1])) ++hold;
  }
  return emit_text(StreamEventKind::content, buf_.size() - hold, final, out) > 0;
}

bool DsmlStreamParser::step_between_tags(bool final, std::vector<StreamEvent>& out) {
  size_t ws = leading_space(buf_);
  if (ws == buf_.size()) return false;
  std::string_view rest = std::string_view(buf_).substr(ws);

  enum class Act { invoke, block_close, param, invoke_close, object_close };
  struct Option {
    std::string_view tag;
    Act act;
  };
  Option options[2];
  if (state_ != State::in_frame) {
    options[0] = {dialect_->invoke_open, Act::invoke};
    options[1] = {dialect_->block_close, Act::block_close};
  } else {
    options[0] = {dialect_->param_open, Act::param};
    options[1] = frames_.back().is_invoke ? Option{dialect_->invoke_close, Act::invoke_close}
                                          : Option{dialect_->param_close, Act::object_close};
  }
  bool partial = false;
  for (const Option& o : options) {
    if (rest.starts_with(o.tag)) {
      std::string sep = buf_.substr(0, ws);
      bool in_object = state_ == State::in_frame && !frames_.back().is_invoke;
      if (!in_object) {
        bool empty_invoke = o.act == Act::invoke_close && frames_.back().first;
        check_separator(sep, empty_invoke, out);
      }
      consume(ws + o.tag.size());
      switch (o.act) {
        case Act::invoke:
          header_is_invoke_ = true;
          state_ = State::invoke_header;
          break;
        case Act::param:
          header_is_invoke_ = false;
          state_ = State::param_header;
          break;
        case Act::block_close:
          block_closed_ = true;
          raw_.clear();
          state_ = State::after_block;
          break;
        case Act::invoke_close: {
          emit_args("}", out);
          frames_.pop_back();
          StreamEvent ev;
          ev.kind = StreamEventKind::tool_call_end;
          ev.index = call_index_;
          ev.name = call_name_;
          ev.text = call_args_valid_ ? call_args_ : "{}";
          push_event(out, std::move(ev));
          ++calls_completed_;
          state_ = State::between_invokes;
          break;
        }
        case Act::object_close:
          emit_args("}", out);
          frames_.pop_back();
          state_ = State::in_frame;
          break;
      }
      return true;
    }
    if (is_proper_prefix(rest, o.tag)) partial = true;
  }
  if (partial && !final) return false;
  malformed(state_ == State::in_frame ? "unexpected text inside a tool call"
                                      : "unexpected text between tool calls",
            out);
  return true;
}

bool DsmlStreamParser::step_header(bool final, std::vector<StreamEvent>& out) {
  size_t gt = header_end(buf_);
  if (gt == std::string::npos) {
    if (buf_.size() <= kMaxHeader) return false;  // wait for the '>'
    malformed("tool-call tag without '>'", out);
    return true;
  }
  // Names and keys reach clients: invalid bytes in a header become U+FFFD like all text.
  std::string header;
  take_utf8(std::string_view(buf_).substr(0, gt), true, header);
  consume(gt + 1);
  Attributes attrs = parse_attributes(header);
  const std::string* name = attrs.get("name");

  if (header_is_invoke_) {
    if (!name || name->empty()) {
      malformed("tool call without a name", out);
      return true;
    }
    if (!canonical_invoke_header(header, *name)) {
      emit_error(StreamErrorKind::strict_violation, "non-canonical invoke header", out);
    }
    call_index_ = calls_completed_;
    call_name_ = *name;
    call_args_.clear();
    call_args_valid_ = true;
    StreamEvent ev;
    ev.kind = StreamEventKind::tool_call_begin;
    ev.index = call_index_;
    ev.name = call_name_;
    push_event(out, std::move(ev));
    emit_args("{", out);
    frames_.push_back(Frame{true, true, {}});
    state_ = State::in_frame;
    return true;
  }

  if (!name || name->empty()) {
    malformed("tool-call parameter without a name", out);
    return true;
  }
  const std::string* str = attrs.get("string");
  if (!str) {
    // ds4's rule: no string attribute means a string, unless the body turns out to be nested
    // parameters (an object).
    body_mode_ = BodyMode::undecided;
    emit_error(StreamErrorKind::strict_violation,
               "parameter '" + *name + "' without a string attribute", out);
  } else if (*str == "true" || *str == "false") {
    body_mode_ = *str == "true" ? BodyMode::string : BodyMode::json;
    if (!canonical_param_header(header, *name, *str)) {
      emit_error(StreamErrorKind::strict_violation, "non-canonical parameter header", out);
    }
  } else {
    body_mode_ = BodyMode::string;
    emit_error(StreamErrorKind::strict_violation,
               "parameter '" + *name + "' has string=\"" + *str + "\"", out);
  }
  Frame& frame = frames_.back();
  if (!frame.keys.insert(*name).second) {
    emit_error(StreamErrorKind::strict_violation, "duplicate parameter '" + *name + "'", out);
  }
  std::string frag = frame.first ? "" : ", ";
  frame.first = false;
  append_python_json(frag, Json(*name));
  frag += ": ";
  if (body_mode_ == BodyMode::string) frag += '"';
  emit_args(frag, out);
  param_name_ = *name;
  json_body_.clear();
  state_ = State::param_body;
  return true;
}

bool DsmlStreamParser::in_tool_structure() const {
  switch (state_) {
    case State::block_open_nl:
    case State::between_invokes:
    case State::invoke_header:
    case State::in_frame:
    case State::param_header:
    case State::after_block:
      return true;
    case State::param_body:
      // Undecided: whitespace or a nested parameter may follow. Otherwise bytes are held only
      // while they may be the start of the closer.
      return body_mode_ == BodyMode::undecided || !buf_.empty();
    default:
      return false;
  }
}

bool DsmlStreamParser::step_param_body(bool final, std::vector<StreamEvent>& out) {
  if (body_mode_ == BodyMode::undecided) {
    size_t ws = leading_space(buf_);
    if (ws == buf_.size()) return false;
    std::string_view rest = std::string_view(buf_).substr(ws);
    if (rest.starts_with(dialect_->param_open)) {
      if (frames_.size() >= kMaxFrames) {
        malformed("tool-call parameters nested too deeply", out);
        return true;
      }
      consume(ws + dialect_->param_open.size());
      emit_args("{", out);
      frames_.push_back(Frame{false, true, {}});
      header_is_invoke_ = false;
      state_ = State::param_header;
      return true;
    }
    if (!final && is_proper_prefix(rest, dialect_->param_open)) return false;
    body_mode_ = BodyMode::string;  // the held whitespace belongs to the string
    emit_args("\"", out);
    return true;
  }

  std::string_view close = dialect_->param_close;
  size_t at = buf_.find(close);
  size_t n = at != std::string::npos ? at : buf_.size() - (final ? 0 : partial_suffix(buf_, close));
  std::string text;
  size_t used =
      take_utf8(std::string_view(buf_).substr(0, n), at != std::string::npos || final, text);
  consume(used);
  if (body_mode_ == BodyMode::string) {
    std::string escaped;
    append_python_escaped(escaped, text);
    emit_args(escaped, out);
  } else {
    json_body_ += text;
    emit_args(text, out);
  }
  if (at == std::string::npos) return used > 0;
  consume(close.size());
  close_param_value(out);
  state_ = State::in_frame;
  return true;
}

void DsmlStreamParser::close_param_value(std::vector<StreamEvent>& out) {
  if (body_mode_ == BodyMode::string) {
    emit_args("\"", out);
    return;
  }
  std::string_view body = json_body_;
  body.remove_prefix(leading_space(body));
  while (!body.empty() && is_space(body.back())) body.remove_suffix(1);
  if (body.empty()) {
    emit_args("null", out);  // ds4's rule for an empty JSON value
  } else if (!Json::accept(body)) {
    call_args_valid_ = false;
    emit_error(StreamErrorKind::invalid_arguments,
               "parameter '" + param_name_ + "' of '" + call_name_ + "' is not valid JSON", out);
  }
}

bool DsmlStreamParser::step_after_block(bool final, std::vector<StreamEvent>& out) {
  size_t ws = leading_space(buf_);
  if (ws == buf_.size()) {
    consume(ws);
    return ws > 0;
  }
  emit_error(StreamErrorKind::strict_violation, "text after the tool-call block", out);
  consume(ws);
  state_ = State::content;
  return true;
}

size_t DsmlStreamParser::emit_text(StreamEventKind kind, size_t n, bool whole,
                                   std::vector<StreamEvent>& out) {
  std::string text;
  size_t used = take_utf8(std::string_view(buf_).substr(0, n), whole, text);
  consume(used);
  if (!text.empty()) {
    StreamEvent ev;
    ev.kind = kind;
    ev.text = std::move(text);
    push_event(out, std::move(ev));
  }
  return used;
}

void DsmlStreamParser::emit_args(std::string_view fragment, std::vector<StreamEvent>& out) {
  if (fragment.empty()) return;
  call_args_ += fragment;
  StreamEvent ev;
  ev.kind = StreamEventKind::tool_call_arguments;
  ev.index = call_index_;
  ev.text = std::string(fragment);
  push_event(out, std::move(ev));
}

void DsmlStreamParser::emit_error(StreamErrorKind kind, std::string message,
                                  std::vector<StreamEvent>& out) {
  StreamEvent ev;
  ev.kind = StreamEventKind::error;
  ev.error = kind;
  ev.text = std::move(message);
  push_event(out, std::move(ev));
}

void DsmlStreamParser::consume(size_t n) {
  bool in_block = state_ != State::think_start && state_ != State::reasoning &&
                  state_ != State::content && state_ != State::after_block &&
                  state_ != State::raw_content;
  if (in_block) raw_.append(buf_, 0, n);
  buf_.erase(0, n);
}

void DsmlStreamParser::malformed(std::string message, std::vector<StreamEvent>& out) {
  emit_error(StreamErrorKind::malformed, std::move(message), out);
  // The block's raw text goes out as content, followed by everything after it (§3.4).
  buf_.insert(0, raw_);
  raw_.clear();
  frames_.clear();
  state_ = State::raw_content;
}

void DsmlStreamParser::check_separator(std::string_view ws, bool allow_blank_line,
                                       std::vector<StreamEvent>& out) {
  if (ws == "\n" || (allow_blank_line && ws == "\n\n")) return;
  emit_error(StreamErrorKind::strict_violation, "tool-call tags must be separated by one newline",
             out);
}

std::vector<StreamEvent> parse_stream(std::string_view text, StreamOptions options) {
  DsmlStreamParser p(options);
  std::vector<StreamEvent> out;
  p.feed(text, out);
  p.finish(out);
  return out;
}

std::vector<StreamEvent> coalesce_events(const std::vector<StreamEvent>& events) {
  std::vector<StreamEvent> out;
  for (const StreamEvent& e : events) push_event(out, e);
  return out;
}

}  // namespace dsv4::chat
