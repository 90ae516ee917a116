#include "tokenizer/stream_decoder.h"

#include "tokenizer/utf8.h"

namespace dsv4::tokenizer {

Result<std::string> StreamDecoder::push(int32_t id) {
  if (!tokenizer_->valid_id(id)) {
    return make_error("detokenizer: token id " + std::to_string(id) + " outside the vocabulary (" +
                      std::to_string(tokenizer_->vocab_size()) + " tokens)");
  }
  pending_ += tokenizer_->piece(id);
  const size_t ready = utf8::stream_safe_length(pending_);
  std::string out = utf8::replace_invalid(std::string_view(pending_).substr(0, ready));
  pending_.erase(0, ready);
  return out;
}

std::string StreamDecoder::flush() {
  std::string out = utf8::replace_invalid(pending_);
  pending_.clear();
  return out;
}

}  // namespace dsv4::tokenizer
