// Response and tool-call ids (PROTOCOL.md §3.6, §4.5): chatcmpl-<n> and cmpl-<n> from a
// per-process counter, resp_<24 hex>, msg_<24 hex>, call_<32 hex> and toolu_<32 hex> from random
// bytes. Thread-safe.
#pragma once

#include <cstdint>
#include <string>

#include "server/api_errors.h"

namespace dsv4::server {

// The id of one response of `api`; `counter` numbers the server's responses.
std::string response_id(Api api, uint64_t counter);

// A fresh tool-call id: toolu_… for Anthropic messages, call_… otherwise.
std::string tool_call_id(Api api);

// 2 × bytes lowercase hex digits from a random source seeded once per process.
std::string random_hex(size_t bytes);

}  // namespace dsv4::server
