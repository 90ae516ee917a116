// The CUDA backend (cuda/) behind the engine's backend interface. Built only with DSV4_HAVE_CUDA.
#if DSV4_HAVE_CUDA

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "cuda/cost_model.h"
#include "cuda/device_model.h"
#include "cuda/mtp_block.h"
#include "cuda/session.h"
#include "engine/backend.h"
#include "engine/mtp_track.h"

namespace dsv4::engine {
namespace {

// The MTP block over cuda::MtpBlockSession.
class CudaBlock final : public MtpTrack {
 public:
  // What a checkpoint keeps of the block and its bookkeeping.
  struct Saved {
    cuda::MtpBlockSession::Saved block;
    MtpTrack::Marks marks;
  };

  explicit CudaBlock(std::unique_ptr<cuda::MtpBlockSession> b) : b_(std::move(b)) {}

  Result<Saved> save() {
    DSV4_ASSIGN_OR_RETURN(cuda::MtpBlockSession::Saved b, b_->save());
    return Saved{std::move(b), marks()};
  }
  Status restore(const Saved& s) {
    DSV4_TRY(b_->restore(s.block));
    set_marks(s.marks);
    return Status();
  }

 private:
  int64_t next_index() const override { return b_->next_index(); }
  Status rewind(int64_t index) override { return b_->rewind(index); }
  Status start_at(int64_t index) override { return b_->start_at(index); }
  Status run(bool kept_first, int64_t row, std::span<const int32_t> next, bool logits) override {
    return b_->run(kept_first, row, next, logits);
  }
  Status keep(int64_t row) override { return b_->keep(row); }
  bool has_kept() const override { return b_->has_kept(); }
  Result<int32_t> arg_max() override { return b_->arg_max(); }

  std::unique_ptr<cuda::MtpBlockSession> b_;
};

class CudaCheckpoint final : public BackendCheckpoint {
 public:
  CudaCheckpoint(std::unique_ptr<cuda::DeviceSession::Checkpoint> cp, std::optional<CudaBlock::Saved> mtp)
      : cp_(std::move(cp)), mtp_(std::move(mtp)) {}
  int64_t n() const override { return cp_->n(); }
  const cuda::DeviceSession::Checkpoint& get() const { return *cp_; }
  const std::optional<CudaBlock::Saved>& mtp() const { return mtp_; }

 private:
  std::unique_ptr<cuda::DeviceSession::Checkpoint> cp_;
  std::optional<CudaBlock::Saved> mtp_;
};

// A device failure while checkpointing leaves no consistent way on (the session would lose its
// rollback points silently): report it and stop.
[[noreturn]] void fatal(const Status& s) {
  std::fprintf(stderr, "dsv4: cuda backend: %s\n", s.message().c_str());
  std::abort();
}

class CudaState final : public BackendState {
 public:
  CudaState(std::unique_ptr<cuda::DeviceSession> s, std::unique_ptr<CudaBlock> mtp)
      : s_(std::move(s)), mtp_(std::move(mtp)) {}

  int64_t n() const override { return s_->n(); }
  Status forward(std::span<const int32_t> tokens, float* all_logits) override {
    if (!mtp_) return s_->forward(tokens, all_logits);
    // In pieces whose hidden rows the model's state holds at once.
    const size_t piece = static_cast<size_t>(all_logits ? s_->max_logits_chunk() : s_->max_chunk());
    const size_t V = static_cast<size_t>(s_->config().n_vocab);
    for (size_t off = 0; off < tokens.size(); off += piece) {
      const std::span<const int32_t> part = tokens.subspan(off, std::min(piece, tokens.size() - off));
      const int64_t a = s_->n();
      DSV4_TRY(s_->forward(part, all_logits ? all_logits + off * V : nullptr));
      DSV4_TRY(mtp_->after_forward(a, part));
    }
    return Status();
  }
  // Whole passes from the start: one of 8192 tokens of the full model takes ≈ 1.5 s on an H200,
  // well inside the server's 5 s between keep-alive comments.
  ReportedChunks reported_chunks() const override { return {s_->max_chunk(), s_->max_chunk()}; }
  std::span<const float> logits() const override { return s_->logits(); }

  Result<Sample> sample(Sampler& sampler, Sampler::Mode mode, bool step_ahead) override {
    return draw(sampler, mode, [&](const cuda::SamplingRequest& r) { return s_->sample(r, step_ahead); },
                [&]() -> Result<std::vector<float>> {
                  const std::span<const float> l = logits();
                  return std::vector<float>(l.begin(), l.end());
                });
  }
  Result<Sample> sample_draft_row(Sampler& sampler, Sampler::Mode mode, int64_t row) override {
    const int r = static_cast<int>(row);
    return draw(sampler, mode, [&](const cuda::SamplingRequest& q) { return s_->sample_draft_row(q, r); },
                [&]() { return s_->draft_row(r); });
  }

