#include "engine/mtp_track.h"

namespace dsv4::engine {

Status MtpTrack::after_forward(int64_t a, std::span<const int32_t> tokens) {
  if (tokens.empty()) return Status();
  if (marks_.drafted_next >= 0 && marks_.drafted_next != tokens[0]) DSV4_TRY(rewind(a - 1));
  marks_.drafted_next = -1;
  const int64_t end = a + static_cast<int64_t>(tokens.size()), first = next_index();
  if (first <= end - 2) {
    const bool kept_first = first < a;  // first = a - 1: H_{a-1} is the kept row
    const size_t from = static_cast<size_t>(first + 1 - a), count = static_cast<size_t>(end - 1 - first);
    DSV4_TRY(run(kept_first, kept_first ? 0 : first - a, tokens.subspan(from, count), false));
  }
  return keep(end - 1 - a);
}

Status MtpTrack::after_keep(int64_t a, int64_t k) {
  // Pairs up to index a + k - 2 stand (their next tokens were kept); H_{a+k-1} waits.
  if (next_index() > a + k - 1) DSV4_TRY(rewind(a + k - 1));
  return keep(k - 1);
}

Result<std::optional<int32_t>> MtpTrack::draft(int64_t n, int32_t next) {
  if (marks_.drafted_next >= 0) {
    if (next == marks_.drafted_next) return std::optional<int32_t>(marks_.draft);
    DSV4_TRY(rewind(n - 1));
    marks_.drafted_next = -1;
  }
  if (n == 0 || !has_kept() || next_index() != n - 1) return std::optional<int32_t>();
  const int32_t token[1] = {next};
  DSV4_TRY(run(true, 0, token, true));
  DSV4_ASSIGN_OR_RETURN(marks_.draft, arg_max());
  marks_.drafted_next = next;
  return std::optional<int32_t>(marks_.draft);
}

Status MtpTrack::restart_at(int64_t n) {
  marks_.drafted_next = -1;
  return start_at(n);
}

}  // namespace dsv4::engine
