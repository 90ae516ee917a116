#include "cuda/session.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <string>

#include <nvtx3/nvToolsExt.h>

#include "cuda/branch.h"
#include "cuda/check.h"
#include "cuda/forward.h"
#include "cuda/matvec.h"

namespace dsv4::cuda {

namespace {

// Checkpoint buffers made with the session: the engine keeps at most 8 rollback points, and a
// speculative step holds one more.
constexpr int kCheckpointBuffers = 9;

int clamped_chunk(int max_chunk, int64_t n_ctx) {
  return static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(max_chunk, n_ctx)));
}

}  // namespace

uint64_t DeviceSession::device_bytes(const DeviceModel& model, int64_t n_ctx, int max_chunk, PrefillMath prefill,
                                     bool hidden_rows) {
  const DeviceState::Footprint f = DeviceState::footprint(model, n_ctx, clamped_chunk(max_chunk, n_ctx),
                                                          prefill != PrefillMath::kMatvecF32, hidden_rows);
  return f.bytes + kCheckpointBuffers * f.checkpoint_bytes;
}

Result<int> DeviceSession::max_chunk_for(const DeviceModel& model, int64_t n_ctx, PrefillMath prefill,
                                         bool hidden_rows, uint64_t beside) {
  if (prefill == PrefillMath::kMatvecF32) return kDefaultMaxChunk;
  if (n_ctx <= kTensorCoreMaxChunk) return kTensorCoreMaxChunk;
  size_t free = 0, total = 0;
  DSV4_CUDA_TRY(cudaMemGetInfo(&free, &total));
  const uint64_t want = device_bytes(model, n_ctx, kTensorCoreLongChunk, prefill, hidden_rows) +
                        device_bytes(model, n_ctx, kTensorCoreMaxChunk, prefill, hidden_rows) + kLongChunkSpareBytes +
                        2 * beside;
  return free >= want ? kTensorCoreLongChunk : kTensorCoreMaxChunk;
}

Result<std::unique_ptr<DeviceSession>> DeviceSession::create(std::shared_ptr<const DeviceModel> model, int64_t n_ctx,
                                                             cpu::SimOptions mode, int max_chunk, PrefillMath prefill,
                                                             bool hidden_rows, cudaStream_t stream) {
  std::unique_ptr<DeviceSession> s(new DeviceSession(std::move(model), mode, prefill));
  if (stream) {
    s->stream_ = stream;
    s->own_stream_ = false;
  } else {
    DSV4_CUDA_TRY(cudaStreamCreateWithFlags(&s->stream_, cudaStreamNonBlocking));
  }
  DSV4_ASSIGN_OR_RETURN(s->branch_, Branch::create());
  // The IQ2_XXS tables must be on the device before a graph is captured.
  DSV4_TRY(prepare_matvec());
  max_chunk = clamped_chunk(max_chunk, n_ctx);
  DSV4_ASSIGN_OR_RETURN(s->state_, DeviceState::create(*s->model_, n_ctx, max_chunk,
                                                       prefill != PrefillMath::kMatvecF32, s->stream_, hidden_rows));
  DSV4_ASSIGN_OR_RETURN(s->sampler_, DeviceSampler::create(static_cast<int>(s->model_->config.n_vocab)));
  s->speculation_ = std::getenv("DSV4_NO_SPECULATION") == nullptr;
  for (int i = 0; i < kCheckpointBuffers; ++i) {
    auto buffer = std::make_shared<DeviceArena>();
    DSV4_TRY(buffer->allocate(s->state_->checkpoint_bytes(), "a rollback checkpoint"));
    s->spare_checkpoints_.push_back(std::move(buffer));
  }
  // The decode graphs a step of this session can need, captured now: a capture and instantiation
  // of the full model take milliseconds, which the first decode steps would otherwise pay.
  DSV4_TRY(s->decode_graph(false).status());
  if (chunk_needs_index_scoring(s->model_->config, n_ctx - 1, 1)) DSV4_TRY(s->decode_graph(true).status());
  DSV4_CUDA_TRY(cudaStreamSynchronize(s->stream_));
  return s;
}

