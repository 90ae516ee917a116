// Server counters for GET /metrics in the Prometheus text format (version 0.0.4): requests by
// API and status, prompt/cached/evaluated/generated tokens, prefill and decode speeds, cache
// hits by rung of the reuse ladder, disk stores, cancellations and the queue. Thread-safe.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <utility>

#include "server/api_errors.h"
#include "server/prefix_cache.h"

namespace dsv4::server {

const char* api_name(Api api);  // "chat", "completions", "responses", "messages"

class Metrics {
 public:
  // One answered HTTP request (any endpoint), by the label of its route ("chat", "models", …).
  void count_request(const std::string& route, int status);

  struct Generation {
    Api api = Api::kChat;
    Rung rung = Rung::kCold;
    int64_t prompt_tokens = 0;
    int64_t cached_tokens = 0;
    int64_t evaluated_tokens = 0;
    double prefill_seconds = 0;
    int64_t generated_tokens = 0;
    double decode_seconds = 0;
    int64_t disk_stores = 0;
    int64_t drafted_tokens = 0;   // speculative draft tokens evaluated (--draft, --mtp)
    int64_t draft_accepted = 0;   // of them, drawn by the sampler as drafted
  };
  void count_generation(const Generation& g);
  void count_cancelled();

  // The exposition text; queue figures come from the scheduler at the time of the scrape.
  std::string render(size_t queue_depth, bool busy) const;

 private:
  mutable std::mutex mu_;
  std::map<std::pair<std::string, int>, uint64_t> requests_;
  std::array<uint64_t, 4> generations_{};  // by Api
  std::array<uint64_t, 5> rungs_{};        // by Rung
  uint64_t prompt_tokens_ = 0, cached_tokens_ = 0, evaluated_tokens_ = 0, generated_tokens_ = 0;
  double prefill_seconds_ = 0, decode_seconds_ = 0;
  double last_prefill_tps_ = 0, last_decode_tps_ = 0;
  uint64_t disk_stores_ = 0;
  uint64_t drafted_ = 0, draft_accepted_ = 0;
  uint64_t cancelled_ = 0;
};

}  // namespace dsv4::server
