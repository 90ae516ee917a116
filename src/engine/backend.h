// What a backend (cpu/, cuda/) provides to the engine: a loaded model that creates per-session
// decode state, and that state's operations. The engine's one Session implementation
// (session.cc) builds sync, checkpoints and snapshots on top of these, so that logic exists once.
// Internal to engine/: the layers above see only engine.h.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "engine/engine.h"
#include "engine/sampler.h"
#include "model/config.h"
#include "model/weights.h"
#include "util/status.h"

namespace dsv4::engine {

// A rollback point of one BackendState (MODEL.md §12.4): restorable only into the state that
// took it, on the same timeline.
class BackendCheckpoint {
 public:
  virtual ~BackendCheckpoint() = default;
  virtual int64_t n() const = 0;  // evaluated positions when it was taken
};

// One sequence's decode state on a backend, created for one mode and a maximum context.
class BackendState {
 public:
  virtual ~BackendState() = default;

  virtual int64_t n() const = 0;
  // Evaluates `tokens` at positions n() .. n()+size-1 (validated first: on error the state is
  // unchanged). all_logits, when not null, receives [tokens.size()][n_vocab].
  virtual Status forward(std::span<const int32_t> tokens, float* all_logits) = 0;
  // How a prefill that reports progress cuts the prompt into forward() calls: the first call's
  // length (a slow backend reports early, a GPU loses speed on short calls) and the longest one
  // (the backend's one pass: longer calls gain nothing).
  struct ReportedChunks {
    int64_t first, longest;
  };
  virtual ReportedChunks reported_chunks() const = 0;
  // Next-token logits after position n()-1 (meaningful when n() > 0), on the host.
  virtual std::span<const float> logits() const = 0;
  // Samples from those logits with the sampler's parameters, PRNG and history (which it
  // updates), exactly as sampler.sample(logits(), mode) would. Backends that sample where the
  // logits live override it. step_ahead: the backend may start evaluating the drawn token before
  // it is asked to (false: more than that token follows, a draft).
  virtual Result<Sample> sample(Sampler& sampler, Sampler::Mode mode, bool step_ahead) {
    (void)step_ahead;
    return sampler.sample(logits(), mode);
  }

  // Speculative drafts (Session::eval_draft): the length of run to evaluate when up to `most`
  // tokens could be (0 < result ≤ most): within the longest forward() whose every-token logits are
  // bit-identical to single-token forwards, and where a shorter run costs about as much, shorter.
  virtual int64_t draft_run_length(int64_t most) const = 0;
  // Where the backend can drop a draft's tail without evaluating its kept tokens again:
  // forward_draft as forward() with every token's logits, then keep_draft(k) leaves the first k
  // evaluated (1 ≤ k ≤ tokens; nothing else in between). Elsewhere Session checkpoints before
  // the draft and evaluates the kept tokens again.
  virtual bool keeps_draft_prefix() const { return false; }
  virtual Status forward_draft(std::span<const int32_t> tokens, float* all_logits) {
    (void)tokens;
    (void)all_logits;
    return make_error("forward_draft: not supported by this backend");
  }
  virtual Status keep_draft(int64_t k) {
    (void)k;
    return make_error("keep_draft: not supported by this backend");
  }
  // Between forward_draft and keep_draft: the token drawn from row `row` of the draft's logits where
  // they live (forward_draft may then be given no host buffer), exactly as sampler.sample of that row.
  virtual Result<Sample> sample_draft_row(Sampler& sampler, Sampler::Mode mode, int64_t row) {
    (void)sampler;
    (void)mode;
    (void)row;
    return make_error("sample_draft_row: not supported by this backend");
  }

  // The MTP block (MODEL.md §10), where the model was loaded with one: after each forward() the
  // block has evaluated the pair (H_i, t_{i+1}) of every position i but the last. mtp_draft(next)
  // evaluates the last position's pair with `next`, the token about to be evaluated at n(), and
  // returns the block's guess for the token after it (its logits' arg-max); nothing where the
  // block holds no state of the last position (a restored snapshot carries none: the block starts
  // again at the next position). A forward() whose first token is `next` then skips that pair.
  virtual bool has_mtp() const { return false; }
  virtual Result<std::optional<int32_t>> mtp_draft(int32_t next) {
    (void)next;
    return make_error("mtp_draft: the model was loaded without an MTP block");
  }

  virtual std::unique_ptr<BackendCheckpoint> checkpoint() = 0;
  // Back to a checkpoint of this state at or before n() on the current timeline.
  virtual Status rollback(const BackendCheckpoint& checkpoint) = 0;
  // Back to the empty sequence.
  virtual void reset() = 0;

  // The backend-independent state bytes (the "DSV4CPUS" format of cpu/state.h), so a snapshot
  // taken on one backend restores on another.
  virtual std::vector<uint8_t> serialize() const = 0;
  // Replaces the state by those bytes, which must hold exactly `n` positions; on error the state
  // is unchanged.
  virtual Status restore(std::span<const uint8_t> bytes, int64_t n) = 0;
};

// A model loaded on one backend.
class BackendModel {
 public:
  virtual ~BackendModel() = default;
  virtual const model::Config& config() const = 0;
  // State for a sequence of at most n_ctx positions, evaluated in `mode`; a clear error when it
  // cannot be allocated.
  virtual Result<std::unique_ptr<BackendState>> new_state(int64_t n_ctx, Mode mode) = 0;
  virtual PerfInfo perf_info() {
    PerfInfo p;
    p.device = "cpu";
    return p;
  }
};

Result<std::unique_ptr<BackendModel>> make_cpu_backend(std::shared_ptr<const model::Model> model);

// Only in builds with the CUDA backend (DSV4_HAVE_CUDA): the weights uploaded to the device (the
// model's MTP block too, where it has one), or a synthetic preset's weights generated on the device
// (no file; with_mtp: and its MTP block's).
Result<std::unique_ptr<BackendModel>> make_cuda_backend(std::shared_ptr<const model::Model> model, Prefill prefill);
Result<std::unique_ptr<BackendModel>> make_cuda_synthetic_backend(const std::string& preset, int64_t n_layer,
                                                                  uint64_t seed, bool with_mtp, Prefill prefill);

}  // namespace dsv4::engine
