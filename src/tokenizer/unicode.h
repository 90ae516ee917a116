// Unicode character properties needed by the pre-tokenizer (PROTOCOL.md §1.4): General_Category
// and White_Space, looked up in a two-stage table generated from the Unicode Character Database
// by tools/unicode/gen_unicode_tables.py (unicode_tables.cc; the version is kUnicodeVersion).
#pragma once

#include <cstdint>

namespace dsv4::tokenizer::unicode {

// Order fixed by the generator (CATEGORIES in gen_unicode_tables.py). Cn = unassigned.
enum class GeneralCategory : uint8_t {
  Cn, Lu, Ll, Lt, Lm, Lo, Mn, Mc, Me, Nd, Nl, No,
  Pc, Pd, Ps, Pe, Pi, Pf, Po, Sm, Sc, Sk, So,
  Zs, Zl, Zp, Cc, Cf, Cs, Co,
};

inline constexpr int kBlockShift = 7;
inline constexpr uint8_t kCategoryMask = 0x1f;
inline constexpr uint8_t kWhiteSpaceBit = 0x20;

extern const char kUnicodeVersion[];  // e.g. "15.0.0"
extern const uint16_t kBlockIndex[];  // 0x110000 >> kBlockShift entries
extern const uint8_t kBlockData[];

// The table byte of a code point (category | White_Space bit); code points past U+10FFFF are Cn.
inline uint8_t properties(char32_t cp) {
  if (cp > 0x10FFFF) return 0;
  const uint32_t block = kBlockIndex[cp >> kBlockShift];
  return kBlockData[(block << kBlockShift) | (cp & ((1u << kBlockShift) - 1))];
}

inline GeneralCategory category(char32_t cp) {
  return static_cast<GeneralCategory>(properties(cp) & kCategoryMask);
}
inline bool is_white_space(char32_t cp) { return (properties(cp) & kWhiteSpaceBit) != 0; }

}  // namespace dsv4::tokenizer::unicode
