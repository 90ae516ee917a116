#include "cli/progress_bar.h"

#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>

namespace dsv4::cli {
namespace {

int terminal_width(FILE* out) {
  winsize ws{};
  if (ioctl(fileno(out), TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0) return ws.ws_col;
  return 80;
}

std::string duration_text(double seconds) {
  const long s = std::lround(std::max(0.0, seconds));
  char buf[32];
  if (s >= 3600) {
    std::snprintf(buf, sizeof buf, "%ld:%02ld:%02ld", s / 3600, s / 60 % 60, s % 60);
  } else {
    std::snprintf(buf, sizeof buf, "%ld:%02ld", s / 60, s % 60);
  }
  return buf;
}

}  // namespace

ProgressBar::ProgressBar(FILE* out)
    : out_(out), terminal_(isatty(fileno(out)) != 0), start_(std::chrono::steady_clock::now()) {}

std::string ProgressBar::render(int64_t done, int64_t total, double seconds, int width) {
  const double fraction = total > 0 ? std::clamp(static_cast<double>(done) / static_cast<double>(total), 0.0, 1.0) : 1.0;
  const double rate = seconds > 0 ? static_cast<double>(done) / seconds : 0.0;
  char stats[128];
  std::snprintf(stats, sizeof stats, " %3d%% %lld/%lld tokens, %.1f tokens/s, ETA %s",
                static_cast<int>(fraction * 100), static_cast<long long>(done), static_cast<long long>(total),
                rate, rate > 0 ? duration_text(static_cast<double>(total - done) / rate).c_str() : "?");
  const std::string label = "prefill ";
  // The bar takes what the label and figures leave of the line, within [10, 40] columns.
  const int bar = std::clamp(width - 1 - static_cast<int>(label.size() + 2 + std::char_traits<char>::length(stats)), 10, 40);
  const int filled = static_cast<int>(fraction * bar);
  std::string line = label + "[" + std::string(static_cast<size_t>(filled), '#') +
                     std::string(static_cast<size_t>(bar - filled), '.') + "]" + stats;
  if (static_cast<int>(line.size()) > width - 1) line.resize(static_cast<size_t>(std::max(width - 1, 0)));
  return line;
}

void ProgressBar::update(int64_t done, int64_t total) {
  if (!terminal_) return;
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  if (!drawn_ && (done >= total || seconds < kDelaySeconds)) return;
  std::fprintf(out_, "\r%s\033[K", render(done, total, seconds, terminal_width(out_)).c_str());
  std::fflush(out_);
  drawn_ = true;
}

void ProgressBar::clear() {
  if (!drawn_) return;
  std::fputs("\r\033[K", out_);
  std::fflush(out_);
  drawn_ = false;
}

}  // namespace dsv4::cli
