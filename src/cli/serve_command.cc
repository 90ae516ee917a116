// dsv4 serve: the OpenAI- and Anthropic-compatible HTTP server (PROTOCOL.md §4–5) over one live
// session, with KV prefix reuse and an optional disk KV cache. Stops cleanly on SIGINT/SIGTERM:
// queued requests are answered 503, the running one is cancelled, and the live session is stored
// to the disk cache.
#include <pthread.h>
#include <signal.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "chat/effort.h"
#include "cli/commands.h"
#include "cli/model_path.h"
#include "engine/engine.h"
#include "generation/generator.h"
#include "gguf/gguf.h"
#include "server/generation_job.h"
#include "server/http_server.h"
#include "server/kv_store.h"
#include "server/metrics.h"
#include "server/prefix_cache.h"
#include "server/scheduler.h"
#include "tokenizer/special_tokens.h"
#include "tokenizer/tokenizer.h"
#include "util/log.h"

namespace dsv4::cli {
namespace {

struct ServeOptions {
  std::string model;
  std::string backend = "cpu";
  std::string prefill = "exact";
  std::string mode = "official";
  std::string release = "original";
  int64_t ctx = 65536;
  int64_t max_tokens = 393216;
  int draft_tokens = 0;
  std::string mtp_path;
  size_t max_queue = 16;
  int64_t max_body_mb = 64;
  std::string kv_disk_dir;
  int64_t kv_disk_space_mb = 4096;
  server::StoreTriggerOptions triggers;
  std::string log_level = "info";
  server::HttpOptions http;
};

// Blocks SIGINT/SIGTERM in every thread started from here on and waits for them on one thread,
// which then runs `stop` – so no signal lands in the middle of engine or socket work.
class SignalWaiter {
 public:
  SignalWaiter() {
    sigemptyset(&set_);
    sigaddset(&set_, SIGINT);
    sigaddset(&set_, SIGTERM);
    sigaddset(&set_, SIGUSR1);  // our own wake-up when the server ends without a signal
    pthread_sigmask(SIG_BLOCK, &set_, nullptr);
  }
  void start(std::function<void(int)> stop) {
    thread_ = std::thread([this, stop = std::move(stop)] {
      int sig = 0;
      sigwait(&set_, &sig);
      if (sig != SIGUSR1) stop(sig);
    });
  }
  // Ends the waiting thread (after its `stop` if a signal came first).
  void finish() {
    if (!thread_.joinable()) return;
    pthread_kill(thread_.native_handle(), SIGUSR1);
    thread_.join();
  }
  ~SignalWaiter() { finish(); }

