// Session over a BackendState: what sync() reuses, when checkpoints are taken, and how snapshots
// are checked, independently of where the state lives.
#include "engine/session.h"

#include <algorithm>
#include <chrono>
#include <string>
#include <utility>
#include <vector>

namespace dsv4::engine {
namespace {

class BackendSession final : public Session {
 public:
  BackendSession(std::unique_ptr<BackendState> state, const model::Config& config,
                 const Fingerprint& fingerprint, Mode mode, int64_t n_ctx)
      : state_(std::move(state)), n_vocab_(config.n_vocab), fingerprint_(fingerprint), mode_(mode),
        n_ctx_(n_ctx) {}

  Status eval(std::span<const int32_t> tokens, float* all_logits) override {
    if (static_cast<int64_t>(tokens_.size() + tokens.size()) > n_ctx_) {
      return make_error("context full: " + std::to_string(tokens_.size()) + " + " +
                        std::to_string(tokens.size()) + " tokens exceed the session's " +
                        std::to_string(n_ctx_));
    }
    DSV4_TRY(state_->forward(tokens, all_logits));
    tokens_.insert(tokens_.end(), tokens.begin(), tokens.end());
    if (tokens.size() > 1) checkpoint();
    return Status();
  }

  Status eval_draft(std::span<const int32_t> tokens, float* all_logits) override {
    if (draft_ || backend_draft_) return make_error("eval_draft: the previous draft was not settled by keep_draft");
    if (tokens.empty()) return make_error("eval_draft: no tokens");
    const int64_t run = static_cast<int64_t>(tokens.size());
    if (state_->draft_run_length(run) != run) {
      return make_error("eval_draft: a run of " + std::to_string(run) + " tokens, where the backend takes " +
                        std::to_string(state_->draft_run_length(run)));
    }
    if (static_cast<int64_t>(tokens_.size() + tokens.size()) > n_ctx_) {
      return make_error("context full: " + std::to_string(tokens_.size()) + " + " + std::to_string(tokens.size()) +
                        " draft tokens exceed the session's " + std::to_string(n_ctx_));
    }
    // Rows the caller does not take stay with the backend that keeps them, else here.
    const bool native = state_->keeps_draft_prefix() && tokens.size() > 1;
    draft_rows_.clear();
    if (!all_logits && !native) {
      draft_rows_.resize(tokens.size() * static_cast<size_t>(n_vocab_));
      all_logits = draft_rows_.data();
    }
    if (native) {
      DSV4_TRY(state_->forward_draft(tokens, all_logits));
      backend_draft_ = true;
    } else {
      // Its own rollback point: the checkpoints of sync() keep the turns' ends.
      std::unique_ptr<BackendCheckpoint> before = state_->checkpoint();
      DSV4_TRY(state_->forward(tokens, all_logits));
      draft_ = std::move(before);
    }
    draft_tokens_.assign(tokens.begin(), tokens.end());
    tokens_.insert(tokens_.end(), tokens.begin(), tokens.end());
    return Status();
  }

  Result<Sample> sample_draft_row(Sampler& sampler, Sampler::Mode mode, size_t row) override {
    if ((!draft_ && !backend_draft_) || row >= draft_tokens_.size()) {
      return make_error("sample_draft_row: no draft, or no such row");
    }
    if (backend_draft_) return state_->sample_draft_row(sampler, mode, static_cast<int64_t>(row));
    if (draft_rows_.empty()) return make_error("sample_draft_row: the draft's rows went to the caller");
    const size_t V = static_cast<size_t>(n_vocab_);
    return sampler.sample(std::span<const float>(draft_rows_).subspan(row * V, V), mode);
  }

  Status keep_draft(size_t k) override {
    if (!draft_ && !backend_draft_) return make_error("keep_draft: no draft was evaluated");
    if (k < 1 || k > draft_tokens_.size()) return make_error("keep_draft: keeps 1 to the draft's tokens");
    if (backend_draft_) {
      backend_draft_ = false;
      // On error the backend holds the whole draft or its kept prefix; the token list follows.
      const Status kept = state_->keep_draft(static_cast<int64_t>(k));
      tokens_.resize(static_cast<size_t>(state_->n()));
      return kept;
    }
    const std::unique_ptr<BackendCheckpoint> before = std::move(draft_);
    if (k == draft_tokens_.size()) return Status();
    // Rejected tokens changed state the kept ones read (ring rows of their window, compressor
    // frontiers): back to before the draft, then the kept tokens again (same bits).
    tokens_.resize(tokens_.size() - draft_tokens_.size());
    DSV4_TRY(state_->rollback(*before));
    const std::span<const int32_t> kept(draft_tokens_.data(), k);
    DSV4_TRY(state_->forward(kept, nullptr));
    tokens_.insert(tokens_.end(), kept.begin(), kept.end());
    return Status();
  }

  void checkpoint() override {
    if (!checkpoints_.empty() && checkpoints_.back()->n() == state_->n()) return;
    if (checkpoints_.size() == kMaxCheckpoints) checkpoints_.erase(checkpoints_.begin());
    checkpoints_.push_back(state_->checkpoint());
  }

  Result<SyncStats> sync(std::span<const int32_t> prefix, const ProgressFn& progress) override {
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
    if (stats.evaluated > 0) {
      const std::span<const int32_t> suffix = prefix.subspan(tokens_.size());
      DSV4_TRY(progress ? eval_reporting(suffix, progress) : eval(suffix, nullptr));
    }
    return stats;
  }