DeviceSession::~DeviceSession() {
  // First the queued work (a speculative step may be running a graph).
  if (stream_) cudaStreamSynchronize(stream_);
  for (auto& by_scoring : graphs_) {
    for (auto& by_logits : by_scoring) {
      for (cudaGraphExec_t& g : by_logits) {
        if (g) cudaGraphExecDestroy(g);
      }
    }
  }
  if (stream_ && own_stream_) cudaStreamDestroy(stream_);
}

Status DeviceSession::upload_position(int64_t n) const {
  const int pos = static_cast<int>(n);
  // Pageable source: the value is staged before the call returns.
  return cuda_status(cudaMemcpyAsync(state_->pos, &pos, sizeof(int), cudaMemcpyHostToDevice, stream_), "position upload");
}

Result<cudaGraphExec_t> DeviceSession::decode_graph(bool index_scoring, int T, bool all_logits, bool no_logits) {
  cudaGraphExec_t& exec = graphs_[T - 1][index_scoring ? 1 : 0][all_logits ? 1 : no_logits ? 2 : 0];
  if (exec) return exec;
  ChunkShape shape;
  shape.T = T;
  shape.all_logits = all_logits;
  shape.no_logits = no_logits;
  shape.index_scoring = index_scoring;
  shape.step_kernels = true;
  const SimModes modes{mode_.fp8_kv, mode_.fp4_indexer};
  DSV4_CUDA_TRY(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeThreadLocal));
  const Status queued = forward_chunk(*model_, *state_, shape, modes, stream_, nullptr, branch_.get());
  cudaGraph_t graph = nullptr;
  const Status ended = cuda_status(cudaStreamEndCapture(stream_, &graph), "decode graph capture");
  if (!queued.ok() || !ended.ok()) {
    if (graph) cudaGraphDestroy(graph);
    return queued.ok() ? ended : queued;
  }
  Result<GraphShape> shape_of = graph_shape(graph);
  const Status made = shape_of.ok() ? cuda_status(cudaGraphInstantiate(&exec, graph, 0), "decode graph instantiation")
                                    : shape_of.status();
  cudaGraphDestroy(graph);
  DSV4_TRY(made);
  graph_shapes_[T - 1][index_scoring ? 1 : 0][all_logits ? 1 : no_logits ? 2 : 0] = *shape_of;
  // Its first launch then does not pay for the upload.
  DSV4_CUDA_TRY(cudaGraphUpload(exec, stream_));
  return exec;
}

Result<GraphShape> DeviceSession::decode_graph_shape() {
  const bool index_scoring = chunk_needs_index_scoring(model_->config, n_, 1);
  DSV4_TRY(decode_graph(index_scoring).status());
  return graph_shapes_[0][index_scoring ? 1 : 0][0];
}

Status DeviceSession::run_chunk(const int32_t* tokens, int T, bool all_logits, bool no_logits) {
  DSV4_CUDA_TRY(cudaMemcpyAsync(state_->tokens, tokens, sizeof(int32_t) * T, cudaMemcpyHostToDevice, stream_));
  if (T <= kStepChunkMax && T <= state_->max_logits_chunk()) {
    DSV4_ASSIGN_OR_RETURN(cudaGraphExec_t graph,
                          decode_graph(chunk_needs_index_scoring(model_->config, n_, T), T, all_logits, no_logits));
    DSV4_CUDA_TRY(cudaGraphLaunch(graph, stream_));
    n_ += T;
    return Status();
  }
  ChunkShape shape;
  shape.T = T;
  shape.all_logits = all_logits;
  shape.no_logits = no_logits;
  shape.index_scoring = chunk_needs_index_scoring(model_->config, n_, T);
  shape.end = n_ + T;
  shape.tensor_core = prefill_ != PrefillMath::kMatvecF32;
  shape.split_products = prefill_ == PrefillMath::kTensorCoreSplit;
  DSV4_TRY(forward_chunk(*model_, *state_, shape, SimModes{mode_.fp8_kv, mode_.fp4_indexer}, stream_, nullptr,
                         branch_.get()));
  n_ += T;
  return Status();
}

