#include "cli/line_editor.h"

#include <sys/ioctl.h>
#include <termios.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

namespace dsv4::cli {

struct LineEditor::Saved {
  termios settings;
};

namespace {

constexpr int kCtrlA = 1, kCtrlB = 2, kCtrlC = 3, kCtrlD = 4, kCtrlE = 5, kCtrlF = 6, kCtrlH = 8,
              kCtrlK = 11, kCtrlL = 12, kCtrlN = 14, kCtrlP = 16, kCtrlU = 21, kCtrlW = 23, kEsc = 27,
              kBackspace = 127;

bool is_continuation(unsigned char c) { return (c & 0xC0) == 0x80; }

size_t columns(std::string_view s) {
  return static_cast<size_t>(std::count_if(s.begin(), s.end(), [](char c) { return !is_continuation(static_cast<unsigned char>(c)); }));
}

}  // namespace

LineEditor::LineEditor(int in_fd, int out_fd)
    : in_fd_(in_fd), out_fd_(out_fd), interactive_(isatty(in_fd) != 0 && isatty(out_fd) != 0) {}

LineEditor::~LineEditor() { raw_mode(false); }

void LineEditor::write_out(std::string_view s) const {
  while (!s.empty()) {
    const ssize_t n = ::write(out_fd_, s.data(), s.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    s.remove_prefix(static_cast<size_t>(n));
  }
}

bool LineEditor::raw_mode(bool on) {
  if (on == raw_) return true;
  if (on) {
    if (!saved_) saved_ = std::make_unique<Saved>();
    if (tcgetattr(in_fd_, &saved_->settings) != 0) return false;
    termios raw = saved_->settings;
    raw.c_iflag &= ~static_cast<tcflag_t>(BRKINT | ICRNL | INPCK | ISTRIP | IXON);
    raw.c_cflag |= CS8;
    raw.c_lflag &= ~static_cast<tcflag_t>(ECHO | ICANON | IEXTEN | ISIG);  // OPOST kept: "\n" still ends lines
    raw.c_cc[VMIN] = 1;
    raw.c_cc[VTIME] = 0;
    if (tcsetattr(in_fd_, TCSADRAIN, &raw) != 0) return false;
  } else {
    tcsetattr(in_fd_, TCSADRAIN, &saved_->settings);
  }
  raw_ = on;
  return true;
}

int LineEditor::read_byte() {
  unsigned char c;
  for (;;) {
    const ssize_t n = ::read(in_fd_, &c, 1);
    if (n == 1) return c;
    if (n < 0 && errno == EINTR) continue;
    return -1;
  }
}

LineEditor::Input LineEditor::read(std::string_view prompt) {
  if (!interactive_) return read_plain();
  if (!raw_mode(true)) return read_plain();
  Input in = read_edited(prompt);
  // After Ctrl+C the terminal stays raw until the next line or the editor's end: the caller reads
  // again at once (or quits, and the destructor restores the terminal), and a second Ctrl+C typed
  // in between must arrive as a byte, not as a SIGINT that kills the process.
  if (in.outcome != Outcome::kInterrupted) raw_mode(false);
  return in;
}

LineEditor::Input LineEditor::read_plain() {
  Input in;
  int c;
  bool any = false;
  while ((c = read_byte()) >= 0) {
    any = true;
    if (c == '\n') break;
    in.line.push_back(static_cast<char>(c));
  }
  if (!any) return {Outcome::kEnd, {}};
  if (!in.line.empty() && in.line.back() == '\r') in.line.pop_back();
  in.outcome = Outcome::kLine;
  return in;
}

size_t LineEditor::prev_boundary(size_t at) const {
  if (at == 0) return 0;
  --at;
  while (at > 0 && is_continuation(static_cast<unsigned char>(buf_[at]))) --at;
  return at;
}

size_t LineEditor::next_boundary(size_t at) const {
  if (at >= buf_.size()) return buf_.size();
  ++at;
  while (at < buf_.size() && is_continuation(static_cast<unsigned char>(buf_[at]))) ++at;
  return at;
}

void LineEditor::refresh() {
  winsize ws{};
  const size_t width = ioctl(out_fd_, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0 ? ws.ws_col : 80;
  const size_t prompt_cols = columns(prompt_);
  const size_t room = width > prompt_cols + 1 ? width - prompt_cols - 1 : 1;
  // Scroll horizontally so that the cursor stays on screen.
  size_t start = 0;
  while (columns(std::string_view(buf_).substr(start, cursor_ - start)) >= room) start = next_boundary(start);
  size_t end = start;
  while (end < buf_.size() && columns(std::string_view(buf_).substr(start, next_boundary(end) - start)) <= room) {
    end = next_boundary(end);
  }
  std::string out = "\r" + prompt_ + buf_.substr(start, end - start) + "\033[K\r";
  const size_t col = prompt_cols + columns(std::string_view(buf_).substr(start, cursor_ - start));
  if (col > 0) out += "\033[" + std::to_string(col) + "C";
  write_out(out);
}

void LineEditor::history_step(int direction) {
  if (history_.empty()) return;
  if (direction < 0 && history_pos_ == 0) return;
  if (direction > 0 && history_pos_ >= history_.size()) return;
  if (history_pos_ == history_.size()) edited_ = buf_;
  history_pos_ = direction < 0 ? history_pos_ - 1 : history_pos_ + 1;
  buf_ = history_pos_ == history_.size() ? edited_ : history_[history_pos_];
  cursor_ = buf_.size();
}

void LineEditor::handle_escape() {
  const int c1 = read_byte();
  if (c1 != '[' && c1 != 'O') return;
  int c2 = read_byte();
  if (c2 >= '0' && c2 <= '9') {  // ESC [ n ~
    const int n = c2 - '0';
    int c3;
    while ((c3 = read_byte()) >= '0' && c3 <= '9') {
    }
    if (c3 != '~') return;
    if (n == 1 || n == 7) cursor_ = 0;
    if (n == 4 || n == 8) cursor_ = buf_.size();
    if (n == 3 && cursor_ < buf_.size()) buf_.erase(cursor_, next_boundary(cursor_) - cursor_);
    return;
  }
  switch (c2) {
    case 'A': history_step(-1); break;
    case 'B': history_step(+1); break;
    case 'C': cursor_ = next_boundary(cursor_); break;
    case 'D': cursor_ = prev_boundary(cursor_); break;
    case 'H': cursor_ = 0; break;
    case 'F': cursor_ = buf_.size(); break;
    default: break;
  }
}

LineEditor::Input LineEditor::read_edited(std::string_view prompt) {
  prompt_ = std::string(prompt);
  buf_.clear();
  cursor_ = 0;
  history_pos_ = history_.size();
  refresh();
  for (;;) {
    const int c = read_byte();
    if (c < 0) {
      write_out("\r\n");
      return {Outcome::kEnd, {}};
    }
    switch (c) {
      case '\r':
      case '\n':
        cursor_ = buf_.size();
        refresh();
        write_out("\r\n");
        return {Outcome::kLine, buf_};
      case kCtrlC:
        write_out("^C\r\n");
        return {Outcome::kInterrupted, {}};
      case kCtrlD:
        if (buf_.empty()) {
          write_out("\r\n");
          return {Outcome::kEnd, {}};
        }
        if (cursor_ < buf_.size()) buf_.erase(cursor_, next_boundary(cursor_) - cursor_);
        break;
      case kBackspace:
      case kCtrlH:
        if (cursor_ > 0) {
          const size_t from = prev_boundary(cursor_);
          buf_.erase(from, cursor_ - from);
          cursor_ = from;
        }
        break;
      case kCtrlA: cursor_ = 0; break;
      case kCtrlE: cursor_ = buf_.size(); break;
      case kCtrlB: cursor_ = prev_boundary(cursor_); break;
      case kCtrlF: cursor_ = next_boundary(cursor_); break;
      case kCtrlK: buf_.erase(cursor_); break;
      case kCtrlU:
        buf_.erase(0, cursor_);
        cursor_ = 0;
        break;
      case kCtrlW: {
        size_t from = cursor_;
        while (from > 0 && buf_[from - 1] == ' ') --from;
        while (from > 0 && buf_[from - 1] != ' ') --from;
        buf_.erase(from, cursor_ - from);
        cursor_ = from;
        break;
      }
      case kCtrlL: write_out("\033[H\033[2J"); break;
      case kCtrlP: history_step(-1); break;
      case kCtrlN: history_step(+1); break;
      case kEsc: handle_escape(); break;
      default:
        if (c >= 0x20 || c == '\t') {
          buf_.insert(cursor_, 1, static_cast<char>(c == '\t' ? ' ' : c));
          ++cursor_;
          // A multi-byte character is complete only with its continuation bytes: the cursor
          // stays on code-point boundaries because they are inserted before the next refresh.
          if (c >= 0xC0) {
            const int extra = c >= 0xF0 ? 3 : c >= 0xE0 ? 2 : 1;
            for (int i = 0; i < extra; ++i) {
              const int cc = read_byte();
              if (cc < 0 || !is_continuation(static_cast<unsigned char>(cc))) break;
              buf_.insert(cursor_, 1, static_cast<char>(cc));
              ++cursor_;
            }
          }
        }
        break;
    }
    refresh();
  }
}

void LineEditor::remember(const std::string& line) {
  if (line.empty() || (!history_.empty() && history_.back() == line)) return;
  history_.push_back(line);
}

}  // namespace dsv4::cli
