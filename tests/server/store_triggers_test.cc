// The storage triggers of PROTOCOL.md §5.4 against the vectors of §6.8.
#include "server/store_triggers.h"

#include <gtest/gtest.h>

#include <vector>

namespace dsv4::server {
namespace {

constexpr int32_t kUser = 7, kAssistant = 8, kText = 3;

std::vector<int32_t> plain(size_t n) { return std::vector<int32_t>(n, kText); }

TEST(StoreTriggers, ColdLengthWithoutAnchorFollowsTheSpecVectors) {
  const StoreTriggerOptions o;
  EXPECT_EQ(cold_store_length(plain(11011), kUser, kAssistant, o), 10240);
  EXPECT_EQ(cold_store_length(plain(1695), kUser, kAssistant, o), 1695);
  EXPECT_EQ(cold_store_length(plain(2048 + 32), kUser, kAssistant, o), 2048);
  EXPECT_EQ(cold_store_length(plain(2048 + 31), kUser, kAssistant, o), 2079);  // aligned 0 < min
}

TEST(StoreTriggers, ColdLengthOutsideTheWindowIsNone) {
  const StoreTriggerOptions o;
  EXPECT_EQ(cold_store_length(plain(511), kUser, kAssistant, o), 0);
  EXPECT_EQ(cold_store_length(plain(512), kUser, kAssistant, o), 512);
  EXPECT_EQ(cold_store_length(plain(30000), kUser, kAssistant, o), 28672);
  EXPECT_EQ(cold_store_length(plain(30001), kUser, kAssistant, o), 0);
  StoreTriggerOptions off = o;
  off.cold_max_tokens = 0;
  EXPECT_EQ(cold_store_length(plain(4000), kUser, kAssistant, off), 0);
}

TEST(StoreTriggers, ChatAnchorIsTheLastUserBeforeTheFirstAssistant) {
  // BOS system... <User> old <User> task <Assistant> answer <User> next <Assistant>
  std::vector<int32_t> p = plain(600);
  p.push_back(kUser);          // 600
  p.insert(p.end(), 50, kText);
  p.push_back(kUser);          // 651: the anchor
  p.insert(p.end(), 20, kText);
  p.push_back(kAssistant);     // first assistant
  p.insert(p.end(), 10, kText);
  p.push_back(kUser);
  p.push_back(kAssistant);
  EXPECT_EQ(chat_anchor(p, kUser, kAssistant), 651);
  EXPECT_EQ(cold_store_length(p, kUser, kAssistant, StoreTriggerOptions{}), 651);
  // An anchor below min_tokens falls back to the trimmed, aligned length, and that to the whole
  // prompt when it is below min_tokens too.
  StoreTriggerOptions big_min;
  big_min.min_tokens = 640;
  big_min.boundary_align_tokens = 64;
  ASSERT_EQ(p.size(), 685u);
  EXPECT_EQ(cold_store_length(p, kUser, kAssistant, big_min), 651);
  big_min.min_tokens = 652;
  EXPECT_EQ(cold_store_length(p, kUser, kAssistant, big_min), 685);  // 685 - 32 -> 640 < 652
  big_min.min_tokens = 600;
  big_min.boundary_align_tokens = 32;
  p[651] = kText;  // no anchor now: the last user before the first assistant is at 600 (= min)
  EXPECT_EQ(cold_store_length(p, kUser, kAssistant, big_min), 600);
}

TEST(StoreTriggers, NoUserTokenMeansNoAnchor) {
  EXPECT_EQ(chat_anchor(plain(100), kUser, kAssistant), 0);
  std::vector<int32_t> p = plain(10);
  p.push_back(kAssistant);
  p.push_back(kUser);  // after the first assistant: not an anchor
  EXPECT_EQ(chat_anchor(p, kUser, kAssistant), 0);
}

TEST(StoreTriggers, ContinuedFrontiersFollowTheSpecVectors) {
  const StoreTriggerOptions o;
  EXPECT_EQ(continued_interval(o), 10240);
  EXPECT_FALSE(is_continued_frontier(10239, 0, o));
  EXPECT_TRUE(is_continued_frontier(10240, 0, o));
  EXPECT_FALSE(is_continued_frontier(18432, 10240, o));
  EXPECT_TRUE(is_continued_frontier(20480, 10240, o));
  EXPECT_FALSE(is_continued_frontier(20480, 20480, o));  // already stored there
  StoreTriggerOptions off = o;
  off.continued_interval_tokens = 0;
  EXPECT_FALSE(is_continued_frontier(10240, 0, off));
}

TEST(StoreTriggers, SmallIntervalsAreAligned) {
  StoreTriggerOptions o;
  o.continued_interval_tokens = 100;
  o.boundary_align_tokens = 64;
  o.min_tokens = 1;
  EXPECT_EQ(continued_interval(o), 128);
  EXPECT_TRUE(is_continued_frontier(256, 128, o));
  EXPECT_FALSE(is_continued_frontier(200, 128, o));
}

}  // namespace
}  // namespace dsv4::server