Status DeviceSession::forward(std::span<const int32_t> tokens, float* all_logits) {
  return evaluate(tokens, all_logits, false);
}

Status DeviceSession::forward_without_logits(std::span<const int32_t> tokens) {
  return evaluate(tokens, nullptr, true);
}

Status DeviceSession::evaluate(std::span<const int32_t> tokens, float* all_logits, bool no_logits, bool every_row) {
  const model::Config& c = model_->config;
  if (n_ + static_cast<int64_t>(tokens.size()) > state_->n_ctx()) {
    return make_error("cuda forward: " + std::to_string(n_ + static_cast<int64_t>(tokens.size())) +
                      " positions exceed the session's capacity of " + std::to_string(state_->n_ctx()));
  }
  for (int32_t t : tokens) {
    if (t < 0 || t >= c.n_vocab) {
      return make_error("cuda forward: token id " + std::to_string(t) + " outside the vocabulary of " +
                        std::to_string(c.n_vocab));
    }
  }
  if (tokens.empty()) return Status();
  draft_.reset();  // a draft still pending is kept whole
  if (speculative_) {
    if (tokens.size() == 1 && !all_logits && !every_row && !no_logits && tokens[0] == speculative_token_) {
      speculative_.reset();  // the step for this token is already queued: commit it
      ++n_;
      host_logits_valid_ = false;
      return Status();
    }
    DSV4_TRY(cancel_speculation());
  }
  host_logits_valid_ = false;
  const bool rows = all_logits != nullptr || every_row;
  const int chunk = rows ? state_->max_logits_chunk() : state_->max_chunk();
  for (size_t off = 0; off < tokens.size(); off += static_cast<size_t>(chunk)) {
    const int T = static_cast<int>(std::min<size_t>(static_cast<size_t>(chunk), tokens.size() - off));
    DSV4_TRY(run_chunk(tokens.data() + off, T, rows, no_logits));
    if (all_logits) {
      const size_t V = static_cast<size_t>(c.n_vocab);
      DSV4_CUDA_TRY(cudaMemcpyAsync(all_logits + off * V, state_->logits_all, sizeof(float) * T * V,
                                    cudaMemcpyDeviceToHost, stream_));
      DSV4_CUDA_TRY(cudaStreamSynchronize(stream_));
    }
  }
  return cuda_status(cudaGetLastError(), "cuda forward");
}

std::span<const float> DeviceSession::logits() const {
  if (!host_logits_valid_) {
    host_logits_.resize(static_cast<size_t>(model_->config.n_vocab));
    const cudaError_t e = !cancel_speculation().ok()
                              ? cudaErrorUnknown
                              : cudaMemcpyAsync(host_logits_.data(), state_->logits,
                                                host_logits_.size() * sizeof(float), cudaMemcpyDeviceToHost, stream_);
    const cudaError_t w = cudaStreamSynchronize(stream_);
    if (e != cudaSuccess || w != cudaSuccess) {
      // A device failure here leaves nothing sensible to return; make it loud rather than stale.
      std::fill(host_logits_.begin(), host_logits_.end(), std::numeric_limits<float>::quiet_NaN());
    }
    host_logits_valid_ = true;
  }
  return host_logits_;
}

Status DeviceSession::synchronize() const { return cuda_status(cudaStreamSynchronize(stream_), "cuda synchronize"); }

Status DeviceSession::profile_step(int32_t token, StageProfile& profile) {
  if (token < 0 || token >= model_->config.n_vocab || n_ + 1 > state_->n_ctx()) {
    return make_error("profile_step: bad token or context full");
  }
  DSV4_TRY(cancel_speculation());
  DSV4_CUDA_TRY(cudaMemcpyAsync(state_->tokens, &token, sizeof(int32_t), cudaMemcpyHostToDevice, stream_));
  ChunkShape shape;
  shape.index_scoring = chunk_needs_index_scoring(model_->config, n_, 1);
  // The range names the step's kernels for profilers (ncu --nvtx --nvtx-include "profile/").
  nvtxRangePushA("profile");
  const Status queued = forward_chunk(*model_, *state_, shape, SimModes{mode_.fp8_kv, mode_.fp4_indexer}, stream_, &profile);
  nvtxRangePop();
  DSV4_TRY(queued);
  ++n_;
  host_logits_valid_ = false;
  return synchronize();
}

