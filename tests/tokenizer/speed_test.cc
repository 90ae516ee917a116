// A generous floor on tokenizer speed, so that CI catches a disaster (an accidental quadratic
// path, a lost shortcut). The real figures come from bench/tokenizer_bench.cc; the targets
// (PERFORMANCE.md: >= 20 MB/s, 100 KB agent prompt < 10 ms) are far above these floors, which
// leave room for sanitizer builds and a loaded CI machine.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdio>

#include "speed_inputs.h"
#include "v4_fixture.h"

namespace dsv4::tokenizer {
namespace {

// Sanitizer builds run several times slower; the floors scale with them.
#if defined(__SANITIZE_ADDRESS__)
constexpr double kSlack = 8.0;
#else
constexpr double kSlack = 1.0;
#endif

// Best of a few runs, in seconds.
template <class F>
double best_time(F&& f, int runs = 5) {
  double best = 1e30;
  for (int i = 0; i < runs; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    f();
    const std::chrono::duration<double> dt = std::chrono::steady_clock::now() - t0;
    best = std::min(best, dt.count());
  }
  return best;
}

TEST(Speed, ThroughputFloor) {
  DSV4_V4_TOKENIZER(tok);
  constexpr double kFloorMBps = 2.0;  // target is 20 MB/s
  for (const auto& [name, text] :
       {std::pair<const char*, std::string>{"prose", speed_inputs::prose_text()},
        {"code", speed_inputs::code_text()}}) {
    ASSERT_GT(text.size(), 20000u) << name;
    size_t n = 0;
    const double s = best_time([&] { n = tok.encode_text(text).size(); });
    const double mbps = text.size() / s / 1e6;
    std::printf("%s: %zu bytes -> %zu tokens, %.1f MB/s\n", name, text.size(), n, mbps);
    EXPECT_GT(mbps, kFloorMBps / kSlack) << name;
  }
}

TEST(Speed, AgentPromptFloor) {
  DSV4_V4_TOKENIZER(tok);
  const std::string prompt = speed_inputs::agent_prompt(100 * 1024);
  size_t n = 0;
  const double s = best_time([&] { n = tok.encode_with_special(prompt).size(); });
  std::printf("agent prompt: %zu bytes -> %zu tokens in %.2f ms\n", prompt.size(), n, s * 1e3);
  EXPECT_LT(s, 0.100 * kSlack);  // target is 10 ms
}

// Pathological shapes must stay near-linear: one huge piece of a repeated character (the heap
// merge path) and a long run of one letter.
TEST(Speed, LongPiecesStayLinear) {
  DSV4_V4_TOKENIZER(tok);
  for (const std::string unit : {" ", "a", "字", "😀", "=", "\n"}) {
    std::string text;
    while (text.size() < 1000000) text += unit;
    const double s = best_time([&] { (void)tok.encode_text(text); }, 2);
    std::printf("1 MB of \"%s\": %.1f ms\n", unit == "\n" ? "\\n" : unit.c_str(), s * 1e3);
    EXPECT_LT(s, 2.0 * kSlack) << unit;
  }
}

}  // namespace
}  // namespace dsv4::tokenizer
