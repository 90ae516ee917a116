// One generation on a session that already holds the prompt: sample, detokenise (UTF-8 safe),
// split into reasoning / content / tool calls (chat::DsmlStreamParser), apply stop sequences, and
// evaluate each kept token, reporting events as they become final. Shared by `dsv4 run`,
// `dsv4 chat` and `dsv4 serve` so that the three behave the same (PROTOCOL.md §3.4–3.5, §4.4,
// §4.9, §5.1).
//
// Rules:
//  * A sampled EOS ends the generation (finish stop) and is not evaluated.
//  * With tools active, generation ends once a tool-call block is closed (finish tool_calls);
//    the closing token is evaluated, nothing after it is sampled.
//  * Tokens that write tool-call structure (tags, attribute headers, whitespace between them)
//    are sampled greedily from the raw logits (§3.5); parameter bodies use the request's sampling.
//  * Stop sequences match the visible content (not reasoning); the earliest match wins, the text
//    is cut before it and the generation ends (finish stop, stop_sequence set). Content that could
//    still be the start of a stop sequence is held back until it cannot.
//  * max_tokens reached: finish length. on_events returning false or should_cancel() returning
//    true: finish cancelled, within one decode step.
//  * After the call the session holds prompt + evaluated generated tokens.
//  * Speculative decoding (draft_tokens > 0): after a sampled token, a draft of what followed the
//    same kDraftNgram tokens earlier (draft.h) is evaluated with it in one multi-token step
//    (Session::eval_draft), and the sampler then takes each position's logits in turn: a token it
//    draws equal to the draft's is already evaluated, the first that differs ends the run (the
//    draft's rest is dropped, keep_draft). Every token is drawn as without drafts, from logits
//    that are bit-identical, with the same PRNG draws: the tokens, events and logprobs are the
//    same; only the time differs. With mtp_drafts, where the lookup has no draft, the MTP block's
//    guess of the token after the sampled one (Session::mtp_draft) is the draft, verified the same
//    way.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "chat/dsml_stream.h"
#include "engine/engine.h"
#include "engine/sampler.h"
#include "tokenizer/special_tokens.h"
#include "tokenizer/tokenizer.h"
#include "util/status.h"

namespace dsv4::generation {

enum class Finish { kStop, kLength, kToolCalls, kCancelled, kError };
const char* finish_name(Finish finish);  // "stop", "length", "tool_calls", "cancelled", "error"

struct GenerateOptions {
  engine::SamplingParams sampling;
  int64_t max_tokens = 512;            // also clipped to the session's free context
  chat::StreamOptions stream;          // thinking mode, tools active
  std::vector<std::string> stop;       // stop sequences on visible content; empty ones ignored
  int draft_tokens = 0;                // speculative drafts of up to this many tokens; 0: none
  // One-token drafts of the MTP block where the lookup has none, in a session whose engine has the
  // block (Session::mtp_draft; it is loaded only on request: --mtp).
  bool mtp_drafts = true;
};

struct GenerateCallbacks {
  // Final events in order (text of one kind may arrive in several pieces). Return false to stop.
  std::function<bool(std::span<const chat::StreamEvent>)> on_events;
  // Every sampled token (EOS included), with its logprobs when sampling.logprobs is set.
  std::function<void(const engine::Sample&)> on_token;
  // Polled once per decode step; true stops the generation (client gone, Ctrl+C).
  std::function<bool()> should_cancel;
};

struct GenerateResult {
  Finish finish = Finish::kStop;
  std::string stop_sequence;          // the matched stop sequence (finish stop), else empty
  std::string error;                  // what went wrong (finish error)
  std::vector<int32_t> tokens;        // sampled tokens (EOS included when sampled)
  int64_t reasoning_tokens = 0;       // sampled tokens before the end of reasoning
  std::string reasoning;              // all reasoning text sent
  std::string content;                // all visible content sent (cut at a stop sequence)
  std::vector<chat::StreamEvent> tool_events;  // tool_call_* and error events, in order
  double decode_seconds = 0.0;
  int64_t drafted = 0;          // draft tokens evaluated (speculative decoding)
  int64_t draft_accepted = 0;   // of them, drawn by the sampler as drafted
};

class Generator {
 public:
  Generator(const tokenizer::Tokenizer& tokenizer, const tokenizer::SpecialTokens& special);

  // Errors only for our bugs / backend failures before anything was generated; a failure in the
  // middle of a generation returns finish kError with the message and what was generated so far.
  Result<GenerateResult> generate(engine::Session& session, const GenerateOptions& options,
                                  const GenerateCallbacks& callbacks) const;

 private:
  const tokenizer::Tokenizer& tokenizer_;
  tokenizer::SpecialTokens special_;
};

}  // namespace dsv4::generation
