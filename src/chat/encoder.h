// The official DeepSeek V4 prompt encoder (`encoding_dsv4.encode_messages`, PROTOCOL.md §2),
// reproduced byte for byte, with the provenance of every byte recorded (prompt.h).
#pragma once

#include <vector>

#include "chat/message.h"
#include "chat/prompt.h"
#include "util/status.h"

namespace dsv4::chat {

// Renders `messages` as the continuation of `context` (messages already in the model's state;
// only the new messages are rendered, without BOS). Ends with the generation prefix
// ("<｜Assistant｜><think>" / "</think>") when the last message is a user or developer turn.
// Errors (never exceptions) for input the reference rejects or that cannot be rendered safely:
// an empty developer message, a tool call without a name, tools that are not OpenAI function
// objects, invalid UTF-8 anywhere.
Result<RenderedPrompt> encode_messages(const std::vector<Message>& messages,
                                       const EncodeOptions& options,
                                       const std::vector<Message>& context = {});

// Checks one message before rendering; `where` names it in errors ("messages[3]").
Status validate_message(const Message& message, std::string_view where);

}  // namespace dsv4::chat
