#include "cli/stream_printer.h"

namespace dsv4::cli {

void StreamPrinter::print(std::span<const chat::StreamEvent> events) {
  using Kind = chat::StreamEventKind;
  for (const chat::StreamEvent& e : events) {
    if (e.kind != Kind::reasoning && e.kind != Kind::content) continue;
    if (e.text.empty()) continue;
    if (!any_ || e.kind != shown_) {
      if (terminal_) {
        std::fputs(e.kind == Kind::reasoning ? "\033[2m" : "\033[0m", out_);
        if (any_ && !at_line_start_) std::fputs("\n", out_);
      } else if (any_ || e.kind == Kind::reasoning) {
        if (any_ && !at_line_start_) std::fputs("\n", out_);
        std::fputs(e.kind == Kind::reasoning ? "[thinking]\n" : "[answer]\n", out_);
      }
      shown_ = e.kind;
      any_ = true;
    }
    write_text(e.text);
    at_line_start_ = e.text.back() == '\n';
  }
  std::fflush(out_);
}

void StreamPrinter::write_text(const std::string& text) {
  if (!terminal_) {
    std::fwrite(text.data(), 1, text.size(), out_);
    return;
  }
  // A terminal would obey control characters in generated text (an ESC starts a command), so
  // they are shown as U+FFFD; newlines and tabs pass.
  for (char c : text) {
    const unsigned char u = static_cast<unsigned char>(c);
    if ((u < 0x20 && c != '\n' && c != '\t') || u == 0x7F) {
      std::fputs("\xEF\xBF\xBD", out_);
    } else {
      std::fputc(c, out_);
    }
  }
}

void StreamPrinter::end() {
  if (terminal_ && any_) std::fputs("\033[0m", out_);
  if (any_ && !at_line_start_) std::fputs("\n", out_);
  std::fflush(out_);
}

}  // namespace dsv4::cli
