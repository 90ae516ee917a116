// Hostile and odd input on the real vocabulary: random bytes (mostly ill-formed UTF-8) and
// random token ids must never crash, must round-trip losslessly, and the stream decoder must
// only ever emit valid UTF-8.
#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

#include "tokenizer/stream_decoder.h"
#include "tokenizer/utf8.h"
#include "v4_fixture.h"

namespace dsv4::tokenizer {
namespace {

TEST(Robustness, RandomBytesRoundTrip) {
  DSV4_V4_TOKENIZER(tok);
  std::mt19937 rng(42);
  const std::string fragments[] = {"<｜User｜>", "<think>", "｜DSML｜", "<｜", "｜>", "\xEF\xBD",
                                   " ", "\n", "12", "字", "🦀", "é"};
  for (int iter = 0; iter < 3000; ++iter) {
    std::string text;
    const int n = static_cast<int>(rng() % 64);
    for (int i = 0; i < n; ++i) {
      if (rng() % 4 == 0) {
        text += fragments[rng() % std::size(fragments)];
      } else {
        text.push_back(static_cast<char>(rng() & 0xFF));
      }
    }
    for (const auto& ids : {tok.encode_text(text), tok.encode_with_special(text)}) {
      auto back = tok.decode(ids);
      ASSERT_TRUE(back.ok());
      ASSERT_EQ(*back, text);
      StreamDecoder dec(tok);
      std::string streamed;
      for (int32_t id : ids) {
        const std::string part = dec.push(id).value();
        ASSERT_TRUE(utf8::is_valid(part));
        streamed += part;
      }
      streamed += dec.flush();
      ASSERT_TRUE(utf8::is_valid(streamed));
      ASSERT_EQ(streamed, utf8::replace_invalid(text));
    }
  }
}

TEST(Robustness, RandomIdsStreamAsValidUtf8) {
  DSV4_V4_TOKENIZER(tok);
  std::mt19937 rng(43);
  StreamDecoder dec(tok);
  std::string all;
  for (int i = 0; i < 20000; ++i) {
    const auto id = static_cast<int32_t>(rng() % static_cast<uint32_t>(tok.vocab_size() + 10));
    auto part = dec.push(id);
    if (!tok.valid_id(id)) {
      EXPECT_FALSE(part.ok());
      continue;
    }
    ASSERT_TRUE(part.ok());
    all += *part;
  }
  all += dec.flush();
  EXPECT_TRUE(utf8::is_valid(all));
}

}  // namespace
}  // namespace dsv4::tokenizer
