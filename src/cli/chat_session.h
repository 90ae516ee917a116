// The state of one `dsv4 chat`: the conversation, its settings and the live engine session that
// holds it, independent of the terminal. Each turn renders the whole conversation with the
// official encoder and syncs the live session to it, so only what changed is evaluated: the new
// user turn, plus, in thinking mode, the previous answer without its reasoning (the official
// template drops earlier reasoning; PROTOCOL.md §2.3, §5.3). A rollback checkpoint taken just
// before each prompt's last token (the generation prefix "<think>"/"</think>") is what makes
// that cheap.
//
// An interrupted answer stays in the conversation as far as it was shown: the model sees what
// the user saw, and the live state (which holds exactly those tokens) is reused by the next turn.
// A turn interrupted during its prefill leaves no trace: its message is dropped.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "chat/message.h"
#include "cli/loaded_model.h"
#include "engine/engine.h"
#include "engine/sampler.h"
#include "generation/generator.h"
#include "util/status.h"

namespace dsv4::cli {

struct ChatSettings {
  chat::ThinkingMode thinking = chat::ThinkingMode::thinking;
  chat::Effort effort = chat::Effort::none;  // none or max (original release, §2.6)
  std::string system;
  int64_t max_tokens = 4096;
  engine::SamplingParams sampling;
  int draft_tokens = 0;  // GenerateOptions::draft_tokens
};

struct TurnHooks {
  engine::ProgressFn progress;  // prefill progress; false stops the prefill
  generation::GenerateCallbacks generate;
};

struct TurnReport {
  int64_t prompt_tokens = 0;  // the rendered conversation
  int64_t reused = 0;         // kept from the live state
  int64_t evaluated = 0;      // prefilled for this turn
  double prefill_seconds = 0;
  bool prefill_stopped = false;  // the progress hook stopped it: nothing was generated
  generation::GenerateResult generation;
};

class ChatSession {
 public:
  ChatSession(const LoadedModel& model, ChatSettings settings)
      : model_(model), settings_(std::move(settings)), generator_(model.tokenizer, model.special) {}

  // A new empty live session of n_ctx positions (validated against memory by the engine).
  Status open(int64_t n_ctx);

  // Sends one user message and generates the answer. Errors (the message is then dropped and the
  // conversation unchanged): a message that cannot be rendered, a conversation that no longer fits
  // the context, a backend failure.
  Result<TurnReport> turn(const std::string& user_text, const TurnHooks& hooks);

  // A live session of another size that keeps the conversation's state when it fits.
  Status resize(int64_t n_ctx);
  // Forgets the conversation (settings stay).
  void reset();

  // Brings the live state to the start of the next turn first (work that turn would do anyway),
  // so that a loaded chat continues without prefilling anything again.
  Status save(const std::string& path);
  // Replaces conversation, settings and live state by a saved chat of this same model and mode.
  Status load(const std::string& path);

  ChatSettings& settings() { return settings_; }
  const std::vector<chat::Message>& messages() const { return messages_; }
  int64_t n_ctx() const { return session_->n_ctx(); }
  int64_t live_tokens() const { return static_cast<int64_t>(session_->tokens().size()); }

 private:
  // Syncs the live state to the canonical conversation up to the next "<｜User｜>": the prefix
  // every next prompt begins with. The state it ends with is the one worth a snapshot: the
  // generated answer (reasoning included) is otherwise rolled back to a checkpoint that a
  // snapshot does not carry. Does nothing when that prefix does not fit the context.
  Status advance_to_next_turn();
  std::vector<chat::Message> with_system(const std::vector<chat::Message>& messages) const;
  Result<std::vector<int32_t>> render(const std::vector<chat::Message>& messages) const;

  const LoadedModel& model_;
  ChatSettings settings_;
  generation::Generator generator_;
  std::unique_ptr<engine::Session> session_;
  std::vector<chat::Message> messages_;  // user and assistant turns, without the system message
};

}  // namespace dsv4::cli
