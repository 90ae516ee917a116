#include "generation/stop_filter.h"

#include <algorithm>
#include <utility>

namespace dsv4::generation {

StopFilter::StopFilter(std::vector<std::string> stops) {
  for (std::string& s : stops) {
    if (!s.empty()) stops_.push_back(std::move(s));
  }
}

StopFilter::Output StopFilter::push(std::string_view text) {
  Output out;
  if (matched_) return out;
  if (stops_.empty()) {
    out.released.assign(text);
    return out;
  }
  held_.append(text);

  // Earliest match; at equal starts the shorter stop string (it completes first).
  size_t best = std::string::npos;
  const std::string* which = nullptr;
  for (const std::string& stop : stops_) {
    size_t at = held_.find(stop);
    if (at == std::string::npos) continue;
    if (at < best || (at == best && stop.size() < which->size())) {
      best = at;
      which = &stop;
    }
  }
  if (which != nullptr) {
    out.released = held_.substr(0, best);
    out.matched = *which;
    held_.clear();
    matched_ = true;
    return out;
  }

  // Hold the longest suffix that is a proper prefix of some stop sequence. It starts where a
  // stop string starts, i.e. on a character boundary, so the released part is whole UTF-8.
  size_t keep = 0;
  for (const std::string& stop : stops_) {
    size_t max_len = std::min(stop.size() - 1, held_.size());
    for (size_t len = max_len; len > keep; --len) {
      if (std::string_view(held_).substr(held_.size() - len) == std::string_view(stop).substr(0, len)) {
        keep = len;
        break;
      }
    }
  }
  out.released = held_.substr(0, held_.size() - keep);
  held_.erase(0, held_.size() - keep);
  return out;
}

std::string StopFilter::flush() {
  std::string rest = std::move(held_);
  held_.clear();
  return matched_ ? std::string() : rest;
}

}  // namespace dsv4::generation
