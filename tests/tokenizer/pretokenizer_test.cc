// The three-regex pre-tokenizer (PROTOCOL.md §1.4), piece by piece.
#include "tokenizer/pretokenizer.h"

#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

namespace dsv4::tokenizer {
namespace {

using Pieces = std::vector<std::string>;

Pieces split(std::string_view text) {
  std::vector<std::string_view> views;
  pretokenize(text, views);
  return Pieces(views.begin(), views.end());
}

TEST(PreTokenizer, DigitsGroupInThrees) {
  EXPECT_EQ(split("12345"), (Pieces{"123", "45"}));
  EXPECT_EQ(split("1234567"), (Pieces{"123", "456", "7"}));
  EXPECT_EQ(split("3.14159"), (Pieces{"3", ".", "141", "59"}));
  EXPECT_EQ(split("١٢٣ ٤٥"), (Pieces{"١٢٣", " ", "٤٥"}));  // Arabic-Indic digits are \p{N}
  EXPECT_EQ(split("０１２３"), (Pieces{"０１２", "３"}));
  EXPECT_EQ(split("x²³½①"), (Pieces{"x", "²³½", "①"}));
  EXPECT_EQ(split("abc123def"), (Pieces{"abc", "123", "def"}));
}

TEST(PreTokenizer, CjkAndKanaRunsAreIsolated) {
  EXPECT_EQ(split("你好，世界。"), (Pieces{"你好", "，", "世界", "。"}));
  EXPECT_EQ(split("カ・カ"), (Pieces{"カ", "・", "カ"}));  // U+30FB is in the kana range but is P
  EXPECT_EQ(split("a你b"), (Pieces{"a", "你", "b"}));
  EXPECT_EQ(split(" 你好"), (Pieces{" ", "你好"}));  // the space does not join the CJK run
  EXPECT_EQ(split("한국어 텍스트"), (Pieces{"한국어", " 텍스트"}));  // Hangul is ordinary \p{L}
  EXPECT_EQ(split("你鿦"), (Pieces{"你", "鿦"}));  // U+9FE6 is past the class's U+9FA5
}

TEST(PreTokenizer, PunctuationAndLetters) {
  EXPECT_EQ(split("Hello, world!"), (Pieces{"Hello", ",", " world", "!"}));
  EXPECT_EQ(split(".get_case #include"), (Pieces{".get", "_case", " #", "include"}));
  EXPECT_EQ(split("#include"), (Pieces{"#include"}));
  EXPECT_EQ(split(">;\n"), (Pieces{">;\n"}));
  EXPECT_EQ(split("x ~~y"), (Pieces{"x", " ~~", "y"}));  // ~ is a symbol
  EXPECT_EQ(split("don't"), (Pieces{"don", "'t"}));
  EXPECT_EQ(split("«ciao»"), (Pieces{"«", "ciao", "»"}));
  EXPECT_EQ(split("\u00a0nbsp"), (Pieces{"\u00a0nbsp"}));
  EXPECT_EQ(split("\u200bzw"), (Pieces{"\u200bzw"}));
}

TEST(PreTokenizer, Whitespace) {
  EXPECT_EQ(split("    int x;"), (Pieces{"   ", " int", " x", ";"}));
  EXPECT_EQ(split("a\n\n\nb"), (Pieces{"a", "\n\n\n", "b"}));
  EXPECT_EQ(split("  leading"), (Pieces{" ", " leading"}));
  EXPECT_EQ(split("trailing  "), (Pieces{"trailing", "  "}));
  EXPECT_EQ(split("tabs\tand\r\ncr"), (Pieces{"tabs", "\tand", "\r\n", "cr"}));
  EXPECT_EQ(split("a \n  b"), (Pieces{"a", " \n", " ", " b"}));
  EXPECT_EQ(split("a  !"), (Pieces{"a", " ", " !"}));
  EXPECT_EQ(split("a\t!"), (Pieces{"a", "\t", "!"}));
}

// \s is White_Space as in Oniguruma: U+0085 is whitespace, U+FEFF is not.
TEST(PreTokenizer, WhiteSpaceProperty) {
  EXPECT_EQ(split("x\u0085\ny"), (Pieces{"x", "\u0085\n", "y"}));
  EXPECT_EQ(split("a \ufeff b"), (Pieces{"a", " ", "\ufeff", " b"}));
  EXPECT_EQ(split("a\u3000\u3000b"), (Pieces{"a", "\u3000", "\u3000b"}));
}

TEST(PreTokenizer, MarksAndGaps) {
  EXPECT_EQ(split("\u0301a"), (Pieces{"\u0301a"}));  // a mark as the optional prefix
  EXPECT_EQ(split("e\u0301\u0301 x"), (Pieces{"e\u0301\u0301", " x"}));
  EXPECT_EQ(split("\u0301 "), (Pieces{"\u0301", " "}));      // a lone mark matches by itself
  EXPECT_EQ(split("\x01\x02 "), (Pieces{"\x01\x02", " "}));  // unmatched controls form a gap
  EXPECT_EQ(split("\x01"
                  "abc"),
            (Pieces{"\x01"
                    "abc"}));
}

TEST(PreTokenizer, IllFormedBytesActLikeUnassignedCharacters) {
  EXPECT_EQ(split("\xff"
                  "abc"),
            (Pieces{"\xff"
                    "abc"}));
  EXPECT_EQ(split("a\xff"), (Pieces{"a", "\xff"}));
  EXPECT_EQ(split("\xf0\x9f\xa6"), (Pieces{"\xf0\x9f\xa6"}));
}

TEST(PreTokenizer, PiecesCoverAnyInput) {
  std::mt19937 rng(7);
  const std::string alphabet[] = {
      "a",  "Z",  " ", "\n",     "\r",     "\t",     "1",      "٣",    ".",    "!",    "~",   "你",
      "カ", "・", "é", "\u0301", "\u00a0", "\u0085", "\ufeff", "🦀", "\xff", "\xe4", "\x80"};
  for (int iter = 0; iter < 2000; ++iter) {
    std::string text;
    const int n = static_cast<int>(rng() % 30);
    for (int i = 0; i < n; ++i) text += alphabet[rng() % std::size(alphabet)];
    std::string joined;
    for (const auto& p : split(text)) {
      EXPECT_FALSE(p.empty());
      joined += p;
    }
    EXPECT_EQ(joined, text);
  }
}

}  // namespace
}  // namespace dsv4::tokenizer
