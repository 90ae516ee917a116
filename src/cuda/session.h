// One sequence on the GPU: its device state, its stream, and the decode-step graphs.
//
// forward() evaluates tokens in chunks of at most max_chunk; a single-token step (the decode loop)
// replays a CUDA graph captured when the session is made (one per indexer variant the context can
// reach: whether the token has more than top_k eligible compressed rows), whose kernels read the
// token and the position from device memory and advance the position themselves; a chunk of 2 to
// kStepChunkMax tokens replays such a graph of that many tokens, captured on first use. Nothing in
// a step waits for the device: the host synchronises only to read results (logits, a sampled
// token, snapshots).
//
// Speculative decode step: sample() has the sampling kernel also store its token in the step's
// input slot and, before the host has read that token, queues the decode graph for it behind a
// checkpoint of the state, so the GPU runs step n+1 while the host wakes up, reads the token and
// calls forward(). forward() of exactly that one token then only commits the step (no launch);
// anything else (another token or several, every-token logits, logits() when it must read them,
// sample(), checkpoint(), serialize(), restore(), profiling) first restores the checkpoint, and
// rollback() and reset() overwrite what the step wrote, so a session with speculation computes
// bit for bit what one without computes. Its price is one checkpoint copy per token (docs/PERF.md,
// session 7). Not taken when the context is full; DSV4_NO_SPECULATION=1 in the environment (read
// at create) or set_speculation(false) turns it off (A/B measurements, tests).
//
// Checkpoints copy the rollback region of the state (logits, raw windows, frontiers) into
// preallocated device buffers; rollback copies it back and rewinds the position (compressed rows
// past floor(n/r) are simply ignored). Snapshots go through cpu::State, the backend-independent
// format.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "cpu/sim.h"
#include "cuda/branch.h"
#include "cuda/device_model.h"
#include "cuda/device_state.h"
#include "cuda/forward.h"
#include "cuda/graph_shape.h"
#include "cuda/sampling.h"
#include "util/status.h"

namespace dsv4::cuda {

// How a prefill chunk computes its projections.
enum class PrefillMath {
  // The default: tensor-core GEMMs in split mode (cuda/gemm.h: exact weight codes times f32 block
  // scales, activations as two f16 parts, f32-level products); meets the whole-model bar of
  // tests/cuda/forward_test.cc. Weight types the split GEMM does not take (F32, BF16) and decode
  // steps use the f32 matvec.
  kTensorCoreSplit,
  // The f32 matvec over the chunk's token slots: decode's arithmetic, every weight read once per
  // token (slow); meets the bar too.
  kMatvecF32,
  // Tensor-core GEMMs with f16 products (≈ 2^-11 relative per product; the routed experts' Q2_K
  // down projection on int8 limbs as in split mode): 2-4 % faster than split mode on an H200
  // (docs/PERF.md, session 13), but the rounding flips near-tied discrete choices (router and
  // indexer top-k, FP8/FP4 simulation) often enough to miss the whole-model bar (docs/PERF.md,
  // "prefill on tensor cores").
  kTensorCoreF16,
};

class DeviceSession {
 public:
  // Chunk length of prefill (scratch is sized for it).
  static constexpr int kDefaultMaxChunk = 128;
  // Tensor-core prefill (either tensor-core math) wants long chunks: the routed experts see
  // T·6/256 rows each (≈ 96 at 4096), a GEMM tile is 64–128 rows. The chunk's scratch grows
  // linearly (≈ 1 MB per token for Flash, the f32 activations of every sub-layer, plus the f16
  // inputs and their low parts): ≈ 9.8 GB per session at 8192, against ≈ 14.4 GB of compressed
  // rows for a 1M-token session and 86.7 GB of flash-q2 weights. Measured on an H200 (docs/PERF.md),
  // full flash-q2, 8K prompt: chunks of 2048 2 895 tokens/s, of 4096 3 224 (f16 products, session
  // 6); exact products, session 14: chunks of 4096 4 528 tokens/s, of 8192 4 986.
  static constexpr int kTensorCoreMaxChunk = 8192;
  // Chunks of at most this many tokens (a short follow-up; a speculative draft's verification,
  // with every token's logits) run as one multi-token step, a replay of the graph captured for
  // that many tokens on the decode step's kernels (ChunkShape::step_kernels): the prefill kernels'
  // 64-token tiles made a chunk of 2–4 tokens slower than as many steps. H200, full flash-q2, at
  // 4K (docs/PERF.md, sessions 36, 39 and 40): 2 / 3 / 4 tokens 8.8 / 12.6 / 14.5 ms against 12.7 /
  // 19.1 / 25.4 as steps (24.0 / – / 27.7 as chunks). Its logits are the bits of single steps.
  static constexpr int kStepChunkMax = 4;
  // Longer still where the device has the memory (≈ 18.5 GB of state and scratch for the full
  // model): a 25 000-token prompt is 16 384 + 8 616 tokens instead of 3 × 8 192 + 424, and its
  // prefill takes 5.4 % less time, a 32 768-token one 3.1 % (H200, docs/PERF.md, session 23).
  static constexpr int kTensorCoreLongChunk = 16384;
  // Device bytes a session of this model, context, chunk and prefill math (and hidden rows) allocates:
  // its state and scratch, and its rollback checkpoints.
  static uint64_t device_bytes(const DeviceModel& model, int64_t n_ctx, int max_chunk, PrefillMath prefill,
                               bool hidden_rows = false);
  // The chunk length of a session of this prefill math and context on the current device: the
  // matvec's kDefaultMaxChunk; for tensor-core prefill kTensorCoreLongChunk where the device's free
  // memory holds that session and, beside it, one with kTensorCoreMaxChunk and kLongChunkSpareBytes
  // (chat's /load and resize make the new session before they drop the old one, and a second
  // session of the standard chunk must fit as it did before), else kTensorCoreMaxChunk.
  // `beside`: device bytes the session needs next to it (its MTP block's session).
  static constexpr uint64_t kLongChunkSpareBytes = uint64_t{1} << 30;
  static Result<int> max_chunk_for(const DeviceModel& model, int64_t n_ctx, PrefillMath prefill,
                                   bool hidden_rows = false, uint64_t beside = 0);

