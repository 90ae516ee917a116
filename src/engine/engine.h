// The engine API: the only interface the CLI and the server use (DESIGN.md §2). An Engine is a
// loaded model on a backend; a Session is one timeline of tokens with its decode state and the
// logits of its last position. Nothing here exposes tensors.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "engine/sampler.h"
#include "model/config.h"
#include "util/status.h"

namespace dsv4::engine {

enum class Mode {
  kOfficial,  // FP8 KV and Hadamard+FP4 indexer simulations (the trained function; default)
  kPlain,     // without them (comparison with implementations that omit them)
};
Result<Mode> parse_mode(const std::string& name);  // "official" | "plain"
const char* mode_name(Mode mode);

enum class Backend { kCpu, kCuda };
// "cpu" | "cuda" ("this build has no CUDA backend" where it was built without one).
Result<Backend> parse_backend(const std::string& name);
const char* backend_name(Backend backend);

// How the CUDA backend evaluates prefill chunks (decode is the same for all).
//   kExact: tensor-core GEMMs in split mode (cuda/gemm.h: exact weight codes, activations as two
//     f16 parts, f32-level products) over long chunks; meets the whole-model bar against the CPU
//     reference and the transformers fixtures (tests/cuda/forward_test.cc).
//   kMatvec: decode's f32 matvec over the chunk's tokens (chunks of 128); meets the bar too. Slow:
//     every weight is read once per token.
//   kFast: tensor-core GEMMs with f16 products (≈2^-11 per product); the rounding flips near-tied
//     discrete choices (router and indexer top-k, the official mode's FP8 roundings) often enough
//     to miss that bar (docs/PERF.md, "prefill on tensor cores", gives the measured distances).
// The CPU backend has only kExact (its own f32 arithmetic).
enum class Prefill { kExact, kMatvec, kFast };
Result<Prefill> parse_prefill(const std::string& name);  // "exact" | "matvec" | "fast"
const char* prefill_name(Prefill prefill);
bool have_cuda_backend();

struct EngineOptions {
  std::string model_path;
  Backend backend = Backend::kCpu;
  Mode mode = Mode::kOfficial;
  Prefill prefill = Prefill::kExact;
  // Instead of model_path: a synthetic model of a gen-model preset (model/synthetic.h), made at
  // load (no file). tiny and small: the gen-model bytes built in memory (the same model as the
  // file gen-model writes). The full-size presets (flash-q2, flash-q4): CUDA backend only, weights
  // generated on the device, deterministically from the seed. synthetic_layers 0 = the preset's.
  std::string synthetic_preset;
  int64_t synthetic_layers = 0;
  uint64_t synthetic_seed = 1;
  // The MTP block (MODEL.md §10) for one-token drafts (Session::mtp_draft): a GGUF file holding
  // the mtp.0.* tensors (ds4's separate MTP file, or the model file itself when it has them), or
  // with a synthetic preset the preset's own block (synthetic_mtp).
  std::string mtp_path;
  bool synthetic_mtp = false;
};

class Session;

// What a benchmark reports against (dsv4 bench). Figures a backend does not know are 0.
struct PerfInfo {
  std::string device;         // "NVIDIA H200, 139.8 GiB, 132 SMs" / "cpu"
  uint64_t weight_bytes = 0;  // model weights resident on the device
  double load_seconds = 0;    // loading (upload or on-device generation)
  double load_gb_per_s = 0;   // upload rate of a model file (0 for generated weights)
  double copy_gb_per_s = 0;   // measured device-to-device copy bandwidth, read + write
  // The floors of one token at a context (PERFORMANCE.md §1-2): bytes a decode step reads, flops
  // of a prefill token.
  std::function<uint64_t(int64_t context)> decode_bytes;
  std::function<double(int64_t context)> prefill_flops;
};

class Engine {
 public:
  static Result<std::shared_ptr<Engine>> load(const EngineOptions& options);
  virtual ~Engine() = default;

  virtual const model::Config& config() const = 0;
  virtual Mode mode() const = 0;
  // The model fingerprint its snapshots carry (model::model_fingerprint); keys the disk KV cache.
  virtual std::array<uint8_t, 32> fingerprint() const = 0;
  // A new empty timeline able to hold n_ctx positions; a clear error when it cannot.
  virtual Result<std::unique_ptr<Session>> new_session(int64_t n_ctx) = 0;
  // Measures what it needs (the copy bandwidth) on first call.
  virtual PerfInfo perf_info() = 0;
};

// What sync() did: tokens kept from the existing state, tokens evaluated anew.
struct SyncStats {
  int64_t reused = 0;
  int64_t evaluated = 0;
};

// Prefill progress: called by sync() after each evaluated chunk with the tokens evaluated so far
// and the total to evaluate. Returning false stops the prefill after that chunk: sync() then
// returns an error, and the session holds the tokens evaluated so far (a consistent prefix).
using ProgressFn = std::function<bool(int64_t done, int64_t total)>;

class Session {
 public:
  virtual ~Session() = default;

