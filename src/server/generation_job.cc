#include "server/generation_job.h"

#include <span>
#include <string>
#include <utility>
#include <vector>

#include "server/sse.h"
#include "util/log.h"

namespace dsv4::server {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

FinishReason client_finish(generation::Finish finish) {
  switch (finish) {
    case generation::Finish::kLength: return FinishReason::kLength;
    case generation::Finish::kToolCalls: return FinishReason::kToolCalls;
    case generation::Finish::kError: return FinishReason::kError;
    case generation::Finish::kStop:
    case generation::Finish::kCancelled: break;
  }
  return FinishReason::kStop;
}

}  // namespace

GenerationJob::GenerationJob(EngineContext& context, PromptRequest request, OutputContext output,
                             std::shared_ptr<ResponseChannel> channel)
    : ctx_(context), req_(std::move(request)), output_(std::move(output)), channel_(std::move(channel)) {}

void GenerationJob::fail(int status, const HttpError& error, const std::string& message) {
  log::error(output_.id, ": ", message);
  if (output_.stream) {
    channel_->write(sse_error_event(output_.api, message), ctx_.stall_limit);
    channel_->close(200);
  } else {
    channel_->write(error.body, ctx_.stall_limit);
    channel_->close(error.status);
  }
}

void GenerationJob::dropped() {
  if (channel_->abandoned()) {  // the client left while queued
    ctx_.metrics.count_cancelled();
    channel_->close();
    return;
  }
  fail(503, api_error(output_.api, 503, "server shutting down"), "server shutting down");
}

void GenerationJob::run(const std::atomic<bool>& cancelled) {
  // Nothing a request does may take the server down: an exception here is a bug, reported to
  // this client only.
  try {
    run_request(cancelled);
  } catch (const std::exception& e) {
    fail(500, api_error(output_.api, 500, std::string("internal error: ") + e.what(), "server_error"),
         std::string("internal error: ") + e.what());
  }
}

