// The DeepSeek V4 tokenizer: byte-level BPE with the V3 pre-tokenizer and the V4 added tokens
// (PROTOCOL.md §1). Built from a vocabulary (token strings, token types, merges) as stored in
// a GGUF file (FORMATS.md §2.3); every special token is found by its string, never by a fixed id.
//
// Two encodings:
//   encode_text          plain text: added-token strings are ordinary text (a user typing
//                        "<｜User｜>" gets the BPE tokens of those characters);
//   encode_with_special  rendered prompts and raw completions: every added-token string is
//                        found first (leftmost-longest) and becomes its id; the gaps are BPE'd.
// A Tokenizer is immutable and cheap to copy (shared state); it may be used from many threads.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "util/status.h"

namespace dsv4::gguf {
class File;
}

namespace dsv4::tokenizer {

// llama.cpp token types (tokenizer.ggml.token_type).
enum TokenType : int32_t {
  kTokenNormal = 1,
  kTokenUnknown = 2,
  kTokenControl = 3,
  kTokenUserDefined = 4,
  kTokenUnused = 5,
  kTokenByte = 6,
};

// A vocabulary as GGUF stores it: `tokens[id]` in the GPT-2 byte alphabet for BPE tokens
// ("Ġworld"), literal UTF-8 for added tokens ("<｜User｜>"); `types[id]` (or empty: then added
// tokens are recognised as the multi-character tokens that no merge produces); `merges` as
// "left right", rank = index.
struct Vocab {
  std::vector<std::string> tokens;
  std::vector<int32_t> types;
  std::vector<std::string> merges;
};

class Tokenizer {
 public:
  // Validates the vocabulary: all 256 byte symbols present, every merge's parts and result in
  // the vocabulary, types in range and as many as tokens.
  static Result<Tokenizer> from_vocab(Vocab vocab);
  // Reads tokenizer.ggml.{model,pre,tokens,token_type,merges} (FORMATS.md §2.3).
  static Result<Tokenizer> from_gguf(const gguf::File& file);

  std::vector<int32_t> encode_text(std::string_view text) const;
  std::vector<int32_t> encode_with_special(std::string_view text) const;
  // Appending forms, for callers that assemble one sequence from several parts.
  void append_text(std::string_view text, std::vector<int32_t>& out) const;
  void append_with_special(std::string_view text, std::vector<int32_t>& out) const;

  // A run of text between added tokens, or one added token (id >= 0).
  struct Segment {
    std::string_view text;
    int32_t id = -1;
  };
  // Splits `text` at added-token strings (leftmost-longest); text segments are never empty.
  std::vector<Segment> split_special(std::string_view text) const;

  // Id of an exact vocabulary string ("<｜User｜>", "Ġworld"); nullopt if absent.
  std::optional<int32_t> token_id(std::string_view token) const;
  // Id of the token whose decoded bytes are `text`, BPE tokens and added tokens alike
  // (" world" -> the id of "Ġworld"); nullopt if absent.
  std::optional<int32_t> token_id_for_text(std::string_view text) const;

  // Concatenated bytes of the tokens. An id outside [0, vocab_size()) is an error. The bytes
  // need not be valid UTF-8 (a token may end inside a character): StreamDecoder or
  // utf8::replace_invalid make them safe to show.
  Result<std::string> decode(std::span<const int32_t> ids) const;

  bool valid_id(int32_t id) const { return id >= 0 && id < vocab_size(); }
  // Bytes one token contributes to decoded text; empty for an invalid id.
  const std::string& piece(int32_t id) const;
  // The vocabulary string of a token ("Ġworld"); empty for an invalid id.
  const std::string& token(int32_t id) const;
  // Added tokens (control or user-defined) are matched in text by encode_with_special and
  // never produced by BPE.
  bool is_added(int32_t id) const;
  int32_t type(int32_t id) const;

  int32_t vocab_size() const;
  size_t merge_count() const;
  size_t added_count() const;
  const Vocab& vocab() const;

 private:
  struct Data;
  explicit Tokenizer(std::shared_ptr<const Data> data) : d_(std::move(data)) {}
  std::shared_ptr<const Data> d_;
};

}  // namespace dsv4::tokenizer
