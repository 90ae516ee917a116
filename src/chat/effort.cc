#include "chat/effort.h"

#include <string>

namespace dsv4::chat {

// Both texts are checked against their published sha256 in tests/chat/effort_test.cc.
const std::string_view kEffortAbsoluteMaximum =
    "Reasoning Effort: Absolute maximum with no shortcuts permitted.\n"
    "You MUST be very thorough in your thinking and comprehensively decompose the problem to "
    "resolve the root cause, rigorously stress-testing your logic against all potential paths, "
    "edge cases, and adversarial scenarios.\n"
    "Explicitly write out your entire deliberation process, documenting every intermediate step, "
    "considered alternative, and rejected hypothesis to ensure absolutely no assumption is left "
    "unchecked.\n\n";

const std::string_view kEffortBeyondMaximum =
    "Reasoning Effort: Beyond maximum \xE2\x80\x94 exhaustive, relentless, and uncompromising.\n"
    "You MUST reason with the utmost depth and rigor, leaving absolutely nothing to chance: "
    "exhaustively decompose the problem into its most fundamental components, trace every causal "
    "chain to its root, and resolve the underlying cause rather than any surface symptom.\n"
    "Do not stop reasoning until you have independently verified the solution from multiple "
    "angles and are certain that no assumption remains unchecked and no error remains "
    "undiscovered.\n\n";

std::string_view effort_prefix(Release release, Effort effort) {
  if (release == Release::original) {
    return effort == Effort::max ? kEffortAbsoluteMaximum : std::string_view();
  }
  // 0731 shifted the levels one step down: its `high` is the original `max`.
  switch (effort) {
    case Effort::high:
      return kEffortAbsoluteMaximum;
    case Effort::max:
      return kEffortBeyondMaximum;
    default:
      return {};
  }
}

Result<ThinkingChoice> map_request_effort(std::optional<std::string_view> effort) {
  if (!effort) return ThinkingChoice{ThinkingMode::thinking, Effort::none};
  std::string_view e = *effort;
  if (e == "none") return ThinkingChoice{ThinkingMode::chat, Effort::none};
  if (e == "minimal" || e == "low") return ThinkingChoice{ThinkingMode::thinking, Effort::low};
  if (e == "medium" || e == "high") return ThinkingChoice{ThinkingMode::thinking, Effort::high};
  if (e == "xhigh" || e == "max") return ThinkingChoice{ThinkingMode::thinking, Effort::max};
  return make_error("unsupported reasoning effort '" + std::string(e) +
                    "' (expected none, minimal, low, medium, high, xhigh or max)");
}

std::optional<Release> parse_release(std::string_view name) {
  if (name == "original") return Release::original;
  if (name == "0731") return Release::v0731;
  return std::nullopt;
}

}  // namespace dsv4::chat
