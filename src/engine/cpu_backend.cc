// The CPU reference backend (cpu/) behind the engine's backend interface.
#include <algorithm>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "cpu/forward.h"
#include "cpu/mtp.h"
#include "cpu/state.h"
#include "engine/backend.h"
#include "engine/host_memory.h"
#include "engine/mtp_track.h"

namespace dsv4::engine {
namespace {

// The MTP block on the CPU (cpu/mtp.h): its own state, the kept row and the last forward's hidden rows.
class CpuBlock final : public MtpTrack {
 public:
  // The block's state but the piece (no context-sized storage: one ring), and what a checkpoint
  // keeps: that and the bookkeeping's marks.
  struct BlockState {
    cpu::State window;
    int64_t window_start = 0;
    std::vector<float> kept;
  };
  struct Saved {
    BlockState block;
    MtpTrack::Marks marks;
  };

  CpuBlock(const model::MtpModel& mtp, cpu::State window, cpu::SimOptions sim)
      : mtp_(mtp), sim_(sim), hd_(mtp.block.config.hc_dim()) {
    block_.window = std::move(window);
  }

  std::vector<float>& piece() { return piece_; }
  Saved saved() const { return Saved{block_, marks()}; }
  void restore(const Saved& s) {
    block_ = s.block;
    set_marks(s.marks);
  }

 private:
  int64_t next_index() const override { return block_.window.n(); }
  Status rewind(int64_t index) override {
    if (index < block_.window_start || index > block_.window.n()) return make_error("mtp rewind: outside the window");
    block_.window.set_n(index);
    return Status();
  }
  Status start_at(int64_t index) override {
    block_.window.reset();
    block_.window.set_n(index);
    block_.window_start = index;
    block_.kept.clear();
    return Status();
  }
  // cpu::mtp_forward computes the last pair's logits whatever `logits` says.
  Status run(bool kept_first, int64_t row, std::span<const int32_t> next, bool /*logits*/) override {
    std::vector<float> h;
    const int64_t from_piece = static_cast<int64_t>(next.size()) - (kept_first ? 1 : 0);
    if (kept_first) h = block_.kept;
    h.insert(h.end(), piece_.begin() + row * hd_, piece_.begin() + (row + from_piece) * hd_);
    return cpu::mtp_forward(mtp_, block_.window, block_.window_start, h, next, sim_, nullptr);
  }
  Status keep(int64_t row) override {
    block_.kept.assign(piece_.begin() + row * hd_, piece_.begin() + (row + 1) * hd_);
    return Status();
  }
  bool has_kept() const override { return !block_.kept.empty(); }
  Result<int32_t> arg_max() override {
    const std::span<const float> l = block_.window.logits();
    return static_cast<int32_t>(std::max_element(l.begin(), l.end()) - l.begin());
  }

  const model::MtpModel& mtp_;
  cpu::SimOptions sim_;
  int64_t hd_;
  BlockState block_;
  std::vector<float> piece_;  // [tokens][hc_dim] of the last forward
};

class CpuCheckpoint final : public BackendCheckpoint {
 public:
  CpuCheckpoint(cpu::Checkpoint cp, std::optional<CpuBlock::Saved> mtp) : cp_(std::move(cp)), mtp_(std::move(mtp)) {}
  int64_t n() const override { return cp_.n; }
  const cpu::Checkpoint& get() const { return cp_; }
  const std::optional<CpuBlock::Saved>& mtp() const { return mtp_; }

 private:
  cpu::Checkpoint cp_;
  std::optional<CpuBlock::Saved> mtp_;
};

class CpuState final : public BackendState {
 public:
  CpuState(std::shared_ptr<const model::Model> model, cpu::State state, std::optional<cpu::State> mtp_window,
           Mode mode)
      : model_(std::move(model)), state_(std::move(state)),
        sim_(mode == Mode::kOfficial ? cpu::SimOptions::official() : cpu::SimOptions::plain()) {
    if (mtp_window) mtp_.emplace(*model_->mtp, std::move(*mtp_window), sim_);
  }

