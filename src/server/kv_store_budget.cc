#include "server/kv_store_budget.h"

#include <cmath>

namespace dsv4::server {
namespace {

constexpr double kHitHalfLifeSeconds = 21600.0;
constexpr double kNegligibleHits = 0.01;

}  // namespace

bool kv_fits_budget(uint64_t file_bytes, uint64_t budget_bytes) {
  const uint64_t slack = file_bytes / 100 + (file_bytes % 100 != 0 ? 1 : 0);
  return file_bytes <= budget_bytes && slack <= budget_bytes - file_bytes;
}

double kv_eviction_score(const KvEvictionCandidate& c, int64_t now) {
  // A last_used in the future (clock set back) counts as now: no bonus beyond the raw hits.
  const double age = now > c.last_used ? static_cast<double>(now - c.last_used) : 0.0;
  double effective_hits = static_cast<double>(c.hits) * std::exp2(-age / kHitHalfLifeSeconds);
  if (effective_hits < kNegligibleHits) effective_hits = 0.0;
  const double bytes = c.file_bytes > 0 ? static_cast<double>(c.file_bytes) : 1.0;
  return (effective_hits + 1.0) * static_cast<double>(c.n_tokens) / bytes;
}

std::optional<size_t> kv_eviction_victim(std::span<const KvEvictionCandidate> files, int64_t now,
                                         std::optional<size_t> protected_index) {
  std::optional<size_t> victim;
  double victim_score = 0.0;
  for (size_t i = 0; i < files.size(); ++i) {
    if (protected_index && *protected_index == i) continue;
    const double score = kv_eviction_score(files[i], now);
    if (!victim || score < victim_score ||
        (score == victim_score && files[i].last_used < files[*victim].last_used)) {
      victim = i;
      victim_score = score;
    }
  }
  return victim;
}

}  // namespace dsv4::server
