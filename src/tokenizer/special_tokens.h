// The control tokens the chat layer and the server need, resolved by their strings in the
// loaded vocabulary (PROTOCOL.md §1.3, §7 decision (c)): no id is hard-coded, and a missing
// required string is a load error.
#pragma once

#include <cstdint>
#include <optional>

#include "tokenizer/tokenizer.h"
#include "util/status.h"

namespace dsv4::tokenizer {

// Strings exactly as in the vocabulary (｜ is U+FF5C, ▁ is U+2581).
inline constexpr const char kBosString[] = "<｜begin▁of▁sentence｜>";
inline constexpr const char kEosString[] = "<｜end▁of▁sentence｜>";
inline constexpr const char kUserString[] = "<｜User｜>";
inline constexpr const char kAssistantString[] = "<｜Assistant｜>";
inline constexpr const char kThinkOpenString[] = "<think>";
inline constexpr const char kThinkCloseString[] = "</think>";
inline constexpr const char kDsmlString[] = "｜DSML｜";
inline constexpr const char kLatestReminderString[] = "<｜latest_reminder｜>";

struct SpecialTokens {
  int32_t bos = -1;
  int32_t eos = -1;
  int32_t user = -1;
  int32_t assistant = -1;
  int32_t think_open = -1;
  int32_t think_close = -1;
  int32_t dsml = -1;
  std::optional<int32_t> latest_reminder;  // required only when a request uses it

  // Errors name every missing required string.
  static Result<SpecialTokens> resolve(const Tokenizer& tokenizer);
};

}  // namespace dsv4::tokenizer
