// How much host memory a new session may still take: MemAvailable from /proc/meminfo, lowered
// to the cgroup (v2) limit's headroom when the process runs under a tighter one. Used to refuse
// a context that cannot fit before anything is allocated, rather than being killed mid-prefill.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "util/status.h"

namespace dsv4::engine {

// Bytes of "MemAvailable:" in /proc/meminfo text; nullopt when absent or malformed.
std::optional<uint64_t> parse_mem_available(std::string_view meminfo);

// The available bytes on this machine; nullopt where they cannot be read (then no check).
std::optional<uint64_t> host_memory_available();

// "12.3 GiB" / "456.0 MiB": sizes in messages.
std::string format_bytes(uint64_t bytes);

// An error naming both figures when `needed` exceeds `available`; `what` says what needs it.
Status check_host_memory(uint64_t needed, std::optional<uint64_t> available, std::string_view what);

}  // namespace dsv4::engine
