#include "tokenizer/pretokenizer.h"

#include <array>
#include <cstdint>

#include "tokenizer/unicode.h"
#include "tokenizer/utf8.h"

namespace dsv4::tokenizer {
namespace {

using unicode::GeneralCategory;

// Character classes the three regexes test, one bit each.
enum : uint16_t {
  kL = 1 << 0,            // \p{L}
  kM = 1 << 1,            // \p{M}
  kP = 1 << 2,            // \p{P}
  kS = 1 << 3,            // \p{S}
  kN = 1 << 4,            // \p{N}
  kWS = 1 << 5,           // \s (White_Space)
  kCRLF = 1 << 6,         // [\r\n]
  kAsciiPunct = 1 << 7,   // [!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~]
  kAsciiLetter = 1 << 8,  // [A-Za-z]
  kCJK = 1 << 9,          // [一-龥぀-ゟ゠-ヿ]
  kSpace = 1 << 10,       // the literal ' ' of " ?"
};

constexpr uint16_t category_class(GeneralCategory gc) {
  switch (gc) {
    case GeneralCategory::Lu: case GeneralCategory::Ll: case GeneralCategory::Lt:
    case GeneralCategory::Lm: case GeneralCategory::Lo:
      return kL;
    case GeneralCategory::Mn: case GeneralCategory::Mc: case GeneralCategory::Me:
      return kM;
    case GeneralCategory::Nd: case GeneralCategory::Nl: case GeneralCategory::No:
      return kN;
    case GeneralCategory::Pc: case GeneralCategory::Pd: case GeneralCategory::Ps:
    case GeneralCategory::Pe: case GeneralCategory::Pi: case GeneralCategory::Pf:
    case GeneralCategory::Po:
      return kP;
    case GeneralCategory::Sm: case GeneralCategory::Sc: case GeneralCategory::Sk:
    case GeneralCategory::So:
      return kS;
    default:
      return 0;
  }
}

uint16_t classify(char32_t cp) {
  const uint8_t props = unicode::properties(cp);
  uint16_t f = category_class(static_cast<GeneralCategory>(props & unicode::kCategoryMask));
  if (props & unicode::kWhiteSpaceBit) f |= kWS;
  if (cp < 0x80) {
    if (cp == '\r' || cp == '\n') f |= kCRLF;
    if (cp == ' ') f |= kSpace;
    if ((cp >= 'A' && cp <= 'Z') || (cp >= 'a' && cp <= 'z')) f |= kAsciiLetter;
    if ((cp >= 0x21 && cp <= 0x2F) || (cp >= 0x3A && cp <= 0x40) || (cp >= 0x5B && cp <= 0x60) ||
        (cp >= 0x7B && cp <= 0x7E)) {
      f |= kAsciiPunct;
    }
  } else if ((cp >= 0x4E00 && cp <= 0x9FA5) || (cp >= 0x3040 && cp <= 0x30FF)) {
    f |= kCJK;
  }
  return f;
}

const std::array<uint16_t, 128>& ascii_classes() {
  static const std::array<uint16_t, 128> table = [] {
    std::array<uint16_t, 128> t{};
    for (char32_t c = 0; c < 128; ++c) t[c] = classify(c);
    return t;
  }();
  return table;
}

// Each character of the text as one 16-bit word: its class bits and its length in bytes
// (1..4), so the scanners can look ahead and back by characters while the byte offsets of the
// pieces are recovered by summing lengths.
constexpr int kLengthShift = 12;
constexpr uint16_t kClassMask = (1u << kLengthShift) - 1;
static_assert(kSpace <= kClassMask);

void decode_chars(std::string_view text, std::vector<uint16_t>& chars) {
  const auto& ascii = ascii_classes();
  // Sized for the worst case (one character per byte) and trimmed at the end, so the loop
  // writes through a plain pointer.
  chars.resize(text.size());
  uint16_t* out = chars.data();
  const auto* p = reinterpret_cast<const uint8_t*>(text.data());
  const auto* end = p + text.size();
  while (p < end) {
    if (*p < 0x80) {
      *out++ = static_cast<uint16_t>(ascii[*p++] | (1u << kLengthShift));
      continue;
    }
    const utf8::Decoded d = utf8::decode(p, end);
    if (d.valid) {
      *out++ = static_cast<uint16_t>(classify(d.cp) | (d.length << kLengthShift));
      p += d.length;
    } else {
      *out++ = static_cast<uint16_t>(1u << kLengthShift);  // an ill-formed byte: one Cn char
      ++p;
    }
  }
  chars.resize(static_cast<size_t>(out - chars.data()));
}

class Splitter {
 public:
  Splitter(std::string_view text, const std::vector<uint16_t>& chars,
           std::vector<std::string_view>& out)
      : text_(text), chars_(chars.data()), out_(out) {}

