// Tokenises a rendered chat prompt by the dsv4 segment rule (PROTOCOL.md §2.12): template
// text (markers, separators written by the renderer) may contain added-token strings, which
// become their ids; client text (message contents, tool results, ...) never does. All
// remaining text between two emitted control tokens is BPE'd as one run, so BPE pieces cross
// template/client boundaries exactly as in the official string tokenisation.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "tokenizer/tokenizer.h"

namespace dsv4::tokenizer {

class PromptEncoder {
 public:
  // The tokenizer must outlive the encoder.
  explicit PromptEncoder(const Tokenizer& tokenizer) : tokenizer_(&tokenizer) {}

  void add_template(std::string_view text);
  void add_client(std::string_view text);
  void add_token(int32_t id);  // an id chosen by the renderer itself

  // All ids so far; the encoder is then empty.
  std::vector<int32_t> finish();

 private:
  void flush_text();

  const Tokenizer* tokenizer_;
  std::string pending_;  // text since the last control token
  std::vector<int32_t> ids_;
};

}  // namespace dsv4::tokenizer
