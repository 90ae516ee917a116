// The official parser (`parse_message_from_completion_text`, PROTOCOL.md §3.3): accepts exactly
// what the model is trained to write and rejects everything else. dsv4 tries it first and falls
// back to the lenient stream parser (completion.h) when it fails.
#pragma once

#include <string_view>

#include "chat/message.h"
#include "chat/parsed_message.h"
#include "util/status.h"

namespace dsv4::chat {

// `text` is the generated text including the final EOS. In thinking mode it starts with the
// reasoning (the prompt already ended with "<think>").
Result<ParsedMessage> parse_completion_strict(std::string_view text, ThinkingMode mode);

}  // namespace dsv4::chat
