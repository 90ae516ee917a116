// From a rendered prompt to token ids by the dsv4 segment rule (PROTOCOL.md §2.12): the
// renderer's control tokens become their vocabulary ids, template text is special-token aware,
// client text is plain, and all text between two control tokens is BPE'd as one run.
#pragma once

#include <cstdint>
#include <vector>

#include "chat/prompt.h"
#include "tokenizer/tokenizer.h"
#include "util/status.h"

namespace dsv4::chat {

// Errors name a control token the vocabulary lacks (§7 decision (c): ids are resolved by string).
Result<std::vector<int32_t>> prompt_token_ids(const RenderedPrompt& prompt,
                                              const tokenizer::Tokenizer& tokenizer);

}  // namespace dsv4::chat
