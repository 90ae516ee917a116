// KV prefix reuse for the server's live session: the dsv4 ladder of PROTOCOL.md §5.3 and the
// disk-store triggers of §5.4, over one engine Session, its rollback checkpoints and an optional
// KvStore. Per request, the first rung that applies:
//
//   1. live tokens   the live tokens are a prefix of the prompt's tokens: evaluate the suffix;
//   2. live text     the live typed text is a prefix of the prompt's typed text (generated tokens
//                    that are not the canonical BPE of their text): keep the live tokens and
//                    tokenise only the remaining typed text;
//   3. checkpoint    the live typed text diverges from the prompt's at position p: keep live[0, p)
//                    plus the tokenised rest, and let Session::sync roll back to the latest
//                    checkpoint at or before p (in thinking mode without tools the one taken just
//                    before the last prompt's `<think>`, since the next prompt drops that turn's
//                    reasoning);
//   4. disk          on a miss (the prompt does not continue the live conversation): store the
//                    live session ("evict"), then restore the longest stored typed-text prefix
//                    when it is longer than what the live session offers;
//   5. cold          evaluate from the start (storing the chat anchor or trimmed prompt, "cold").
//
// Checkpoints (§5.3): at the chat anchor, before the prompt's last token and after it (the start
// of the generation). A suffix is never sliced from a full-prompt tokenisation: it is always
// tokenised from the remaining typed text. Continued stores (§5.4) happen at interval multiples
// during prefill and decode; a shutdown store at exit.
//
// Not thread-safe: used by the scheduler's worker only.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "engine/engine.h"
#include "server/kv_store.h"
#include "server/store_triggers.h"
#include "tokenizer/special_tokens.h"
#include "tokenizer/tokenizer.h"
#include "util/status.h"

namespace dsv4::server {

enum class Rung { kLiveTokens, kLiveText, kCheckpoint, kDisk, kCold };
const char* rung_name(Rung rung);  // "live-tokens", "live-text", "checkpoint", "disk", "cold"

struct PrefillResult {
  std::vector<int32_t> tokens;  // the effective prompt the session now holds (§4.8 `P`)
  int64_t cached = 0;           // of them reused from the live session, a checkpoint or disk
  int64_t evaluated = 0;        // evaluated by this request (tokens.size() - cached)
  Rung rung = Rung::kCold;
  int64_t disk_stores = 0;      // files written while preparing (evict, cold, continued)
};

class PrefixCache {
 public:
  // `store` may be null (no disk cache); the triggers are used with it. Both outlive this.
  PrefixCache(std::unique_ptr<engine::Session> session, const tokenizer::Tokenizer& tokenizer,
              const tokenizer::SpecialTokens& special, KvStore* store, StoreTriggerOptions triggers);

  engine::Session& session() { return *session_; }

  // Makes the session hold the prompt (tokens and their typed text), evaluating as little as the
  // ladder allows. `progress` sees the tokens evaluated so far and the total to evaluate; returning
  // false stops the prefill (an error; the session stays consistent).
  Result<PrefillResult> prefill(std::span<const int32_t> prompt_tokens, std::string_view prompt_typed,
                                const engine::ProgressFn& progress = nullptr);

  // After the generation of a request whose prompt was the last prefill. `reasoning_dropped`:
  // the next canonical prompt drops this turn's reasoning (PromptRequest).
  void finished_turn(bool reasoning_dropped);

  // Polled once per decode step: stores the session at a continued frontier (§5.4), except inside
  // a tool-call block. Returns whether a file was written.
  bool at_decode_step(bool inside_tool_call);

  // At clean exit: stores the live session ("shutdown") unless it is already on disk.
  void store_at_shutdown();

  // Checkpoint positions this cache asked for and believes the session still holds (tests).
  const std::vector<int64_t>& checkpoints() const { return checkpoints_; }

 private:
  struct Plan {
    std::vector<int32_t> tokens;  // effective prompt
    int64_t keep = 0;             // tokens shared with the live session (divergence point)
    int64_t reuse = 0;            // tokens expected to survive the sync (checkpoint-bounded)
    Rung rung = Rung::kCold;
  };

  // Rungs 1-3 from the live session.
  Result<Plan> plan_from_live(std::span<const int32_t> prompt_tokens, std::string_view prompt_typed) const;
  // Whether `plan` continues the conversation of the last request (else: a miss).
  bool continues_live(const Plan& plan) const;
  // Rung 4: store the live session, then try the disk. True when a hit was restored into `plan`.
  Result<bool> try_disk(std::string_view prompt_typed, Plan& plan, int64_t& stores);
  // The session after sync(prefix) (a rollback when it diverges), with the checkpoint records kept
  // in line.
  Result<engine::SyncStats> sync_to(std::span<const int32_t> prefix, const engine::ProgressFn& progress);
  void record_checkpoint();
  // Writes the session as it is now; false when skipped or failed (logged).
  bool store_now(StoreReason reason);
  // The position worth storing when the live session is about to be replaced.
  int64_t evict_position() const;

  std::unique_ptr<engine::Session> session_;
  const tokenizer::Tokenizer& tokenizer_;
  tokenizer::SpecialTokens special_;
  KvStore* store_;
  StoreTriggerOptions triggers_;

  std::vector<int64_t> checkpoints_;  // increasing
  int64_t last_prompt_len_ = 0;       // of the last prefill (0: none yet)
  bool last_reasoning_dropped_ = false;
  int64_t last_stored_len_ = 0;       // the current timeline is on disk up to here
};

}  // namespace dsv4::server
