// Drafts for speculative decoding without a draft model (prompt lookup): after the context's last
// kDraftNgram tokens, propose the tokens that followed their latest earlier occurrence. An answer
// that repeats text of its prompt or of itself (code being edited, a quoted tool result, a list's
// pattern) gets its next tokens for free; the generator verifies them in one multi-token
// evaluation and keeps what the sampler would have produced anyway (generator.h), so a wrong draft
// costs time, never a different token.
#pragma once

#include <cstdint>
#include <span>
#include <unordered_map>
#include <vector>

namespace dsv4::generation {

class NgramDrafter {
 public:
  static constexpr int kDraftNgram = 3;

  // Indexes `context` (the prompt), O(size).
  explicit NgramDrafter(std::span<const int32_t> context);

  // Appends one token of the sequence (sampled, drafted and kept: whatever the session holds next).
  void push(int32_t token);

  // Up to max_tokens tokens that followed the latest earlier occurrence of the last kDraftNgram
  // tokens, cut where the sequence's end begins (no draft: no such occurrence).
  std::vector<int32_t> propose(int max_tokens) const;

  const std::vector<int32_t>& tokens() const { return tokens_; }

 private:
  // The n-gram ending at tokens_[end - 1], packed (token ids below 2^21).
  uint64_t key(size_t end) const;

  std::vector<int32_t> tokens_;
  // n-gram -> the index after its latest occurrence whose continuation is known (the last n-gram
  // of the sequence is indexed only once a token follows it).
  std::unordered_map<uint64_t, uint32_t> next_;
};

}  // namespace dsv4::generation