  // hidden_rows: the state's `hidden` rows (the main model's, for its MTP block; the block's own model
  // always has them). stream: work on this stream (not owned) instead of one of the session's own,
  // so that the MTP block's session and its model's queue in one order.
  static Result<std::unique_ptr<DeviceSession>> create(std::shared_ptr<const DeviceModel> model, int64_t n_ctx,
                                                       cpu::SimOptions mode, int max_chunk = kDefaultMaxChunk,
                                                       PrefillMath prefill = PrefillMath::kTensorCoreSplit,
                                                       bool hidden_rows = false, cudaStream_t stream = nullptr);
  ~DeviceSession();
  DeviceSession(const DeviceSession&) = delete;
  DeviceSession& operator=(const DeviceSession&) = delete;

  int64_t n() const { return n_; }
  int64_t n_ctx() const { return state_->n_ctx(); }
  // The longest chunk forward() evaluates in one pass (longer calls are cut into such chunks), and
  // with every token's logits.
  int max_chunk() const { return state_->max_chunk(); }
  int max_logits_chunk() const { return state_->max_logits_chunk(); }
  // Device bytes of the state and scratch (checkpoint buffers not included).
  uint64_t state_bytes() const { return state_->bytes(); }
  // Device bytes one rollback checkpoint (and each speculative step) copies.
  uint64_t checkpoint_bytes() const { return state_->checkpoint_bytes(); }
  const model::Config& config() const { return model_->config; }
  cpu::SimOptions mode() const { return mode_; }
  PrefillMath prefill_math() const { return prefill_; }
  cudaStream_t stream() const { return stream_; }
  // The state's hidden rows ([max_chunk][4·n_embd], DeviceState::hidden), or null.
  float* hidden() const { return state_->hidden; }

  // Evaluates tokens (validated first; on error nothing changed). all_logits, when not null,
  // receives [tokens.size()][n_vocab] (copied to the host: synchronises).
  Status forward(std::span<const int32_t> tokens, float* all_logits);
  // As forward() without the head: the next-token logits are left undefined (the MTP block's
  // pairs whose guess nobody reads).
  Status forward_without_logits(std::span<const int32_t> tokens);
  // The next-token logits after position n-1, copied to the host (synchronises; cached).
  std::span<const float> logits() const;
  // Waits for the queued work (for timing).
  Status synchronize() const;
  // One decode step without the graph, its stages timed (benchmarks; synchronises).
  Status profile_step(int32_t token, StageProfile& profile);
  // One prefill chunk (at most max_chunk tokens), its stages timed (benchmarks; synchronises).
  Status profile_chunk(std::span<const int32_t> tokens, StageProfile& profile);
  // The nodes and edges of the decode step's graph at the present position (benchmarks; captures
  // it if no step has yet).
  Result<GraphShape> decode_graph_shape();

  // Picks the next token from the device logits (sampling.h); only the token crosses to the host.
  // With speculation on and step_ahead, the decode step of that token is already queued when this
  // returns (without step_ahead: a caller that evaluates more than that token next, a draft).
  Result<int32_t> sample(const SamplingRequest& request, bool step_ahead = true);
  void set_speculation(bool on) { speculation_ = on; }

  class Checkpoint {
   public:
    int64_t n() const { return n_; }

