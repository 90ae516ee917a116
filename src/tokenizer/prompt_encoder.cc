#include "tokenizer/prompt_encoder.h"

namespace dsv4::tokenizer {

void PromptEncoder::add_template(std::string_view text) {
  for (const Tokenizer::Segment& s : tokenizer_->split_special(text)) {
    if (s.id >= 0) {
      add_token(s.id);
    } else {
      pending_.append(s.text);
    }
  }
}

void PromptEncoder::add_client(std::string_view text) { pending_.append(text); }

void PromptEncoder::add_token(int32_t id) {
  flush_text();
  ids_.push_back(id);
}

void PromptEncoder::flush_text() {
  if (pending_.empty()) return;
  tokenizer_->append_text(pending_, ids_);
  pending_.clear();
}

std::vector<int32_t> PromptEncoder::finish() {
  flush_text();
  std::vector<int32_t> out = std::move(ids_);
  ids_.clear();
  return out;
}

}  // namespace dsv4::tokenizer
