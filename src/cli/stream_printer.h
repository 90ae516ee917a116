// Shows a generation's events on a terminal or in a file: reasoning apart from the answer
// (dimmed on a terminal, under "[thinking]" / "[answer]" headers otherwise). On a terminal,
// control characters in the text are shown as U+FFFD. Shared by
// `dsv4 run` and `dsv4 chat` so both look the same.
#pragma once

#include <cstdio>
#include <span>
#include <string>

#include "chat/dsml_stream.h"

namespace dsv4::cli {

class StreamPrinter {
 public:
  StreamPrinter(FILE* out, bool terminal) : out_(out), terminal_(terminal) {}

  void print(std::span<const chat::StreamEvent> events);
  // Restores the normal colour and ends the line when anything was printed.
  void end();
  bool printed() const { return any_; }

 private:
  void write_text(const std::string& text);

  FILE* out_;
  bool terminal_;
  bool any_ = false;
  bool at_line_start_ = true;
  chat::StreamEventKind shown_ = chat::StreamEventKind::content;
};

}  // namespace dsv4::cli
