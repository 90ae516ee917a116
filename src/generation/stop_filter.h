// Stop sequences on streamed text (PROTOCOL.md §4.9): the earliest match wins and the text is cut
// before it. Text that could still be the beginning of a stop sequence is held back, and only
// that: everything else is released at once, so streaming is not delayed by long stop strings.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace dsv4::generation {

class StopFilter {
 public:
  // Empty strings are ignored.
  explicit StopFilter(std::vector<std::string> stops);

  struct Output {
    std::string released;                // text that is final
    std::optional<std::string> matched;  // the stop sequence that ended the text
  };
  // Appends `text` (valid UTF-8). After a match, everything else is dropped.
  Output push(std::string_view text);
  // The text held back, released because the stream ended without completing a match.
  std::string flush();

  bool matched() const { return matched_; }
  bool active() const { return !stops_.empty(); }

 private:
  std::vector<std::string> stops_;
  std::string held_;
  bool matched_ = false;
};

}  // namespace dsv4::generation
