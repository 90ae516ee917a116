// A prefill progress bar with tokens/s and ETA, drawn on one terminal line (stderr) and erased
// when done. Drawn only when the stream is a terminal and the prefill is long: once kDelaySeconds
// have passed with work still left, so short prompts never flash a bar.
#pragma once

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string>

namespace dsv4::cli {

class ProgressBar {
 public:
  static constexpr double kDelaySeconds = 0.3;

  // `out` must stay open; nothing is drawn unless it is a terminal.
  explicit ProgressBar(FILE* out);
  ~ProgressBar() { clear(); }
  ProgressBar(const ProgressBar&) = delete;
  ProgressBar& operator=(const ProgressBar&) = delete;

  // `done` of `total` tokens evaluated since construction.
  void update(int64_t done, int64_t total);
  // Erases the bar if one was drawn.
  void clear();

  // One bar line (no control characters) for `width` columns.
  static std::string render(int64_t done, int64_t total, double seconds, int width);

 private:
  FILE* out_;
  bool terminal_;
  bool drawn_ = false;
  std::chrono::steady_clock::time_point start_;
};

}  // namespace dsv4::cli
