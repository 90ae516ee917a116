// Finds added-token strings in text (PROTOCOL.md §1.6): leftmost-longest, on raw bytes, no
// normalisation, as the HF tokenizers' added-vocabulary split does. A byte trie over the added
// tokens' literal strings, entered only at bytes that start some token.
#pragma once

#include <array>
#include <cstdint>
#include <string_view>
#include <utility>
#include <vector>

namespace dsv4::tokenizer {

class SpecialMatcher {
 public:
  SpecialMatcher() = default;
  // (string, id) pairs; empty strings are ignored; for a repeated string the first id wins.
  explicit SpecialMatcher(const std::vector<std::pair<std::string_view, int32_t>>& tokens);

  struct Match {
    size_t begin = 0;
    size_t length = 0;  // 0: no match
    int32_t id = -1;
  };
  // The leftmost match at or after `from`, longest among those starting there.
  Match find(std::string_view text, size_t from) const;

  bool empty() const { return nodes_.size() <= 1; }

 private:
  struct Node {
    int32_t id = -1;  // token ending here
    // Children sorted by byte: edges_[first_edge, first_edge + edge_count).
    uint32_t first_edge = 0;
    uint32_t edge_count = 0;
  };
  struct Edge {
    uint8_t byte;
    uint32_t node;
  };
  int32_t child(uint32_t node, uint8_t byte) const;

  std::vector<Node> nodes_;
  std::vector<Edge> edges_;
  std::array<bool, 256> starts_{};  // bytes that begin some token
};

}  // namespace dsv4::tokenizer
