// The CUDA backend (cuda/) behind the engine's backend interface. Built only with DSV4_HAVE_CUDA.
#if DSV4_HAVE_CUDA

#include <cstdio>
#include <cstdlib>
#include <string>
#include <utility>

#include "cuda/cost_model.h"
#include "cuda/device_model.h"
#include "cuda/session.h"
#include "engine/backend.h"

namespace dsv4::engine {
namespace {

class CudaCheckpoint final : public BackendCheckpoint {
 public:
  explicit CudaCheckpoint(std::unique_ptr<cuda::DeviceSession::Checkpoint> cp) : cp_(std::move(cp)) {}
  int64_t n() const override { return cp_->n(); }
  const cuda::DeviceSession::Checkpoint& get() const { return *cp_; }

 private:
  std::unique_ptr<cuda::DeviceSession::Checkpoint> cp_;
};

// A device failure while checkpointing leaves no consistent way on (the session would lose its
// rollback points silently): report it and stop.
[[noreturn]] void fatal(const Status& s) {
  std::fprintf(stderr, "dsv4: cuda backend: %s\n", s.message().c_str());
  std::abort();
}

class CudaState final : public BackendState {
 public:
  explicit CudaState(std::unique_ptr<cuda::DeviceSession> s) : s_(std::move(s)) {}

  int64_t n() const override { return s_->n(); }
  Status forward(std::span<const int32_t> tokens, float* all_logits) override { return s_->forward(tokens, all_logits); }
  // Whole passes from the start: one of 8192 tokens of the full model takes ≈ 1.5 s on an H200,
  // well inside the server's 5 s between keep-alive comments.
  ReportedChunks reported_chunks() const override { return {s_->max_chunk(), s_->max_chunk()}; }
  std::span<const float> logits() const override { return s_->logits(); }

  Result<Sample> sample(Sampler& sampler, Sampler::Mode mode) override {
    const SamplingParams& p = sampler.params();
    if (p.logprobs) return sampler.sample(logits(), mode);  // logprobs are computed on the host
    cuda::SamplingRequest r;
    r.raw_greedy = mode == Sampler::Mode::kRawGreedy;
    r.temperature = p.temperature;
    r.top_p = p.top_p;
    r.min_p = p.min_p;
    r.top_k = p.top_k;
    r.presence_penalty = p.presence_penalty;
    r.frequency_penalty = p.frequency_penalty;
    std::vector<uint32_t> counts;
    if (!r.raw_greedy && (p.presence_penalty != 0.0f || p.frequency_penalty != 0.0f)) {
      r.history = sampler.history();
      counts.reserve(r.history.size());
      for (int32_t t : r.history) counts.push_back(sampler.count(t));
      r.history_counts = counts;
    }
    // The draw happens exactly where the host sampler would draw it.
    if (!r.raw_greedy && p.temperature != 0.0f) r.u = sampler.rng().uniform();
    DSV4_ASSIGN_OR_RETURN(int32_t token, s_->sample(r));
    if (token < 0) return make_error("sampler: no finite logit");
    sampler.accept(token);
    Sample out;
    out.token = token;
    return out;
  }

  // Multi-token steps of up to kStepChunkMax tokens replay graphs on the decode step's kernels,
  // bit-identical to single steps; longer chunks run the prefill's GEMMs. A run of 3 is cut to 2:
  // its third token is unpaired on the Q8_0 row tile (H200: runs of 2 / 3 / 4 tokens 9.0 / 13.8 /
  // 15.3 ms, docs/PERF.md session 36). With each draft token kept with probability p, a run of 3
  // makes (1 + p + p²) / 13.8 tokens a millisecond against (1 + p) / 9.0 for a run of 2: fewer at
  // every p.
  int64_t draft_run_length(int64_t most) const override {
    const int64_t run = std::min<int64_t>(most, cuda::DeviceSession::kStepChunkMax);
    return run == 3 ? 2 : run;
  }
  bool keeps_draft_prefix() const override { return true; }
  Status forward_draft(std::span<const int32_t> tokens, float* all_logits) override {
    return s_->forward_draft(tokens, all_logits);
  }
  Status keep_draft(int64_t k) override { return s_->keep_draft(static_cast<int>(k)); }

