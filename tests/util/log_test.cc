// The leveled logger: level filtering, the sink seam, and whole lines under concurrent writers.
#include "util/log.h"

#include <gtest/gtest.h>

#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace dsv4::log {
namespace {

class LogTest : public ::testing::Test {
 protected:
  LogTest() {
    set_sink([this](Level level, std::string_view message) {
      std::lock_guard<std::mutex> l(mu_);
      lines_.push_back(std::string(level_name(level)) + ":" + std::string(message));
    });
  }
  ~LogTest() override {
    set_sink(nullptr);
    set_level(Level::kInfo);
  }
  std::vector<std::string> lines() {
    std::lock_guard<std::mutex> l(mu_);
    return lines_;
  }

 private:
  std::mutex mu_;
  std::vector<std::string> lines_;
};

TEST_F(LogTest, MessagesBelowTheLevelAreDropped) {
  set_level(Level::kWarn);
  debug("d");
  info("i");
  warn("w ", 1);
  error("e ", 2.5, " ", std::string("x"));
  EXPECT_EQ(lines(), (std::vector<std::string>{"warn:w 1", "error:e 2.5 x"}));
  EXPECT_FALSE(enabled(Level::kInfo));
  set_level(Level::kDebug);
  debug("now");
  EXPECT_EQ(lines().back(), "debug:now");
}

TEST_F(LogTest, LevelNamesRoundTrip) {
  for (Level l : {Level::kDebug, Level::kInfo, Level::kWarn, Level::kError}) {
    EXPECT_EQ(parse_level(level_name(l)), l);
  }
  EXPECT_FALSE(parse_level("loud").has_value());
}

TEST_F(LogTest, ConcurrentWritersNeverInterleave) {
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([t] {
      for (int i = 0; i < 200; ++i) info("thread ", t, " line ", i, " end");
    });
  }
  for (auto& th : threads) th.join();
  const auto all = lines();
  ASSERT_EQ(all.size(), 800u);
  for (const std::string& l : all) {
    EXPECT_TRUE(l.starts_with("info:thread ") && l.ends_with(" end")) << l;
  }
}

}  // namespace
}  // namespace dsv4::log
