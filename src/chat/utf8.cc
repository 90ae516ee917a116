#include "chat/utf8.h"

namespace dsv4::chat {
namespace {

constexpr std::string_view kReplacement = "\xEF\xBF\xBD";

// Length of the sequence that lead byte `b` announces, 0 if `b` cannot start one.
int sequence_length(unsigned char b) {
  if (b < 0x80) return 1;
  if (b >= 0xC2 && b <= 0xDF) return 2;
  if (b >= 0xE0 && b <= 0xEF) return 3;
  if (b >= 0xF0 && b <= 0xF4) return 4;
  return 0;
}

// Whether `b` may follow `lead` as the byte at position `pos` (1-based) of its sequence; the
// second byte carries the restrictions that exclude overlongs, surrogates and > U+10FFFF.
bool valid_continuation(unsigned char lead, int pos, unsigned char b) {
  if (pos == 1) {
    switch (lead) {
      case 0xE0:
        return b >= 0xA0 && b <= 0xBF;
      case 0xED:
        return b >= 0x80 && b <= 0x9F;
      case 0xF0:
        return b >= 0x90 && b <= 0xBF;
      case 0xF4:
        return b >= 0x80 && b <= 0x8F;
      default:
        break;
    }
  }
  return b >= 0x80 && b <= 0xBF;
}

enum class Seq { valid, invalid, incomplete };

// Classifies the sequence starting at s[i]; `len` receives the bytes it covers (for invalid: the
// maximal prefix that was still plausible, at least 1, as Unicode's "maximal subpart" rule).
Seq classify(std::string_view s, size_t i, size_t& len) {
  auto lead = static_cast<unsigned char>(s[i]);
  int n = sequence_length(lead);
  if (n == 0) {
    len = 1;
    return Seq::invalid;
  }
  for (int k = 1; k < n; ++k) {
    if (i + k >= s.size()) {
      len = static_cast<size_t>(k);
      return Seq::incomplete;
    }
    if (!valid_continuation(lead, k, static_cast<unsigned char>(s[i + k]))) {
      len = static_cast<size_t>(k);
      return Seq::invalid;
    }
  }
  len = static_cast<size_t>(n);
  return Seq::valid;
}

}  // namespace

size_t find_invalid_utf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    size_t len = 0;
    if (static_cast<unsigned char>(s[i]) < 0x80) {
      ++i;
      continue;
    }
    if (classify(s, i, len) != Seq::valid) return i;
    i += len;
  }
  return std::string_view::npos;
}

size_t take_utf8(std::string_view s, bool final, std::string& out) {
  size_t i = 0;
  while (i < s.size()) {
    size_t len = 0;
    switch (classify(s, i, len)) {
      case Seq::valid:
        out.append(s.substr(i, len));
        i += len;
        break;
      case Seq::invalid:
        out += kReplacement;
        i += len;
        break;
      case Seq::incomplete:
        if (!final) return i;
        out += kReplacement;
        i += len;
        break;
    }
  }
  return i;
}

}  // namespace dsv4::chat
