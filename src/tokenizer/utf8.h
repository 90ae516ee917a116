// UTF-8 decoding, validation and the stream-safe split used by the detokenizer (PROTOCOL.md §1.7).
// Validity follows the Unicode standard (Table 3-7): no overlong forms, no surrogates, nothing
// past U+10FFFF.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace dsv4::tokenizer::utf8 {

// One step of decoding. `length` is 1..4 bytes consumed; `valid` is false for a byte that does
// not start a well-formed sequence (then `length` is the maximal subpart of an ill-formed
// sequence, >= 1, and `cp` is meaningless). `truncated` marks an ill-formed subpart that is a
// valid prefix cut short by the end of the input (more bytes might complete it).
struct Decoded {
  char32_t cp = 0;
  uint8_t length = 1;
  bool valid = false;
  bool truncated = false;
};

Decoded decode(const uint8_t* p, const uint8_t* end);

inline Decoded decode(std::string_view s, size_t pos) {
  const auto* b = reinterpret_cast<const uint8_t*>(s.data());
  return decode(b + pos, b + s.size());
}

bool is_valid(std::string_view s);

// Appends the UTF-8 encoding of a scalar value (callers pass valid code points).
void append(std::string& out, char32_t cp);

inline constexpr char32_t kReplacement = 0xFFFD;

// Copies `s` with every maximal ill-formed subpart replaced by U+FFFD (the W3C/Unicode
// "substitution of maximal subparts" practice).
std::string replace_invalid(std::string_view s);

// Length of the longest prefix of `s` that does not end inside a sequence that later bytes
// could still complete; what follows it (at most 3 bytes) must be held back by a streaming
// decoder.
size_t stream_safe_length(std::string_view s);

}  // namespace dsv4::tokenizer::utf8
