// The tokenizer keys of a GGUF file (FORMATS.md §2.3), read into and written from a Vocab.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "gguf/gguf.h"
#include "tokenizer/tokenizer.h"
#include "util/status.h"

namespace dsv4::tokenizer {

// tokenizer.ggml.pre values naming the DeepSeek-V3 split regexes this tokenizer implements.
inline constexpr const char* kSupportedPre[] = {"joyai-llm", "deepseek-v3", "deepseek-v4"};

// Reads tokenizer.ggml.tokens and .merges (required), .token_type (optional) and checks
// .model == "gpt2" and .pre (when present) against kSupportedPre.
Result<Vocab> vocab_from_gguf_metadata(
    const std::vector<std::pair<std::string, gguf::Value>>& metadata);

// Sets tokenizer.ggml.{model, pre, tokens, token_type, merges, bos_token_id, eos_token_id}
// (the two ids resolved by string; omitted when the strings are absent).
void write_vocab_to_gguf(const Vocab& vocab, gguf::Writer& writer);

}  // namespace dsv4::tokenizer
