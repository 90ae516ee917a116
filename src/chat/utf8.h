// UTF-8 checks for client text and for streamed model output. Model output arrives as bytes from
// the detokenizer and may end in the middle of a character (or contain invalid bytes); what the
// chat layer hands to JSON writers must be whole, valid characters (PROTOCOL.md §1.7).
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace dsv4::chat {

// Byte offset of the first invalid sequence, or npos when `s` is valid UTF-8 (overlong forms,
// surrogates and code points above U+10FFFF are invalid).
size_t find_invalid_utf8(std::string_view s);
inline bool is_valid_utf8(std::string_view s) {
  return find_invalid_utf8(s) == std::string_view::npos;
}

// Converts the longest prefix of `s` that can be decided now into valid UTF-8 appended to `out`,
// replacing each invalid byte sequence by U+FFFD, and returns how many bytes were consumed.
// Unless `final`, a trailing sequence that is incomplete but could still become valid is left
// unconsumed. The result depends only on the bytes, not on how they were chunked.
size_t take_utf8(std::string_view s, bool final, std::string& out);

}  // namespace dsv4::chat
