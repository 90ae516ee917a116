// A rendered prompt is text plus its provenance: which bytes the renderer wrote (template) and
// which came from the client (PROTOCOL.md §2.12, §7 decision (d)). Only template text may turn
// into control tokens, so a user who types "<｜User｜>" cannot forge a turn.
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace dsv4::chat {

struct Segment {
  std::string text;
  // True: exactly one added token written by the renderer (e.g. "<｜User｜>"), to be looked up by
  // string in the vocabulary. False: plain text, BPE-encoded together with adjacent plain
  // segments (template remainders and client text alike, §2.12 step 3).
  bool is_control = false;
  // Plain text only: whether the client supplied it (message content, schemas, arguments,
  // tool results) rather than the template. Informational; tokenisation treats both the same.
  bool from_client = false;

  bool operator==(const Segment&) const = default;
};

struct RenderedPrompt {
  std::string text;               // the concatenation of all segment texts
  std::vector<Segment> segments;  // adjacent segments of the same kind are merged
};

// Appends to a RenderedPrompt while keeping text and segments in step.
class PromptBuilder {
 public:
  // Renderer text: every template control token in it (special_tokens.h) becomes its own
  // control segment, the rest plain template text.
  void add_template(std::string_view text);
  // Client text: always plain, whatever it contains.
  void add_client(std::string_view text);

  const RenderedPrompt& prompt() const { return prompt_; }
  RenderedPrompt take() { return std::move(prompt_); }

 private:
  void append(std::string_view text, bool is_control, bool from_client);
  RenderedPrompt prompt_;
};

}  // namespace dsv4::chat
