// The MTP block beside a backend's forward passes (BackendState::mtp_draft, MODEL.md §10.2), the
// same on every backend. After the model evaluates positions a .. b-1, the pairs (H_i, t_{i+1})
// whose token became known are evaluated by the block, i from its next index to b-2, and H_{b-1}
// is kept for the pair that waits for the next token. draft(next) evaluates that pair with the
// token about to be evaluated and remembers it, so that the forward of that token skips it (a
// forward of another token takes it back first). The block never runs ahead of the model: its
// next index is n-1 after a forward, n after a draft or after starting again at n.
#pragma once

#include <cstdint>
#include <optional>
#include <span>

#include "util/status.h"

namespace dsv4::engine {

// A backend's MTP block derives from MtpTrack and implements its primitives over its own state;
// the bookkeeping below calls them.
class MtpTrack {
 public:
  // The bookkeeping's own state, which a checkpoint keeps with the block's.
  struct Marks {
    int32_t drafted_next = -1;  // the token draft() paired with H_{n-1}, else -1
    int32_t draft = -1;         // that pair's guess
  };

  virtual ~MtpTrack() = default;

  // After the model evaluated `tokens` at positions a .. a + size - 1 (the block's piece).
  Status after_forward(int64_t a, std::span<const int32_t> tokens);
  // After a draft of tokens from position a was cut to its first k (the piece is still the draft's).
  Status after_keep(int64_t a, int64_t k);
  // The block's guess after `next`, the token about to be evaluated at position n; nothing where the
  // block has no kept row of position n-1.
  Result<std::optional<int32_t>> draft(int64_t n, int32_t next);
  // The block starts again at position n (a reset, a restored snapshot: no state of its own).
  Status restart_at(int64_t n);

  const Marks& marks() const { return marks_; }
  void set_marks(const Marks& m) { marks_ = m; }

 protected:
  // What the backend keeps of the block: its state, one kept row H (of the last position), and the
  // hidden rows of the model's last forward (its "piece", row 0 = its first position).
  virtual int64_t next_index() const = 0;
  // Back to a smaller next index (the rows past it are rewritten before anything reads them).
  virtual Status rewind(int64_t index) = 0;
  // The empty block whose window starts at `index`, with no kept row.
  virtual Status start_at(int64_t index) = 0;
  // Pairs at indices next_index() .. + next.size() - 1 with tokens `next`: the first pair's H is
  // the kept row when kept_first, then the piece's rows from `row`. Without `logits` the last
  // pair's logits may be left undefined (nobody reads them).
  virtual Status run(bool kept_first, int64_t row, std::span<const int32_t> next, bool logits) = 0;
  // The piece's row `row` becomes the kept row.
  virtual Status keep(int64_t row) = 0;
  virtual bool has_kept() const = 0;
  // The arg-max of the last pair's logits from the last run() (ties: the lower id).
  virtual Result<int32_t> arg_max() = 0;

 private:
  Marks marks_;
};

}  // namespace dsv4::engine
