// The tokenizer of a synthetic vocabulary (model/synthetic_vocab.h: the tokens gen-model writes)
// and its control tokens, for tests that generate text.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <utility>

#include "model/synthetic_vocab.h"
#include "tokenizer/special_tokens.h"
#include "tokenizer/tokenizer.h"

namespace dsv4::generation::testing {

struct SyntheticTokenizer {
  tokenizer::Tokenizer tokenizer;
  tokenizer::SpecialTokens special;
};

inline SyntheticTokenizer synthetic_tokenizer(int64_t n_vocab) {
  Result<model::SyntheticVocab> v = model::make_synthetic_vocab(n_vocab);
  EXPECT_TRUE(v.ok());
  Result<tokenizer::Tokenizer> tok = tokenizer::Tokenizer::from_vocab(tokenizer::Vocab{v->tokens, v->types, v->merges});
  EXPECT_TRUE(tok.ok());
  Result<tokenizer::SpecialTokens> special = tokenizer::SpecialTokens::resolve(*tok);
  EXPECT_TRUE(special.ok());
  return SyntheticTokenizer{std::move(tok).value(), std::move(special).value()};
}

}  // namespace dsv4::generation::testing