   private:
    friend class DeviceSession;
    std::shared_ptr<DeviceArena> buffer_;
    int64_t n_ = 0;
    int64_t window_start_ = 0;
    std::vector<RegionSpan> spans_;  // what buffer_ holds packed; empty: the whole rollback region
  };
  Result<std::unique_ptr<Checkpoint>> checkpoint();
  Status rollback(const Checkpoint& cp);
  Status reset();
  // Models whose layers all have ratio 0 (the MTP block), whose state past a position is only ring
  // rows that a later position rewrites before anything reads them: back to n ≤ n() without a
  // checkpoint; and the empty state at position n, its raw window starting there
  // (DeviceState::window_start).
  Status rewind(int64_t n);
  Status start_at(int64_t n);

  // Speculative decoding: a sampled token and its draft (2 to kStepChunkMax tokens) as one
  // multi-token step, every token's logits into all_logits (bit-identical to single steps), then
  // keep_draft(k) leaves the first k evaluated without evaluating anything again: the rejected
  // tokens' writes that the kept ones read (DeviceState::draft_reject_set) come back from a
  // checkpoint of them taken before the step, the logits from the kept token's row.
  // all_logits null: the rows stay on the device, for sample_draft_row.
  Status forward_draft(std::span<const int32_t> tokens, float* all_logits);
  Status keep_draft(int k);
  // Between forward_draft and keep_draft: the token drawn from row `row` of the draft's logits, only
  // the token to the host; and that row on the host (a draw that needs it there: logprobs).
  Result<int32_t> sample_draft_row(const SamplingRequest& request, int row);
  Result<std::vector<float>> draft_row(int row) const;

  // The state of the n evaluated positions in the cpu::State snapshot format, and back.
  Result<std::vector<uint8_t>> serialize() const;
  Status restore(std::span<const uint8_t> bytes, int64_t n);

 private:
  DeviceSession(std::shared_ptr<const DeviceModel> model, cpu::SimOptions mode, PrefillMath prefill)
      : model_(std::move(model)), mode_(mode), prefill_(prefill) {}
  // every_row: every token's logits in state.logits_all even without a host copy (all_logits null).
  Status evaluate(std::span<const int32_t> tokens, float* all_logits, bool no_logits, bool every_row = false);
  Status run_chunk(const int32_t* tokens, int T, bool all_logits, bool no_logits);
  Status upload_position(int64_t n) const;
  Status upload_window_start(int64_t n);
  // Whether every layer has ratio 0 (what rewind and start_at need).
  bool sliding_only() const;
  // Row `row` of the pending draft's logits on the device, or an error naming `who`.
  Result<const float*> draft_logits(int row, const char* who) const;
  // The rollback region, or only `spans` of it (a speculative step's write set).
  Result<std::unique_ptr<Checkpoint>> take_checkpoint(std::vector<RegionSpan> spans = {});
  Status restore_checkpoint(const Checkpoint& cp) const;
  // Undoes a queued speculative step. The session's state (n_, the logits of n_ - 1) never
  // included it, so this is const for the callers that only read.
  Status cancel_speculation() const;
  // The graph of a step of T ≤ kStepChunkMax tokens (T = 1: a decode step), with every token's
  // logits in state.logits_all, the last one's, or none (no_logits), captured on first use.
  Result<cudaGraphExec_t> decode_graph(bool index_scoring, int T = 1, bool all_logits = false,
                                       bool no_logits = false);

  std::shared_ptr<const DeviceModel> model_;
  cpu::SimOptions mode_;
  PrefillMath prefill_;
  cudaStream_t stream_ = nullptr;
  bool own_stream_ = true;
  std::unique_ptr<Branch> branch_;  // the forward pass's side stream
  std::unique_ptr<DeviceState> state_;
  std::unique_ptr<DeviceSampler> sampler_;
  int64_t n_ = 0;
  int64_t window_start_ = 0;  // host copy of state.window_start
  // Step graphs of T = 1 .. kStepChunkMax tokens ([T - 1]), without / with indexer scores, with
  // the last token's / every token's / no logits.
  cudaGraphExec_t graphs_[kStepChunkMax][2][3] = {};
  GraphShape graph_shapes_[kStepChunkMax][2][3] = {};  // of each graph, when captured
  mutable std::vector<float> host_logits_;
  mutable bool host_logits_valid_ = false;
  std::vector<std::shared_ptr<DeviceArena>> spare_checkpoints_;
  bool speculation_ = true;
  // Not null while a speculative step is queued: the state before it; the step's token.
  mutable std::unique_ptr<Checkpoint> speculative_;
  int32_t speculative_token_ = -1;
  // Between forward_draft and keep_draft: the rejectable positions' writes before the step (the
  // spans of positions n0 + 1, n0 + 2, ... in order, n0 the checkpoint's n_) and where each
  // position's spans start.
  std::unique_ptr<Checkpoint> draft_;
  std::vector<size_t> draft_span_starts_;
};

}  // namespace dsv4::cuda
