#include "generation/stop_filter.h"

#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

namespace dsv4::generation {
namespace {

// Feeds `pieces` and returns (all released text, matched stop or "").
std::pair<std::string, std::string> run(StopFilter& f, const std::vector<std::string>& pieces) {
  std::string text;
  std::string matched;
  for (const std::string& p : pieces) {
    StopFilter::Output out = f.push(p);
    text += out.released;
    if (out.matched) matched = *out.matched;
  }
  text += f.flush();
  return {text, matched};
}

TEST(StopFilter, NoStopsPassesEverythingAtOnce) {
  StopFilter f({});
  EXPECT_FALSE(f.active());
  EXPECT_EQ(f.push("abc").released, "abc");
}

TEST(StopFilter, CutsBeforeTheStopAcrossPieces) {
  StopFilter f({"END"});
  auto [text, matched] = run(f, {"hello E", "N", "D and more"});
  EXPECT_EQ(text, "hello ");
  EXPECT_EQ(matched, "END");
}

TEST(StopFilter, HoldsBackOnlyAPossibleStopPrefix) {
  StopFilter f({"STOP"});
  EXPECT_EQ(f.push("abcS").released, "abc");
  EXPECT_EQ(f.push("T").released, "");
  EXPECT_EQ(f.push("x").released, "STx");  // no longer a prefix: released
  EXPECT_EQ(f.flush(), "");
}

TEST(StopFilter, EarliestMatchWins) {
  StopFilter f({"world", "lo w"});
  auto [text, matched] = run(f, {"hello world"});
  EXPECT_EQ(text, "hel");
  EXPECT_EQ(matched, "lo w");
}

TEST(StopFilter, EmptyStopStringsAreIgnored) {
  StopFilter f({"", ""});
  EXPECT_FALSE(f.active());
  EXPECT_EQ(f.push("x").released, "x");
}

TEST(StopFilter, UnfinishedPrefixIsReleasedAtTheEnd) {
  StopFilter f({"<end>"});
  auto [text, matched] = run(f, {"abc<en"});
  EXPECT_EQ(text, "abc<en");
  EXPECT_EQ(matched, "");
}

TEST(StopFilter, NothingAfterAMatch) {
  StopFilter f({"x"});
  EXPECT_TRUE(f.push("axb").matched);
  EXPECT_EQ(f.push("more").released, "");
  EXPECT_EQ(f.flush(), "");
}

TEST(StopFilter, MultiByteStopKeepsUtf8Whole) {
  StopFilter f({"→→"});
  StopFilter::Output a = f.push("a→");
  EXPECT_EQ(a.released, "a");  // "→" may start the stop: held whole
  auto [text, matched] = run(f, {"b"});
  EXPECT_EQ(text, "→b");
}

// Any split of the text gives the same released text and match as feeding it whole, and equals
// a plain search.
TEST(StopFilter, ChunkingNeverChangesTheResult) {
  std::mt19937 rng(7);
  const std::string alphabet = "ab<>/ ";
  for (int trial = 0; trial < 2000; ++trial) {
    std::string text;
    for (int i = 0; i < 30; ++i) text += alphabet[rng() % alphabet.size()];
    std::vector<std::string> stops = {"</a>", "bb", "< b"};
    size_t best = std::string::npos;
    std::string expect_match;
    for (const std::string& s : stops) {
      size_t at = text.find(s);
      if (at < best || (at == best && at != std::string::npos && s.size() < expect_match.size())) {
        best = at;
        expect_match = s;
      }
    }
    std::vector<std::string> pieces;
    for (size_t i = 0; i < text.size();) {
      size_t n = 1 + rng() % 5;
      pieces.push_back(text.substr(i, n));
      i += n;
    }
    StopFilter f(stops);
    auto [released, matched] = run(f, pieces);
    EXPECT_EQ(released, best == std::string::npos ? text : text.substr(0, best)) << text;
    EXPECT_EQ(matched, best == std::string::npos ? "" : expect_match) << text;
  }
}

}  // namespace
}  // namespace dsv4::generation
