#include "cli/interrupt.h"

#include <signal.h>
#include <unistd.h>

#include <atomic>

namespace dsv4::cli {
namespace {

std::atomic<bool> g_requested{false};
struct sigaction g_previous {};

void on_sigint(int) {
  if (g_requested.exchange(true)) {
    constexpr char kBye[] = "\n";
    (void)!write(STDOUT_FILENO, kBye, sizeof kBye - 1);
    _exit(130);
  }
}

}  // namespace

InterruptScope::InterruptScope() {
  g_requested = false;
  struct sigaction sa {};
  sa.sa_handler = on_sigint;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = 0;  // no SA_RESTART: a blocking read returns EINTR and sees the flag
  sigaction(SIGINT, &sa, &g_previous);
}

InterruptScope::~InterruptScope() { sigaction(SIGINT, &g_previous, nullptr); }

bool InterruptScope::requested() const { return g_requested.load(); }
void InterruptScope::clear() { g_requested = false; }

}  // namespace dsv4::cli
