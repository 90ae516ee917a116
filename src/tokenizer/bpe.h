// Byte-level BPE over one pre-tokenized piece (PROTOCOL.md §1.5): start from one symbol per
// byte and repeatedly merge the adjacent pair with the lowest merge rank (ties: leftmost) until
// no adjacent pair has a rank. Symbols are token ids throughout, so the result needs no final
// vocabulary lookup.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "tokenizer/bpe_tables.h"

namespace dsv4::tokenizer {

struct Merge {
  int32_t left;
  int32_t right;
  int32_t result;  // the token whose spelling is left's followed by right's
};

class Bpe {
 public:
  Bpe() = default;
  // `byte_tokens[b]` is the token of the single byte b; `merges` are in rank order (a pair
  // that occurs twice keeps its first rank). `token_bytes[id]` are the raw bytes of every
  // BPE-reachable token (empty for added tokens): tokens that BPE reproduces as themselves
  // become whole-piece shortcuts, which never change the result, only its cost.
  Bpe(const std::array<int32_t, 256>& byte_tokens, const std::vector<Merge>& merges,
      const std::vector<std::string>& token_bytes);

  // Appends the tokens of one piece. `memo` (optional) remembers merged pieces across the
  // pieces of one text; it must not outlive the text.
  void encode(std::string_view piece, std::vector<int32_t>& out,
              bpe_tables::PieceMemo* memo = nullptr) const;

  size_t merge_count() const { return merge_count_; }

 private:
  const bpe_tables::MergeTable::Entry* find_merge(int32_t left, int32_t right) const {
    return merges_.find(left, right);
  }
  void merge_short(std::string_view piece, std::vector<int32_t>& out) const;
  void merge_long(std::string_view piece, std::vector<int32_t>& out) const;

  std::array<int32_t, 256> byte_tokens_{};
  bpe_tables::MergeTable merges_;
  bpe_tables::PieceTable pieces_;  // whole-piece shortcuts
  size_t merge_count_ = 0;
};

}  // namespace dsv4::tokenizer
