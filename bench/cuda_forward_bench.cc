// cuda_forward_bench: where a decode step's time goes on the GPU, for a full-size synthetic model
// generated on the device (flash-q2 by default, some or all of its 43 layers).
//
//   cuda_forward_bench [--preset flash-q2] [--layers N] [--ctx C] [--steps S] [--chunk K]
//                      [--prefill split|f16|matvec] [--profiler-range step|chunk] [--capacity N] [--mtp]
//
// --capacity: the session's context capacity (default: what the run needs), as a server started
// with a long --ctx has it: the scratch sized for it shapes some launches (attention's split
// scratch, the indexer's scores).
//
// 1. Prefill of C tokens in chunks of K (default DeviceSession::kTensorCoreMaxChunk) with tensor-core
//    (split: f32-level products, the default; f16) or f32 matvec projections (cuda::PrefillMath): tokens/s,
//    and a fingerprint of the next-token logits (the same for every K whose chunks run the same kernels).
// 1b. One more prefill chunk of K tokens (positions C .. C+K), an event after each stage of every
//    layer: milliseconds per stage and tokens/s of that chunk.
// 2. S decode steps replayed from the captured graph: tokens/s, and GB/s over the bytes a step
//    must read (cuda/cost_model.h) against the measured copy bandwidth.
// 2a. Forwards of 2–16 tokens (a short follow-up turn): ms each, logits read back. Speculative
//    drafts (forward_draft of a token and a draft of 1–3, its verified rows drawn on the device,
//    then keep_draft): ms for the whole run kept (all drafts accepted) and for its first token kept
//    (all rejected), against the step: the acceptance at which a draft pays; a verified row drawn
//    on the device against the row copied to the host (for the host sampler).
// 2c. With --mtp (the session then keeps its hidden rows for the block), the preset's MTP block
//    generated on the device: the block over a prefill chunk's K - 1 pairs against the chunk, S steps
//    each with its block pair (as a session with the block runs them), the draft's pair with its
//    arg-max read back, and from those and the run of 2 above the
//    tokens/s of one-token drafts at the acceptance measured for the published block (0.78) and the
//    acceptance where they pay.
// 2b. S greedy decode steps as a generator runs them (sample on the device, then forward the
//    token), without and with the speculative step (cuda/session.h): ms/token, the host's time
//    inside sample() and forward(), the excess over S graph replays just before them and each
//    loop's longest token; the sampling kernel's time for four kinds of request; the D2D time of
//    one whole-region checkpoint (the engine's; a speculative step copies only its write set,
//    DeviceState::step_write_set).
// 3. One decode step without the graph, an event after each stage of every layer: milliseconds
//    per stage (launch gaps included, which the graph removes), and the sum against the graph's
//    step time; then the steps around the next end of a 128-token window, each against it.
// The profiler range (cudaProfilerStart/Stop, for ncu --profile-from-start off) covers the step of
// 3, or with --profiler-range chunk the chunk of 1b.
#include <cuda_profiler_api.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cmath>
#include <cstring>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "cuda/cost_model.h"
#include "cuda/forward.h"
#include "cuda/mtp_block.h"
#include "cuda/session.h"