Status DeviceSession::profile_chunk(std::span<const int32_t> tokens, StageProfile& profile) {
  const int T = static_cast<int>(tokens.size());
  if (T < 1 || T > state_->max_chunk() || n_ + T > state_->n_ctx()) {
    return make_error("profile_chunk: chunk longer than max_chunk or past the context");
  }
  for (int32_t t : tokens) {
    if (t < 0 || t >= model_->config.n_vocab) return make_error("profile_chunk: token outside the vocabulary");
  }
  DSV4_TRY(cancel_speculation());
  DSV4_CUDA_TRY(cudaMemcpyAsync(state_->tokens, tokens.data(), sizeof(int32_t) * T, cudaMemcpyHostToDevice, stream_));
  ChunkShape shape;
  shape.T = T;
  shape.index_scoring = chunk_needs_index_scoring(model_->config, n_, T);
  shape.end = n_ + T;
  shape.tensor_core = prefill_ != PrefillMath::kMatvecF32;
  shape.split_products = prefill_ == PrefillMath::kTensorCoreSplit;
  nvtxRangePushA("profile");
  const Status queued = forward_chunk(*model_, *state_, shape, SimModes{mode_.fp8_kv, mode_.fp4_indexer}, stream_, &profile);
  nvtxRangePop();
  DSV4_TRY(queued);
  n_ += T;
  host_logits_valid_ = false;
  return synchronize();
}

Result<int32_t> DeviceSession::sample(const SamplingRequest& request, bool step_ahead) {
  DSV4_TRY(cancel_speculation());
  if (!step_ahead || !speculation_ || n_ >= state_->n_ctx()) return sampler_->sample(state_->logits, request, stream_);
  // The kernel stores the token in the step's input slot; the checkpoint copies the logits the
  // kernel read before the graph overwrites them.
  DSV4_TRY(sampler_->enqueue(state_->logits, request, state_->tokens, stream_));
  DSV4_ASSIGN_OR_RETURN(cudaGraphExec_t graph, decode_graph(chunk_needs_index_scoring(model_->config, n_, 1)));
  DSV4_ASSIGN_OR_RETURN(speculative_, take_checkpoint(state_->step_write_set(n_)));
  speculative_token_ = -1;
  DSV4_CUDA_TRY(cudaGraphLaunch(graph, stream_));
  DSV4_ASSIGN_OR_RETURN(const int32_t token, sampler_->wait());
  if (token < 0) {
    DSV4_TRY(cancel_speculation());  // no finite logit: the caller reports it; nothing to commit
  } else {
    speculative_token_ = token;
  }
  return token;
}

Status DeviceSession::cancel_speculation() const {
  if (!speculative_) return Status();
  const std::unique_ptr<Checkpoint> cp = std::move(speculative_);
  return restore_checkpoint(*cp);
}

Result<std::unique_ptr<DeviceSession::Checkpoint>> DeviceSession::checkpoint() {
  DSV4_TRY(cancel_speculation());
  return take_checkpoint();
}

Result<std::unique_ptr<DeviceSession::Checkpoint>> DeviceSession::take_checkpoint(std::vector<RegionSpan> spans) {
  std::shared_ptr<DeviceArena> buffer;
  for (const auto& b : spare_checkpoints_) {
    if (b.use_count() == 1) {
      buffer = b;
      break;
    }
  }
  if (!buffer) {
    buffer = std::make_shared<DeviceArena>();
    DSV4_TRY(buffer->allocate(state_->checkpoint_bytes(), "a rollback checkpoint"));
    spare_checkpoints_.push_back(buffer);
  }
  if (spans.empty()) {
    DSV4_CUDA_TRY(cudaMemcpyAsync(buffer->base(), state_->checkpoint_region(), state_->checkpoint_bytes(),
                                  cudaMemcpyDeviceToDevice, stream_));
  } else {
    DSV4_TRY(pack_region_spans(state_->checkpoint_region(), spans, buffer->base(), stream_));
  }
  auto cp = std::make_unique<Checkpoint>();
  cp->buffer_ = std::move(buffer);
  cp->n_ = n_;
  cp->window_start_ = window_start_;
  cp->spans_ = std::move(spans);
  return cp;
}

