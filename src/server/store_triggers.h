// When the live session is written to the disk KV cache (PROTOCOL.md §5.4, ds4's defaults):
// where a cold prompt is cut, and which positions are continued-store frontiers. Pure arithmetic
// on token positions.
#pragma once

#include <cstdint>
#include <span>

namespace dsv4::server {

struct StoreTriggerOptions {
  int64_t min_tokens = 512;                   // never store (or load) shorter prefixes
  int64_t cold_max_tokens = 30000;            // cold stores for prompts up to this size (0: none)
  int64_t continued_interval_tokens = 10000;  // rounded up to the alignment
  int64_t boundary_trim_tokens = 32;
  int64_t boundary_align_tokens = 2048;
};

// The length at which a prompt missed by every cache is stored (0: not stored, the prompt is
// outside [min_tokens, cold_max_tokens]): the "chat anchor" – the position of the last `user`
// token before the first `assistant` token – when that is >= min_tokens; else the length minus
// the trim, aligned down, when that is >= min_tokens; else the whole prompt.
// E.g. store_len(11011) = 10240, store_len(1695) = 1695 with the defaults and no anchor.
int64_t cold_store_length(std::span<const int32_t> prompt, int32_t user_token, int32_t assistant_token,
                          const StoreTriggerOptions& options);

// The chat anchor alone (0 when there is none): the stable prefix before the task-specific user
// message, worth a rollback checkpoint even without a disk cache.
int64_t chat_anchor(std::span<const int32_t> prompt, int32_t user_token, int32_t assistant_token);

// continued_interval_tokens rounded up to a multiple of boundary_align_tokens (10 000 -> 10 240).
int64_t continued_interval(const StoreTriggerOptions& options);

// Whether a live session of n tokens, last stored at last_stored tokens, is at a continued-store
// frontier: n a positive multiple of the interval, >= min_tokens and > last_stored.
bool is_continued_frontier(int64_t n, int64_t last_stored, const StoreTriggerOptions& options);

}  // namespace dsv4::server
