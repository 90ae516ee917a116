#include "engine/host_memory.h"

#include <algorithm>
#include <charconv>
#include <cstdio>
#include <fstream>
#include <sstream>

namespace dsv4::engine {
namespace {

std::optional<uint64_t> parse_u64(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  uint64_t v = 0;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || end == s.data()) return std::nullopt;
  return v;
}

std::optional<std::string> read_small_file(const char* path) {
  std::ifstream in(path);
  if (!in) return std::nullopt;
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Headroom under a cgroup v2 memory limit ("max" means none).
std::optional<uint64_t> cgroup_headroom() {
  std::optional<std::string> max = read_small_file("/sys/fs/cgroup/memory.max");
  std::optional<std::string> current = read_small_file("/sys/fs/cgroup/memory.current");
  if (!max || !current) return std::nullopt;
  std::optional<uint64_t> limit = parse_u64(*max), used = parse_u64(*current);
  if (!limit || !used) return std::nullopt;
  return *limit > *used ? *limit - *used : 0;
}

}  // namespace

std::optional<uint64_t> parse_mem_available(std::string_view meminfo) {
  constexpr std::string_view kKey = "MemAvailable:";
  size_t at = 0;
  while (at < meminfo.size()) {
    size_t eol = meminfo.find('\n', at);
    if (eol == std::string_view::npos) eol = meminfo.size();
    std::string_view line = meminfo.substr(at, eol - at);
    at = eol + 1;
    if (line.substr(0, kKey.size()) != kKey) continue;
    line.remove_prefix(kKey.size());
    std::optional<uint64_t> kib = parse_u64(line);
    if (!kib || line.find("kB") == std::string_view::npos) return std::nullopt;
    if (*kib > UINT64_MAX / 1024) return std::nullopt;
    return *kib * 1024;
  }
  return std::nullopt;
}

std::optional<uint64_t> host_memory_available() {
  std::optional<std::string> meminfo = read_small_file("/proc/meminfo");
  std::optional<uint64_t> available = meminfo ? parse_mem_available(*meminfo) : std::nullopt;
  if (std::optional<uint64_t> headroom = cgroup_headroom()) {
    available = available ? std::min(*available, *headroom) : *headroom;
  }
  return available;
}

std::string format_bytes(uint64_t bytes) {
  char buf[32];
  const double b = static_cast<double>(bytes);
  if (b >= 1024.0 * 1024 * 1024) {
    std::snprintf(buf, sizeof buf, "%.1f GiB", b / (1024.0 * 1024 * 1024));
  } else {
    std::snprintf(buf, sizeof buf, "%.1f MiB", b / (1024.0 * 1024));
  }
  return buf;
}

Status check_host_memory(uint64_t needed, std::optional<uint64_t> available, std::string_view what) {
  if (!available || needed <= *available) return Status();
  return make_error(std::string(what) + " needs " + format_bytes(needed) + " of memory but only " +
                    format_bytes(*available) + " is available");
}

}  // namespace dsv4::engine