namespace {

using namespace dsv4;

#define CHECK(expr)                                                                       \
  do {                                                                                    \
    const ::dsv4::Status check_s_ = (expr);                                               \
    if (!check_s_.ok()) {                                                                 \
      std::fprintf(stderr, "cuda_forward_bench: %s: %s\n", #expr, check_s_.message().c_str()); \
      std::exit(1);                                                                       \
    }                                                                                     \
  } while (0)

// The flash presets' longest compression window (compress_ratios 128).
constexpr int64_t kLongestRatio = 128;

double since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

}  // namespace

int main(int argc, char** argv) {
  std::string preset = "flash-q2";
  int64_t layers = 43, ctx = 2048, steps = 64, chunk = cuda::DeviceSession::kTensorCoreMaxChunk, capacity = 0;
  cuda::PrefillMath prefill = cuda::PrefillMath::kTensorCoreSplit;
  bool profile_the_chunk = false, with_mtp = false;
  for (int i = 1; i < argc; ++i) {
    // Every option but the flag --mtp takes a value; one without its value is a usage error.
    const std::string a = i + 1 < argc || std::strcmp(argv[i], "--mtp") == 0 ? argv[i] : "";
    const char* v = i + 1 < argc ? argv[i + 1] : "";
    if (a != "--mtp") ++i;
    if (a == "--preset") preset = v;
    else if (a == "--layers") layers = std::atoll(v);
    else if (a == "--ctx") ctx = std::atoll(v);
    else if (a == "--steps") steps = std::atoll(v);
    else if (a == "--chunk") chunk = std::atoll(v);
    else if (a == "--capacity") capacity = std::atoll(v);
    else if (a == "--mtp") with_mtp = true;
    else if (a == "--prefill" && std::strcmp(v, "split") == 0) prefill = cuda::PrefillMath::kTensorCoreSplit;
    else if (a == "--prefill" && std::strcmp(v, "matvec") == 0) prefill = cuda::PrefillMath::kMatvecF32;
    else if (a == "--prefill" && std::strcmp(v, "f16") == 0) prefill = cuda::PrefillMath::kTensorCoreF16;
    else if (a == "--profiler-range" && std::strcmp(v, "step") == 0) profile_the_chunk = false;
    else if (a == "--profiler-range" && std::strcmp(v, "chunk") == 0) profile_the_chunk = true;
    else {
      std::fprintf(stderr,
                   "usage: cuda_forward_bench [--preset P] [--layers N] [--ctx C] [--steps S] [--chunk K] "
                   "[--prefill split|f16|matvec] [--profiler-range step|chunk] [--capacity N] [--mtp]\n");
      return 2;
    }
  }
  std::printf("device: %s\n", cuda::device_description().c_str());
  auto made = cuda::generate_synthetic_model(preset, layers, 1);
  CHECK(made.status());
  std::shared_ptr<const cuda::DeviceModel> model = std::move(made).value();
  const Result<double> measured = cuda::measure_copy_gb_per_s();
  const double copy = measured.ok() ? *measured : 0.0;
  std::printf("%s, %lld layers: %.2f GB generated in %.2f s; copy bandwidth %.0f GB/s\n", preset.c_str(),
              static_cast<long long>(layers), static_cast<double>(model->weight_bytes) / 1e9, model->load_seconds, copy);

  // The forwards of a few tokens (2a below) take short_tokens positions.
  constexpr int kShortForwardReps = 3;
  const std::vector<int> short_forwards = {2, 3, 4, 5, 6, 8, 16};
  int64_t short_tokens = 0;
  for (int k : short_forwards) short_tokens += kShortForwardReps * k;
  for (int T = 2; T <= cuda::DeviceSession::kStepChunkMax; ++T) short_tokens += kShortForwardReps * (T + 1) + T;
  short_tokens += 2;  // the run of 2 whose rows are drawn on the device
  constexpr int kMtpWindowFill = 130;  // the block's window (128) full before it is timed
  const int64_t mtp_tokens = with_mtp ? chunk + kMtpWindowFill + steps + 2 : 0;
  const int64_t n_ctx =
      std::max(capacity, ctx + chunk + 4 * steps + 8 + short_tokens + mtp_tokens + kLongestRatio + 6);
  auto t0 = std::chrono::steady_clock::now();
  auto session = cuda::DeviceSession::create(model, n_ctx, cpu::SimOptions::official(), static_cast<int>(chunk),
                                             prefill, with_mtp);
  CHECK(session.status());
  cuda::DeviceSession& s = **session;
  std::printf("session of %lld tokens made in %.3f s (decode graphs included), chunks of %lld, %s prefill: "
              "%.2f GB of state and scratch\n",
              static_cast<long long>(n_ctx), since(t0), static_cast<long long>(chunk),
              prefill == cuda::PrefillMath::kTensorCoreF16     ? "tensor-core f16"
              : prefill == cuda::PrefillMath::kTensorCoreSplit ? "tensor-core split"
                                                               : "f32 matvec", static_cast<double>(s.state_bytes()) / 1e9);
  std::vector<int32_t> tokens(static_cast<size_t>(n_ctx));
  for (size_t i = 0; i < tokens.size(); ++i) tokens[i] = static_cast<int32_t>((i * 7919 + 13) % model->config.n_vocab);

  t0 = std::chrono::steady_clock::now();
  CHECK(s.forward(std::span(tokens).first(static_cast<size_t>(ctx)), nullptr));
  CHECK(s.synchronize());
  const double prefill_s = since(t0);
  std::printf("prefill %lld tokens in chunks of %lld: %.2f s, %.1f tokens/s\n", static_cast<long long>(ctx),
              static_cast<long long>(chunk), prefill_s, static_cast<double>(ctx) / prefill_s);
  {
    // The same line for every --chunk whose chunks run the same kernels (32 768 tokens in chunks of
    // 8 192 or 16 384); a chunk under 512 tokens takes the dense GEMMs' mma.sync kernel (gemm.cc),
    // whose bits differ within the tolerance (25 000 = 3 × 8 192 + 424 against 16 384 + 8 616).
    const std::span<const float> logits = s.logits();
    uint64_t hash = 14695981039346656037ull;  // FNV-1a over the logits' bits
    size_t best = 0;
    for (size_t i = 0; i < logits.size(); ++i) {
      uint32_t bits = 0;
      std::memcpy(&bits, &logits[i], sizeof(bits));
      hash = (hash ^ bits) * 1099511628211ull;
      if (logits[i] > logits[best]) best = i;
    }
    std::printf("logits after the prefill: argmax %zu, FNV-1a of the bits %016llx\n", best,
                static_cast<unsigned long long>(hash));
  }

  {
    cuda::StageProfile profile;
    if (profile_the_chunk) cudaProfilerStart();
    CHECK(s.profile_chunk(std::span(tokens).subspan(static_cast<size_t>(ctx), static_cast<size_t>(chunk)), profile));
    if (profile_the_chunk) cudaProfilerStop();
    auto totals = profile.totals();
    CHECK(totals.status());
    double sum = 0;
    for (const auto& [stage, ms] : *totals) sum += ms;
    std::printf("one prefill chunk %lld..%lld without the graph: %.3f ms, %.1f tokens/s\n", static_cast<long long>(ctx),
                static_cast<long long>(ctx + chunk), sum, 1e3 * static_cast<double>(chunk) / sum);
    for (const auto& [stage, ms] : *totals) std::printf("  %-34s %8.3f ms  %5.1f%%\n", stage.c_str(), ms, 100.0 * ms / sum);
  }

  // One step to warm up, then S graph replays from the session's position: seconds a step
  // (logits() waits for the device).
  auto time_replays = [&]() {
    CHECK(s.forward(std::span(tokens).subspan(static_cast<size_t>(s.n()), 1), nullptr));
    (void)s.logits();
    const auto start = std::chrono::steady_clock::now();
    for (int64_t i = 0; i < steps; ++i) {
      CHECK(s.forward(std::span(tokens).subspan(static_cast<size_t>(s.n()), 1), nullptr));
    }
    (void)s.logits();
    return since(start) / static_cast<double>(steps);
  };
  const double step_s = time_replays();
  const double bytes = static_cast<double>(cuda::decode_step_bytes(*model, s.n()));
  std::printf("decode (graph) at %lld: %.3f ms/token, %.1f tokens/s, %.0f GB/s = %.1f%% of copy (%.2f GB per step)\n",
              static_cast<long long>(s.n()), step_s * 1e3, 1.0 / step_s, bytes / step_s / 1e9,
              copy > 0 ? 100.0 * bytes / step_s / 1e9 / copy : 0.0, bytes / 1e9);
  {
    auto shape = s.decode_graph_shape();
    CHECK(shape.status());
    std::printf("decode graph: %d kernels, %d copies, %d other nodes; %d edges, %d of them programmatic (PDL)\n",
                shape->kernels, shape->copies, shape->other, shape->edges, shape->programmatic_edges);
  }

  // A forward of k tokens as a follow-up turn takes it (DeviceSession::kStepChunkMax: a multi-token
  // step up to there, one chunk above): ms per forward, the logits read back, best of kShortForwardReps.
  for (int k : short_forwards) {
    double best = 1e30;
    for (int r = 0; r < kShortForwardReps; ++r) {
      const auto ta = std::chrono::steady_clock::now();
      CHECK(s.forward(std::span(tokens).subspan(static_cast<size_t>(s.n()), static_cast<size_t>(k)), nullptr));
      (void)s.logits();
      best = std::min(best, since(ta));
    }
    std::printf("forward of %d tokens at %lld: %.3f ms (%.3f ms a token; the step %.3f)\n", k,
                static_cast<long long>(s.n()), best * 1e3, best * 1e3 / k, step_s * 1e3);
  }

  std::vector<float> draft_rows(static_cast<size_t>(cuda::DeviceSession::kStepChunkMax * model->config.n_vocab));
  double run2_all = 0, run2_one = 0;  // the run of 2 below: kept whole, first kept
  const size_t V = static_cast<size_t>(model->config.n_vocab);
  for (int T = 2; T <= cuda::DeviceSession::kStepChunkMax; ++T) {
    // The run's logits rows against single steps of its tokens (the same output with drafts needs
    // the same bits on this model, whose kernels the small test models do not all reach).
    {
      const std::span<const int32_t> run =
          std::span(tokens).subspan(static_cast<size_t>(s.n()), static_cast<size_t>(T));
      auto before = s.checkpoint();
      CHECK(before.status());
      std::vector<float> singles;
      for (int i = 0; i < T; ++i) {
        CHECK(s.forward(run.subspan(static_cast<size_t>(i), 1), nullptr));
        singles.insert(singles.end(), s.logits().begin(), s.logits().end());
      }
      CHECK(s.rollback(**before));
      CHECK(s.forward_draft(run, draft_rows.data()));
      CHECK(s.keep_draft(T));
      int differing = 0;
      double worst = 0;
      for (size_t i = 0; i < static_cast<size_t>(T) * V; ++i) {
        if (std::memcmp(&singles[i], &draft_rows[i], 4) != 0) {
          ++differing;
          worst = std::max(worst, std::fabs(static_cast<double>(singles[i]) - draft_rows[i]));
        }
      }
      std::printf("draft run of %d tokens at %lld: logits rows bit-identical to single steps: %s", T,
                  static_cast<long long>(s.n() - T), differing == 0 ? "yes\n" : "NO");
      if (differing) std::printf(" (%d values differ, by up to %.3g)\n", differing, worst);
    }
    double kept_all = 1e30, kept_one = 1e30;
    cuda::SamplingRequest verify;  // greedy
    verify.temperature = 0.0f;
    for (int r = 0; r < kShortForwardReps; ++r) {
      for (int keep : {T, 1}) {
        const auto ta = std::chrono::steady_clock::now();
        const std::span<const int32_t> run =
            std::span(tokens).subspan(static_cast<size_t>(s.n()), static_cast<size_t>(T));
        // As the generator verifies a run: its rows drawn where they live, T of them when the
        // draft is kept whole, one when its first token is rejected.
        CHECK(s.forward_draft(run, nullptr));
        for (int i = 0; i < (keep == T ? T : 1); ++i) CHECK(s.sample_draft_row(verify, i).status());
        CHECK(s.keep_draft(keep));
        CHECK(s.synchronize());
        double& best = keep == T ? kept_all : kept_one;
        best = std::min(best, since(ta));
      }
    }
    if (T == 2) {
      run2_all = kept_all, run2_one = kept_one;
      // A verified row drawn where it lives against the row brought to the host for the host sampler.
      const std::span<const int32_t> run = std::span(tokens).subspan(static_cast<size_t>(s.n()), 2);
      CHECK(s.forward_draft(run, nullptr));
      cuda::SamplingRequest sampled;
      sampled.temperature = 0.8f;
      sampled.min_p = 0.05f;
      sampled.u = 0.5;
      double on_device = 1e30, to_host = 1e30;
      for (int r = 0; r < kShortForwardReps; ++r) {
        auto ta = std::chrono::steady_clock::now();
        CHECK(s.sample_draft_row(sampled, 1).status());
        on_device = std::min(on_device, since(ta));
        ta = std::chrono::steady_clock::now();
        CHECK(s.draft_row(1).status());
        to_host = std::min(to_host, since(ta));
      }
      CHECK(s.keep_draft(2));
      std::printf("a draft row: drawn on the device (T 0.8, min-p 0.05) %.3f ms; brought to the host %.3f ms (the "
                  "host sampler's time then comes on top)\n", on_device * 1e3, to_host * 1e3);
    }
    std::printf("draft run of %d tokens at %lld: all kept %.3f ms (%.3f a token), first kept %.3f ms; the step %.3f: "
                "pays from %.0f%% of its drafts accepted\n",
                T, static_cast<long long>(s.n()), kept_all * 1e3, kept_all * 1e3 / T, kept_one * 1e3, step_s * 1e3,
                // A draft accepted whole with probability a, else not at all (a two-point model):
                // a·all + (1 − a)·one for a·T + (1 − a) tokens equals the steps' time at this a.
                100.0 * std::clamp((kept_one - step_s) / (kept_one - step_s + T * step_s - kept_all), 0.0, 1.0));
  }

  if (with_mtp) {
    auto generated = cuda::generate_synthetic_mtp_block(preset, 1, *model);
    CHECK(generated.status());
    std::shared_ptr<const cuda::DeviceModel> block_model = std::move(generated).value();
    auto made_block = cuda::MtpBlockSession::create(block_model, s, static_cast<int>(std::min<int64_t>(chunk, 2048)));
    CHECK(made_block.status());
    cuda::MtpBlockSession& b = **made_block;
    auto next = [&]() { return std::span(tokens).subspan(static_cast<size_t>(s.n()), 1); };
    // A prefill chunk, then the block over its pairs (as a session with the block prefills).
    const std::span<const int32_t> piece =
        std::span(tokens).subspan(static_cast<size_t>(s.n()), static_cast<size_t>(chunk));
    CHECK(s.synchronize());
    t0 = std::chrono::steady_clock::now();
    CHECK(s.forward(piece, nullptr));
    CHECK(s.synchronize());
    const double chunk_s = since(t0);
    CHECK(b.start_at(s.n() - chunk));
    t0 = std::chrono::steady_clock::now();
    CHECK(b.run(false, 0, piece.subspan(1), false));
    CHECK(b.keep(chunk - 1));
    CHECK(s.synchronize());
    const double pairs_s = since(t0);
    std::printf("MTP block over the pairs of a prefill chunk of %lld tokens at %lld: %.3f ms, the chunk %.3f ms "
                "(+%.1f%%)\n", static_cast<long long>(chunk), static_cast<long long>(s.n() - chunk), pairs_s * 1e3,
                chunk_s * 1e3, 100.0 * pairs_s / chunk_s);
    // A token as a session with the block evaluates it: the step, then its pair (H_{n-1}, token).
    auto step_and_pair = [&]() {
      const std::span<const int32_t> t = next();
      CHECK(s.forward(t, nullptr));
      CHECK(b.run(true, 0, t, false));
      CHECK(b.keep(0));
    };
    for (int i = 0; i < kMtpWindowFill; ++i) step_and_pair();
    CHECK(s.synchronize());
    t0 = std::chrono::steady_clock::now();
    for (int64_t i = 0; i < steps; ++i) step_and_pair();
    CHECK(s.synchronize());
    const double with_pair = since(t0) / static_cast<double>(steps);
    // The draft: the last position's pair with the sampled token, its arg-max read back (then undone).
    double draft = 1e30;
    for (int r = 0; r < kShortForwardReps; ++r) {
      const auto ta = std::chrono::steady_clock::now();
      CHECK(b.run(true, 0, next(), true));
      CHECK(b.arg_max().status());
      draft = std::min(draft, since(ta));
      CHECK(b.rewind(s.n() - 1));
    }
    const double pair = with_pair - step_s;
    // A one-token draft kept with probability a: a run of 2 with the drafted token's pair and the
    // next draft, for 1 + a tokens; without drafts a token costs the step and its pair.
    const double a = 0.78;
    const double per_token = (a * run2_all + (1 - a) * run2_one + pair + draft) / (1 + a);
    const double even = std::clamp((run2_one + pair + draft - step_s) / (step_s - run2_all + run2_one), 0.0, 1.0);
    std::printf("MTP block at %lld: a step with its pair %.3f ms (the pair %.3f), the draft's pair with its arg-max "
                "%.3f ms; one-token drafts kept at 78%%: %.3f ms a token, %.1f tokens/s (%.2fx the step); "
                "they pay from %.0f%% kept\n",
                static_cast<long long>(s.n()), with_pair * 1e3, pair * 1e3, draft * 1e3, per_token * 1e3,
                1.0 / per_token, step_s / per_token, 100.0 * even);
  }

  // The generator's loops below against replays at their own positions (a step's time depends on
  // where it is: compressor windows, the attention's rows).
  const double step_here_s = time_replays();
  std::printf("decode (graph) at %lld, where the loops below run: %.3f ms/token\n", static_cast<long long>(s.n()),
              step_here_s * 1e3);
  cuda::SamplingRequest greedy;
  greedy.temperature = 0.0f;
  for (bool speculate : {false, true}) {
    s.set_speculation(speculate);
    double in_sample = 0, in_forward = 0;
    double slowest = 0;  // the longest token of the loop, and its position
    int64_t slowest_at = 0;
    t0 = std::chrono::steady_clock::now();
    for (int64_t i = 0; i < steps; ++i) {
      const auto ta = std::chrono::steady_clock::now();
      Result<int32_t> token = s.sample(greedy);
      CHECK(token.status());
      const auto tb = std::chrono::steady_clock::now();
      CHECK(s.forward(std::span(&*token, 1), nullptr));
      in_sample += std::chrono::duration<double>(tb - ta).count();
      in_forward += since(tb);
      if (since(ta) > slowest) slowest = since(ta), slowest_at = s.n() - 1;
    }
    (void)s.logits();
    const double loop_s = since(t0) / static_cast<double>(steps);
    std::printf("decode (sample + step, speculation %s) at %lld: %.3f ms/token, %.1f tokens/s; host per token in "
                "sample() %.3f ms, in forward() %.3f ms; %.3f ms over the graph replay\n",
                speculate ? "on" : "off", static_cast<long long>(s.n()), loop_s * 1e3, 1.0 / loop_s,
                in_sample / static_cast<double>(steps) * 1e3, in_forward / static_cast<double>(steps) * 1e3,
                (loop_s - step_here_s) * 1e3);
    std::printf("  its longest token: %.3f ms (a token's sample() waits for the step before it, at %lld)\n",
                slowest * 1e3, static_cast<long long>(slowest_at - 1));
  }
  {
    // The sampling kernel alone on this step's logits (it runs between two steps), each request
    // with its token read back: µs per call, the GPU's time between events around 20 calls.
    const std::span<const float> host_logits = s.logits();
    void* device_bytes = nullptr;
    cudaMalloc(&device_bytes, host_logits.size_bytes());
    float* device_logits = static_cast<float*>(device_bytes);
    void* probs_bytes = nullptr;
    cudaMalloc(&probs_bytes, host_logits.size_bytes());
    float* probs = static_cast<float*>(probs_bytes);
    cudaMemcpy(device_logits, host_logits.data(), host_logits.size_bytes(), cudaMemcpyHostToDevice);
    auto sampler = cuda::DeviceSampler::create(static_cast<int>(host_logits.size()));
    CHECK(sampler.status());
    cudaEvent_t a = nullptr, b = nullptr;
    cudaEventCreate(&a);
    cudaEventCreate(&b);
    struct Case {
      const char* name;
      float temperature, top_p, min_p;
      int top_k;
    };
    for (const Case& c : {Case{"greedy", 0.0f, 1.0f, 0.0f, 0}, Case{"T 1, min-p 0.05 (defaults)", 1.0f, 1.0f, 0.05f, 0},
                          Case{"T 0.8, top-k 40", 0.8f, 1.0f, 0.0f, 40}, Case{"T 0.8, top-p 0.9", 0.8f, 0.9f, 0.0f, 0}}) {
      cuda::SamplingRequest r;
      r.temperature = c.temperature;
      r.top_p = c.top_p;
      r.min_p = c.min_p;
      r.top_k = c.top_k;
      r.u = 0.5;
      constexpr int kCalls = 20;
      CHECK((*sampler)->enqueue(device_logits, r, nullptr, s.stream()));
      CHECK((*sampler)->wait().status());
      cudaEventRecord(a, s.stream());
      for (int i = 0; i < kCalls; ++i) CHECK((*sampler)->enqueue(device_logits, r, nullptr, s.stream()));
      cudaEventRecord(b, s.stream());
      cudaEventSynchronize(b);
      float ms = 0;
      cudaEventElapsedTime(&ms, a, b);
      // How many tokens the request keeps on these logits (the length of the ordered work).
      CHECK((*sampler)->distribution(device_logits, r, probs, s.stream()));
      cudaStreamSynchronize(s.stream());
      std::vector<float> kept_probs(host_logits.size());
      cudaMemcpy(kept_probs.data(), probs, host_logits.size_bytes(), cudaMemcpyDeviceToHost);
      const auto kept = std::count_if(kept_probs.begin(), kept_probs.end(), [](float q) { return q > 0.0f; });
      std::printf("sampling kernel + token readback, %s: %.1f us (%lld tokens kept)\n", c.name, 1e3 * ms / kCalls,
                  static_cast<long long>(kept));
    }
    cudaEventDestroy(a);
    cudaEventDestroy(b);
    cudaFree(device_logits);
    cudaFree(probs);
  }
  {
    cudaEvent_t a = nullptr, b = nullptr;
    cudaEventCreate(&a);
    cudaEventCreate(&b);
    constexpr int kCopies = 10;
    cudaEventRecord(a, s.stream());
    for (int i = 0; i < kCopies; ++i) CHECK(s.checkpoint().status());
    cudaEventRecord(b, s.stream());
    cudaEventSynchronize(b);
    float ms = 0;
    cudaEventElapsedTime(&ms, a, b);
    std::printf("whole-region checkpoint (the engine's; a speculative step copies its write set): %.2f MB in %.3f ms\n",
                static_cast<double>(s.checkpoint_bytes()) / 1e6, ms / kCopies);
    cudaEventDestroy(a);
    cudaEventDestroy(b);
  }

  // ncu --profile-from-start off sees only this step (or, with --profiler-range chunk, the chunk above).
  cuda::StageProfile profile;
  if (!profile_the_chunk) cudaProfilerStart();
  CHECK(s.profile_step(tokens[static_cast<size_t>(s.n())], profile));
  if (!profile_the_chunk) cudaProfilerStop();
  auto totals = profile.totals();
  CHECK(totals.status());
  double sum = 0;
  for (const auto& [stage, ms] : *totals) sum += ms;
  std::printf("one decode step without the graph: %.3f ms (graph: %.3f ms)\n", sum, step_s * 1e3);
  for (const auto& [stage, ms] : *totals) std::printf("  %-34s %8.3f ms  %5.1f%%\n", stage.c_str(), ms, 100.0 * ms / sum);

  // The steps around the next window end of the longest compressor (kLongestRatio tokens: the
  // step at position p emits a row when p + 1 is a multiple of it) up to the next end of a
  // 4-token window alone, each against the step above: its time and the stages that differ by
  // more than kStageDiffMs.
  constexpr double kStageDiffMs = 0.02;
  while ((s.n() + 2) % kLongestRatio != 0) {
    CHECK(s.forward(std::span(tokens).subspan(static_cast<size_t>(s.n()), 1), nullptr));
  }
  for (int k = 0; k < 6; ++k) {
    cuda::StageProfile around;
    const int64_t at = s.n();
    CHECK(s.profile_step(tokens[static_cast<size_t>(at)], around));
    auto stages = around.totals();
    CHECK(stages.status());
    double total = 0;
    for (const auto& [stage, ms] : *stages) total += ms;
    std::printf("one decode step without the graph at %lld (%s): %.3f ms\n", static_cast<long long>(at),
                (at + 1) % kLongestRatio == 0 ? "the end of a 128-token window"
                : (at + 1) % 4 == 0           ? "the end of a 4-token window"
                                              : "no window ends",
                total);
    for (const auto& [stage, ms] : *stages) {
      const auto same = std::find_if(totals->begin(), totals->end(), [&](const auto& e) { return e.first == stage; });
      const double before = same == totals->end() ? 0.0 : same->second;
      if (std::fabs(ms - before) > kStageDiffMs) {
        std::printf("  %-34s %8.3f ms (%+.3f)\n", stage.c_str(), ms, ms - before);
      }
    }
  }
  return 0;
}
