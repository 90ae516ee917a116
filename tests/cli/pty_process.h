// Runs the dsv4 binary on a pseudo-terminal, as a person at a terminal would: keys are typed into
// the master side (Ctrl+C as the byte 0x03, which the line discipline turns into SIGINT while the
// program is not in raw mode) and everything it prints is collected from it.
#pragma once

#include <fcntl.h>
#include <poll.h>
#include <pty.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace dsv4::testing {

class PtyProcess {
 public:
  // Starts `DSV4_BINARY args...` with stdin, stdout and stderr on a new 120x40 terminal;
  // `env` entries ("NAME=value") are added to the environment.
  explicit PtyProcess(const std::vector<std::string>& args, const std::vector<std::string>& env = {}) {
    winsize ws{};
    ws.ws_col = 120;
    ws.ws_row = 40;
    pid_ = forkpty(&master_, nullptr, nullptr, &ws);
    if (pid_ == 0) {
      for (const std::string& e : env) putenv(const_cast<char*>(e.c_str()));
      std::vector<char*> argv;
      std::string binary = DSV4_BINARY;
      argv.push_back(binary.data());
      std::vector<std::string> copy = args;
      for (std::string& a : copy) argv.push_back(a.data());
      argv.push_back(nullptr);
      execv(binary.c_str(), argv.data());
      _exit(127);
    }
  }
  ~PtyProcess() {
    if (pid_ > 0 && !exited_) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
    if (master_ >= 0) close(master_);
  }
  PtyProcess(const PtyProcess&) = delete;
  PtyProcess& operator=(const PtyProcess&) = delete;

  bool started() const { return pid_ > 0 && master_ >= 0; }

  void type(std::string_view keys) {
    while (!keys.empty()) {
      const ssize_t n = write(master_, keys.data(), keys.size());
      if (n <= 0) return;
      keys.remove_prefix(static_cast<size_t>(n));
    }
  }

  // Everything printed so far.
  const std::string& output() const { return out_; }
  size_t mark() const { return out_.size(); }

  // Reads until `needle` appears at or after offset `from`; its position, or npos on timeout or
  // when the program ends first.
  size_t wait_for(std::string_view needle, size_t from = 0, double timeout_s = 60) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s);
    for (;;) {
      const size_t at = out_.find(needle, from);
      if (at != std::string::npos) return at;
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0 || !read_some(static_cast<int>(left.count()))) return std::string::npos;
    }
  }

  // Waits for the program to end, reading what it prints; its exit code, or -1 on timeout or a
  // signal.
  int wait_exit(double timeout_s = 30) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s);
    while (std::chrono::steady_clock::now() < deadline) {
      int status = 0;
      if (waitpid(pid_, &status, WNOHANG) == pid_) {
        exited_ = true;
        while (read_some(50)) {
        }
        return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
      }
      read_some(50);
    }
    return -1;
  }

 private:
  // False when nothing could be read (timeout, or the terminal closed).
  bool read_some(int timeout_ms) {
    pollfd p{master_, POLLIN, 0};
    if (poll(&p, 1, timeout_ms) <= 0) return false;
    char buf[4096];
    const ssize_t n = read(master_, buf, sizeof buf);
    if (n <= 0) return false;
    out_.append(buf, static_cast<size_t>(n));
    return true;
  }

  pid_t pid_ = -1;
  int master_ = -1;
  bool exited_ = false;
  std::string out_;
};

}  // namespace dsv4::testing
