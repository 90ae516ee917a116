#include "tokenizer/utf8.h"

namespace dsv4::tokenizer::utf8 {

Decoded decode(const uint8_t* p, const uint8_t* end) {
  Decoded d;
  const uint8_t b0 = p[0];
  if (b0 < 0x80) {
    d.cp = b0;
    d.valid = true;
    return d;
  }
  // Sequence length and the allowed range of the second byte (Unicode Table 3-7); the
  // narrowed ranges exclude overlongs (E0, F0), surrogates (ED) and values past U+10FFFF (F4).
  int need;
  uint8_t lo = 0x80, hi = 0xBF;
  char32_t cp;
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    need = 1;
    cp = b0 & 0x1F;
  } else if (b0 >= 0xE0 && b0 <= 0xEF) {
    need = 2;
    cp = b0 & 0x0F;
    if (b0 == 0xE0) lo = 0xA0;
    if (b0 == 0xED) hi = 0x9F;
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    need = 3;
    cp = b0 & 0x07;
    if (b0 == 0xF0) lo = 0x90;
    if (b0 == 0xF4) hi = 0x8F;
  } else {
    return d;  // continuation byte, C0/C1 or F5..FF: never valid as a lead
  }
  const uint8_t* q = p + 1;
  for (int i = 0; i < need; ++i, ++q) {
    if (q >= end) {
      d.length = static_cast<uint8_t>(q - p);
      d.truncated = true;
      return d;
    }
    const uint8_t b = *q;
    const uint8_t min = i == 0 ? lo : 0x80;
    const uint8_t max = i == 0 ? hi : 0xBF;
    if (b < min || b > max) {
      d.length = static_cast<uint8_t>(q - p);
      return d;
    }
    cp = (cp << 6) | (b & 0x3F);
  }
  d.cp = cp;
  d.length = static_cast<uint8_t>(need + 1);
  d.valid = true;
  return d;
}

bool is_valid(std::string_view s) {
  const auto* p = reinterpret_cast<const uint8_t*>(s.data());
  const auto* end = p + s.size();
  while (p < end) {
    if (*p < 0x80) {
      ++p;
      continue;
    }
    const Decoded d = decode(p, end);
    if (!d.valid) return false;
    p += d.length;
  }
  return true;
}

void append(std::string& out, char32_t cp) {
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

std::string replace_invalid(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  const auto* begin = reinterpret_cast<const uint8_t*>(s.data());
  const auto* p = begin;
  const auto* end = p + s.size();
  while (p < end) {
    const Decoded d = decode(p, end);
    if (d.valid) {
      out.append(reinterpret_cast<const char*>(p), d.length);
    } else {
      append(out, kReplacement);
    }
    p += d.length;
  }
  return out;
}

size_t stream_safe_length(std::string_view s) {
  // Only the last 3 bytes can belong to an unfinished sequence (sequences are at most 4 bytes).
  const size_t n = s.size();
  const size_t from = n > 3 ? n - 3 : 0;
  const auto* b = reinterpret_cast<const uint8_t*>(s.data());
  for (size_t i = from; i < n; ++i) {
    if (b[i] < 0xC0) continue;  // ASCII or continuation: not a lead byte
    const Decoded d = decode(b + i, b + n);
    if (!d.valid && d.truncated) return i;
  }
  return n;
}

}  // namespace dsv4::tokenizer::utf8
