// Unicode property tables and UTF-8 handling.
#include <gtest/gtest.h>

#include <string>

#include "tokenizer/byte_level.h"
#include "tokenizer/unicode.h"
#include "tokenizer/utf8.h"

namespace dsv4::tokenizer {
namespace {

using unicode::GeneralCategory;

TEST(Unicode, Version) { EXPECT_STREQ(unicode::kUnicodeVersion, "15.0.0"); }

TEST(Unicode, Categories) {
  EXPECT_EQ(unicode::category('A'), GeneralCategory::Lu);
  EXPECT_EQ(unicode::category('a'), GeneralCategory::Ll);
  EXPECT_EQ(unicode::category('5'), GeneralCategory::Nd);
  EXPECT_EQ(unicode::category('~'), GeneralCategory::Sm);  // a symbol (§1.4)
  EXPECT_EQ(unicode::category('_'), GeneralCategory::Pc);
  EXPECT_EQ(unicode::category(0x0661), GeneralCategory::Nd);  // Arabic-Indic one
  EXPECT_EQ(unicode::category(0xFF10), GeneralCategory::Nd);  // fullwidth zero
  EXPECT_EQ(unicode::category(0x00B2), GeneralCategory::No);  // superscript two
  EXPECT_EQ(unicode::category(0x2160), GeneralCategory::Nl);  // Roman numeral one
  EXPECT_EQ(unicode::category(0x0301), GeneralCategory::Mn);
  EXPECT_EQ(unicode::category(0x4E00), GeneralCategory::Lo);
  EXPECT_EQ(unicode::category(0xAC00), GeneralCategory::Lo);  // Hangul syllable (a range)
  EXPECT_EQ(unicode::category(0xD7A3), GeneralCategory::Lo);
  EXPECT_EQ(unicode::category(0xD7A4), GeneralCategory::Cn);
  EXPECT_EQ(unicode::category(0x20000), GeneralCategory::Lo);  // CJK extension B
  EXPECT_EQ(unicode::category(0x1F980), GeneralCategory::So);  // crab
  EXPECT_EQ(unicode::category(0x30FB), GeneralCategory::Po);   // katakana middle dot
  EXPECT_EQ(unicode::category(0x30FC), GeneralCategory::Lm);
  EXPECT_EQ(unicode::category(0xFF5C), GeneralCategory::Sm);  // ｜
  EXPECT_EQ(unicode::category(0xFEFF), GeneralCategory::Cf);
  EXPECT_EQ(unicode::category(0xE000), GeneralCategory::Co);
  EXPECT_EQ(unicode::category(0xD800), GeneralCategory::Cs);
  EXPECT_EQ(unicode::category(0x10FFFF), GeneralCategory::Cn);
  EXPECT_EQ(unicode::category(0x110000), GeneralCategory::Cn);
  EXPECT_EQ(unicode::category(0x0378), GeneralCategory::Cn);
}

TEST(Unicode, WhiteSpace) {
  for (char32_t c : {0x09, 0x0A, 0x0B, 0x0C, 0x0D, 0x20, 0x85, 0xA0, 0x1680, 0x2000, 0x200A, 0x2028,
                     0x2029, 0x202F, 0x205F, 0x3000}) {
    EXPECT_TRUE(unicode::is_white_space(c)) << std::hex << static_cast<uint32_t>(c);
  }
  for (char32_t c : {0x00, 0x1C, 0x1F, 0x180E, 0x200B, 0xFEFF, 0x41}) {
    EXPECT_FALSE(unicode::is_white_space(c)) << std::hex << static_cast<uint32_t>(c);
  }
}

TEST(Utf8, DecodeValidity) {
  auto valid = [](std::string s) { return utf8::is_valid(s); };
  EXPECT_TRUE(valid("plain ascii"));
  EXPECT_TRUE(valid("\xC3\xA9\xE4\xBD\xA0\xF0\x9F\xA6\x80"));  // é 你 🦀
  EXPECT_TRUE(valid("\xF4\x8F\xBF\xBF"));                      // U+10FFFF
  EXPECT_FALSE(valid("\xC0\x80"));                             // overlong
  EXPECT_FALSE(valid("\xE0\x80\x80"));                         // overlong
  EXPECT_FALSE(valid("\xED\xA0\x80"));                         // surrogate
  EXPECT_FALSE(valid("\xF4\x90\x80\x80"));                     // past U+10FFFF
  EXPECT_FALSE(valid("\xF0\x9F\xA6"));                         // truncated
  EXPECT_FALSE(valid("\x80"));
  EXPECT_FALSE(valid("\xFF"));
  const auto d = utf8::decode(std::string_view("\xF0\x9F\xA6\x80"), 0);
  EXPECT_TRUE(d.valid);
  EXPECT_EQ(d.cp, 0x1F980u);
  EXPECT_EQ(d.length, 4);
}

TEST(Utf8, ReplaceInvalidUsesMaximalSubparts) {
  EXPECT_EQ(utf8::replace_invalid("ok"), "ok");
  EXPECT_EQ(utf8::replace_invalid("a\xF0\x9F\xA6"
                                  "b"),
            "a\xEF\xBF\xBD"
            "b");                                                            // one U+FFFD
  EXPECT_EQ(utf8::replace_invalid("\xE0\x80"), "\xEF\xBF\xBD\xEF\xBF\xBD");  // two
  EXPECT_EQ(utf8::replace_invalid("\xFF\xC3\xA9"), "\xEF\xBF\xBD\xC3\xA9");
}

TEST(Utf8, StreamSafeLength) {
  EXPECT_EQ(utf8::stream_safe_length(""), 0u);
  EXPECT_EQ(utf8::stream_safe_length("abc"), 3u);
  EXPECT_EQ(utf8::stream_safe_length("a\xF0"), 1u);
  EXPECT_EQ(utf8::stream_safe_length("a\xF0\x9F"), 1u);
  EXPECT_EQ(utf8::stream_safe_length("a\xF0\x9F\xA6"), 1u);
  EXPECT_EQ(utf8::stream_safe_length("a\xF0\x9F\xA6\x80"), 5u);
  EXPECT_EQ(utf8::stream_safe_length("\xC3\xA9\xE4\xBD"), 2u);
  // Bytes that can never complete are not held back (they become U+FFFD at once).
  EXPECT_EQ(utf8::stream_safe_length("a\xFF"), 2u);
  EXPECT_EQ(utf8::stream_safe_length("a\xE0\x80"), 3u);
  EXPECT_EQ(utf8::stream_safe_length("a\x80"), 2u);
}

TEST(ByteLevel, Alphabet) {
  EXPECT_EQ(byte_level::byte_to_char(' '), 0x120u);   // Ġ
  EXPECT_EQ(byte_level::byte_to_char('\n'), 0x10Au);  // Ċ
  EXPECT_EQ(byte_level::byte_to_char('A'), static_cast<char32_t>('A'));
  EXPECT_EQ(byte_level::byte_to_char(0xAD), 0x143u);  // the last remapped byte
  EXPECT_EQ(byte_level::byte_to_char(0xFF), 0xFFu);
  for (int b = 0; b < 256; ++b) {
    EXPECT_EQ(byte_level::char_to_byte(byte_level::byte_to_char(static_cast<uint8_t>(b))), b);
  }
  EXPECT_EQ(byte_level::encode(" world"), "Ġworld");
  EXPECT_EQ(byte_level::decode("Ġworld"), " world");
  EXPECT_EQ(byte_level::decode("<｜User｜>"), std::nullopt);  // not in the alphabet
  EXPECT_EQ(byte_level::char_to_byte(' '), std::nullopt);
}

}  // namespace
}  // namespace dsv4::tokenizer
