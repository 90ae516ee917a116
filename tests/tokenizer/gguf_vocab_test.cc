// The tokenizer keys of GGUF files: writing a vocabulary, reading it back, and the errors a
// malformed file gets.
#include "tokenizer/gguf_vocab.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "gguf/gguf.h"
#include "tokenizer/byte_level.h"
#include "tokenizer/special_tokens.h"
#include "v4_fixture.h"

namespace dsv4::tokenizer {
namespace {

using Metadata = std::vector<std::pair<std::string, gguf::Value>>;

Vocab small_vocab() {
  Vocab v;
  v.tokens.push_back("<｜begin▁of▁sentence｜>");
  v.types.push_back(kTokenControl);
  for (int b = 0; b < 256; ++b) {
    v.tokens.push_back(byte_level::encode(std::string(1, static_cast<char>(b))));
    v.types.push_back(kTokenNormal);
  }
  v.tokens.push_back("hi");
  v.types.push_back(kTokenNormal);
  v.merges.push_back("h i");
  return v;
}

Result<Tokenizer> round_trip(const Vocab& vocab, std::vector<uint8_t>& bytes) {
  gguf::Writer w;
  write_vocab_to_gguf(vocab, w);
  bytes = w.serialize();
  auto file = gguf::File::parse(bytes, "mem.gguf");
  if (!file.ok()) return file.error();
  return Tokenizer::from_gguf(*file);
}

TEST(GgufVocab, RoundTrip) {
  std::vector<uint8_t> bytes;
  auto tok = round_trip(small_vocab(), bytes);
  ASSERT_TRUE(tok.ok()) << tok.error().message;
  EXPECT_EQ(tok->vocab_size(), 258);
  EXPECT_EQ(tok->encode_with_special("<｜begin▁of▁sentence｜>hi"), (std::vector<int32_t>{0, 257}));
  EXPECT_EQ(tok->vocab().types, small_vocab().types);
  auto file = gguf::File::parse(bytes, "mem.gguf");
  ASSERT_TRUE(file.ok());
  ASSERT_NE(file->find("tokenizer.ggml.bos_token_id"), nullptr);
  EXPECT_EQ(file->find("tokenizer.ggml.bos_token_id")->as_uint(), 0u);
  EXPECT_EQ(file->find("tokenizer.ggml.eos_token_id"), nullptr);  // no EOS string here
  EXPECT_EQ(*file->find("tokenizer.ggml.pre")->as_string(), "joyai-llm");
}

TEST(GgufVocab, RealV4VocabularyRoundTrip) {
  DSV4_V4_TOKENIZER(tok);
  std::vector<uint8_t> bytes;
  auto loaded = round_trip(tok.vocab(), bytes);
  ASSERT_TRUE(loaded.ok()) << loaded.error().message;
  EXPECT_EQ(loaded->vocab_size(), 129280);
  EXPECT_EQ(loaded->added_count(), 1283u);
  const std::string text =
      "<｜begin▁of▁sentence｜><｜User｜>Hello, 世界 🦀<｜Assistant｜></think>";
  EXPECT_EQ(loaded->encode_with_special(text), tok.encode_with_special(text));
  EXPECT_TRUE(SpecialTokens::resolve(*loaded).ok());
}

Metadata good_metadata() {
  const Vocab v = small_vocab();
  return {{"tokenizer.ggml.model", gguf::Value::make_string("gpt2")},
          {"tokenizer.ggml.pre", gguf::Value::make_string("joyai-llm")},
          {"tokenizer.ggml.tokens", gguf::Value::make_string_array(v.tokens)},
          {"tokenizer.ggml.token_type",
           gguf::Value::make_int_array(gguf::ValueType::I32,
                                       std::vector<int64_t>(v.types.begin(), v.types.end()))},
          {"tokenizer.ggml.merges", gguf::Value::make_string_array(v.merges)}};
}

void expect_error(Metadata md, const std::string& fragment) {
  auto v = vocab_from_gguf_metadata(md);
  ASSERT_FALSE(v.ok()) << "expected: " << fragment;
  EXPECT_NE(v.error().message.find(fragment), std::string::npos) << v.error().message;
}

TEST(GgufVocab, MetadataErrors) {
  ASSERT_TRUE(vocab_from_gguf_metadata(good_metadata()).ok());
  {
    auto md = good_metadata();
    md[0].second = gguf::Value::make_string("llama");
    expect_error(md, "expected \"gpt2\"");
  }
  {
    auto md = good_metadata();
    md[1].second = gguf::Value::make_string("qwen2");
    expect_error(md, "\"qwen2\" is not a DeepSeek-V3/V4 pre-tokenizer");
  }
  {
    auto md = good_metadata();
    md.erase(md.begin() + 2);
    expect_error(md, "tokenizer.ggml.tokens: missing");
  }
  {
    auto md = good_metadata();
    md[2].second = gguf::Value::make_u32(7);
    expect_error(md, "tokenizer.ggml.tokens: expected an array of strings");
  }
  {
    auto md = good_metadata();
    md[3].second = gguf::Value::make_int_array(gguf::ValueType::I32, {1, 1});
    expect_error(md, "2 entries for 258 tokens");
  }
  {
    auto md = good_metadata();
    md[3].second.ints[4] = 42;
    expect_error(md, "value 42 outside 1..6");
  }
  {
    auto md = good_metadata();
    md.erase(md.begin() + 4);
    expect_error(md, "tokenizer.ggml.merges: missing");
  }
  {
    // Optional keys may be absent: types are then derived.
    auto md = good_metadata();
    md.erase(md.begin() + 3);
    md.erase(md.begin(), md.begin() + 2);
    auto v = vocab_from_gguf_metadata(md);
    ASSERT_TRUE(v.ok());
    auto tok = Tokenizer::from_vocab(std::move(v).value());
    ASSERT_TRUE(tok.ok());
    EXPECT_TRUE(tok->is_added(0));
  }
}

TEST(GgufVocab, FromGgufNamesTheFile) {
  gguf::Writer w;
  Vocab v = small_vocab();
  v.merges.push_back("q z");  // "qz" is no token
  write_vocab_to_gguf(v, w);
  const auto bytes = w.serialize();
  auto file = gguf::File::parse(bytes, "broken.gguf");
  ASSERT_TRUE(file.ok());
  auto tok = Tokenizer::from_gguf(*file);
  ASSERT_FALSE(tok.ok());
  EXPECT_EQ(tok.error().message.rfind("broken.gguf: ", 0), 0u) << tok.error().message;
}

}  // namespace
}  // namespace dsv4::tokenizer
