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

namespace dsv4::engine {
namespace {

// The MTP block's side of a sequence (BackendState::mtp_draft). With n the main state's
// positions: window.n() is n - 1 after a forward (last_hidden = H_{n-1}, its pair waiting for the
// next token), n after mtp_draft (drafted_next set) or after a restart at n (last_hidden empty).
struct MtpTrack {
  cpu::State window;           // the block's own state; n() = its next index
  int64_t window_start = 0;    // first index of its window (MODEL.md §10.2, cpu/mtp.h)
  std::vector<float> last_hidden;
  int32_t drafted_next = -1;   // the token mtp_draft paired with H_{n-1}, else -1
  int32_t draft = -1;          // that pair's guess

  void restart(int64_t n) {
    window.reset();
    window.set_n(n);
    window_start = n;
    last_hidden.clear();
    drafted_next = -1;
    draft = -1;
  }
};

class CpuCheckpoint final : public BackendCheckpoint {
 public:
  CpuCheckpoint(cpu::Checkpoint cp, std::optional<MtpTrack> mtp) : cp_(std::move(cp)), mtp_(std::move(mtp)) {}
  int64_t n() const override { return cp_.n; }
  const cpu::Checkpoint& get() const { return cp_; }
  // The block's whole state (one ring of raw rows: no context-sized storage).
  const std::optional<MtpTrack>& mtp() const { return mtp_; }

 private:
  cpu::Checkpoint cp_;
  std::optional<MtpTrack> mtp_;
};

int32_t arg_max(std::span<const float> logits) {
  return static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
}

class CpuState final : public BackendState {
 public:
  CpuState(std::shared_ptr<const model::Model> model, cpu::State state, std::optional<cpu::State> mtp_window,
           Mode mode)
      : model_(std::move(model)), state_(std::move(state)),
        sim_(mode == Mode::kOfficial ? cpu::SimOptions::official() : cpu::SimOptions::plain()) {
    if (mtp_window) {
      mtp_.emplace();
      mtp_->window = std::move(*mtp_window);
    }
  }

  int64_t n() const override { return state_.n(); }
  Status forward(std::span<const int32_t> tokens, float* all_logits) override {
    if (!mtp_) return cpu::forward(*model_, state_, tokens, sim_, all_logits);
    if (tokens.empty()) return Status();
    const int64_t a = state_.n(), HD = model_->config.hc_dim();
    std::vector<float> hidden(tokens.size() * static_cast<size_t>(HD));
    DSV4_TRY(cpu::forward(*model_, state_, tokens, sim_, all_logits, nullptr, hidden.data()));
    MtpTrack& m = *mtp_;
    if (m.drafted_next >= 0 && m.drafted_next != tokens[0]) m.window.set_n(a - 1);  // that pair is not this one
    m.drafted_next = -1;
    // Every pair (H_i, t_{i+1}) now known: i from the block's next index to the last position but one.
    const int64_t b = a + static_cast<int64_t>(tokens.size()), first = m.window.n();
    std::vector<float> pairs_hidden;
    for (int64_t i = first; i <= b - 2; ++i) {
      const float* h = i < a ? m.last_hidden.data() : hidden.data() + (i - a) * HD;
      pairs_hidden.insert(pairs_hidden.end(), h, h + HD);
    }
    if (first <= b - 2) {
      const std::span<const int32_t> next = tokens.subspan(static_cast<size_t>(first + 1 - a));
      DSV4_TRY(cpu::mtp_forward(*model_->mtp, m.window, m.window_start, pairs_hidden,
                                next.first(static_cast<size_t>(b - 1 - first)), sim_, nullptr));
    }
    m.last_hidden.assign(hidden.end() - HD, hidden.end());
    return Status();
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
    MtpTrack& m = *mtp_;
    const int64_t n = state_.n();
    if (m.drafted_next >= 0) {
      if (m.drafted_next == next) return std::optional<int32_t>(m.draft);
      m.window.set_n(n - 1);
      m.drafted_next = -1;
    }
    if (n == 0 || m.last_hidden.empty() || m.window.n() != n - 1) return std::optional<int32_t>();
    const int32_t token[1] = {next};
    DSV4_TRY(cpu::mtp_forward(*model_->mtp, m.window, m.window_start, m.last_hidden, token, sim_, nullptr));
    m.drafted_next = next;
    m.draft = arg_max(m.window.logits());
    return std::optional<int32_t>(m.draft);
  }

  std::unique_ptr<BackendCheckpoint> checkpoint() override {
    return std::make_unique<CpuCheckpoint>(state_.checkpoint(), mtp_);
  }
  Status rollback(const BackendCheckpoint& cp) override {
    const auto& c = static_cast<const CpuCheckpoint&>(cp);
    DSV4_TRY(state_.rollback(c.get()));
    if (mtp_) mtp_ = c.mtp();
    return Status();
  }
  void reset() override {
    state_.reset();
    if (mtp_) mtp_->restart(0);
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
    if (mtp_) mtp_->restart(n);  // snapshots carry no MTP state (PROTOCOL.md §5.5)
    return Status();
  }

 private:
  std::shared_ptr<const model::Model> model_;
  cpu::State state_;
  cpu::SimOptions sim_;
  std::optional<MtpTrack> mtp_;
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