Status DeviceSession::restore_checkpoint(const Checkpoint& cp) const {
  if (cp.spans_.empty()) {
    DSV4_CUDA_TRY(cudaMemcpyAsync(state_->checkpoint_region(), cp.buffer_->base(), state_->checkpoint_bytes(),
                                  cudaMemcpyDeviceToDevice, stream_));
  } else {
    DSV4_TRY(unpack_region_spans(cp.buffer_->base(), cp.spans_, state_->checkpoint_region(), stream_));
  }
  return upload_position(cp.n_);
}

Status DeviceSession::upload_window_start(int64_t n) {
  const int start = static_cast<int>(n);
  DSV4_CUDA_TRY(cudaMemcpyAsync(state_->window_start, &start, sizeof(int), cudaMemcpyHostToDevice, stream_));
  window_start_ = n;
  return Status();
}

bool DeviceSession::sliding_only() const {
  for (int64_t l = 0; l < model_->config.n_layer; ++l) {
    if (model_->config.ratio(l) != 0) return false;
  }
  return true;
}

Status DeviceSession::rewind(int64_t n) {
  if (!sliding_only()) return make_error("cuda rewind: the model has compressed layers");
  if (n < window_start_ || n > n_) return make_error("cuda rewind: position outside the evaluated window");
  DSV4_TRY(cancel_speculation());
  draft_.reset();
  n_ = n;
  host_logits_valid_ = false;
  return upload_position(n_);
}

Status DeviceSession::start_at(int64_t n) {
  if (!sliding_only()) return make_error("cuda start_at: the model has compressed layers");
  if (n < 0 || n > state_->n_ctx()) return make_error("cuda start_at: position outside the session");
  DSV4_TRY(reset());
  DSV4_TRY(upload_window_start(n));
  n_ = n;
  return upload_position(n_);
}

Status DeviceSession::rollback(const Checkpoint& cp) {
  if (cp.n_ > n_) return make_error("cuda rollback: checkpoint ahead of the state");
  // A queued speculative step wrote only into the rollback region and past the compressed rows
  // kept at cp.n_ <= n_: restoring cp undoes it as well.
  speculative_.reset();
  draft_.reset();
  DSV4_TRY(restore_checkpoint(cp));
  if (cp.window_start_ != window_start_) DSV4_TRY(upload_window_start(cp.window_start_));
  n_ = cp.n_;
  host_logits_valid_ = false;
  return Status();
}

Status DeviceSession::forward_draft(std::span<const int32_t> tokens, float* all_logits) {
  const int T = static_cast<int>(tokens.size());
  if (draft_) return make_error("cuda forward_draft: the previous draft was not settled");
  if (T < 2 || T > kStepChunkMax || T > state_->max_logits_chunk()) {
    return make_error("cuda forward_draft: 2 to " + std::to_string(kStepChunkMax) + " tokens");
  }
  if (n_ + T > state_->n_ctx()) return make_error("cuda forward_draft: past the session's capacity");
  DSV4_TRY(cancel_speculation());
  std::vector<RegionSpan> spans;
  std::vector<size_t> starts;
  for (int j = 1; j < T; ++j) {
    starts.push_back(spans.size());
    const std::vector<RegionSpan> s = state_->draft_reject_set(n_ + j);
    spans.insert(spans.end(), s.begin(), s.end());
  }
  DSV4_ASSIGN_OR_RETURN(std::unique_ptr<Checkpoint> before, take_checkpoint(std::move(spans)));
  DSV4_TRY(evaluate(tokens, all_logits, false, true));
  draft_ = std::move(before);
  draft_span_starts_ = std::move(starts);
  return Status();
}

