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

 private:
  // The n-gram ending at tokens_[end - 1], packed (token ids below 2^21).
  uint64_t key(size_t end) const;

  std::vector<int32_t> tokens_;
  // n-gram -> the index after its latest occurrence whose continuation is known (the last n-gram
  // of the sequence is indexed only once a token follows it).
  std::unordered_map<uint64_t, uint32_t> next_;
};

// How many tokens the next draft may have. A rejected draft costs its whole run for one token (on an
// H200 a run of 2 costs 1.4 steps, of 4 2.3: docs/PERF.md session 39), so a draft starts at one
// token, grows to the most allowed once a draft was kept whole, and shrinks back to one at a
// miss; after k drafts in a row whose first token was rejected no draft is made for the next
// 2^k tokens (at most kMaxPause). Repeated text is thus drafted at full length after one short
// draft, and text that only seems to repeat costs a few short runs.
class DraftLength {
 public:
  static constexpr int kMaxPause = 64;

  // The draft length for the next token (0: no draft), at most `most`; counts down a pause.
  int next(int most);
  // A draft of `drafted` tokens of which the first `accepted` were kept.
  void record(int drafted, int accepted);

 private:
  bool grown_ = false;
  int misses_ = 0;  // drafts in a row whose first token was rejected
  int pause_ = 0;   // tokens left without a draft
};

}  // namespace dsv4::generation
