// The chat's input line: editing (cursor keys, Home/End, Backspace/Delete, Ctrl+A/E/B/F/K/U/W/L)
// and history (Up/Down) on a terminal; plain line reading when input is not a terminal.
//
// Why hand-written rather than a library: GNU readline is GPL; replxx is not packaged for Debian
// 12; libedit's readline() reports Ctrl+C and Ctrl+D alike (NULL) and handles SIGINT itself
// (restoring and re-raising), which fights the chat's own rules: Ctrl+C clears the line, twice
// quickly quits, Ctrl+C during generation stops it. Here the terminal is in raw mode only while a
// line is read, so Ctrl+C there is an ordinary key (ISIG off) and during generation it is
// SIGINT (interrupt.h); nothing else touches signals. It is ~250 lines and needs no package.
//
// Limits: one logical line (a long one scrolls horizontally); every code point counts as one
// column, so wide (CJK) characters can misplace the cursor while editing.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace dsv4::cli {

class LineEditor {
 public:
  enum class Outcome { kLine, kInterrupted, kEnd };
  struct Input {
    Outcome outcome = Outcome::kEnd;
    std::string line;  // kLine only
  };

  LineEditor(int in_fd, int out_fd);
  ~LineEditor();
  LineEditor(const LineEditor&) = delete;
  LineEditor& operator=(const LineEditor&) = delete;

  // Shows `prompt` and reads one line. kInterrupted: Ctrl+C (the line is dropped). kEnd: Ctrl+D on
  // an empty line, or the end of input.
  Input read(std::string_view prompt);
  // Adds a line to the history (consecutive duplicates and empty lines are not kept).
  void remember(const std::string& line);
  bool interactive() const { return interactive_; }

 private:
  Input read_plain();
  Input read_edited(std::string_view prompt);
  bool raw_mode(bool on);
  int read_byte();
  void handle_escape();
  void refresh();
  void write_out(std::string_view s) const;
  // Code-point boundaries around the cursor.
  size_t prev_boundary(size_t at) const;
  size_t next_boundary(size_t at) const;
  void history_step(int direction);

  int in_fd_, out_fd_;
  bool interactive_;
  bool raw_ = false;
  struct Saved;
  std::unique_ptr<Saved> saved_;  // the terminal settings to restore
  std::string prompt_;
  std::string buf_;
  size_t cursor_ = 0;  // byte offset, on a code-point boundary
  std::vector<std::string> history_;
  size_t history_pos_ = 0;  // == history_.size(): the line being edited
  std::string edited_;      // the line being edited while browsing history
};

}  // namespace dsv4::cli