Result<const float*> DeviceSession::draft_logits(int row, const char* who) const {
  // The draft's first position has no spans: one list start per other one.
  if (!draft_ || row < 0 || row > static_cast<int>(draft_span_starts_.size())) {
    return make_error(std::string("cuda ") + who + ": no draft, or no such row");
  }
  return state_->logits_all + static_cast<size_t>(row) * static_cast<size_t>(model_->config.n_vocab);
}

Result<int32_t> DeviceSession::sample_draft_row(const SamplingRequest& request, int row) {
  DSV4_ASSIGN_OR_RETURN(const float* logits, draft_logits(row, "sample_draft_row"));
  return sampler_->sample(logits, request, stream_);
}

Result<std::vector<float>> DeviceSession::draft_row(int row) const {
  DSV4_ASSIGN_OR_RETURN(const float* logits, draft_logits(row, "draft_row"));
  std::vector<float> out(static_cast<size_t>(model_->config.n_vocab));
  DSV4_CUDA_TRY(cudaMemcpyAsync(out.data(), logits, out.size() * sizeof(float), cudaMemcpyDeviceToHost, stream_));
  DSV4_CUDA_TRY(cudaStreamSynchronize(stream_));
  return out;
}

Status DeviceSession::keep_draft(int k) {
  if (!draft_) return make_error("cuda keep_draft: no draft");
  // The draft's first position has no spans (it is never rejected): one list start per other one.
  const int T = static_cast<int>(draft_span_starts_.size()) + 1;
  if (k < 1 || k > T) return make_error("cuda keep_draft: keeps 1 to the draft's tokens");
  const std::unique_ptr<Checkpoint> before = std::move(draft_);
  if (k == T) return Status();
  // Positions n0 + k .. n0 + T - 1 are dropped: their spans are the list's suffix from
  // draft_span_starts_[k - 1] (the list starts at position n0 + 1).
  const std::span<const RegionSpan> all(before->spans_);
  const size_t first = draft_span_starts_[static_cast<size_t>(k - 1)];
  const uint64_t skipped = packed_bytes(all.first(first));
  DSV4_TRY(unpack_region_spans(before->buffer_->base() + skipped, all.subspan(first), state_->checkpoint_region(),
                               stream_));
  const size_t V = static_cast<size_t>(model_->config.n_vocab);
  DSV4_CUDA_TRY(cudaMemcpyAsync(state_->logits, state_->logits_all + static_cast<size_t>(k - 1) * V,
                                V * sizeof(float), cudaMemcpyDeviceToDevice, stream_));
  n_ = before->n_ + k;
  host_logits_valid_ = false;
  return upload_position(n_);
}

Status DeviceSession::reset() {
  speculative_.reset();  // the reset rewrites what an empty sequence reads
  draft_.reset();
  n_ = 0;
  window_start_ = 0;
  host_logits_valid_ = false;
  return state_->reset(stream_);
}

Result<std::vector<uint8_t>> DeviceSession::serialize() const {
  DSV4_TRY(cancel_speculation());
  DSV4_ASSIGN_OR_RETURN(cpu::State st, cpu::State::create(model_->config, std::max<int64_t>(n_, 1)));
  DSV4_TRY(state_->download(n_, st, stream_));
  if (n_ > 0) st.set_mode(mode_);
  return st.serialize();
}

Status DeviceSession::restore(std::span<const uint8_t> bytes, int64_t n) {
  DSV4_ASSIGN_OR_RETURN(cpu::State st, cpu::State::create(model_->config, state_->n_ctx()));
  DSV4_TRY(st.restore(bytes));
  if (st.n() != n) {
    return make_error("snapshot rejected: state holds " + std::to_string(st.n()) + " positions but " +
                      std::to_string(n) + " tokens are listed");
  }
  if (st.mode() && !(*st.mode() == mode_)) return make_error("snapshot rejected: state of another simulation mode");
  DSV4_TRY(cancel_speculation());
  draft_.reset();
  DSV4_TRY(state_->upload(st, stream_));
  if (window_start_ != 0) DSV4_TRY(upload_window_start(0));
  n_ = n;
  host_logits_valid_ = false;
  return Status();
}

}  // namespace dsv4::cuda
