#include "engine/mtp_track.h"

namespace dsv4::engine {

Status MtpTrack::after_forward(Block& block, int64_t a, std::span<const int32_t> tokens) {
  if (tokens.empty()) return Status();
  if (drafted_next_ >= 0 && drafted_next_ != tokens[0]) DSV4_TRY(block.rewind(a - 1));
  drafted_next_ = -1;
  const int64_t end = a + static_cast<int64_t>(tokens.size()), first = block.next_index();
  if (first <= end - 2) {
    const bool kept_first = first < a;  // first = a - 1: H_{a-1} is the kept row
    const size_t from = static_cast<size_t>(first + 1 - a), count = static_cast<size_t>(end - 1 - first);
    DSV4_TRY(block.run(kept_first, kept_first ? 0 : first - a, tokens.subspan(from, count), false));
  }
  return block.keep(end - 1 - a);
}

Status MtpTrack::after_keep(Block& block, int64_t a, int64_t k) {
  // Pairs up to index a + k - 2 stand (their next tokens were kept); H_{a+k-1} waits.
  if (block.next_index() > a + k - 1) DSV4_TRY(block.rewind(a + k - 1));
  return block.keep(k - 1);
}

Result<std::optional<int32_t>> MtpTrack::draft(Block& block, int64_t n, int32_t next) {
  if (drafted_next_ >= 0) {
    if (next == drafted_next_) return std::optional<int32_t>(draft_);
    DSV4_TRY(block.rewind(n - 1));
    drafted_next_ = -1;
  }
  if (n == 0 || !block.has_kept() || block.next_index() != n - 1) return std::optional<int32_t>();
  const int32_t token[1] = {next};
  DSV4_TRY(block.run(true, 0, token, true));
  DSV4_ASSIGN_OR_RETURN(draft_, block.arg_max());
  drafted_next_ = next;
  return std::optional<int32_t>(draft_);
}

Status MtpTrack::start_at(Block& block, int64_t n) {
  drafted_next_ = -1;
  return block.start_at(n);
}

}  // namespace dsv4::engine