  bool has_mtp() const override { return state_->has_mtp(); }
  Result<std::optional<int32_t>> mtp_draft(int32_t next) override {
    if (draft_ || backend_draft_) return make_error("mtp_draft: a draft is waiting for keep_draft");
    if (tokens_.empty()) return make_error("mtp_draft: the session has evaluated no token yet");
    if (next < 0 || next >= n_vocab_) {
      return make_error("mtp_draft: token id " + std::to_string(next) + " outside the vocabulary");
    }
    return state_->mtp_draft(next);
  }

  std::span<const float> logits() const override {
    return tokens_.empty() ? std::span<const float>() : state_->logits();
  }
  Result<Sample> sample(Sampler& sampler, Sampler::Mode mode, bool step_ahead) override {
    if (tokens_.empty()) return make_error("sample: the session has evaluated no token yet");
    return state_->sample(sampler, mode, step_ahead);
  }
  const std::vector<int32_t>& tokens() const override { return tokens_; }
  int64_t n_ctx() const override { return n_ctx_; }
  int64_t draft_run_length(int64_t most) const override { return most < 1 ? 1 : state_->draft_run_length(most); }

  std::vector<uint8_t> save_snapshot() const override {
    return encode_snapshot({mode_, fingerprint_, tokens_, state_->serialize()});
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
      if (t < 0 || t >= n_vocab_) {
        return make_error("snapshot rejected: token id " + std::to_string(t) + " outside the vocabulary");
      }
    }
    DSV4_TRY(state_->restore(c.state, static_cast<int64_t>(c.tokens.size())));
    tokens_ = std::move(c.tokens);
    checkpoints_.clear();
    checkpoint();
    return Status();
  }

 private:
  // eval() in chunks with a report after each, as the backend plans them (BackendState::
  // reported_chunks): from its first length, growing 8× while chunks take under an eighth of
  // kChunkSeconds and 2× while under kChunkSeconds, up to its longest, so that the report keeps
  // moving on a slow backend and a GPU runs whole passes (H200, full flash-q2, 8K prompt: 2 927
  // tokens/s in chunks of 1024, 4 986 in chunks of 8192). Checkpoints as eval() of the whole would
  // take them: one at the end.
  Status eval_reporting(std::span<const int32_t> tokens, const ProgressFn& progress) {
    const int64_t total = static_cast<int64_t>(tokens.size());
    const BackendState::ReportedChunks plan = state_->reported_chunks();
    const int64_t longest = std::max<int64_t>(plan.longest, 1);
    int64_t done = 0, chunk = std::clamp<int64_t>(plan.first, 1, longest);
    while (done < total) {
      const int64_t n = std::min(chunk, total - done);
      const auto start = std::chrono::steady_clock::now();
      DSV4_TRY(state_->forward(tokens.subspan(static_cast<size_t>(done), static_cast<size_t>(n)), nullptr));
      const std::chrono::duration<double> took = std::chrono::steady_clock::now() - start;
      tokens_.insert(tokens_.end(), tokens.begin() + done, tokens.begin() + done + n);
      done += n;
      if (!progress(done, total)) {
        return make_error("prefill stopped after " + std::to_string(done) + " of " + std::to_string(total) +
                          " tokens");
      }
      const int64_t grow = took.count() < kChunkSeconds / 8 ? 8 : took.count() < kChunkSeconds ? 2 : 1;
      chunk = std::min(chunk * grow, longest);
    }
    if (total > 1) checkpoint();
    return Status();
  }

  // Goes back to the latest checkpoint at or before position `limit` (the start when there is
  // none) and forgets the checkpoints of the abandoned branch.
  Status rewind_to_at_most(size_t limit) {
    while (!checkpoints_.empty() && checkpoints_.back()->n() > static_cast<int64_t>(limit)) checkpoints_.pop_back();
    if (checkpoints_.empty()) {
      state_->reset();
      tokens_.clear();
      return Status();
    }
    DSV4_TRY(state_->rollback(*checkpoints_.back()));
    tokens_.resize(static_cast<size_t>(checkpoints_.back()->n()));
    return Status();
  }

  static constexpr size_t kMaxCheckpoints = 8;
  // Until session 14: 0.25 s, from 32 tokens for every backend, and the full model on an H200
  // stopped growing at 1024-token chunks (docs/PERF.md).
  static constexpr double kChunkSeconds = 1.0;
  std::unique_ptr<BackendState> state_;
  int64_t n_vocab_;
  Fingerprint fingerprint_;
  Mode mode_;
  int64_t n_ctx_;
  std::vector<int32_t> tokens_;
  std::vector<std::unique_ptr<BackendCheckpoint>> checkpoints_;  // increasing positions
  // Between eval_draft and keep_draft: the state before the draft, and the draft's tokens.
  std::unique_ptr<BackendCheckpoint> draft_;  // or, where the backend drops the tail itself:
  bool backend_draft_ = false;
  std::vector<int32_t> draft_tokens_;
  std::vector<float> draft_rows_;  // the draft's rows when the caller took none and the backend keeps none
};

}  // namespace

std::unique_ptr<Session> make_session(std::unique_ptr<BackendState> state, const model::Config& config,
                                      const Fingerprint& fingerprint, Mode mode, int64_t n_ctx) {
  return std::make_unique<BackendSession>(std::move(state), config, fingerprint, mode, n_ctx);
}

}  // namespace dsv4::engine
