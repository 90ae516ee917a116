#include "generation/draft.h"

#include <algorithm>

namespace dsv4::generation {

namespace {
constexpr uint64_t kIdMask = (uint64_t{1} << 21) - 1;
}  // namespace

NgramDrafter::NgramDrafter(std::span<const int32_t> context) {
  tokens_.reserve(context.size() + 1024);
  next_.reserve(context.size());
  for (int32_t t : context) push(t);
}

uint64_t NgramDrafter::key(size_t end) const {
  uint64_t k = 0;
  for (size_t i = end - kDraftNgram; i < end; ++i) k = (k << 21) | (static_cast<uint64_t>(tokens_[i]) & kIdMask);
  return k;
}

void NgramDrafter::push(int32_t token) {
  // The n-gram before `token` now has a continuation.
  if (tokens_.size() >= kDraftNgram) next_[key(tokens_.size())] = static_cast<uint32_t>(tokens_.size());
  tokens_.push_back(token);
}

std::vector<int32_t> NgramDrafter::propose(int max_tokens) const {
  if (max_tokens <= 0 || tokens_.size() < kDraftNgram) return {};
  const auto found = next_.find(key(tokens_.size()));
  if (found == next_.end()) return {};
  const size_t from = found->second;
  const size_t to = std::min(tokens_.size(), from + static_cast<size_t>(max_tokens));
  return std::vector<int32_t>(tokens_.begin() + static_cast<std::ptrdiff_t>(from),
                              tokens_.begin() + static_cast<std::ptrdiff_t>(to));
}

int DraftLength::next(int most) {
  if (pause_ > 0) {
    --pause_;
    return 0;
  }
  return grown_ ? most : std::min(most, 1);
}

void DraftLength::record(int drafted, int accepted) {
  grown_ = drafted > 0 && accepted == drafted;
  if (accepted > 0) {
    misses_ = 0;
    return;
  }
  ++misses_;
  pause_ = std::min(kMaxPause, 1 << std::min(misses_, 6));
}

}  // namespace dsv4::generation
