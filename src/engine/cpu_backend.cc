// The CPU reference backend (cpu/) behind the engine's backend interface.
#include <string>
#include <utility>

#include "cpu/forward.h"
#include "cpu/state.h"
#include "engine/backend.h"
#include "engine/host_memory.h"

namespace dsv4::engine {
namespace {

class CpuCheckpoint final : public BackendCheckpoint {
 public:
  explicit CpuCheckpoint(cpu::Checkpoint cp) : cp_(std::move(cp)) {}
  int64_t n() const override { return cp_.n; }
  const cpu::Checkpoint& get() const { return cp_; }

 private:
  cpu::Checkpoint cp_;
};

class CpuState final : public BackendState {
 public:
  CpuState(std::shared_ptr<const model::Model> model, cpu::State state, Mode mode)
      : model_(std::move(model)), state_(std::move(state)),
        sim_(mode == Mode::kOfficial ? cpu::SimOptions::official() : cpu::SimOptions::plain()) {}

  int64_t n() const override { return state_.n(); }
  Status forward(std::span<const int32_t> tokens, float* all_logits) override {
    return cpu::forward(*model_, state_, tokens, sim_, all_logits);
  }
  // cpu::forward takes any length in one pass at about the same rate per token: short first calls
  // for an early report, growing to at most 4096.
  ReportedChunks reported_chunks() const override { return {32, 4096}; }
  std::span<const float> logits() const override { return state_.logits(); }
  // Chunking never changes a bit of cpu::forward (forward.cc): any draft length; a bound that keeps
  // a run's logits small.
  int64_t draft_run_length(int64_t most) const override { return std::min<int64_t>(most, 16); }

  std::unique_ptr<BackendCheckpoint> checkpoint() override {
    return std::make_unique<CpuCheckpoint>(state_.checkpoint());
  }
  Status rollback(const BackendCheckpoint& cp) override {
    return state_.rollback(static_cast<const CpuCheckpoint&>(cp).get());
  }
  void reset() override { state_.reset(); }

  std::vector<uint8_t> serialize() const override { return state_.serialize(); }
  Status restore(std::span<const uint8_t> bytes, int64_t n) override {
    cpu::State restored = state_;
    DSV4_TRY(restored.restore(bytes));
    if (restored.n() != n) {
      return make_error("snapshot rejected: state holds " + std::to_string(restored.n()) +
                        " positions but " + std::to_string(n) + " tokens are listed");
    }
    state_ = std::move(restored);
    return Status();
  }

 private:
  std::shared_ptr<const model::Model> model_;
  cpu::State state_;
  cpu::SimOptions sim_;
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
    return std::unique_ptr<BackendState>(new CpuState(model_, std::move(state), mode));
  }

 private:
  std::shared_ptr<const model::Model> model_;
};

}  // namespace

Result<std::unique_ptr<BackendModel>> make_cpu_backend(std::shared_ptr<const model::Model> model) {
  return std::unique_ptr<BackendModel>(new CpuModel(std::move(model)));
}

}  // namespace dsv4::engine