  // Multi-token steps of up to kStepChunkMax tokens replay graphs on the decode step's kernels,
  // bit-identical to single steps; longer chunks run the prefill's GEMMs. A run of 3 is cut to 2
  // (H200: runs of 2 / 3 / 4 tokens 8.8 / 12.6 / 14.5 ms, docs/PERF.md session 40). With each
  // draft token kept with probability p, a run of 3 makes (1 + p + p²) / 12.6 tokens a millisecond
  // against (1 + p) / 8.8 for a run of 2: fewer below p ≈ 0.91, which drafts seldom reach.
  int64_t draft_run_length(int64_t most) const override {
    const int64_t run = std::min<int64_t>(most, cuda::DeviceSession::kStepChunkMax);
    return run == 3 ? 2 : run;
  }
  bool keeps_draft_prefix() const override { return true; }
  Status forward_draft(std::span<const int32_t> tokens, float* all_logits) override {
    draft_start_ = s_->n();
    DSV4_TRY(s_->forward_draft(tokens, all_logits));
    return mtp_ ? mtp_->after_forward(draft_start_, tokens) : Status();
  }
  Status keep_draft(int64_t k) override {
    DSV4_TRY(s_->keep_draft(static_cast<int>(k)));
    return mtp_ ? mtp_->after_keep(draft_start_, k) : Status();
  }

  bool has_mtp() const override { return mtp_ != nullptr; }
  Result<std::optional<int32_t>> mtp_draft(int32_t next) override {
    if (!mtp_) return BackendState::mtp_draft(next);
    return mtp_->draft(s_->n(), next);
  }

  std::unique_ptr<BackendCheckpoint> checkpoint() override {
    Result<std::unique_ptr<cuda::DeviceSession::Checkpoint>> cp = s_->checkpoint();
    if (!cp.ok()) fatal(cp.error());
    std::optional<CudaBlock::Saved> mtp;
    if (mtp_) {
      Result<CudaBlock::Saved> saved = mtp_->save();
      if (!saved.ok()) fatal(saved.error());
      mtp = std::move(saved).value();
    }
    return std::make_unique<CudaCheckpoint>(std::move(cp).value(), std::move(mtp));
  }
  Status rollback(const BackendCheckpoint& cp) override {
    const auto& c = static_cast<const CudaCheckpoint&>(cp);
    DSV4_TRY(s_->rollback(c.get()));
    return mtp_ ? mtp_->restore(*c.mtp()) : Status();
  }
  void reset() override {
    Status s = s_->reset();
    if (s.ok() && mtp_) s = mtp_->restart_at(0);
    if (!s.ok()) fatal(s);
  }

  std::vector<uint8_t> serialize() const override {
    Result<std::vector<uint8_t>> bytes = s_->serialize();
    if (!bytes.ok()) fatal(bytes.error());
    return std::move(bytes).value();
  }
  Status restore(std::span<const uint8_t> bytes, int64_t n) override {
    DSV4_TRY(s_->restore(bytes, n));
    // Snapshots carry no state of the block (as ds4's, PROTOCOL.md §5.5): it starts again here.
    return mtp_ ? mtp_->restart_at(n) : Status();
  }

 private:
  // A draw with the sampler's parameters, PRNG and history where the logits live (`on_device`), or
  // from the logits brought to the host (`on_host`) where the draw needs them there (logprobs).
  template <class OnDevice, class OnHost>
  static Result<Sample> draw(Sampler& sampler, Sampler::Mode mode, OnDevice on_device, OnHost on_host) {
    const SamplingParams& p = sampler.params();
    if (p.logprobs) {
      DSV4_ASSIGN_OR_RETURN(const std::vector<float> host, on_host());
      return sampler.sample(host, mode);
    }
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
    DSV4_ASSIGN_OR_RETURN(int32_t token, on_device(r));
    if (token < 0) return make_error("sampler: no finite logit");
    sampler.accept(token);
    Sample out;
    out.token = token;
    return out;
  }

