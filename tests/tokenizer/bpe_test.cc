// Byte-level BPE against a naive reference implementation on random merge tables: both merge
// paths (short pieces, heap for long ones) and the whole-piece shortcut must agree with it.
#include "tokenizer/bpe.h"

#include <gtest/gtest.h>

#include <limits>
#include <map>
#include <random>
#include <string>
#include <vector>

namespace dsv4::tokenizer {
namespace {

struct RandomVocab {
  std::vector<std::string> tokens;  // raw bytes
  std::map<std::string, int32_t> ids;
  std::vector<Merge> merges;
  std::array<int32_t, 256> byte_tokens{};

  int32_t add(const std::string& s) {
    const auto it = ids.find(s);
    if (it != ids.end()) return it->second;
    const auto id = static_cast<int32_t>(tokens.size());
    tokens.push_back(s);
    ids.emplace(s, id);
    return id;
  }
};

RandomVocab make_vocab(uint32_t seed, const std::string& alphabet, int merges) {
  RandomVocab v;
  for (int b = 0; b < 256; ++b) v.byte_tokens[b] = v.add(std::string(1, static_cast<char>(b)));
  std::mt19937 rng(seed);
  std::vector<int32_t> pool;
  for (char c : alphabet) pool.push_back(v.ids[std::string(1, c)]);
  while (static_cast<int>(v.merges.size()) < merges) {
    const int32_t l = pool[rng() % pool.size()];
    const int32_t r = pool[rng() % pool.size()];
    const std::string joined = v.tokens[l] + v.tokens[r];
    if (joined.size() > 12) continue;
    const bool fresh = !v.ids.count(joined);
    const int32_t m = v.add(joined);
    v.merges.push_back(Merge{l, r, m});
    if (fresh) pool.push_back(m);
  }
  return v;
}

// Textbook BPE: merge the lowest-ranked adjacent pair, leftmost first, until none is left.
std::vector<int32_t> reference_bpe(const RandomVocab& v, const std::string& piece) {
  std::map<std::pair<int32_t, int32_t>, std::pair<int32_t, int32_t>> rank;  // -> (rank, result)
  for (size_t r = 0; r < v.merges.size(); ++r) {
    rank.emplace(std::pair{v.merges[r].left, v.merges[r].right},
                 std::pair{static_cast<int32_t>(r), v.merges[r].result});
  }
  std::vector<int32_t> sym;
  for (char c : piece) sym.push_back(v.byte_tokens[static_cast<uint8_t>(c)]);
  for (;;) {
    int32_t best_rank = std::numeric_limits<int32_t>::max();
    size_t best = 0;
    for (size_t i = 0; i + 1 < sym.size(); ++i) {
      const auto it = rank.find({sym[i], sym[i + 1]});
      if (it != rank.end() && it->second.first < best_rank) {
        best_rank = it->second.first;
        best = i;
      }
    }
    if (best_rank == std::numeric_limits<int32_t>::max()) return sym;
    sym[best] = rank.at({sym[best], sym[best + 1]}).second;
    sym.erase(sym.begin() + static_cast<long>(best) + 1);
  }
}

TEST(Bpe, MatchesReferenceOnRandomTables) {
  for (uint32_t seed = 1; seed <= 6; ++seed) {
    const std::string alphabet = seed % 2 ? "ab" : "abcde ";
    const RandomVocab v = make_vocab(seed, alphabet, 150);
    const Bpe bpe(v.byte_tokens, v.merges, v.tokens);
    std::mt19937 rng(seed * 7919);
    for (int iter = 0; iter < 300; ++iter) {
      std::string piece;
      const size_t n = 1 + rng() % (iter % 3 == 0 ? 300 : 60);  // both sides of the short limit
      for (size_t i = 0; i < n; ++i) piece += alphabet[rng() % alphabet.size()];
      std::vector<int32_t> got;
      bpe.encode(piece, got);
      ASSERT_EQ(got, reference_bpe(v, piece)) << "seed " << seed << " piece \"" << piece << "\"";
    }
    // Every vocabulary string, including those BPE cannot reproduce as one token.
    for (const std::string& t : v.tokens) {
      std::vector<int32_t> got;
      bpe.encode(t, got);
      ASSERT_EQ(got, reference_bpe(v, t)) << "token \"" << t << "\"";
    }
  }
}

TEST(Bpe, RepeatedPairKeepsFirstRank) {
  RandomVocab v;
  for (int b = 0; b < 256; ++b) v.byte_tokens[b] = v.add(std::string(1, static_cast<char>(b)));
  const int32_t a = v.ids["a"], b = v.ids["b"], c = v.ids["c"];
  const int32_t bc = v.add("bc"), ab = v.add("ab");
  v.merges = {Merge{b, c, bc}, Merge{a, b, ab}, Merge{b, c, bc}};
  const Bpe bpe(v.byte_tokens, v.merges, v.tokens);
  EXPECT_EQ(bpe.merge_count(), 2u);
  std::vector<int32_t> got;
  bpe.encode("abc", got);
  EXPECT_EQ(got, (std::vector<int32_t>{a, bc}));
}

}  // namespace
}  // namespace dsv4::tokenizer
