// One API request on the engine worker: prepare the prompt through the reuse ladder, generate,
// and write the response – SSE frames as they come, or one body at the end – into the request's
// ResponseChannel. Everything the client sees is shaped by ApiOutput; this file decides what
// happens and when (PROTOCOL.md §4.4–4.8), and logs and counts it.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>

#include "generation/generator.h"
#include "server/api_output.h"
#include "server/metrics.h"
#include "server/prefix_cache.h"
#include "server/prompt_request.h"
#include "server/response_channel.h"
#include "server/scheduler.h"
#include "tokenizer/tokenizer.h"

namespace dsv4::server {

// What every job shares; owned by the server, used by the worker only (except metrics).
struct EngineContext {
  PrefixCache& cache;
  const generation::Generator& generator;
  const tokenizer::Tokenizer& tokenizer;
  Metrics& metrics;
  int64_t default_max_tokens = 393216;
  int draft_tokens = 0;  // generation::GenerateOptions::draft_tokens of every request
  // A client that reads nothing for this long fails its stream (§4.1).
  std::chrono::milliseconds stall_limit{2000};
  // `: prefill` comments at least this often while a prompt is evaluated (§4.6).
  std::chrono::milliseconds prefill_comment_interval{5000};
};

class GenerationJob final : public Scheduler::Job {
 public:
  // `output` describes the response (api, id, stream, …; new_call_id set by the caller).
  GenerationJob(EngineContext& context, PromptRequest request, OutputContext output,
                std::shared_ptr<ResponseChannel> channel);

  void run(const std::atomic<bool>& cancelled) override;
  void dropped() override;

 private:
  void run_request(const std::atomic<bool>& cancelled);
  // An error before any body was written: a status + body, or for streams (headers are out) the
  // in-stream error frame.
  void fail(int status, const HttpError& error, const std::string& message);

  EngineContext& ctx_;
  PromptRequest req_;
  OutputContext output_;
  std::shared_ptr<ResponseChannel> channel_;
};

}  // namespace dsv4::server