void GenerationJob::run_request(const std::atomic<bool>& cancelled) {
  const auto gone = [&] { return cancelled.load() || channel_->abandoned(); };
  const auto cancelled_here = [&](const char* when) {
    log::info(output_.id, ": client gone ", when, ", generation stopped");
    ctx_.metrics.count_cancelled();
    channel_->close();
  };
  if (gone()) return cancelled_here("while queued");

  // Prefill, keeping the stream alive with comments (the headers are out already).
  const auto t_prefill = Clock::now();
  auto last_comment = t_prefill;
  const engine::ProgressFn progress = [&](int64_t, int64_t) {
    if (gone()) return false;
    if (output_.stream && Clock::now() - last_comment >= ctx_.prefill_comment_interval) {
      last_comment = Clock::now();
      if (!channel_->write(sse_prefill_comment(), ctx_.stall_limit)) return false;
    }
    return true;
  };
  Result<PrefillResult> prefilled = ctx_.cache.prefill(req_.tokens, req_.typed, progress);
  if (!prefilled.ok()) {
    if (gone()) return cancelled_here("during prefill");
    return fail(500, api_error(output_.api, 500, "prefill failed: " + prefilled.error().message, "server_error"),
                "prefill failed: " + prefilled.error().message);
  }
  const double prefill_s = seconds_since(t_prefill);
  const PrefillResult& pre = *prefilled;
  engine::Session& session = ctx_.cache.session();
  const int64_t n_prompt = static_cast<int64_t>(pre.tokens.size());
  if (n_prompt >= session.n_ctx()) {
    const HttpError e = context_length_error(output_.api, n_prompt, session.n_ctx(), req_.prompt_param);
    return fail(e.status, e, "prompt of " + std::to_string(n_prompt) + " tokens does not fit the context");
  }

  generation::GenerateOptions options;
  options.sampling = effective_sampling(req_.fields, req_.thinking, engine::entropy_seed());
  options.max_tokens = effective_max_tokens(req_.fields.max_tokens, ctx_.default_max_tokens, session.n_ctx(), n_prompt);
  options.stream.mode = req_.thinking;
  options.stream.tools_active = req_.tools_active;
  options.stop = req_.fields.stop;
  options.draft_tokens = ctx_.draft_tokens;

  Usage usage;
  usage.prompt_tokens = n_prompt;
  usage.cached_tokens = pre.cached;
  std::unique_ptr<ApiOutput> output = ApiOutput::create(output_);
  if (output_.stream && !channel_->write(output->start(usage), ctx_.stall_limit)) return cancelled_here("after prefill");

  bool inside_tool_call = false;
  int64_t decode_stores = 0;
  generation::GenerateCallbacks callbacks;
  callbacks.on_events = [&](std::span<const chat::StreamEvent> events) {
    for (const chat::StreamEvent& e : events) {
      if (e.kind == chat::StreamEventKind::tool_call_begin) inside_tool_call = true;
      if (e.kind == chat::StreamEventKind::error) log::debug(output_.id, ": tool-call markup: ", e.text);
    }
    if (!output_.stream) return !gone();
    const std::string bytes = output->on_events(events);
    return (bytes.empty() || channel_->write(bytes, ctx_.stall_limit)) && !gone();
  };
  callbacks.should_cancel = [&] {
    if (gone()) return true;
    if (ctx_.cache.at_decode_step(inside_tool_call)) ++decode_stores;
    return false;
  };
  Result<generation::GenerateResult> generated = ctx_.generator.generate(session, options, callbacks);
  ctx_.cache.finished_turn(req_.reasoning_dropped_next_turn);
  if (!generated.ok()) {
    return fail(500, api_error(output_.api, 500, "generation failed: " + generated.error().message, "server_error"),
                "generation failed: " + generated.error().message);
  }
  const generation::GenerateResult& g = *generated;

  Metrics::Generation m;
  m.api = output_.api;
  m.rung = pre.rung;
  m.prompt_tokens = n_prompt;
  m.cached_tokens = pre.cached;
  m.evaluated_tokens = pre.evaluated;
  m.prefill_seconds = prefill_s;
  m.generated_tokens = static_cast<int64_t>(g.tokens.size());
  m.decode_seconds = g.decode_seconds;
  m.disk_stores = pre.disk_stores + decode_stores;
  m.drafted_tokens = g.drafted;
  m.draft_accepted = g.draft_accepted;
  ctx_.metrics.count_generation(m);
  const std::string drafts = g.drafted > 0 ? ", drafts " + std::to_string(g.draft_accepted) + " of " +
                                                 std::to_string(g.drafted) + " kept"
                                           : "";
  log::info(output_.id, ": ", api_name(output_.api), " prompt ", n_prompt, " tokens (", rung_name(pre.rung), ", cached ",
            pre.cached, ", evaluated ", pre.evaluated, " in ", prefill_s, " s), generated ", g.tokens.size(), " in ",
            g.decode_seconds, " s", drafts, ", finish ", generation::finish_name(g.finish),
            g.error.empty() ? "" : " (" + g.error + ")");
  if (g.finish == generation::Finish::kCancelled) return cancelled_here("during generation");

  FinalInfo info;
  info.finish = client_finish(g.finish);
  info.stop_sequence = g.stop_sequence;
  info.error_message = g.error;
  info.usage = usage;
  info.usage.completion_tokens = static_cast<int64_t>(g.tokens.size());
  info.usage.reasoning_tokens = g.reasoning_tokens;
  // A sampled EOS decodes to its string, which the response side ignores (§3.4).
  Result<std::string> raw = ctx_.tokenizer.decode(g.tokens);
  info.raw_text = raw.ok() ? std::move(*raw) : g.reasoning + g.content;

  if (output_.stream) {
    channel_->write(output->finish(info), ctx_.stall_limit);
  } else {
    channel_->write(to_wire_json(output->response(info)), ctx_.stall_limit);
  }
  channel_->close(200);
}

}  // namespace dsv4::server
