#include "tokenizer/bpe.h"

#include <algorithm>
#include <cstring>
#include <limits>
#include <queue>

namespace dsv4::tokenizer {
namespace {

using bpe_tables::MergeTable;

constexpr int32_t kNoRank = std::numeric_limits<int32_t>::max();

// Pieces up to this many bytes use the simple quadratic merge loop over a stack array; longer
// ones (long whitespace or letter runs) use a heap so cost stays O(n log n).
constexpr size_t kShortPiece = 48;

}  // namespace

Bpe::Bpe(const std::array<int32_t, 256>& byte_tokens, const std::vector<Merge>& merges,
         const std::vector<std::string>& token_bytes)
    : byte_tokens_(byte_tokens) {
  merges_.reserve(merges.size());
  for (size_t r = 0; r < merges.size(); ++r) {
    const Merge& m = merges[r];
    // A repeated pair keeps its first (lowest) rank.
    merge_count_ += merges_.insert(m.left, m.right, static_cast<int32_t>(r), m.result);
  }

  // A token is a whole-piece shortcut only if BPE of its own bytes yields exactly it (true for
  // almost every token, but not guaranteed by BPE training).
  std::vector<int32_t> shortcuts;
  std::vector<int32_t> ids;
  for (size_t id = 0; id < token_bytes.size(); ++id) {
    const std::string& b = token_bytes[id];
    if (b.size() < 2) continue;  // single bytes never reach the tables
    ids.clear();
    if (b.size() <= kShortPiece) {
      merge_short(b, ids);
    } else {
      merge_long(b, ids);
    }
    if (ids.size() == 1 && ids[0] == static_cast<int32_t>(id)) {
      shortcuts.push_back(static_cast<int32_t>(id));
    }
  }
  pieces_.reserve(shortcuts.size());
  for (int32_t id : shortcuts) pieces_.insert(token_bytes[id], id);
  pieces_.finish();
}

void Bpe::encode(std::string_view piece, std::vector<int32_t>& out,
                 bpe_tables::PieceMemo* memo) const {
  if (piece.empty()) return;
  if (piece.size() == 1) {
    out.push_back(byte_tokens_[static_cast<uint8_t>(piece[0])]);
    return;
  }
  if (const int32_t id = pieces_.find(piece); id >= 0) {
    out.push_back(id);
    return;
  }
  if (memo && memo->lookup(piece, out)) return;
  const size_t before = out.size();
  if (piece.size() <= kShortPiece) {
    merge_short(piece, out);
  } else {
    merge_long(piece, out);
  }
  if (memo) memo->remember(piece, out.data() + before, out.size() - before);
}

void Bpe::merge_short(std::string_view piece, std::vector<int32_t>& out) const {
  // sym[i] is the i-th symbol; rank[i]/result[i] describe the pair (sym[i], sym[i + 1]).
  int32_t sym[kShortPiece];
  int32_t rank[kShortPiece];
  int32_t result[kShortPiece];
  size_t n = piece.size();
  for (size_t i = 0; i < n; ++i) sym[i] = byte_tokens_[static_cast<uint8_t>(piece[i])];
  auto update = [&](size_t i) {
    const MergeTable::Entry* m = find_merge(sym[i], sym[i + 1]);
    rank[i] = m ? m->rank : kNoRank;
    result[i] = m ? m->result : -1;
  };
  for (size_t i = 0; i + 1 < n; ++i) update(i);
  while (n > 1) {
    size_t best = 0;
    for (size_t i = 1; i + 1 < n; ++i) {
      if (rank[i] < rank[best]) best = i;
    }
    if (rank[best] == kNoRank) break;
    sym[best] = result[best];
    // Remove symbol best + 1 and pair best + 1.
    for (size_t i = best + 1; i + 1 < n; ++i) {
      sym[i] = sym[i + 1];
      rank[i] = rank[i + 1];
      result[i] = result[i + 1];
    }
    --n;
    if (best > 0) update(best - 1);
    if (best + 1 < n) update(best);
  }
  out.insert(out.end(), sym, sym + n);
}

void Bpe::merge_long(std::string_view piece, std::vector<int32_t>& out) const {
  // Symbols form a doubly linked list over their original byte positions; candidate merges
  // wait in a min-heap ordered by (rank, position). An entry is stale once either of its
  // symbols has changed, which the stored ids detect: a symbol only ever grows into a longer
  // token, never back into the same id.
  const size_t n = piece.size();
  std::vector<int32_t> sym(n);
  std::vector<int32_t> prev(n), next(n);
  for (size_t i = 0; i < n; ++i) {
    sym[i] = byte_tokens_[static_cast<uint8_t>(piece[i])];
    prev[i] = static_cast<int32_t>(i) - 1;
    next[i] = i + 1 < n ? static_cast<int32_t>(i + 1) : -1;
  }
  struct Candidate {
    int32_t rank;
    int32_t pos;
    int32_t left;
    int32_t right;
    int32_t result;
    bool operator>(const Candidate& o) const {
      return rank != o.rank ? rank > o.rank : pos > o.pos;
    }
  };
  std::priority_queue<Candidate, std::vector<Candidate>, std::greater<>> heap;
  auto push = [&](int32_t pos) {
    if (pos < 0 || next[pos] < 0) return;
    const MergeTable::Entry* m = find_merge(sym[pos], sym[next[pos]]);
    if (m) heap.push(Candidate{m->rank, pos, sym[pos], sym[next[pos]], m->result});
  };
  for (size_t i = 0; i + 1 < n; ++i) push(static_cast<int32_t>(i));
  while (!heap.empty()) {
    const Candidate c = heap.top();
    heap.pop();
    const int32_t right = next[c.pos];
    if (sym[c.pos] != c.left || right < 0 || sym[right] != c.right) continue;  // stale
    sym[c.pos] = c.result;
    sym[right] = -1;
    next[c.pos] = next[right];
    if (next[right] >= 0) prev[next[right]] = c.pos;
    push(prev[c.pos]);
    push(c.pos);
  }
  for (int32_t i = 0; i >= 0; i = next[i]) out.push_back(sym[i]);
}

}  // namespace dsv4::tokenizer
