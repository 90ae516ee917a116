#include "tokenizer/special_matcher.h"

#include <algorithm>
#include <map>
#include <memory>

namespace dsv4::tokenizer {

SpecialMatcher::SpecialMatcher(const std::vector<std::pair<std::string_view, int32_t>>& tokens) {
  // Build with ordered maps, then flatten into sorted edge arrays for compact lookups.
  struct BuildNode {
    int32_t id = -1;
    std::map<uint8_t, std::unique_ptr<BuildNode>> children;
  };
  BuildNode root;
  for (const auto& [text, id] : tokens) {
    if (text.empty()) continue;
    BuildNode* n = &root;
    for (char c : text) {
      auto& slot = n->children[static_cast<uint8_t>(c)];
      if (!slot) slot = std::make_unique<BuildNode>();
      n = slot.get();
    }
    if (n->id < 0) n->id = id;
    starts_[static_cast<uint8_t>(text[0])] = true;
  }
  // Breadth-first flattening: each node's children get consecutive node and edge indices.
  std::vector<const BuildNode*> order{&root};
  nodes_.emplace_back();
  for (size_t i = 0; i < order.size(); ++i) {
    const BuildNode* b = order[i];
    nodes_[i].id = b->id;
    nodes_[i].first_edge = static_cast<uint32_t>(edges_.size());
    nodes_[i].edge_count = static_cast<uint32_t>(b->children.size());
    for (const auto& [byte, child] : b->children) {
      edges_.push_back(Edge{byte, static_cast<uint32_t>(order.size())});
      order.push_back(child.get());
      nodes_.emplace_back();
    }
  }
}

int32_t SpecialMatcher::child(uint32_t node, uint8_t byte) const {
  const Node& n = nodes_[node];
  const Edge* begin = edges_.data() + n.first_edge;
  const Edge* end = begin + n.edge_count;
  const Edge* e =
      std::lower_bound(begin, end, byte, [](const Edge& edge, uint8_t b) { return edge.byte < b; });
  return e != end && e->byte == byte ? static_cast<int32_t>(e->node) : -1;
}

SpecialMatcher::Match SpecialMatcher::find(std::string_view text, size_t from) const {
  if (empty()) return {};
  const auto* b = reinterpret_cast<const uint8_t*>(text.data());
  for (size_t p = from; p < text.size(); ++p) {
    if (!starts_[b[p]]) continue;
    Match best;
    int32_t node = 0;
    for (size_t q = p; q < text.size(); ++q) {
      node = child(static_cast<uint32_t>(node), b[q]);
      if (node < 0) break;
      if (nodes_[node].id >= 0) best = Match{p, q + 1 - p, nodes_[node].id};
    }
    if (best.length > 0) return best;
  }
  return {};
}

}  // namespace dsv4::tokenizer
