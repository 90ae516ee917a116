// Budget and eviction rules of the disk KV cache (PROTOCOL.md §5.7, ds4's rules): which file to
// delete first when the directory is over budget. Pure functions of the file metadata.
#pragma once

#include <cstdint>
#include <optional>
#include <span>

namespace dsv4::server {

// A store is skipped when the file plus 1 % slack (rounded up) exceeds the budget.
bool kv_fits_budget(uint64_t file_bytes, uint64_t budget_bytes);

// What eviction needs to know about one file.
struct KvEvictionCandidate {
  uint64_t file_bytes = 0;
  uint64_t n_tokens = 0;
  uint32_t hits = 0;
  int64_t last_used = 0;  // unix seconds
};

// (effective_hits + 1) × tokens / file_bytes, effective_hits = hits × 2^(−age / 6 h), zeroed
// below 0.01. Higher is worth keeping: many tokens per byte, recently and often hit.
double kv_eviction_score(const KvEvictionCandidate& c, int64_t now);

// Index of the next file to delete (lowest score, ties to the older last_used, then the lower
// index), skipping `protected_index`; nullopt when nothing is eligible.
std::optional<size_t> kv_eviction_victim(std::span<const KvEvictionCandidate> files, int64_t now,
                                         std::optional<size_t> protected_index);

}  // namespace dsv4::server
