// A strict reader of Server-Sent Events byte streams for tests: every frame must be lines of
// `event: NAME`, `data: TEXT` or `: comment`, terminated by a blank line, with at most one event
// and exactly one data line (the shapes dsv4 writes, PROTOCOL.md §4.6). Anything else is an error,
// so a test that reads a stream through it also checks the framing.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "util/status.h"

namespace dsv4::server::api_testing {

struct SseFrame {
  std::optional<std::string> event;  // the `event:` line, if any
  std::string data;                  // the `data:` line (empty for a comment frame)
  bool comment = false;              // a `: ...` keep-alive frame
};

inline Result<std::vector<SseFrame>> parse_sse(std::string_view bytes) {
  std::vector<SseFrame> frames;
  size_t pos = 0;
  while (pos < bytes.size()) {
    size_t end = bytes.find("\n\n", pos);
    if (end == std::string_view::npos)
      return make_error("frame at byte " + std::to_string(pos) + " is not terminated by \\n\\n");
    std::string_view block = bytes.substr(pos, end - pos);
    pos = end + 2;
    SseFrame frame;
    bool has_data = false;
    size_t line_start = 0;
    while (line_start <= block.size()) {
      size_t nl = block.find('\n', line_start);
      std::string_view line = block.substr(
          line_start, nl == std::string_view::npos ? std::string_view::npos : nl - line_start);
      line_start = nl == std::string_view::npos ? block.size() + 1 : nl + 1;
      if (line.find('\r') != std::string_view::npos) return make_error("carriage return in frame");
      if (line.starts_with(": ")) {
        if (has_data || frame.event) return make_error("comment mixed into an event frame");
        frame.comment = true;
      } else if (line.starts_with("event: ")) {
        if (frame.event || has_data || frame.comment)
          return make_error("event line must come first, once");
        frame.event = std::string(line.substr(7));
      } else if (line.starts_with("data: ")) {
        if (has_data || frame.comment) return make_error("more than one data line");
        frame.data = std::string(line.substr(6));
        has_data = true;
      } else {
        return make_error("unexpected line: '" + std::string(line) + "'");
      }
    }
    if (!has_data && !frame.comment) return make_error("frame without data");
    frames.push_back(std::move(frame));
  }
  return frames;
}

}  // namespace dsv4::server::api_testing