  // Regexes 1 and 2 in one scan. Regex 1 (\p{N}{1,3}) cuts digit groups out; regex 2 cuts
  // the remaining text into CJK/kana runs and other runs (no CJK character is a digit). A
  // digit group is a final piece: no CJK in it, and no alternative of regex 3 matches inside
  // a run of \p{N}. Every other run goes on to regex 3 (a kana run may hold punctuation such as
  // U+30FB that regex 3 splits off).
  void split(size_t n) {
    size_t region = 0;
    size_t p = 0;
    while (p < n) {
      const uint16_t c = chars_[p];
      if (!(c & (kN | kCJK))) {
        ++p;
        continue;
      }
      if (region < p) stage3(region, p);
      size_t q = p + 1;
      if (c & kN) {
        while (q < n && q - p < 3 && (chars_[q] & kN)) ++q;
        emit(p, q);
      } else {
        while (q < n && (chars_[q] & kCJK)) ++q;
        stage3(p, q);
      }
      p = region = q;
    }
    if (region < n) stage3(region, n);
  }

 private:
  // Regex 3, searched repeatedly over [a, b): matches and the unmatched gaps between them are
  // pieces.
  void stage3(size_t a, size_t b) {
    size_t gap = a;
    size_t p = a;
    while (p < b) {
      const size_t end = match3(p, b);
      if (end == p) {
        ++p;
        continue;
      }
      if (gap < p) emit(gap, p);
      emit(p, end);
      p = gap = end;
    }
    if (gap < b) emit(gap, b);
  }

  size_t run(size_t q, size_t b, uint16_t mask) const {
    while (q < b && (chars_[q] & mask)) ++q;
    return q;
  }

  // End of the match of regex 3 at p (== p when no alternative matches). Alternatives are
  // tried in order, as a backtracking engine does; `b` is the end of the subject string.
  size_t match3(size_t p, size_t b) const {
    const uint16_t c = chars_[p];
    const uint16_t next = p + 1 < b ? chars_[p + 1] : 0;
    // [punct][A-Za-z]+
    if ((c & kAsciiPunct) && (next & kAsciiLetter)) return run(p + 2, b, kAsciiLetter);
    // [^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+ : the optional character is taken greedily; if no
    // letter/mark follows it, the engine retries without it, which succeeds only when the
    // character is itself a mark.
    if (c & kL) return run(p + 1, b, kL | kM);
    if (!(c & (kCRLF | kL | kP | kS))) {
      if (next & (kL | kM)) return run(p + 2, b, kL | kM);
      if (c & kM) return p + 1;
    }
    // " ?[\p{P}\p{S}]+[\r\n]*"
    if ((c & kSpace) && (next & (kP | kS))) return run(run(p + 2, b, kP | kS), b, kCRLF);
    if (c & (kP | kS)) return run(run(p + 1, b, kP | kS), b, kCRLF);
    if (!(c & kWS)) return p;
    // Whitespace run [p, q).
    size_t q = p;
    size_t last_newline = b;
    for (; q < b && (chars_[q] & kWS); ++q) {
      if (chars_[q] & kCRLF) last_newline = q;
    }
    // \s*[\r\n]+ : \s* backs off to the last CR/LF of the run, [\r\n]+ then takes it.
    if (last_newline != b) return last_newline + 1;
    // \s+(?!\S) : the whole run at the end of the subject, else all but its last character.
    if (q == b) return q;
    if (q - p >= 2) return q - 1;
    // \s+
    return q;
  }

  // Pieces are emitted in order and back to back, so a running byte offset locates them.
  void emit(size_t a, size_t b) {
    size_t bytes = 0;
    for (size_t i = a; i < b; ++i) bytes += chars_[i] >> kLengthShift;
    out_.emplace_back(text_.data() + offset_, bytes);
    offset_ += bytes;
  }

  std::string_view text_;
  const uint16_t* chars_;
  std::vector<std::string_view>& out_;
  size_t offset_ = 0;
};

}  // namespace

void pretokenize(std::string_view text, std::vector<std::string_view>& pieces) {
  if (text.empty()) return;
  std::vector<uint16_t> chars;
  decode_chars(text, chars);
  Splitter(text, chars, pieces).split(chars.size());
}

}  // namespace dsv4::tokenizer