  // Makes the session hold exactly `prefix`, keeping the longest part of the current state that
  // can be reused (the common token prefix, through a rollback checkpoint when the timeline
  // diverged) and evaluating only the rest. The result is bit-identical to evaluating `prefix`
  // from scratch. On error the session may have been rolled back but is consistent.
  // With `progress`, the suffix is evaluated in chunks (their size adapts so that each takes a
  // fraction of a second; results do not depend on chunking) and reported after each.
  virtual Result<SyncStats> sync(std::span<const int32_t> prefix, const ProgressFn& progress = nullptr) = 0;
  // Records a rollback point at the current position (kept: the most recent few; eval() of
  // more than one token records one at its end).
  virtual void checkpoint() = 0;

  // Evaluates `tokens` after the current ones. When all_logits is not null it receives
  // [tokens.size()][n_vocab] next-token logits. On error the session is unchanged.
  virtual Status eval(std::span<const int32_t> tokens, float* all_logits = nullptr) = 0;
  // Speculative decoding: evaluates `tokens` (a sampled token, then a draft of what may follow)
  // as eval() does, every token's logits into all_logits ([tokens.size()][n_vocab]), keeping the
  // means to drop the draft's tail: keep_draft(k) then holds only the first k of them (1 ≤ k ≤
  // tokens.size()), its state and logits bit-identical to evaluating only those. Between the two
  // calls nothing else may be called. On error in eval_draft the session is unchanged; on error
  // in keep_draft it holds a consistent prefix of them.
  // all_logits null: the rows stay where the session keeps them (on the CUDA backend, the device),
  // and sample_draft_row draws from row i of them exactly as sampler.sample of that row would.
  virtual Status eval_draft(std::span<const int32_t> tokens, float* all_logits) = 0;
  virtual Status keep_draft(size_t k) = 0;
  virtual Result<Sample> sample_draft_row(Sampler& sampler, Sampler::Mode mode, size_t row) {
    (void)sampler;
    (void)mode;
    (void)row;
    return make_error("sample_draft_row: the session keeps no draft rows");
  }
  // The length of run eval_draft should take when up to `most` tokens could be (1 ≤ result ≤
  // most; eval_draft refuses runs of another length): within the backend's runs whose logits are
  // bit-identical to single steps (4 tokens on the CUDA backend), cut where that costs nothing.
  virtual int64_t draft_run_length(int64_t most) const = 0;
  // The MTP block's one-token drafts (MODEL.md §10), where the engine was loaded with the block:
  // its guess for the token after `next`, the token about to be evaluated next (sampled from
  // logits()); nothing where the block has no state of the last token (after restore_snapshot,
  // until a token is evaluated). Evaluating `next` then reuses the work. A guess only: what
  // follows is decided by the sampler, as with any draft (eval_draft).
  virtual bool has_mtp() const { return false; }
  virtual Result<std::optional<int32_t>> mtp_draft(int32_t next) {
    (void)next;
    return make_error("mtp_draft: the model was loaded without an MTP block");
  }
  // Next-token logits after the last evaluated token (empty before the first eval).
  virtual std::span<const float> logits() const = 0;
  // Samples the next token from those logits with `sampler` (parameters, PRNG, history, all
  // updated) exactly as sampler.sample(logits(), mode) does, but where the logits live: on the
  // CUDA backend only the token id crosses to the host (logprobs fall back to the host).
  // step_ahead: the session may start evaluating the drawn token before eval() asks (the CUDA
  // backend's speculative step); false when a draft will follow it. An error before the first eval.
  virtual Result<Sample> sample(Sampler& sampler, Sampler::Mode mode = Sampler::Mode::kParams,
                                bool step_ahead = true) {
    (void)step_ahead;
    return sampler.sample(logits(), mode);
  }
  virtual const std::vector<int32_t>& tokens() const = 0;
  virtual int64_t n_ctx() const = 0;

  // Snapshots (engine/snapshot.h): the whole timeline, restorable into a session of the same
  // model and mode with room for its tokens. On error the session is unchanged.
  virtual std::vector<uint8_t> save_snapshot() const = 0;
  virtual Status restore_snapshot(std::span<const uint8_t> bytes) = 0;
  Status save_snapshot_file(const std::string& path) const;
  Status restore_snapshot_file(const std::string& path);
};

}  // namespace dsv4::engine
