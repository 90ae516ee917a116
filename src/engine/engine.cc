#include "engine/engine.h"

#include <utility>

#include "cpu/forward.h"
#include "cpu/state.h"
#include "engine/snapshot.h"
#include "model/weights.h"
#include "util/mapped_file.h"

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
  CpuSession(std::shared_ptr<const model::Model> model, Fingerprint fingerprint, Mode mode,
             cpu::State state, int64_t n_ctx)
      : model_(std::move(model)), fingerprint_(fingerprint), mode_(mode), state_(std::move(state)),
        n_ctx_(n_ctx) {}

  Status eval(std::span<const int32_t> tokens, float* all_logits) override {
    if (static_cast<int64_t>(tokens_.size() + tokens.size()) > n_ctx_) {
      return make_error("context full: " + std::to_string(tokens_.size()) + " + " +
                        std::to_string(tokens.size()) + " tokens exceed the session's " +
                        std::to_string(n_ctx_));
    }
    DSV4_TRY(cpu::forward(*model_, state_, tokens, sim_options(mode_), all_logits));
    tokens_.insert(tokens_.end(), tokens.begin(), tokens.end());
    if (tokens.size() > 1) checkpoint();
    return Status();
  }

  void checkpoint() override {
    if (!checkpoints_.empty() && checkpoints_.back().n == state_.n()) return;
    if (checkpoints_.size() == kMaxCheckpoints) checkpoints_.erase(checkpoints_.begin());
    checkpoints_.push_back(state_.checkpoint());
  }

  Result<SyncStats> sync(std::span<const int32_t> prefix) override {
    if (static_cast<int64_t>(prefix.size()) > n_ctx_) {
      return make_error("prompt of " + std::to_string(prefix.size()) +
                        " tokens exceeds the session's context of " + std::to_string(n_ctx_));
    }
    size_t common = 0;
    while (common < tokens_.size() && common < prefix.size() && tokens_[common] == prefix[common]) ++common;
    if (common < tokens_.size()) DSV4_TRY(rewind_to_at_most(common));
    SyncStats stats;
    stats.reused = static_cast<int64_t>(tokens_.size());
    stats.evaluated = static_cast<int64_t>(prefix.size() - tokens_.size());
    if (stats.evaluated > 0) DSV4_TRY(eval(prefix.subspan(tokens_.size()), nullptr));
    return stats;
  }
  std::span<const float> logits() const override {
    return tokens_.empty() ? std::span<const float>() : state_.logits();
  }
  const std::vector<int32_t>& tokens() const override { return tokens_; }
  int64_t n_ctx() const override { return n_ctx_; }

  // Goes back to the latest checkpoint at or before position `limit` (the start when there is
  // none) and forgets the checkpoints of the abandoned branch.
  Status rewind_to_at_most(size_t limit) {
    while (!checkpoints_.empty() && checkpoints_.back().n > static_cast<int64_t>(limit)) checkpoints_.pop_back();
    if (checkpoints_.empty()) {
      state_.reset();
      tokens_.clear();
      return Status();
    }
    DSV4_TRY(state_.rollback(checkpoints_.back()));
    tokens_.resize(static_cast<size_t>(checkpoints_.back().n));
    return Status();
  }

  std::vector<uint8_t> save_snapshot() const override {
    return encode_snapshot({mode_, fingerprint_, tokens_, state_.serialize()});
  }

  Status restore_snapshot(std::span<const uint8_t> bytes) override {
    DSV4_ASSIGN_OR_RETURN(SnapshotContents c, decode_snapshot(bytes));
    if (c.model != fingerprint_) return make_error("snapshot rejected: taken with another model");
    if (c.mode != mode_) {
      return make_error(std::string("snapshot rejected: taken in ") + mode_name(c.mode) +
                        " mode, this session runs in " + mode_name(mode_) + " mode");
    }
    if (static_cast<int64_t>(c.tokens.size()) > n_ctx_) {
      return make_error("snapshot rejected: " + std::to_string(c.tokens.size()) +
                        " tokens exceed the session's context of " + std::to_string(n_ctx_));
    }
    for (int32_t t : c.tokens) {
      if (t < 0 || t >= model_->config.n_vocab) {
        return make_error("snapshot rejected: token id " + std::to_string(t) + " outside the vocabulary");
      }
    }
    cpu::State restored = state_;
    DSV4_TRY(restored.restore(c.state));
    if (restored.n() != static_cast<int64_t>(c.tokens.size())) {
      return make_error("snapshot rejected: state holds " + std::to_string(restored.n()) +
                        " positions but " + std::to_string(c.tokens.size()) + " tokens are listed");
    }
    state_ = std::move(restored);
    tokens_ = std::move(c.tokens);
    checkpoints_.clear();
    checkpoint();
    return Status();
  }

 private:
  std::shared_ptr<const model::Model> model_;
  Fingerprint fingerprint_;
  Mode mode_;
  static constexpr size_t kMaxCheckpoints = 8;
  cpu::State state_;
  int64_t n_ctx_;
  std::vector<int32_t> tokens_;
  std::vector<cpu::Checkpoint> checkpoints_;  // increasing positions on the current timeline
};

class CpuEngine final : public Engine {
 public:
  CpuEngine(std::shared_ptr<const model::Model> model, Mode mode)
      : model_(std::move(model)), fingerprint_(model::model_fingerprint(model_->file)), mode_(mode) {}

  const model::Config& config() const override { return model_->config; }
  Mode mode() const override { return mode_; }

  Result<std::unique_ptr<Session>> new_session(int64_t n_ctx) override {
    if (n_ctx < 1) return make_error("context size must be at least 1, got " + std::to_string(n_ctx));
    DSV4_ASSIGN_OR_RETURN(cpu::State state, cpu::State::create(model_->config, n_ctx));
    return std::unique_ptr<Session>(new CpuSession(model_, fingerprint_, mode_, std::move(state), n_ctx));
  }

 private:
  std::shared_ptr<const model::Model> model_;
  Fingerprint fingerprint_;
  Mode mode_;
};

}  // namespace

Status Session::save_snapshot_file(const std::string& path) const {
  return write_file_atomic(path, save_snapshot());
}

Status Session::restore_snapshot_file(const std::string& path) {
  DSV4_ASSIGN_OR_RETURN(MappedFile file, MappedFile::open(path));
  Status s = restore_snapshot(file.bytes());
  if (!s.ok()) return s.error().with_context(path);
  return s;
}

Result<std::shared_ptr<Engine>> Engine::load(const EngineOptions& options) {
  DSV4_ASSIGN_OR_RETURN(std::shared_ptr<const model::Model> model, model::load_model(options.model_path));
  switch (options.backend) {
    case Backend::kCpu:
      return std::shared_ptr<Engine>(std::make_shared<CpuEngine>(std::move(model), options.mode));
  }
  return make_error("unsupported backend");
}

}  // namespace dsv4::engine
