// The two lookup tables of byte-level BPE, as flat open-addressing hash tables (linear probing,
// load factor <= 1/2) because lookups dominate encoding time and each one should touch a
// single cache line:
//   MergeTable  (left id, right id) -> (rank, merged id)
//   PieceTable  piece bytes -> token id, for whole-piece shortcuts
// (A small "hot" copy of the lowest ids/ranks, meant to stay in L2, measured slower on a quiet
// Xeon: the extra probe costs more than the misses it saves.)
#pragma once

#include <algorithm>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

namespace dsv4::tokenizer::bpe_tables {

inline uint64_t mix(uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdULL;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ULL;
  x ^= x >> 33;
  return x;
}

// A piece's hash-table key: its bytes when they fit in 8 (so equal keys and lengths mean equal
// pieces), else a hash of them.
inline uint64_t piece_key(std::string_view s) {
  uint64_t w = 0;
  if (s.size() <= 8) {
    std::memcpy(&w, s.data(), s.size());
    return w;
  }
  uint64_t h = 0x9E3779B97F4A7C15ULL ^ s.size();
  const char* p = s.data();
  size_t n = s.size();
  for (; n >= 8; p += 8, n -= 8) {
    std::memcpy(&w, p, 8);
    h = mix(h ^ w);
  }
  w = 0;
  std::memcpy(&w, p, n);
  return mix(h ^ w ^ (uint64_t{n} << 56));
}

inline size_t table_size_for(size_t entries) {
  return std::bit_ceil(std::max<size_t>(16, entries * 2));
}

class MergeTable {
 public:
  struct Entry {
    uint64_t key;  // (left << 32) | right; kEmpty when free
    int32_t rank;
    int32_t result;
  };
  static constexpr uint64_t kEmpty = ~uint64_t{0};

  static uint64_t key(int32_t left, int32_t right) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(left)) << 32) |
           static_cast<uint32_t>(right);
  }

  void reserve(size_t entries) {
    slots_.assign(table_size_for(entries), Entry{kEmpty, 0, 0});
    mask_ = slots_.size() - 1;
  }
  // Returns false if the pair is already present (it keeps its first rank).
  bool insert(int32_t left, int32_t right, int32_t rank, int32_t result) {
    const uint64_t k = key(left, right);
    for (uint64_t i = mix(k) & mask_;; i = (i + 1) & mask_) {
      Entry& e = slots_[i];
      if (e.key == k) return false;
      if (e.key == kEmpty) {
        e = Entry{k, rank, result};
        return true;
      }
    }
  }
  const Entry* find(int32_t left, int32_t right) const {
    if (slots_.empty()) return nullptr;
    const uint64_t k = key(left, right);
    for (uint64_t i = mix(k) & mask_;; i = (i + 1) & mask_) {
      const Entry& e = slots_[i];
      if (e.key == k) return &e;
      if (e.key == kEmpty) return nullptr;
    }
  }

 private:
  std::vector<Entry> slots_;
  uint64_t mask_ = 0;
};

class PieceTable {
 public:
  void reserve(size_t entries) {
    slots_.assign(table_size_for(entries), Slot{0, -1, 0});
    mask_ = slots_.size() - 1;
  }
  void insert(std::string_view bytes, int32_t id) {
    const uint64_t k = key(bytes);
    uint32_t offset = 0;
    if (bytes.size() > 8) {
      offset = static_cast<uint32_t>(arena_.size());
      arena_.append(bytes);
    }
    for (uint64_t i = mix(k + bytes.size()) & mask_;; i = (i + 1) & mask_) {
      Slot& s = slots_[i];
      if (s.id < 0) {
        s = Slot{k, id, static_cast<uint32_t>(bytes.size())};
        if (bytes.size() > 8) offsets_.emplace_back(id, offset);
        return;
      }
    }
  }
  // Must be called once after the last insert (sorts the long pieces' arena index).
  void finish() { std::sort(offsets_.begin(), offsets_.end()); }

  int32_t find(std::string_view piece) const {
    if (slots_.empty()) return -1;
    const uint64_t k = key(piece);
    for (uint64_t i = mix(k + piece.size()) & mask_;; i = (i + 1) & mask_) {
      const Slot& s = slots_[i];
      if (s.id < 0) return -1;
      if (s.key == k && s.length == piece.size() && (piece.size() <= 8 || same_long(s.id, piece))) {
        return s.id;
      }
    }
  }

 private:
  // Pieces of up to 8 bytes are stored inline (the key is the bytes themselves, so a lookup
  // touches one cache line); longer ones store a hash and are compared against the arena.
  struct Slot {
    uint64_t key;
    int32_t id;  // -1 when free
    uint32_t length;
  };

  static uint64_t key(std::string_view s) { return piece_key(s); }

  bool same_long(int32_t id, std::string_view piece) const {
    const auto it =
        std::lower_bound(offsets_.begin(), offsets_.end(), std::pair<int32_t, uint32_t>{id, 0});
    return it != offsets_.end() && it->first == id &&
           std::memcmp(arena_.data() + it->second, piece.data(), piece.size()) == 0;
  }

  std::vector<Slot> slots_;
  uint64_t mask_ = 0;
  std::string arena_;
  std::vector<std::pair<int32_t, uint32_t>> offsets_;  // (id, arena offset), sorted
};

// Tokens of pieces that needed merging, remembered while one long text is encoded: code and
// prose repeat their identifiers and rare words, and a repeat then costs one probe of a small
// table instead of a merge loop over the large merge table. Direct-mapped: a colliding piece
// replaces the older one. The pieces are views into the text being encoded.
class PieceMemo {
 public:
  PieceMemo() : slots_(kSlots) {}

  // The remembered tokens of `piece`, appended to `out`; false if not remembered.
  bool lookup(std::string_view piece, std::vector<int32_t>& out) const {
    const Slot& s = slots_[slot(piece)];
    if (s.count == 0 || s.piece.size() != piece.size() || s.piece != piece) return false;
    out.insert(out.end(), ids_.begin() + s.first, ids_.begin() + s.first + s.count);
    return true;
  }
  void remember(std::string_view piece, const int32_t* ids, size_t count) {
    if (count == 0 || count > UINT16_MAX) return;
    Slot& s = slots_[slot(piece)];
    s = Slot{piece, static_cast<uint32_t>(ids_.size()), static_cast<uint16_t>(count)};
    ids_.insert(ids_.end(), ids, ids + count);
  }

 private:
  static constexpr size_t kSlots = 4096;
  struct Slot {
    std::string_view piece;
    uint32_t first = 0;
    uint16_t count = 0;  // 0: empty
  };
  static size_t slot(std::string_view piece) {
    return mix(piece_key(piece) + piece.size()) & (kSlots - 1);
  }
  std::vector<Slot> slots_;
  std::vector<int32_t> ids_;
};

}  // namespace dsv4::tokenizer::bpe_tables