 private:
  sigset_t set_;
  std::thread thread_;
};

Status serve(ServeOptions o) {
  signal(SIGPIPE, SIG_IGN);  // a vanished client is an error value on write, not a signal
  SignalWaiter signals;
  auto level = log::parse_level(o.log_level);
  if (!level) return make_error("--log-level must be debug, info, warn or error");
  log::set_level(*level);
  auto release = chat::parse_release(o.release);
  if (!release) return make_error("--release must be original or 0731");
  o.http.request_config.release = *release;

  DSV4_ASSIGN_OR_RETURN(std::string path, resolve_model_path(o.model));
  DSV4_ASSIGN_OR_RETURN(gguf::File file, gguf::File::open(path));
  DSV4_ASSIGN_OR_RETURN(tokenizer::Tokenizer tok, tokenizer::Tokenizer::from_gguf(file));
  DSV4_ASSIGN_OR_RETURN(tokenizer::SpecialTokens special, tokenizer::SpecialTokens::resolve(tok));
  engine::EngineOptions eo;
  eo.model_path = path;
  eo.mtp_path = o.mtp_path;
  DSV4_ASSIGN_OR_RETURN(eo.backend, engine::parse_backend(o.backend));
  DSV4_ASSIGN_OR_RETURN(eo.mode, engine::parse_mode(o.mode));
  DSV4_ASSIGN_OR_RETURN(eo.prefill, engine::parse_prefill(o.prefill));
  log::info("loading ", path, " (", o.backend, ", ", o.mode, " mode, ", o.prefill, " prefill",
            o.mtp_path.empty() ? "" : ", MTP block from " + o.mtp_path, ")");
  DSV4_ASSIGN_OR_RETURN(std::shared_ptr<engine::Engine> eng, engine::Engine::load(eo));
  DSV4_ASSIGN_OR_RETURN(std::unique_ptr<engine::Session> session, eng->new_session(o.ctx));

  std::unique_ptr<server::KvStore> store;
  if (!o.kv_disk_dir.empty()) {
    server::KvStoreOptions so;
    so.dir = o.kv_disk_dir;
    so.budget_bytes = static_cast<uint64_t>(o.kv_disk_space_mb) << 20;
    so.min_tokens = o.triggers.min_tokens;
    so.cold_max_tokens = o.triggers.cold_max_tokens;
    DSV4_ASSIGN_OR_RETURN(store, server::KvStore::open(so, eng->fingerprint(), server::kv_mode_flags(eng->mode())));
    for (const std::string& w : store->warnings()) log::warn("kv cache: ", w);
    log::info("kv cache: ", o.kv_disk_dir, ", ", store->file_count(), " files, ", store->total_bytes() >> 20, " of ",
              o.kv_disk_space_mb, " MiB");
  }

  server::PrefixCache cache(std::move(session), tok, special, store.get(), o.triggers);
  generation::Generator generator(tok, special);
  server::Metrics metrics;
  server::EngineContext context{cache, generator, tok, metrics};
  context.default_max_tokens = o.max_tokens;
  context.draft_tokens = o.draft_tokens;
  server::Scheduler scheduler(o.max_queue);
  o.http.n_ctx = o.ctx;
  o.http.max_body_bytes = static_cast<size_t>(o.max_body_mb) << 20;
  o.http.http_threads = o.max_queue + 16;  // queued + running requests, and room for /health etc.
  server::HttpServer http(o.http, context, scheduler, tok);
  DSV4_TRY(http.bind());

  std::atomic<bool> served{false};
  signals.start([&](int sig) {
    log::info("signal ", sig, ": shutting down");
    scheduler.shutdown();
    // A signal that came during startup finds the server not yet listening, and httplib ignores a
    // stop() then: repeat it until serve() has returned.
    while (!served.load()) {
      http.stop();
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  });
  // One line on stdout, for scripts that start the server on port 0.
  std::printf("dsv4 serve: listening on http://%s:%d\n", o.http.host.c_str(), http.port());
  std::fflush(stdout);
  log::info("serving ", o.http.model_id, " on http://", o.http.host, ":", http.port(), ", context ", o.ctx,
            o.http.api_key.empty() ? "" : ", API key required");
  http.serve();
  served.store(true);
  signals.finish();
  scheduler.shutdown();
  cache.store_at_shutdown();
  log::info("stopped");
  return Status();
}

}  // namespace

void register_serve(CLI::App& app) {
  auto o = std::make_shared<ServeOptions>();
  CLI::App* cmd = app.add_subcommand("serve", "OpenAI/Anthropic-compatible HTTP server");
  add_model_option(cmd, o->model);
  cmd->add_option("--host", o->http.host, "Listen address (default 127.0.0.1: this machine only)");
  cmd->add_option("--port", o->http.port, "Listen port (0: any free port)")->check(CLI::Range(0, 65535));
  cmd->add_option("--ctx", o->ctx, "Context size of the live session")->check(CLI::PositiveNumber);
  cmd->add_option("--api-key", o->http.api_key, "Require this key (Authorization: Bearer or x-api-key)")
      ->envname("DSV4_API_KEY");
  cmd->add_flag("--cors", o->http.cors, "Answer CORS preflights and allow any origin");
  cmd->add_option("--backend", o->backend, "cpu or cuda");
  cmd->add_option("--prefill", o->prefill, kPrefillOptionHelp);
  cmd->add_option("--mode", o->mode, "official (default) or plain");
  cmd->add_option("--release", o->release, "Effort prompts of the original release (default) or 0731");
  cmd->add_option("--model-id", o->http.model_id, "Model id reported by /v1/models");
  add_draft_option(cmd, o->draft_tokens);
  add_mtp_option(cmd, o->mtp_path);
  cmd->add_option("--max-tokens", o->max_tokens, "Default max tokens per answer (clipped to the free context)")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--max-queue", o->max_queue, "Requests that may wait for the engine (more get 503)")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--max-body-mb", o->max_body_mb, "Largest request body in MiB (more get 413)")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--kv-disk-dir", o->kv_disk_dir, "Disk KV cache directory (off when not given)");
  cmd->add_option("--kv-disk-space-mb", o->kv_disk_space_mb, "Disk KV cache budget in MiB")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--kv-cache-min-tokens", o->triggers.min_tokens, "Never store or load shorter prefixes")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--kv-cache-cold-max-tokens", o->triggers.cold_max_tokens,
                  "Cold stores for prompts up to this size (0: none); larger disk hits are consumed")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--kv-cache-continued-interval-tokens", o->triggers.continued_interval_tokens,
                  "Store the session every this many tokens (rounded up to the alignment; 0: never)")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--kv-cache-boundary-trim-tokens", o->triggers.boundary_trim_tokens, "Cold store trim")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--kv-cache-boundary-align-tokens", o->triggers.boundary_align_tokens,
                  "Cold and continued store alignment")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--log-level", o->log_level, "debug, info (default), warn or error");
  cmd->callback([o] {
    Status s = serve(*o);
    if (!s.ok()) std::fprintf(stderr, "dsv4 serve: %s\n", s.message().c_str());
    set_exit_code(s.ok() ? 0 : 1);
  });
}

}  // namespace dsv4::cli
