// Tokenizer behaviour on a small hand-made vocabulary: validation errors, BPE, added tokens,
// decoding, the stream decoder and the prompt encoder.
#include "tokenizer/tokenizer.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "tokenizer/byte_level.h"
#include "tokenizer/prompt_encoder.h"
#include "tokenizer/stream_decoder.h"

namespace dsv4::tokenizer {
namespace {

using Ids = std::vector<int32_t>;

// Ids: 0 "<s>" (control), 1 "<｜User｜>" (user-defined), 2 "<think>" (user-defined),
// 3..258 the byte symbols in byte order, then merged tokens.
struct Tiny {
  Vocab vocab;
  int32_t add(const std::string& spelling, int32_t type = kTokenNormal) {
    vocab.tokens.push_back(spelling);
    vocab.types.push_back(type);
    return static_cast<int32_t>(vocab.tokens.size() - 1);
  }
  void merge(const std::string& l, const std::string& r) {
    vocab.merges.push_back(l + " " + r);
    bool have = false;
    for (const auto& t : vocab.tokens) have = have || t == l + r;
    if (!have) add(l + r);
  }
  Tiny() {
    add("<s>", kTokenControl);
    add("<｜User｜>", kTokenUserDefined);
    add("<think>", kTokenUserDefined);
    for (int b = 0; b < 256; ++b) add(byte_level::encode(std::string(1, static_cast<char>(b))));
    for (const char* m : {"h e", "l l", "he ll", "hell o", "Ġ w", "o r", "Ġw or", "Ġwor l",
                          "Ġworl d", "a a", "b c", "ab c", "a b"}) {
      const std::string s(m);
      merge(s.substr(0, s.find(' ')), s.substr(s.find(' ') + 1));
    }
  }
  int32_t byte(char c) const { return 3 + static_cast<uint8_t>(c); }
};

Tokenizer build(Vocab v) {
  auto t = Tokenizer::from_vocab(std::move(v));
  EXPECT_TRUE(t.ok()) << t.error().message;
  return std::move(t).value();
}

TEST(Tokenizer, EncodesAndDecodes) {
  Tiny tiny;
  const Tokenizer tok = build(tiny.vocab);
  const int32_t hello = *tok.token_id("hello");
  const int32_t world = *tok.token_id("Ġworld");
  EXPECT_EQ(tok.encode_text("hello world"), (Ids{hello, world}));
  EXPECT_EQ(tok.token_id_for_text(" world"), world);
  EXPECT_EQ(tok.piece(world), " world");
  EXPECT_EQ(tok.token(world), "Ġworld");
  EXPECT_EQ(tok.decode(Ids{hello, world}).value(), "hello world");
  EXPECT_EQ(tok.vocab_size(), static_cast<int32_t>(tiny.vocab.tokens.size()));
  EXPECT_EQ(tok.merge_count(), tiny.vocab.merges.size());
  EXPECT_EQ(tok.added_count(), 3u);
}

TEST(Tokenizer, MergeOrderAndTies) {
  Tiny tiny;
  const Tokenizer tok = build(tiny.vocab);
  const int32_t aa = *tok.token_id("aa");
  EXPECT_EQ(tok.encode_text("aaa"), (Ids{aa, tiny.byte('a')}));  // leftmost pair first
  EXPECT_EQ(tok.encode_text("aaaa"), (Ids{aa, aa}));
  // "abc" is a token, but "b c" outranks "a b", and "a bc" is no merge: BPE gives a|bc.
  EXPECT_EQ(tok.encode_text("abc"), (Ids{tiny.byte('a'), *tok.token_id("bc")}));
}

TEST(Tokenizer, AddedTokensOnlyInSpecialMode) {
  Tiny tiny;
  const Tokenizer tok = build(tiny.vocab);
  EXPECT_EQ(tok.encode_with_special("<s>hello<｜User｜>"), (Ids{0, *tok.token_id("hello"), 1}));
  const Ids plain = tok.encode_text("<s>");
  EXPECT_EQ(plain.size(), 3u);  // '<' 's' '>' as bytes
  EXPECT_EQ(tok.decode(plain).value(), "<s>");
  EXPECT_EQ(tok.decode(tok.encode_text("<｜User｜>")).value(), "<｜User｜>");
  EXPECT_TRUE(tok.is_added(0));
  EXPECT_TRUE(tok.is_added(1));
  EXPECT_FALSE(tok.is_added(tiny.byte('a')));
  // Partial and adjacent matches.
  EXPECT_EQ(tok.encode_with_special("<think<think>").back(), 2);
  EXPECT_EQ(tok.encode_with_special("<s><s>"), (Ids{0, 0}));
}

TEST(Tokenizer, LeftmostLongestSpecialMatch) {
  Tiny tiny;
  tiny.add("<s>x", kTokenUserDefined);
  tiny.add("s>xy", kTokenUserDefined);
  const Tokenizer tok = build(tiny.vocab);
  const int32_t sx = *tok.token_id("<s>x");
  // "<s>x" (longest at the leftmost start) wins over "<s>" and over the later "s>xy".
  EXPECT_EQ(tok.encode_with_special("<s>xy"), (Ids{sx, tiny.byte('y')}));
  const auto segments = tok.split_special("ab<s>xcd<s>");
  ASSERT_EQ(segments.size(), 4u);
  EXPECT_EQ(segments[0].text, "ab");
  EXPECT_EQ(segments[0].id, -1);
  EXPECT_EQ(segments[1].id, sx);
  EXPECT_EQ(segments[2].text, "cd");
  EXPECT_EQ(segments[3].id, 0);
}

TEST(Tokenizer, TypesDerivedWhenAbsent) {
  Tiny tiny;
  tiny.vocab.types.clear();
  const Tokenizer tok = build(tiny.vocab);
  // Not in the byte alphabet, or produced by no merge: added.
  EXPECT_TRUE(tok.is_added(0));
  EXPECT_TRUE(tok.is_added(1));
  EXPECT_TRUE(tok.is_added(2));
  EXPECT_FALSE(tok.is_added(*tok.token_id("hello")));
  EXPECT_FALSE(tok.is_added(tiny.byte('<')));
  EXPECT_EQ(tok.encode_with_special("<think>hello"), (Ids{2, *tok.token_id("hello")}));
}

TEST(Tokenizer, IllFormedUtf8InputIsLossless) {
  Tiny tiny;
  const Tokenizer tok = build(tiny.vocab);
  const std::string text = "\xff\xfe hello \xe4\xbd world\xf0\x9f";
  EXPECT_EQ(tok.decode(tok.encode_text(text)).value(), text);
  EXPECT_EQ(tok.decode(tok.encode_with_special(text)).value(), text);
}

TEST(Tokenizer, DecodeRejectsUnknownIds) {
  Tiny tiny;
  const Tokenizer tok = build(tiny.vocab);
  EXPECT_FALSE(tok.decode(Ids{0, tok.vocab_size()}).ok());
  EXPECT_FALSE(tok.decode(Ids{-1}).ok());
  EXPECT_EQ(tok.piece(-5), "");
  EXPECT_EQ(tok.token(1 << 30), "");
  EXPECT_FALSE(tok.is_added(-1));
}

TEST(Tokenizer, RejectsBrokenVocabularies) {
  auto expect_error = [](Vocab v, const std::string& fragment) {
    auto t = Tokenizer::from_vocab(std::move(v));
    ASSERT_FALSE(t.ok()) << "expected an error containing \"" << fragment << "\"";
    EXPECT_NE(t.error().message.find(fragment), std::string::npos) << t.error().message;
  };
  expect_error(Vocab{}, "empty");
  {
    Tiny t;
    t.vocab.types.pop_back();
    expect_error(t.vocab, "token types");
  }
  {
    Tiny t;
    t.vocab.types[5] = 9;
    expect_error(t.vocab, "type 9");
  }
  {
    Tiny t;
    t.vocab.tokens[3 + 'q'] = "q_missing";
    expect_error(t.vocab, "byte 0x71");
  }
  {
    Tiny t;
    t.vocab.merges.push_back("x y");  // "xy" is not a token
    expect_error(t.vocab, "\"xy\" is not in the vocabulary");
  }
  {
    Tiny t;
    t.vocab.merges.push_back("nospace");
    expect_error(t.vocab, "expected \"left right\"");
  }
  {
    Tiny t;
    t.vocab.merges.push_back("a  b");
    expect_error(t.vocab, "expected \"left right\"");
  }
  {
    Tiny t;
    t.vocab.merges.push_back("zz q");
    expect_error(t.vocab, "\"zz\" is not in the vocabulary");
  }
}

TEST(StreamDecoder, HoldsBackSplitCharacters) {
  Tiny tiny;
  const Tokenizer tok = build(tiny.vocab);
  StreamDecoder dec(tok);
  // 🦀 = F0 9F A6 80 as four byte tokens.
  EXPECT_EQ(dec.push(tiny.byte('a')).value(), "a");
  EXPECT_EQ(dec.push(tiny.byte('\xF0')).value(), "");
  EXPECT_EQ(dec.push(tiny.byte('\x9F')).value(), "");
  EXPECT_EQ(dec.pending(), 2u);
  EXPECT_EQ(dec.push(tiny.byte('\xA6')).value(), "");
  EXPECT_EQ(dec.push(tiny.byte('\x80')).value(), "🦀");
  EXPECT_EQ(dec.pending(), 0u);
  EXPECT_EQ(dec.push(1).value(), "<｜User｜>");
  EXPECT_EQ(dec.flush(), "");
}

TEST(StreamDecoder, NeverEmitsBrokenUtf8) {
  Tiny tiny;
  const Tokenizer tok = build(tiny.vocab);
  StreamDecoder dec(tok);
  EXPECT_EQ(dec.push(tiny.byte('\xFF')).value(), "\xEF\xBF\xBD");  // can never be valid
  EXPECT_EQ(dec.push(tiny.byte('\xE4')).value(), "");
  // A character interrupted by an ASCII byte: the stub becomes U+FFFD, the byte survives.
  EXPECT_EQ(dec.push(tiny.byte('x')).value(), "\xEF\xBF\xBDx");
  EXPECT_EQ(dec.push(tiny.byte('\xE4')).value(), "");
  EXPECT_EQ(dec.push(tiny.byte('\xBD')).value(), "");
  EXPECT_EQ(dec.flush(), "\xEF\xBF\xBD");  // unfinished at the end
  EXPECT_EQ(dec.pending(), 0u);
}

TEST(StreamDecoder, UnknownIdIsAnErrorAndChangesNothing) {
  Tiny tiny;
  const Tokenizer tok = build(tiny.vocab);
  StreamDecoder dec(tok);
  EXPECT_EQ(dec.push(tiny.byte('\xC3')).value(), "");
  EXPECT_FALSE(dec.push(-1).ok());
  EXPECT_FALSE(dec.push(tok.vocab_size()).ok());
  EXPECT_EQ(dec.push(tiny.byte('\xA9')).value(), "é");
}

TEST(PromptEncoder, TemplateTokensAndClientText) {
  Tiny tiny;
  const Tokenizer tok = build(tiny.vocab);
  PromptEncoder enc(tok);
  enc.add_template("<s><｜User｜>");
  enc.add_client("hel");
  enc.add_client("lo<think>");  // client text: "<think>" stays text
  enc.add_template(" world<think>");
  const Ids ids = enc.finish();
  // "hello" is BPE'd across the two client parts; " world" across client/template.
  const Ids think_bytes = tok.encode_text("<think>");
  Ids expected{0, 1, *tok.token_id("hello")};
  expected.insert(expected.end(), think_bytes.begin(), think_bytes.end());
  expected.push_back(*tok.token_id("Ġworld"));
  expected.push_back(2);
  EXPECT_EQ(ids, expected);
  EXPECT_TRUE(enc.finish().empty());
  enc.add_token(0);
  EXPECT_EQ(enc.finish(), (Ids{0}));
}

}  // namespace
}  // namespace dsv4::tokenizer
