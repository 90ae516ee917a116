#include "tokenizer/special_tokens.h"

#include <string>

namespace dsv4::tokenizer {

Result<SpecialTokens> SpecialTokens::resolve(const Tokenizer& tokenizer) {
  SpecialTokens s;
  std::string missing;
  auto need = [&](const char* text, int32_t& id) {
    const auto found = tokenizer.token_id(text);
    // An added token must be one the encoder can emit from text.
    if (found && tokenizer.is_added(*found)) {
      id = *found;
    } else {
      missing += std::string(missing.empty() ? "" : ", ") + text;
    }
  };
  need(kBosString, s.bos);
  need(kEosString, s.eos);
  need(kUserString, s.user);
  need(kAssistantString, s.assistant);
  need(kThinkOpenString, s.think_open);
  need(kThinkCloseString, s.think_close);
  need(kDsmlString, s.dsml);
  if (!missing.empty()) {
    return make_error("tokenizer: the vocabulary lacks the added tokens " + missing);
  }
  if (const auto id = tokenizer.token_id(kLatestReminderString); id && tokenizer.is_added(*id)) {
    s.latest_reminder = id;
  }
  return s;
}

}  // namespace dsv4::tokenizer
