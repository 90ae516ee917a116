// Prompt-lookup drafts (draft.h): the continuation of the latest earlier occurrence of the last
// three tokens, cut at the sequence's end and at the length asked for; none without an occurrence.
#include "generation/draft.h"

#include <gtest/gtest.h>

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

}  // namespace
}  // namespace dsv4::generation
