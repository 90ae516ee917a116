#include "chat/dsml_strict.h"

#include <set>
#include <string>

#include "chat/json_text.h"
#include "chat/special_tokens.h"

namespace dsv4::chat {
namespace {

constexpr std::string_view kBlockStart = "\n\n<｜DSML｜tool_calls";
constexpr std::string_view kBlockEnd = "</｜DSML｜tool_calls>";
constexpr std::string_view kInvokeStart = "<｜DSML｜invoke";
constexpr std::string_view kInvokeEnd = "</｜DSML｜invoke";
constexpr std::string_view kParamStart = "<｜DSML｜parameter";
constexpr std::string_view kParamEnd = "/｜DSML｜parameter";

struct Found {
  size_t at = std::string_view::npos;  // npos: none of the needles occurs
  size_t which = 0;
};

// The earliest occurrence of any needle at or after `from` (the reference's "read until").
Found find_first(std::string_view text, size_t from,
                 std::initializer_list<std::string_view> needles) {
  Found best;
  size_t i = 0;
  for (std::string_view n : needles) {
    size_t at = text.find(n, from);
    if (at < best.at) best = Found{at, i};
    ++i;
  }
  return best;
}

Error fail(std::string what) { return make_error("strict DSML parse: " + what); }

// `^\s*name="(.*?)">\n$` with Python's `$` (which also matches before one final newline).
Result<std::string> invoke_name(std::string_view header) {
  size_t i = 0;
  while (i < header.size() && (header[i] == ' ' || header[i] == '\t' || header[i] == '\n' ||
                               header[i] == '\r' || header[i] == '\f' || header[i] == '\v')) {
    ++i;
  }
  std::string_view h = header.substr(i);
  constexpr std::string_view kOpen = "name=\"";
  if (h.substr(0, kOpen.size()) != kOpen) return fail("invoke header without name");
  h.remove_prefix(kOpen.size());
  std::string_view tail;
  if (h.size() >= 4 && h.substr(h.size() - 4) == "\">\n\n") {
    tail = h.substr(h.size() - 4);
  } else if (h.size() >= 3 && h.substr(h.size() - 3) == "\">\n") {
    tail = h.substr(h.size() - 3);
  } else {
    return fail("invoke header must end with '\">' and a newline");
  }
  std::string_view name = h.substr(0, h.size() - tail.size());
  if (name.find('\n') != std::string_view::npos) return fail("newline in invoke name");
  return std::string(name);
}

struct StrictParam {
  std::string name;
  bool is_string = false;
  std::string value;
};

// `^ name="(.*?)" string="(true|false)">(.*?)<$` with DOTALL; `body` ends with '<'.
Result<StrictParam> parameter(std::string_view body) {
  constexpr std::string_view kOpen = " name=\"";
  if (body.substr(0, kOpen.size()) != kOpen) return fail("parameter without name");
  if (body.empty() || body.back() != '<') return fail("parameter not closed");
  std::string_view rest = body.substr(kOpen.size());
  size_t t = rest.find("\" string=\"true\">");
  size_t f = rest.find("\" string=\"false\">");
  if (t == std::string_view::npos && f == std::string_view::npos) {
    return fail("parameter without string=\"true|false\"");
  }
  StrictParam p;
  p.is_string = t < f;  // npos compares greater
  size_t at = p.is_string ? t : f;
  size_t attr_len = p.is_string ? std::string_view("\" string=\"true\">").size()
                                : std::string_view("\" string=\"false\">").size();
  p.name = std::string(rest.substr(0, at));
  std::string_view value = rest.substr(at + attr_len);
  value.remove_suffix(1);  // the '<' of "</｜DSML｜parameter"
  p.value = std::string(value);
  return p;
}

bool has_control_string(std::string_view s) {
  for (std::string_view t : {tok::kBos, tok::kEos, tok::kThinkOpen, tok::kThinkClose, tok::kDsml}) {
    if (s.find(t) != std::string_view::npos) return true;
  }
  return false;
}

}  // namespace

Result<ParsedMessage> parse_completion_strict(std::string_view text, ThinkingMode mode) {
  ParsedMessage msg;
  size_t pos = 0;

  if (mode == ThinkingMode::thinking) {
    Found f = find_first(text, 0, {tok::kThinkClose, kBlockStart});
    if (f.at == std::string_view::npos || f.which != 0) return fail("missing </think>");
    msg.reasoning_content = std::string(text.substr(0, f.at));
    pos = f.at + tok::kThinkClose.size();
  }

  Found f = find_first(text, pos, {tok::kEos, kBlockStart});
  if (f.at == std::string_view::npos) return fail("missing end of sentence");
  msg.content = std::string(text.substr(pos, f.at - pos));

  if (f.which == 0) {
    pos = f.at + tok::kEos.size();
  } else {
    pos = f.at + kBlockStart.size();
    while (true) {
      Found g = find_first(text, pos, {kInvokeStart, kBlockEnd});
      if (g.at == std::string_view::npos) return fail("truncated tool-call block");
      if (text.substr(pos, g.at - pos) != ">\n")
        return fail("expected '>' and a newline between tags");
      if (g.which == 1) {
        pos = g.at + kBlockEnd.size();
        break;
      }
      pos = g.at + kInvokeStart.size();
      Found h = find_first(text, pos, {kParamStart, kInvokeEnd});
      if (h.at == std::string_view::npos) return fail("truncated invoke");
      DSV4_ASSIGN_OR_RETURN(std::string name, invoke_name(text.substr(pos, h.at - pos)));
      pos = h.at;
      std::set<std::string> seen;
      std::string args = "{";
      while (text.substr(pos, kParamStart.size()) == kParamStart) {
        pos += kParamStart.size();
        size_t end = text.find(kParamEnd, pos);
        if (end == std::string_view::npos) return fail("truncated parameter");
        DSV4_ASSIGN_OR_RETURN(StrictParam p, parameter(text.substr(pos, end - pos)));
        if (!seen.insert(p.name).second) return fail("duplicate parameter '" + p.name + "'");
        if (args.size() > 1) args += ", ";
        args += to_python_json(Json(p.name));
        args += ": ";
        args += p.is_string ? to_python_json(Json(p.value)) : p.value;
        pos = end + kParamEnd.size();
        Found k = find_first(text, pos, {kParamStart, kInvokeEnd});
        if (k.at == std::string_view::npos) return fail("truncated invoke");
        if (text.substr(pos, k.at - pos) != ">\n")
          return fail("expected '>' and a newline after a parameter");
        pos = k.at;
      }
      // Here text[pos..] starts with "</｜DSML｜invoke".
      pos += kInvokeEnd.size();
      args += "}";
      msg.tool_calls.push_back({std::move(name), std::move(args)});
    }
    if (text.substr(pos) != tok::kEos)
      return fail("only the end of sentence may follow the tool-call block");
    pos = text.size();
  }

  if (pos != text.size()) return fail("text after the end of sentence");
  if (has_control_string(msg.content) || has_control_string(msg.reasoning_content)) {
    return fail("control token text inside content or reasoning");
  }
  return msg;
}

}  // namespace dsv4::chat
