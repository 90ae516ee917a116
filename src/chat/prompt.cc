#include "chat/prompt.h"

#include "chat/special_tokens.h"

namespace dsv4::chat {

void PromptBuilder::append(std::string_view text, bool is_control, bool from_client) {
  if (text.empty()) return;
  prompt_.text.append(text);
  auto& segs = prompt_.segments;
  // Control segments stay one token each; plain runs of the same origin are merged.
  if (!is_control && !segs.empty() && !segs.back().is_control &&
      segs.back().from_client == from_client) {
    segs.back().text.append(text);
    return;
  }
  segs.push_back(Segment{std::string(text), is_control, from_client});
}

void PromptBuilder::add_client(std::string_view text) { append(text, false, true); }

void PromptBuilder::add_template(std::string_view text) {
  // Leftmost-longest match over the template control tokens (§2.12 step 1).
  size_t pos = 0;
  while (pos < text.size()) {
    size_t best_at = std::string_view::npos;
    size_t best_len = 0;
    for (std::string_view t : tok::kTemplateControlTokens) {
      size_t at = text.find(t, pos);
      if (at == std::string_view::npos) continue;
      if (at < best_at || (at == best_at && t.size() > best_len)) {
        best_at = at;
        best_len = t.size();
      }
    }
    if (best_at == std::string_view::npos) {
      append(text.substr(pos), false, false);
      return;
    }
    append(text.substr(pos, best_at - pos), false, false);
    append(text.substr(best_at, best_len), true, false);
    pos = best_at + best_len;
  }
}

}  // namespace dsv4::chat
