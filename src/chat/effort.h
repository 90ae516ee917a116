// Reasoning effort: the prefixes the encoder writes at the start of a thinking-mode prompt, and
// how API-level effort values map onto them (PROTOCOL.md §2.6).
#pragma once

#include <optional>
#include <string_view>

#include "chat/message.h"
#include "util/status.h"

namespace dsv4::chat {

// The prefix written at message index 0 in thinking mode; empty when the effort adds none.
std::string_view effort_prefix(Release release, Effort effort);

// The 476-byte "Absolute maximum" text (original `max`, 0731 `high`) and the 528-byte "Beyond
// maximum" text (0731 `max`).
extern const std::string_view kEffortAbsoluteMaximum;
extern const std::string_view kEffortBeyondMaximum;

struct ThinkingChoice {
  ThinkingMode mode = ThinkingMode::thinking;
  Effort effort = Effort::none;
};

// Maps a request's effort string (OpenAI reasoning_effort, Anthropic output_config.effort,
// Responses reasoning.effort) per the dsv4 table of §2.6: absent -> default; "none" -> chat
// mode; minimal/low -> low; medium/high -> high; xhigh/max -> max; anything else is an error.
Result<ThinkingChoice> map_request_effort(std::optional<std::string_view> effort);

std::optional<Release> parse_release(std::string_view name);  // "original" | "0731"

}  // namespace dsv4::chat