  int64_t n() const override { return state_.n(); }
  Status forward(std::span<const int32_t> tokens, float* all_logits) override {
    if (!mtp_) return cpu::forward(*model_, state_, tokens, sim_, all_logits);
    const int64_t a = state_.n();
    std::vector<float>& piece = mtp_->piece();
    piece.resize(tokens.size() * static_cast<size_t>(model_->config.hc_dim()));
    DSV4_TRY(cpu::forward(*model_, state_, tokens, sim_, all_logits, nullptr, piece.data()));
    return mtp_->after_forward(a, tokens);
  }
  // cpu::forward takes any length in one pass at about the same rate per token: short first calls
  // for an early report, growing to at most 4096.
  ReportedChunks reported_chunks() const override { return {32, 4096}; }
  std::span<const float> logits() const override { return state_.logits(); }
  // Chunking never changes a bit of cpu::forward (forward.cc): any draft length; a bound that keeps
  // a run's logits small.
  int64_t draft_run_length(int64_t most) const override { return std::min<int64_t>(most, 16); }

  bool has_mtp() const override { return mtp_.has_value(); }
  Result<std::optional<int32_t>> mtp_draft(int32_t next) override {
    if (!mtp_) return BackendState::mtp_draft(next);
    return mtp_->draft(state_.n(), next);
  }

  std::unique_ptr<BackendCheckpoint> checkpoint() override {
    std::optional<CpuBlock::Saved> mtp;
    if (mtp_) mtp = mtp_->saved();
    return std::make_unique<CpuCheckpoint>(state_.checkpoint(), std::move(mtp));
  }
  Status rollback(const BackendCheckpoint& cp) override {
    const auto& c = static_cast<const CpuCheckpoint&>(cp);
    DSV4_TRY(state_.rollback(c.get()));
    if (mtp_) mtp_->restore(*c.mtp());
    return Status();
  }
  void reset() override {
    state_.reset();
    if (mtp_) (void)mtp_->restart_at(0);  // cannot fail on the CPU
  }

  std::vector<uint8_t> serialize() const override { return state_.serialize(); }
  Status restore(std::span<const uint8_t> bytes, int64_t n) override {
    cpu::State restored = state_;
    DSV4_TRY(restored.restore(bytes));
    if (restored.n() != n) {
      return make_error("snapshot rejected: state holds " + std::to_string(restored.n()) +
                        " positions but " + std::to_string(n) + " tokens are listed");
    }
    state_ = std::move(restored);
    // Snapshots carry no state of the block (as ds4's, PROTOCOL.md §5.5): it starts again here.
    if (mtp_) DSV4_TRY(mtp_->restart_at(n));
    return Status();
  }

 private:
  std::shared_ptr<const model::Model> model_;
  cpu::State state_;
  cpu::SimOptions sim_;
  std::optional<CpuBlock> mtp_;
};

class CpuModel final : public BackendModel {
 public:
  explicit CpuModel(std::shared_ptr<const model::Model> model) : model_(std::move(model)) {}
  const model::Config& config() const override { return model_->config; }
  Result<std::unique_ptr<BackendState>> new_state(int64_t n_ctx, Mode mode) override {
    // Compressed rows are reserved, not touched, at creation: without this check an oversized
    // context would be accepted and the process killed later, in the middle of a prefill.
    DSV4_TRY(check_host_memory(model::session_state_bytes_f32(model_->config, n_ctx), host_memory_available(),
                               "a context of " + std::to_string(n_ctx) + " tokens (session state)"));
    DSV4_ASSIGN_OR_RETURN(cpu::State state, cpu::State::create(model_->config, n_ctx));
    std::optional<cpu::State> mtp_window;
    if (model_->mtp) {
      DSV4_ASSIGN_OR_RETURN(mtp_window, cpu::State::create(model_->mtp->block.config, n_ctx));
    }
    return std::unique_ptr<BackendState>(new CpuState(model_, std::move(state), std::move(mtp_window), mode));
  }

 private:
  std::shared_ptr<const model::Model> model_;
};

}  // namespace

Result<std::unique_ptr<BackendModel>> make_cpu_backend(std::shared_ptr<const model::Model> model) {
  return std::unique_ptr<BackendModel>(new CpuModel(std::move(model)));
}

}  // namespace dsv4::engine
