// dsv4 bench: prefill and decode speed through the engine API, walking one fixed token sequence
// through a list of context frontiers. For each frontier f: the prefill of the interval from the
// previous frontier to f (tokens/s, and TFLOP/s against the card's bf16 matrix rate), then --gen
// greedy decode steps at f, sampled on the backend (tokens/s, and GB/s against the measured copy
// bandwidth, using the bytes a step must read). The decoded tokens are then dropped: sync to the
// next frontier rolls back to the checkpoint at f.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "engine/engine.h"
#include "engine/sampler.h"

namespace dsv4::cli {
namespace {

struct BenchOptions {
  std::string model;
  std::string synthetic;
  int64_t layers = 0;
  uint64_t seed = 1;
  std::string backend = "cuda";
  std::string prefill = "exact";
  std::string mode = "official";
  std::string frontiers = "2048,8192,32768";
  int64_t gen = 128;
  std::string csv;
  bool reported = false;  // prefill through sync's progress callback, as the server and chat do
  double bf16_tflops = 790.0;  // dense bf16 rate measured on this workplace's H100/H200 (.library/device/KINDS.md)
};

Result<std::vector<int64_t>> parse_frontiers(const std::string& text) {
  std::vector<int64_t> out;
  std::stringstream ss(text);
  std::string item;
  while (std::getline(ss, item, ',')) {
    size_t used = 0;
    long long v = 0;
    try {
      v = std::stoll(item, &used);
    } catch (...) {
      used = 0;
    }
    if (used != item.size() || v < 1 || (!out.empty() && v <= out.back())) {
      return make_error("--frontiers: '" + item + "' is not an increasing positive token count");
    }
    out.push_back(v);
  }
  if (out.empty()) return make_error("--frontiers: no frontier");
  return out;
}

double seconds_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

Status run(const BenchOptions& o) {
  DSV4_ASSIGN_OR_RETURN(std::vector<int64_t> frontiers, parse_frontiers(o.frontiers));
  if (o.gen < 1) return make_error("--gen must be at least 1");
  engine::EngineOptions eo;
  eo.model_path = o.model;
  eo.synthetic_preset = o.synthetic;
  eo.synthetic_layers = o.layers;
  eo.synthetic_seed = o.seed;
  DSV4_ASSIGN_OR_RETURN(eo.mode, engine::parse_mode(o.mode));
  DSV4_ASSIGN_OR_RETURN(eo.backend, engine::parse_backend(o.backend));
  DSV4_ASSIGN_OR_RETURN(eo.prefill, engine::parse_prefill(o.prefill));
  DSV4_ASSIGN_OR_RETURN(std::shared_ptr<engine::Engine> eng, engine::Engine::load(eo));
  const engine::PerfInfo info = eng->perf_info();
  const model::Config& c = eng->config();
  std::printf("device: %s\nmodel: %s, %lld layers, %.2f GB of weights, loaded in %.2f s", info.device.c_str(),
              o.model.empty() ? ("synthetic " + o.synthetic).c_str() : o.model.c_str(), static_cast<long long>(c.n_layer),
              static_cast<double>(info.weight_bytes) / 1e9, info.load_seconds);
  if (info.load_gb_per_s > 0) std::printf(" (%.2f GB/s)", info.load_gb_per_s);
  std::printf(", %s mode, %s prefill", o.mode.c_str(), o.prefill.c_str());
  std::printf("\nmeasured copy bandwidth: %.0f GB/s; bf16 matrix rate taken as %.0f TFLOP/s\n", info.copy_gb_per_s,
              o.bf16_tflops);

  const int64_t n_ctx = frontiers.back() + o.gen + 1;
  DSV4_ASSIGN_OR_RETURN(std::unique_ptr<engine::Session> session, eng->new_session(n_ctx));
  // A fixed sequence over the whole vocabulary (ids spread by a large odd stride).
  std::vector<int32_t> tokens(static_cast<size_t>(frontiers.back()));
  for (size_t i = 0; i < tokens.size(); ++i) tokens[i] = static_cast<int32_t>((i * 7919 + 13) % static_cast<uint64_t>(c.n_vocab));
  engine::SamplingParams greedy;
  greedy.temperature = 0.0f;
  DSV4_ASSIGN_OR_RETURN(engine::Sampler sampler, engine::Sampler::create(static_cast<int32_t>(c.n_vocab), greedy));

  std::ofstream csv;
  if (!o.csv.empty()) {
    csv.open(o.csv);
    if (!csv) return make_error(o.csv + ": cannot write");
    csv << "phase,from,to,tokens,seconds,tokens_per_s,gb_per_s,fraction_of_copy,tflops,fraction_of_bf16\n";
  }
  std::printf("%-8s %8s %8s %8s %10s %12s %10s %8s %9s %8s\n", "phase", "from", "to", "tokens", "seconds", "tokens/s",
              "GB/s", "of copy", "TFLOP/s", "of bf16");
  auto report = [&](const char* phase, int64_t from, int64_t to, int64_t n, double s, double gbs, double tflops) {
    const double frac_copy = info.copy_gb_per_s > 0 ? gbs / info.copy_gb_per_s : 0.0;
    const double frac_bf16 = o.bf16_tflops > 0 ? tflops / o.bf16_tflops : 0.0;
    std::printf("%-8s %8lld %8lld %8lld %10.3f %12.1f %10.1f %8.3f %9.2f %8.4f\n", phase, static_cast<long long>(from),
                static_cast<long long>(to), static_cast<long long>(n), s, static_cast<double>(n) / s, gbs, frac_copy,
                tflops, frac_bf16);
    std::fflush(stdout);
    if (csv) {
      csv << phase << ',' << from << ',' << to << ',' << n << ',' << s << ',' << static_cast<double>(n) / s << ',' << gbs
          << ',' << frac_copy << ',' << tflops << ',' << frac_bf16 << '\n';
    }
  };

  int64_t done = 0;
  for (int64_t f : frontiers) {
    const auto t0 = std::chrono::steady_clock::now();
    const std::span<const int32_t> prefix = std::span(tokens).first(static_cast<size_t>(f));
    const engine::ProgressFn keep_going = [](int64_t, int64_t) { return true; };
    DSV4_ASSIGN_OR_RETURN(engine::SyncStats st, o.reported ? session->sync(prefix, keep_going) : session->sync(prefix));
    (void)session->logits();  // waits for the device
    const double prefill_s = seconds_since(t0);
    double flops = 0;  // per-token flops sampled at 16 points of the interval
    if (info.prefill_flops && f > done) {
      constexpr int kSamples = 16;
      for (int i = 0; i < kSamples; ++i) flops += info.prefill_flops(done + (f - done) * (2 * i + 1) / (2 * kSamples));
      flops = flops / kSamples * static_cast<double>(f - done);
    }
    report("prefill", done, f, st.evaluated, prefill_s, 0.0, flops / prefill_s / 1e12);

    sampler.clear_history();
    const auto t1 = std::chrono::steady_clock::now();
    for (int64_t i = 0; i < o.gen; ++i) {
      DSV4_ASSIGN_OR_RETURN(engine::Sample next, session->sample(sampler));
      DSV4_TRY(session->eval(std::span(&next.token, 1)));
    }
    (void)session->logits();
    const double decode_s = seconds_since(t1);
    const double bytes = info.decode_bytes ? static_cast<double>(info.decode_bytes(f)) : 0.0;
    report("decode", f, f + o.gen, o.gen, decode_s, bytes * static_cast<double>(o.gen) / decode_s / 1e9, 0.0);
    done = f;
  }
  return Status();
}

}  // namespace

void register_bench(CLI::App& app) {
  auto o = std::make_shared<BenchOptions>();
  CLI::App* cmd = app.add_subcommand("bench", "Prefill and decode speed at a list of context frontiers");
  auto* model = cmd->add_option("--model,-m", o->model, "GGUF model");
  auto* synthetic = cmd->add_option("--synthetic", o->synthetic,
                                    "A gen-model preset made at load instead of a file (flash-q2 and flash-q4 on the device)");
  model->excludes(synthetic);
  cmd->add_option("--layers", o->layers, "Layers of the synthetic preset (0 = all)");
  cmd->add_option("--seed", o->seed, "Seed of the synthetic preset");
  cmd->add_option("--backend", o->backend, "cuda (default) or cpu");
  cmd->add_option("--prefill", o->prefill, kPrefillOptionHelp);
  cmd->add_option("--mode", o->mode, "official (default) or plain");
  cmd->add_option("--frontiers", o->frontiers, "Increasing context sizes, comma-separated (default 2048,8192,32768)");
  cmd->add_option("--gen", o->gen, "Decode steps at each frontier (default 128)");
  cmd->add_option("--csv", o->csv, "Also write the table as CSV");
  cmd->add_flag("--reported", o->reported,
                "Prefill with progress reports, in the chunks the server and chat use");
  cmd->add_option("--bf16-tflops", o->bf16_tflops, "The card's dense bf16 rate for the prefill fraction (default 790)");
  cmd->callback([o, model, synthetic] {
    if (model->count() == 0 && synthetic->count() == 0) {
      std::fprintf(stderr, "dsv4 bench: give --model FILE or --synthetic PRESET\n");
      set_exit_code(2);
      return;
    }
    Status s = run(*o);
    if (!s.ok()) std::fprintf(stderr, "dsv4 bench: %s\n", s.message().c_str());
    set_exit_code(s.ok() ? 0 : 1);
  });
}

}  // namespace dsv4::cli
