// Prompt-lookup drafts (draft.h): the continuation of the latest earlier occurrence of the last
// three tokens, cut at the sequence's end and at the length asked for; none without an occurrence.
// The draft length policy: one token first, the most after a draft kept whole, pauses after misses.
#include "generation/draft.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <vector>

namespace dsv4::generation {
namespace {

TEST(NgramDrafter, ProposesWhatFollowedTheLatestOccurrence) {
  NgramDrafter d(std::vector<int32_t>{1, 2, 3, 4, 5, 9, 1, 2, 3, 7, 8, 6, 1, 2});
  EXPECT_TRUE(d.propose(4).empty());  // (6, 1, 2) never occurred
  d.push(3);                            // ... 1, 2, 3: latest earlier occurrence followed by 7, 8
  EXPECT_EQ(d.propose(4), (std::vector<int32_t>{7, 8, 6, 1}));
  EXPECT_EQ(d.propose(1), (std::vector<int32_t>{7}));
  EXPECT_TRUE(d.propose(0).empty());
}

TEST(NgramDrafter, DraftsStopAtTheSequenceEnd) {
  NgramDrafter d(std::vector<int32_t>{5, 5, 5});
  EXPECT_TRUE(d.propose(3).empty());  // the only (5, 5, 5) is the last: nothing followed it yet
  d.push(5);
  EXPECT_EQ(d.propose(3), (std::vector<int32_t>{5}));
  d.push(5);
  EXPECT_EQ(d.propose(3), (std::vector<int32_t>{5}));  // the latest occurrence, one token before the end
}

TEST(NgramDrafter, ShortOrUnmatchedContextsHaveNoDraft) {
  NgramDrafter d(std::vector<int32_t>{});
  EXPECT_TRUE(d.propose(2).empty());
  d.push(1);
  d.push(2);
  EXPECT_TRUE(d.propose(2).empty());
  d.push(3);
  EXPECT_TRUE(d.propose(2).empty());
  // Large token ids are packed without colliding: (129279, 0, 1) is not (0, 0, 1).
  NgramDrafter big(std::vector<int32_t>{0, 0, 1, 42, 129279, 0});
  big.push(1);
  EXPECT_TRUE(big.propose(1).empty());
}

TEST(DraftLength, GrowsOnAWholeDraftAndPausesAfterMisses) {
  DraftLength d;
  EXPECT_EQ(d.next(3), 1);  // a region's first draft is short
  d.record(1, 1);
  EXPECT_EQ(d.next(3), 3);  // kept whole: the most
  d.record(3, 2);
  EXPECT_EQ(d.next(3), 1);  // partly kept: short again, no pause
  d.record(1, 0);           // a miss: no draft for 2 tokens
  EXPECT_EQ(d.next(3), 0);
  EXPECT_EQ(d.next(3), 0);
  EXPECT_EQ(d.next(3), 1);
  d.record(1, 0);  // the second miss in a row: 4 tokens
  for (int i = 0; i < 4; ++i) EXPECT_EQ(d.next(3), 0);
  EXPECT_EQ(d.next(3), 1);
  for (int miss = 3; miss <= 8; ++miss) {  // the pause doubles up to kMaxPause
    d.record(1, 0);
    const int pause = std::min(DraftLength::kMaxPause, 1 << miss);
    for (int i = 0; i < pause; ++i) ASSERT_EQ(d.next(3), 0) << "miss " << miss << " token " << i;
    EXPECT_EQ(d.next(3), 1);
  }
  d.record(1, 1);  // a kept draft ends the run of misses
  EXPECT_EQ(d.next(2), 2);
  d.record(2, 0);
  EXPECT_EQ(d.next(2), 0);
  EXPECT_EQ(d.next(2), 0);
  EXPECT_EQ(d.next(2), 1);
}

}  // namespace
}  // namespace dsv4::generation
