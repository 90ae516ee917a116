// dsv4 run: one-shot generation. Renders the official chat prompt, evaluates it, samples and
// streams the answer, reasoning shown apart from the visible text, then prints the speeds.
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>

#include "chat/dsml_stream.h"
#include "chat/encoder.h"
#include "chat/token_ids.h"
#include "cli/commands.h"
#include "engine/engine.h"
#include "engine/sampler.h"
#include "gguf/gguf.h"
#include "tokenizer/special_tokens.h"
#include "tokenizer/stream_decoder.h"
#include "tokenizer/tokenizer.h"

namespace dsv4::cli {
namespace {

struct RunOptions {
  std::string model;
  std::string prompt;
  std::string prompt_file;
  std::string system;
  bool nothink = false;
  std::string think;  // "", "high", "max"
  int64_t n_predict = 512;
  int64_t ctx = 8192;
  std::string mode = "official";
  engine::SamplingParams sampling;
  bool dump_tokens = false;
};

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

Status run(const RunOptions& o) {
  std::string prompt = o.prompt;
  if (!o.prompt_file.empty()) {
    std::ifstream in(o.prompt_file, std::ios::binary);
    if (!in) return make_error(o.prompt_file + ": cannot open");
    std::stringstream ss;
    ss << in.rdbuf();
    prompt = ss.str();
  }
  if (prompt.empty()) return make_error("empty prompt (give -p TEXT or --prompt-file FILE)");

  DSV4_ASSIGN_OR_RETURN(gguf::File file, gguf::File::open(o.model));
  DSV4_ASSIGN_OR_RETURN(tokenizer::Tokenizer tok, tokenizer::Tokenizer::from_gguf(file));
  DSV4_ASSIGN_OR_RETURN(tokenizer::SpecialTokens special, tokenizer::SpecialTokens::resolve(tok));

  std::vector<chat::Message> messages;
  if (!o.system.empty()) messages.push_back({.role = chat::Role::system, .content = o.system});
  messages.push_back({.role = chat::Role::user, .content = prompt});
  chat::EncodeOptions eo;
  eo.thinking = o.nothink ? chat::ThinkingMode::chat : chat::ThinkingMode::thinking;
  if (o.think == "max") eo.effort = chat::Effort::max;
  else if (o.think == "high") eo.effort = chat::Effort::high;
  else if (!o.think.empty()) return make_error("--think must be high or max");
  DSV4_ASSIGN_OR_RETURN(chat::RenderedPrompt rendered, chat::encode_messages(messages, eo));
  DSV4_ASSIGN_OR_RETURN(std::vector<int32_t> ids, chat::prompt_token_ids(rendered, tok));

  engine::EngineOptions opts;
  opts.model_path = o.model;
  DSV4_ASSIGN_OR_RETURN(opts.mode, engine::parse_mode(o.mode));
  DSV4_ASSIGN_OR_RETURN(std::shared_ptr<engine::Engine> eng, engine::Engine::load(opts));
  if (static_cast<int64_t>(ids.size()) + o.n_predict > o.ctx) {
    return make_error("prompt (" + std::to_string(ids.size()) + " tokens) + -n " +
                      std::to_string(o.n_predict) + " exceed --ctx " + std::to_string(o.ctx));
  }
  DSV4_ASSIGN_OR_RETURN(std::unique_ptr<engine::Session> session, eng->new_session(o.ctx));
  DSV4_ASSIGN_OR_RETURN(engine::Sampler sampler,
                        engine::Sampler::create(static_cast<int32_t>(eng->config().n_vocab), o.sampling));
  if (o.dump_tokens) {
    std::fprintf(stderr, "prompt tokens:");
    for (int32_t id : ids) std::fprintf(stderr, " %d", id);
    std::fprintf(stderr, "\n");
  }

  const auto t_prefill = Clock::now();
  DSV4_TRY(session->sync(ids).status());
  const double prefill_s = seconds_since(t_prefill);

  const bool color = isatty(STDOUT_FILENO);
  tokenizer::StreamDecoder decoder(tok);
  chat::DsmlStreamParser parser({eo.thinking, /*tools_active=*/false});
  std::vector<chat::StreamEvent> events;
  chat::StreamEventKind shown = chat::StreamEventKind::content;
  bool any_shown = false;
  auto show = [&](const std::vector<chat::StreamEvent>& evs) {
    for (const chat::StreamEvent& e : evs) {
      if (e.kind != chat::StreamEventKind::reasoning && e.kind != chat::StreamEventKind::content) continue;
      if (!any_shown || e.kind != shown) {
        if (color) std::fputs(e.kind == chat::StreamEventKind::reasoning ? "\033[2m" : "\033[0m", stdout);
        else if (any_shown || e.kind == chat::StreamEventKind::reasoning)
          std::fputs(e.kind == chat::StreamEventKind::reasoning ? "[thinking]\n" : "\n[answer]\n", stdout);
        shown = e.kind;
        any_shown = true;
      }
      std::fwrite(e.text.data(), 1, e.text.size(), stdout);
    }
    std::fflush(stdout);
  };

  const auto t_decode = Clock::now();
  int64_t generated = 0;
  for (; generated < o.n_predict; ++generated) {
    DSV4_ASSIGN_OR_RETURN(engine::Sample s, sampler.sample(session->logits()));
    if (s.token == special.eos) break;
    if (o.dump_tokens) std::fprintf(stderr, "[%d]", s.token);
    DSV4_ASSIGN_OR_RETURN(std::string text, decoder.push(s.token));
    events.clear();
    parser.feed(text, events);
    show(events);
    const int32_t next[1] = {s.token};
    DSV4_TRY(session->eval(next));
  }
  events.clear();
  parser.feed(decoder.flush(), events);
  parser.finish(events);
  show(events);
  if (color) std::fputs("\033[0m", stdout);
  const double decode_s = seconds_since(t_decode);
  std::printf("\n");
  std::fprintf(stderr, "prompt %zu tokens, prefill %.1f tokens/s; generated %lld tokens, decode %.1f tokens/s\n",
               ids.size(), static_cast<double>(ids.size()) / std::max(prefill_s, 1e-9),
               static_cast<long long>(generated), static_cast<double>(generated) / std::max(decode_s, 1e-9));
  return Status();
}

}  // namespace

void register_run(CLI::App& app) {
  auto o = std::make_shared<RunOptions>();
  CLI::App* cmd = app.add_subcommand("run", "Answer one prompt (official chat template, thinking by default)");
  cmd->add_option("--model,-m", o->model, "GGUF model")->required();
  cmd->add_option("--prompt,-p", o->prompt, "User message");
  cmd->add_option("--prompt-file", o->prompt_file, "Read the user message from a file");
  cmd->add_option("--system", o->system, "System message");
  cmd->add_flag("--nothink", o->nothink, "Answer without reasoning");
  cmd->add_option("--think", o->think, "Reasoning effort: high or max");
  cmd->add_option("-n,--n-predict", o->n_predict, "Maximum tokens to generate")->check(CLI::NonNegativeNumber);
  cmd->add_option("--ctx", o->ctx, "Context size")->check(CLI::PositiveNumber);
  cmd->add_option("--mode", o->mode, "official (default) or plain");
  cmd->add_option("--temp", o->sampling.temperature, "Temperature (0 = greedy)");
  cmd->add_option("--top-p", o->sampling.top_p, "Nucleus sampling");
  cmd->add_option("--top-k", o->sampling.top_k, "Top-k sampling (0 = off)");
  cmd->add_option("--min-p", o->sampling.min_p, "Min-p sampling (default 0.05)");
  cmd->add_option("--seed", o->sampling.seed, "Sampling seed");
  cmd->add_flag("--dump-tokens", o->dump_tokens, "Print prompt and generated token ids on stderr");
  cmd->callback([o] {
    Status s = run(*o);
    if (!s.ok()) std::fprintf(stderr, "dsv4 run: %s\n", s.message().c_str());
    set_exit_code(s.ok() ? 0 : 1);
  });
}

}  // namespace dsv4::cli
