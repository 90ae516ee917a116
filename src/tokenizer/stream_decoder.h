// Incremental detokenizer (PROTOCOL.md §1.7). A token may end in the middle of a UTF-8
// character (byte-level BPE splits emoji and CJK into byte pieces), so the text of each new
// token is emitted only up to the last complete character; the unfinished tail waits for the
// next token. Output is always valid UTF-8: bytes that can never form a character become
// U+FFFD, and flush() turns a tail that was never completed into one U+FFFD.
#pragma once

#include <cstdint>
#include <string>

#include "tokenizer/tokenizer.h"
#include "util/status.h"

namespace dsv4::tokenizer {

class StreamDecoder {
 public:
  // The tokenizer must outlive the decoder.
  explicit StreamDecoder(const Tokenizer& tokenizer) : tokenizer_(&tokenizer) {}

  // Text that became complete with this token (possibly empty). An id outside the vocabulary
  // is an error and leaves the decoder unchanged.
  Result<std::string> push(int32_t id);
  // Whatever is still held back, as U+FFFD; the decoder is then empty.
  std::string flush();

  // Bytes held back so far (at most 3).
  size_t pending() const { return pending_.size(); }

 private:
  const Tokenizer* tokenizer_;
  std::string pending_;
};

}  // namespace dsv4::tokenizer
