// Built on the tokenizer's UTF-8 primitives, so the chat layer and the detokenizer agree on
// what is valid and on where a stream may be cut.
#include "chat/utf8.h"

#include "tokenizer/utf8.h"

namespace dsv4::chat {

size_t find_invalid_utf8(std::string_view s) {
  for (size_t i = 0; i < s.size();) {
    const tokenizer::utf8::Decoded d = tokenizer::utf8::decode(s, i);
    if (!d.valid) return i;
    i += d.length;
  }
  return std::string_view::npos;
}

size_t take_utf8(std::string_view s, bool final, std::string& out) {
  const size_t n = final ? s.size() : tokenizer::utf8::stream_safe_length(s);
  out += tokenizer::utf8::replace_invalid(s.substr(0, n));
  return n;
}

}  // namespace dsv4::chat
