#include "server/store_triggers.h"

#include <algorithm>

namespace dsv4::server {

int64_t chat_anchor(std::span<const int32_t> prompt, int32_t user_token, int32_t assistant_token) {
  auto first_assistant = std::find(prompt.begin(), prompt.end(), assistant_token);
  auto last_user = std::find(std::make_reverse_iterator(first_assistant), prompt.rend(), user_token);
  if (last_user == prompt.rend()) return 0;
  return static_cast<int64_t>(std::distance(prompt.begin(), last_user.base()) - 1);
}

int64_t cold_store_length(std::span<const int32_t> prompt, int32_t user_token, int32_t assistant_token,
                          const StoreTriggerOptions& o) {
  const int64_t n = static_cast<int64_t>(prompt.size());
  if (n < o.min_tokens || n > o.cold_max_tokens) return 0;
  const int64_t anchor = chat_anchor(prompt, user_token, assistant_token);
  if (anchor >= o.min_tokens) return anchor;
  if (o.boundary_align_tokens > 0) {
    const int64_t trimmed = n - o.boundary_trim_tokens;
    const int64_t aligned = trimmed > 0 ? trimmed / o.boundary_align_tokens * o.boundary_align_tokens : 0;
    if (aligned >= o.min_tokens) return aligned;
  }
  return n;
}

int64_t continued_interval(const StoreTriggerOptions& o) {
  const int64_t align = std::max<int64_t>(o.boundary_align_tokens, 1);
  return (std::max<int64_t>(o.continued_interval_tokens, 1) + align - 1) / align * align;
}

bool is_continued_frontier(int64_t n, int64_t last_stored, const StoreTriggerOptions& o) {
  if (o.continued_interval_tokens <= 0) return false;
  const int64_t interval = continued_interval(o);
  return n > 0 && n % interval == 0 && n >= o.min_tokens && n > last_stored;
}

}  // namespace dsv4::server
