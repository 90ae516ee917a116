// Wire encoding of metadata values (FORMATS.md §1.2), both directions. Internal to gguf/.
// Errors are relative ("array count 9 exceeds ..."); the caller prefixes the file and key.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "gguf/gguf.h"
#include "gguf/wire.h"
#include "util/status.h"

namespace dsv4::gguf::detail {

// "<what> at offset N runs past the end of the file (R bytes remain)".
Error truncated(const Cursor& c, const std::string& what);

template <class T>
Result<T> read_field(Cursor& c, const std::string& what) {
  T v{};
  if (!c.read(&v)) return truncated(c, what);
  return v;
}

// A GGUF string: u64 length then bytes, bounded by the limits and by the bytes that remain.
Result<std::string> read_string(Cursor& c, const ReadLimits& limits);
// The value of declared type `type_id` (already read from the file).
Result<Value> read_value(Cursor& c, uint32_t type_id, const ReadLimits& limits);

// Appends the value (without its type id); fails when a field does not fit its declared type.
Status append_value(std::vector<uint8_t>& out, const Value& v);

}  // namespace dsv4::gguf::detail
