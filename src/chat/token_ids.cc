#include "chat/token_ids.h"

#include <string>

#include "tokenizer/prompt_encoder.h"

namespace dsv4::chat {

Result<std::vector<int32_t>> prompt_token_ids(const RenderedPrompt& prompt,
                                              const tokenizer::Tokenizer& tokenizer) {
  tokenizer::PromptEncoder enc(tokenizer);
  for (const Segment& s : prompt.segments) {
    if (s.is_control) {
      auto id = tokenizer.token_id(s.text);
      if (!id) return make_error("the vocabulary has no token '" + s.text + "'");
      enc.add_token(*id);
    } else if (s.from_client) {
      enc.add_client(s.text);
    } else {
      enc.add_template(s.text);
    }
  }
  return enc.finish();
}

}  // namespace dsv4::chat
