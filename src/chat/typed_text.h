// Typed text (PROTOCOL.md §5.3): a byte string that names a token sequence up to the choice of BPE
// pieces. Added (control and user-defined) tokens are written as an escape, 0xFF followed by the
// id as u32 little-endian; every other token as its decoded bytes. Two sequences with equal typed
// text are tokenisations of the same text with the same control tokens, so the server compares
// typed texts to reuse state across non-canonical tokenisations (generated tokens) and keys the
// disk KV cache with them.
//
// 0xFF never occurs in UTF-8, but byte-level BPE has a token for the raw byte 0xFF (a model may
// sample it): a token whose bytes contain 0xFF is escaped too, so text bytes never contain 0xFF
// and the encoding stays unambiguous.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "chat/prompt.h"
#include "tokenizer/tokenizer.h"
#include "util/status.h"

namespace dsv4::chat {

inline constexpr uint8_t kTypedTextEscape = 0xFF;

// An id outside the vocabulary is written as an escape (tokens_from_typed_text rejects it).
std::string typed_text(std::span<const int32_t> tokens, const tokenizer::Tokenizer& tokenizer);

// From the segments, by the rule of prompt_token_ids (§2.12): equals
// typed_text(prompt_token_ids(prompt)) without running BPE (except over text holding a 0xFF
// byte). A control segment whose string the vocabulary lacks (prompt_token_ids rejects such a
// prompt) is written as its text.
std::string typed_text(const RenderedPrompt& prompt, const tokenizer::Tokenizer& tokenizer);

// Escapes become their ids, the text between them is BPE'd as plain text (added-token strings in
// it stay text). This is how the remaining suffix of a prompt is tokenised after a typed-text
// prefix match. typed_text(tokens_from_typed_text(t)) == t for every accepted t. Errors: a
// truncated escape, an id outside the vocabulary, or an escape of a token that typed text writes
// as bytes (such text has a canonical form that differs, so it is never produced).
Result<std::vector<int32_t>> tokens_from_typed_text(std::string_view typed,
                                                    const tokenizer::Tokenizer& tokenizer);

}  // namespace dsv4::chat
