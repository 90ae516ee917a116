// The added-token strings the chat renderer and parsers use (PROTOCOL.md §1.3). Only strings:
// ids are always resolved from the model's vocabulary (§7 decision (c)).
#pragma once

#include <array>
#include <string_view>

namespace dsv4::chat::tok {

inline constexpr std::string_view kBos = "<｜begin▁of▁sentence｜>";
inline constexpr std::string_view kEos = "<｜end▁of▁sentence｜>";
inline constexpr std::string_view kUser = "<｜User｜>";
inline constexpr std::string_view kAssistant = "<｜Assistant｜>";
inline constexpr std::string_view kThinkOpen = "<think>";
inline constexpr std::string_view kThinkClose = "</think>";
inline constexpr std::string_view kDsml = "｜DSML｜";
inline constexpr std::string_view kLatestReminder = "<｜latest_reminder｜>";
inline constexpr std::string_view kAction = "<｜action｜>";
inline constexpr std::string_view kQuery = "<｜query｜>";
inline constexpr std::string_view kAuthority = "<｜authority｜>";
inline constexpr std::string_view kDomain = "<｜domain｜>";
inline constexpr std::string_view kTitle = "<｜title｜>";
inline constexpr std::string_view kReadUrl = "<｜read_url｜>";

// Every added-token string that can occur in the renderer's own (template) text. Template text
// is split on exactly these; a test checks that no other added token hides in template text.
inline constexpr std::array<std::string_view, 14> kTemplateControlTokens = {
    kBos,    kEos,   kUser,      kAssistant, kThinkOpen, kThinkClose, kDsml, kLatestReminder,
    kAction, kQuery, kAuthority, kDomain,    kTitle,     kReadUrl,
};

}  // namespace dsv4::chat::tok