  std::unique_ptr<BackendCheckpoint> checkpoint() override {
    Result<std::unique_ptr<cuda::DeviceSession::Checkpoint>> cp = s_->checkpoint();
    if (!cp.ok()) fatal(cp.error());
    return std::make_unique<CudaCheckpoint>(std::move(cp).value());
  }
  Status rollback(const BackendCheckpoint& cp) override {
    return s_->rollback(static_cast<const CudaCheckpoint&>(cp).get());
  }
  void reset() override {
    const Status s = s_->reset();
    if (!s.ok()) fatal(s);
  }

  std::vector<uint8_t> serialize() const override {
    Result<std::vector<uint8_t>> bytes = s_->serialize();
    if (!bytes.ok()) fatal(bytes.error());
    return std::move(bytes).value();
  }
  Status restore(std::span<const uint8_t> bytes, int64_t n) override { return s_->restore(bytes, n); }

 private:
  std::unique_ptr<cuda::DeviceSession> s_;
};

class CudaModel final : public BackendModel {
 public:
  CudaModel(std::shared_ptr<const model::Model> host, std::shared_ptr<const cuda::DeviceModel> device, Prefill prefill)
      : host_(std::move(host)), device_(std::move(device)), prefill_(prefill) {}
  const model::Config& config() const override { return device_->config; }
  Result<std::unique_ptr<BackendState>> new_state(int64_t n_ctx, Mode mode) override {
    const cpu::SimOptions sim = mode == Mode::kOfficial ? cpu::SimOptions::official() : cpu::SimOptions::plain();
    const cuda::PrefillMath math = prefill_ == Prefill::kFast     ? cuda::PrefillMath::kTensorCoreF16
                                   : prefill_ == Prefill::kMatvec ? cuda::PrefillMath::kMatvecF32
                                                                  : cuda::PrefillMath::kTensorCoreSplit;
    DSV4_ASSIGN_OR_RETURN(const int max_chunk, cuda::DeviceSession::max_chunk_for(*device_, n_ctx, math));
    DSV4_ASSIGN_OR_RETURN(std::unique_ptr<cuda::DeviceSession> s,
                          cuda::DeviceSession::create(device_, n_ctx, sim, max_chunk, math));
    return std::unique_ptr<BackendState>(new CudaState(std::move(s)));
  }
  PerfInfo perf_info() override {
    if (copy_gb_per_s_ == 0) {
      Result<double> copy = cuda::measure_copy_gb_per_s();
      copy_gb_per_s_ = copy.ok() ? *copy : -1;
    }
    PerfInfo p;
    p.device = cuda::device_description();
    p.weight_bytes = device_->weight_bytes;
    p.load_seconds = device_->load_seconds;
    p.load_gb_per_s = device_->load_gb_per_s;
    p.copy_gb_per_s = copy_gb_per_s_ > 0 ? copy_gb_per_s_ : 0;
    const std::shared_ptr<const cuda::DeviceModel> m = device_;
    p.decode_bytes = [m](int64_t context) { return cuda::decode_step_bytes(*m, context); };
    p.prefill_flops = [m](int64_t context) { return cuda::prefill_flops_per_token(*m, context); };
    return p;
  }

 private:
  std::shared_ptr<const model::Model> host_;  // the mapping (metadata, fingerprint); null for device-made models
  std::shared_ptr<const cuda::DeviceModel> device_;
  Prefill prefill_;
  double copy_gb_per_s_ = 0;
};

}  // namespace

Result<std::unique_ptr<BackendModel>> make_cuda_backend(std::shared_ptr<const model::Model> model, Prefill prefill) {
  DSV4_ASSIGN_OR_RETURN(std::unique_ptr<cuda::DeviceModel> device, cuda::upload_model(*model));
  return std::unique_ptr<BackendModel>(new CudaModel(std::move(model), std::move(device), prefill));
}

Result<std::unique_ptr<BackendModel>> make_cuda_synthetic_backend(const std::string& preset, int64_t n_layer,
                                                                  uint64_t seed, Prefill prefill) {
  DSV4_ASSIGN_OR_RETURN(std::unique_ptr<cuda::DeviceModel> device, cuda::generate_synthetic_model(preset, n_layer, seed));
  return std::unique_ptr<BackendModel>(new CudaModel(nullptr, std::move(device), prefill));
}

}  // namespace dsv4::engine

#endif  // DSV4_HAVE_CUDA
