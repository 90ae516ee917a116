// dsv4 run: one-shot generation. Renders the official chat prompt, evaluates it (with a progress
// bar on a terminal), streams the answer through the shared generator (reasoning shown apart
// from the visible text), then prints the speeds. Ctrl+C stops the answer early.
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <memory>
#include <optional>
#include <sstream>
#include <string>

#include "cli/commands.h"
#include "cli/interrupt.h"
#include "cli/loaded_model.h"
#include "cli/logprob_dump.h"
#include "cli/progress_bar.h"
#include "cli/stream_printer.h"
#include "engine/engine.h"
#include "engine/sampler.h"
#include "generation/generator.h"

namespace dsv4::cli {
namespace {

struct RunOptions {
  ModelOptions model;
  std::string prompt;
  std::string prompt_file;
  std::string system;
  bool nothink = false;
  std::string think;  // "", "high", "max"
  int64_t n_predict = 512;
  int64_t ctx = 8192;
  engine::SamplingParams sampling;
  int draft_tokens = 0;
  bool dump_tokens = false;
  std::string dump_logprobs;
  int32_t top_logprobs = 5;
};

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

// Exit code 130 when Ctrl+C stopped the work (the shell's convention for SIGINT).
Result<int> run(RunOptions o) {
  std::string prompt = o.prompt;
  if (!o.prompt_file.empty()) {
    std::ifstream in(o.prompt_file, std::ios::binary);
    if (!in) return make_error(o.prompt_file + ": cannot open");
    std::stringstream ss;
    ss << in.rdbuf();
    prompt = ss.str();
  }
  if (prompt.empty()) return make_error("empty prompt (give -p TEXT or --prompt-file FILE)");
  if (!o.dump_logprobs.empty()) {
    o.sampling.temperature = 0.0f;  // a greedy continuation, so that the dump is reproducible
    o.sampling.logprobs = true;
    o.sampling.top_logprobs = o.top_logprobs;
  }
  DSV4_TRY(engine::validate(o.sampling));

  chat::EncodeOptions eo;
  eo.thinking = o.nothink ? chat::ThinkingMode::chat : chat::ThinkingMode::thinking;
  if (o.think == "max") eo.effort = chat::Effort::max;
  else if (o.think == "high") eo.effort = chat::Effort::high;
  else if (!o.think.empty()) return make_error("--think must be high or max");

  DSV4_ASSIGN_OR_RETURN(LoadedModel model, load_model(o.model));
  std::vector<chat::Message> messages;
  if (!o.system.empty()) {
    messages.emplace_back().role = chat::Role::system;
    messages.back().content = o.system;
  }
  messages.emplace_back().role = chat::Role::user;
  messages.back().content = prompt;
  DSV4_ASSIGN_OR_RETURN(std::vector<int32_t> ids, prompt_ids(model, messages, eo));
  if (static_cast<int64_t>(ids.size()) + o.n_predict > o.ctx) {
    return make_error("prompt (" + std::to_string(ids.size()) + " tokens) + -n " + std::to_string(o.n_predict) +
                      " exceed --ctx " + std::to_string(o.ctx));
  }
  DSV4_ASSIGN_OR_RETURN(std::unique_ptr<engine::Session> session, model.engine->new_session(o.ctx));
  if (o.dump_tokens) {
    std::fprintf(stderr, "prompt tokens:");
    for (int32_t id : ids) std::fprintf(stderr, " %d", id);
    std::fprintf(stderr, "\n");
  }

  InterruptScope interrupt;
  const auto t_prefill = Clock::now();
  {
    ProgressBar bar(stderr);
    Result<engine::SyncStats> synced = session->sync(ids, [&](int64_t done, int64_t total) {
      bar.update(done, total);
      return !interrupt.requested();
    });
    if (!synced.ok() && interrupt.requested()) {
      bar.clear();
      std::fprintf(stderr, "[interrupted during the prefill]\n");
      return 130;
    }
    DSV4_TRY(synced.status());
  }
  const double prefill_s = seconds_since(t_prefill);

  std::optional<LogprobDump> dump;
  if (!o.dump_logprobs.empty()) dump.emplace(model.tokenizer, model.path, o.model.mode, ids);
  StreamPrinter printer(stdout, isatty(STDOUT_FILENO) != 0);
  generation::GenerateOptions go;
  go.sampling = o.sampling;
  go.max_tokens = o.n_predict;
  go.stream = {eo.thinking, /*tools_active=*/false};
  go.draft_tokens = o.draft_tokens;
  generation::GenerateCallbacks callbacks;
  callbacks.on_events = [&](std::span<const chat::StreamEvent> events) {
    printer.print(events);
    return true;
  };
  callbacks.on_token = [&](const engine::Sample& s) {
    if (o.dump_tokens) std::fprintf(stderr, "[%d]", s.token);
    if (dump) dump->add(s);
  };
  callbacks.should_cancel = [&] { return interrupt.requested(); };
  generation::Generator generator(model.tokenizer, model.special);
  DSV4_ASSIGN_OR_RETURN(generation::GenerateResult g, generator.generate(*session, go, callbacks));
  printer.end();
  if (o.dump_tokens) std::fprintf(stderr, "\n");
  if (dump) DSV4_TRY(dump->write(o.dump_logprobs));
  if (g.finish == generation::Finish::kError) return make_error("generation failed: " + g.error);
  if (g.finish == generation::Finish::kCancelled) std::fprintf(stderr, "[interrupted]\n");
  std::fprintf(stderr, "prompt %zu tokens, prefill %.1f tokens/s; generated %zu tokens, decode %.1f tokens/s (%s)\n",
               ids.size(), static_cast<double>(ids.size()) / std::max(prefill_s, 1e-9), g.tokens.size(),
               static_cast<double>(g.tokens.size()) / std::max(g.decode_seconds, 1e-9),
               generation::finish_name(g.finish));
  if (g.drafted > 0) {
    std::fprintf(stderr, "drafts: %lld of %lld drafted tokens kept\n", static_cast<long long>(g.draft_accepted),
                 static_cast<long long>(g.drafted));
  }
  return g.finish == generation::Finish::kCancelled ? 130 : 0;
}

}  // namespace

void register_run(CLI::App& app) {
  auto o = std::make_shared<RunOptions>();
  CLI::App* cmd = app.add_subcommand("run", "Answer one prompt (official chat template, thinking by default)");
  add_model_options(cmd, o->model);
  add_draft_option(cmd, o->draft_tokens);
  cmd->add_option("--prompt,-p", o->prompt, "User message");
  cmd->add_option("--prompt-file", o->prompt_file, "Read the user message from a file");
  cmd->add_option("--system", o->system, "System message");
  cmd->add_flag("--nothink", o->nothink, "Answer without reasoning");
  cmd->add_option("--think", o->think, "Reasoning effort: high or max");
  cmd->add_option("-n,--n-predict", o->n_predict, "Maximum tokens to generate")->check(CLI::NonNegativeNumber);
  cmd->add_option("--ctx", o->ctx, "Context size")->check(CLI::PositiveNumber);
  add_sampling_options(cmd, o->sampling);
  cmd->add_flag("--dump-tokens", o->dump_tokens, "Print prompt and generated token ids on stderr");
  cmd->add_option("--dump-logprobs", o->dump_logprobs,
                  "Greedy continuation; write each step's token, logprob and top alternatives as JSON to FILE");
  cmd->add_option("--top-logprobs", o->top_logprobs, "Alternatives per step in --dump-logprobs (0-20, default 5)")
      ->check(CLI::Range(0, engine::kMaxTopLogprobs));
  cmd->callback([o] {
    Result<int> code = run(*o);
    if (!code.ok()) std::fprintf(stderr, "dsv4 run: %s\n", code.error().message.c_str());
    set_exit_code(code.ok() ? *code : 1);
  });
}

}  // namespace dsv4::cli
