#include "engine/engine.h"

#include <utility>

#include "cpu/forward.h"
#include "cpu/state.h"
#include "model/weights.h"

namespace dsv4::engine {

Result<Mode> parse_mode(const std::string& name) {
  if (name == "official") return Mode::kOfficial;
  if (name == "plain") return Mode::kPlain;
  return make_error("unknown mode '" + name + "' (expected official or plain)");
}

const char* mode_name(Mode mode) { return mode == Mode::kOfficial ? "official" : "plain"; }

Result<Backend> parse_backend(const std::string& name) {
  if (name == "cpu") return Backend::kCpu;
  return make_error("unknown backend '" + name + "' (this build has: cpu)");
}

namespace {

cpu::SimOptions sim_options(Mode mode) {
  return mode == Mode::kOfficial ? cpu::SimOptions::official() : cpu::SimOptions::plain();
}

class CpuSession final : public Session {
 public:
  CpuSession(std::shared_ptr<const model::Model> model, Mode mode, cpu::State state, int64_t n_ctx)
      : model_(std::move(model)), mode_(mode), state_(std::move(state)), n_ctx_(n_ctx) {}

  Status eval(std::span<const int32_t> tokens, float* all_logits) override {
    if (static_cast<int64_t>(tokens_.size() + tokens.size()) > n_ctx_) {
      return make_error("context full: " + std::to_string(tokens_.size()) + " + " +
                        std::to_string(tokens.size()) + " tokens exceed the session's " +
                        std::to_string(n_ctx_));
    }
    DSV4_TRY(cpu::forward(*model_, state_, tokens, sim_options(mode_), all_logits));
    tokens_.insert(tokens_.end(), tokens.begin(), tokens.end());
    return Status();
  }
  std::span<const float> logits() const override {
    return tokens_.empty() ? std::span<const float>() : state_.logits();
  }
  const std::vector<int32_t>& tokens() const override { return tokens_; }
  int64_t n_ctx() const override { return n_ctx_; }

 private:
  std::shared_ptr<const model::Model> model_;
  Mode mode_;
  cpu::State state_;
  int64_t n_ctx_;
  std::vector<int32_t> tokens_;
};

class CpuEngine final : public Engine {
 public:
  CpuEngine(std::shared_ptr<const model::Model> model, Mode mode)
      : model_(std::move(model)), mode_(mode) {}

  const model::Config& config() const override { return model_->config; }
  Mode mode() const override { return mode_; }

  Result<std::unique_ptr<Session>> new_session(int64_t n_ctx) override {
    if (n_ctx < 1) return make_error("context size must be at least 1, got " + std::to_string(n_ctx));
    DSV4_ASSIGN_OR_RETURN(cpu::State state, cpu::State::create(model_->config, n_ctx));
    return std::unique_ptr<Session>(new CpuSession(model_, mode_, std::move(state), n_ctx));
  }

 private:
  std::shared_ptr<const model::Model> model_;
  Mode mode_;
};

}  // namespace

Result<std::shared_ptr<Engine>> Engine::load(const EngineOptions& options) {
  DSV4_ASSIGN_OR_RETURN(std::shared_ptr<const model::Model> model, model::load_model(options.model_path));
  switch (options.backend) {
    case Backend::kCpu:
      return std::shared_ptr<Engine>(std::make_shared<CpuEngine>(std::move(model), options.mode));
  }
  return make_error("unsupported backend");
}

}  // namespace dsv4::engine
