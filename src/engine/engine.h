// The engine API: the only interface the CLI and the server use (DESIGN.md §2). An Engine is a
// loaded model on a backend; a Session is one timeline of tokens with its decode state and the
// logits of its last position. Nothing here exposes tensors.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "model/config.h"
#include "util/status.h"

namespace dsv4::engine {

enum class Mode {
  kOfficial,  // FP8 KV and Hadamard+FP4 indexer simulations (the trained function; default)
  kPlain,     // without them (comparison with implementations that omit them)
};
Result<Mode> parse_mode(const std::string& name);  // "official" | "plain"
const char* mode_name(Mode mode);

enum class Backend { kCpu };
Result<Backend> parse_backend(const std::string& name);  // "cpu"

struct EngineOptions {
  std::string model_path;
  Backend backend = Backend::kCpu;
  Mode mode = Mode::kOfficial;
};

class Session;

class Engine {
 public:
  static Result<std::shared_ptr<Engine>> load(const EngineOptions& options);
  virtual ~Engine() = default;

  virtual const model::Config& config() const = 0;
  virtual Mode mode() const = 0;
  // A new empty timeline able to hold n_ctx positions; a clear error when it cannot.
  virtual Result<std::unique_ptr<Session>> new_session(int64_t n_ctx) = 0;
};

// What sync() did: tokens kept from the existing state, tokens evaluated anew.
struct SyncStats {
  int64_t reused = 0;
  int64_t evaluated = 0;
};

class Session {
 public:
  virtual ~Session() = default;

  // Makes the session hold exactly `prefix`, keeping the longest part of the current state that
  // can be reused (the common token prefix, through a rollback checkpoint when the timeline
  // diverged) and evaluating only the rest. The result is bit-identical to evaluating `prefix`
  // from scratch. On error the session may have been rolled back but is consistent.
  virtual Result<SyncStats> sync(std::span<const int32_t> prefix) = 0;
  // Records a rollback point at the current position (kept: the most recent few; eval() of
  // more than one token records one at its end).
  virtual void checkpoint() = 0;

  // Evaluates `tokens` after the current ones. When all_logits is not null it receives
  // [tokens.size()][n_vocab] next-token logits. On error the session is unchanged.
  virtual Status eval(std::span<const int32_t> tokens, float* all_logits = nullptr) = 0;
  // Next-token logits after the last evaluated token (empty before the first eval).
  virtual std::span<const float> logits() const = 0;
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