  std::unique_ptr<cuda::DeviceSession> s_;
  std::unique_ptr<CudaBlock> mtp_;  // with the MTP block; destroyed first (it works on s_'s stream)
  int64_t draft_start_ = 0;         // forward_draft's first position
};

// The MTP block's sessions take chunks of at most this many pairs: its scratch (≈ 1 MB a token for
// Flash) beside the model's, and long enough for tensor-core prefill.
constexpr int kMtpMaxChunk = 2048;

class CudaModel final : public BackendModel {
 public:
  CudaModel(std::shared_ptr<const model::Model> host, std::shared_ptr<const cuda::DeviceModel> device,
            std::shared_ptr<const cuda::DeviceModel> mtp, Prefill prefill)
      : host_(std::move(host)), device_(std::move(device)), mtp_(std::move(mtp)), prefill_(prefill) {}
  const model::Config& config() const override { return device_->config; }
  Result<std::unique_ptr<BackendState>> new_state(int64_t n_ctx, Mode mode) override {
    const cpu::SimOptions sim = mode == Mode::kOfficial ? cpu::SimOptions::official() : cpu::SimOptions::plain();
    const cuda::PrefillMath math = prefill_ == Prefill::kFast     ? cuda::PrefillMath::kTensorCoreF16
                                   : prefill_ == Prefill::kMatvec ? cuda::PrefillMath::kMatvecF32
                                                                  : cuda::PrefillMath::kTensorCoreSplit;
    const uint64_t block_bytes = mtp_ ? cuda::DeviceSession::device_bytes(*mtp_, n_ctx, kMtpMaxChunk, math, true) : 0;
    DSV4_ASSIGN_OR_RETURN(const int max_chunk,
                          cuda::DeviceSession::max_chunk_for(*device_, n_ctx, math, mtp_ != nullptr, block_bytes));
    DSV4_ASSIGN_OR_RETURN(std::unique_ptr<cuda::DeviceSession> s,
                          cuda::DeviceSession::create(device_, n_ctx, sim, max_chunk, math, mtp_ != nullptr));
    std::unique_ptr<CudaBlock> block;
    if (mtp_) {
      DSV4_ASSIGN_OR_RETURN(std::unique_ptr<cuda::MtpBlockSession> b,
                            cuda::MtpBlockSession::create(mtp_, *s, std::min(max_chunk, kMtpMaxChunk)));
      block = std::make_unique<CudaBlock>(std::move(b));
    }
    return std::unique_ptr<BackendState>(new CudaState(std::move(s), std::move(block)));
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
  std::shared_ptr<const cuda::DeviceModel> mtp_;  // the MTP block, or null
  Prefill prefill_;
  double copy_gb_per_s_ = 0;
};

// The block's model views the main model's embedding and LM head: it keeps that model alive.
std::shared_ptr<const cuda::DeviceModel> sharing(std::unique_ptr<cuda::DeviceModel> block,
                                                 std::shared_ptr<const cuda::DeviceModel> main) {
  const cuda::DeviceModel* raw = block.release();
  return std::shared_ptr<const cuda::DeviceModel>(raw, [main](const cuda::DeviceModel* m) { delete m; });
}

}  // namespace

Result<std::unique_ptr<BackendModel>> make_cuda_backend(std::shared_ptr<const model::Model> model, Prefill prefill) {
  DSV4_ASSIGN_OR_RETURN(std::unique_ptr<cuda::DeviceModel> uploaded, cuda::upload_model(*model));
  std::shared_ptr<const cuda::DeviceModel> device = std::move(uploaded);
  std::shared_ptr<const cuda::DeviceModel> mtp;
  if (model->mtp) {
    DSV4_ASSIGN_OR_RETURN(std::unique_ptr<cuda::DeviceModel> block, cuda::upload_mtp_block(*model->mtp, *device));
    mtp = sharing(std::move(block), device);
  }
  return std::unique_ptr<BackendModel>(new CudaModel(std::move(model), std::move(device), std::move(mtp), prefill));
}

Result<std::unique_ptr<BackendModel>> make_cuda_synthetic_backend(const std::string& preset, int64_t n_layer,
                                                                  uint64_t seed, bool with_mtp, Prefill prefill) {
  DSV4_ASSIGN_OR_RETURN(std::unique_ptr<cuda::DeviceModel> generated,
                        cuda::generate_synthetic_model(preset, n_layer, seed));
  std::shared_ptr<const cuda::DeviceModel> device = std::move(generated);
  std::shared_ptr<const cuda::DeviceModel> mtp;
  if (with_mtp) {
    DSV4_ASSIGN_OR_RETURN(std::unique_ptr<cuda::DeviceModel> block,
                          cuda::generate_synthetic_mtp_block(preset, seed, *device));
    mtp = sharing(std::move(block), device);
  }
  return std::unique_ptr<BackendModel>(new CudaModel(nullptr, std::move(device), std::move(mtp), prefill));
}

}  // namespace dsv4::engine

#endif  // DSV4_HAVE_CUDA
