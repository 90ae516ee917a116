// The MTP block of one sequence on the device (MODEL.md §10): a session of the block's model
// (upload_mtp_block) on the model session's stream, so that both queue in one order, and the kept
// row H of the model's last position. The pairs' H rows come from the model session's hidden rows
// (DeviceSession::hidden, its last forward's); which pairs run when is engine/mtp_track.h's.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "cuda/session.h"
#include "util/status.h"

namespace dsv4::cuda {

class MtpBlockSession {
 public:
  // `main` (made with hidden rows) must outlive the block; the block's chunks take at most
  // max_chunk pairs.
  static Result<std::unique_ptr<MtpBlockSession>> create(std::shared_ptr<const DeviceModel> block,
                                                         const DeviceSession& main, int max_chunk);

  int64_t next_index() const { return block_->n(); }
  Status rewind(int64_t index) { return block_->rewind(index); }
  // The empty block whose window starts at `index`, no kept row.
  Status start_at(int64_t index);
  // Pairs at next_index() .. + next.size() - 1: the first one's H the kept row when kept_first, then
  // the model session's hidden rows from `row`; `next` their tokens. Without `logits` the block's
  // head does not run (its logits are left undefined): about half a pair's time on Flash.
  Status run(bool kept_first, int64_t row, std::span<const int32_t> next, bool logits);
  // The model session's hidden row `row` becomes the kept row.
  Status keep(int64_t row);
  bool has_kept() const { return has_kept_; }
  // The arg-max of the last pair's logits (synchronises), and those logits on the host (tests).
  Result<int32_t> arg_max();
  std::span<const float> logits() const { return block_->logits(); }

  // A rollback point: the block's rollback region and the kept row (read back: synchronises).
  struct Saved {
    std::unique_ptr<DeviceSession::Checkpoint> window;
    std::vector<float> kept;
  };
  Result<Saved> save();
  Status restore(const Saved& saved);

 private:
  MtpBlockSession(std::unique_ptr<DeviceSession> block, const DeviceSession& main, std::unique_ptr<DeviceArena> kept);
  float* kept() const { return reinterpret_cast<float*>(kept_->base()); }
  Status copy_rows(float* dst, const float* src, int64_t rows) const;

  std::unique_ptr<DeviceSession> block_;
  const DeviceSession& main_;
  std::unique_ptr<DeviceArena> kept_;  // [4·n_embd]
  int64_t hd_;
  bool has_kept_ = false;
};

}  // namespace dsv4::cuda
