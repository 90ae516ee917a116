// One session's decode state and scratch in device memory (DESIGN.md §6), allocated once for a
// maximum context and a maximum chunk: nothing is allocated inside a step.
//
// Arena layout: first the part a rollback checkpoint copies (the last logits, every layer's raw
// window ring and compressor frontiers: its size does not depend on the context, MODEL.md §12.4),
// then the append-only compressed and indexer rows, then the scratch of one chunk. The counters of
// MODEL.md §12.1 need no storage of their own: with n evaluated positions a layer of ratio r holds
// floor(n/r) compressed rows, so the device keeps only the position (`pos`).
#pragma once

#include <cuda_fp16.h>
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstdint>
#include <memory>
#include <vector>

#include "cpu/state.h"
#include "cuda/device_model.h"
#include "cuda/prefill_attention.h"
#include "cuda/prefill_indexer.h"
#include "cuda/region_copy.h"
#include "util/status.h"

namespace dsv4::cuda {

struct LayerBuffers {
  float* ring = nullptr;        // [window][hd]: position p in row p mod window
  float* comp_rows = nullptr;   // [comp_cap][hd] (ratio != 0)
  float* index_rows = nullptr;  // [comp_cap][idh] (ratio 4)
  float* comp_kv = nullptr;     // frontier [comp_slots][comp_width] (ratio != 0)
  float* comp_gate = nullptr;
  float* index_kv = nullptr;    // frontier [8][2·idh] (ratio 4)
  float* index_gate = nullptr;
  int64_t comp_cap = 0;
  int comp_slots = 0, comp_width = 0, index_slots = 0, index_width = 0;
  int attn_splits = 0;          // row splits of the attention kernel for the most rows a token sees
  int prefill_splits = 0;       // the same for prefill_attention.h (chunks of more than one token)
};

// Per-chunk scratch; rows are token-major, sized for max_chunk tokens.
struct Scratch {
  float *x = nullptr, *x_next = nullptr;  // [T][4D] hyper-connection streams
  double* hc_partial = nullptr;
  float* mix = nullptr;                   // [T][kHcMixSize]
  float* xn = nullptr;                    // [T][D] normalised sub-layer input
  float* qa = nullptr;                    // [T][R + hd] (q_a and kv fused) or [T][R]
  float* kv_raw = nullptr;                // [T][hd] when not fused
  float* qr = nullptr;                    // [T][R]
  float* q = nullptr;                     // [T][H·hd] (prefill attention: split, prefill_attention.h)
  int* q_exp = nullptr;                   // [T][H] the split queries' powers of two
  float* kv = nullptr;                    // [T][hd] finished raw rows of the chunk
  float *comp_proj = nullptr, *comp_proj2 = nullptr;    // [T][2·cd] / [T][cd]
  float *index_proj = nullptr, *index_proj2 = nullptr;  // [T][4·idh] / [T][2·idh]
  // The emit launches of windows without overlap (compressor.h): [windows][hd] and [windows], the
  // counters zero between launches; windows = the most a chunk completes in such a layer.
  float* comp_pooled = nullptr;
  unsigned* comp_counters = nullptr;
  int comp_windows = 0;
  float* iq = nullptr;                    // [T][IH·idh]
  float* iw = nullptr;                    // [T][IH]
  float* scores = nullptr;                // [index_tokens][score_cap], or shorter rows (ChunkShape::end)
  int32_t* index_n = nullptr;             // [T] rows each token ranks (prefill indexer)
  PrefillIndexRows index_split;           // the layer's indexer rows split once for the prefill kernel
  int32_t* selected = nullptr;            // [T][top_k]
  uint32_t* topk_scratch = nullptr;       // [kSubChunk][kIndexerTopkScratchWords], zero between launches
  float *part_o = nullptr, *part_ml = nullptr;  // attention splits: kSubChunk tokens of the decode kernel,
                                                // attn_tokens of the prefill kernel's split form
  PrefillAttnRows attn_rows;  // the layer's KV rows split once for the prefill kernel
  float* attn = nullptr;                  // [T][H·hd] (also whole-token prefill attention's running sums)
  float* low = nullptr;                   // [T][G·o_rank]
  float* out = nullptr;                   // [T][D] sub-layer output
  float* router = nullptr;                // [T][E]
  int32_t* experts = nullptr;             // [T][K]
  float* route_w = nullptr;               // [T][K]
  float* gu = nullptr;                    // [T·K][2F] (tensor-core prefill: in expert-sorted order)
  float* mid = nullptr;                   // [T·K][F] (tensor-core prefill: sorted; in int8 mode the down
                                          // projection's limbs and records instead)
  float* ydown = nullptr;                 // [T·K][D] in (token, slot) order; before the down
                                          // projection, the f32 prefill's replicated xn rows
  float *sh_gu = nullptr, *sh_mid = nullptr, *shared = nullptr;
  float* head = nullptr;                  // [T][D] normalised head input
  int32_t* zeros = nullptr;               // [T] expert ids of a batched dense projection
  int32_t* groups = nullptr;              // [T·G] 0..G-1 repeated (grouped output projection)
  int64_t score_cap = 0;
  // Tokens per launch of the prefill attention's split form and of the indexer kernels (chunks of
  // T > 1 whose geometry they take): as many as kPrefillAttentionLaunchBytes of split scratch (and
  // fewer than kPrefillAttnWholeFrom: longer launches take whole tokens) or kPrefillIndexLaunchBytes
  // of score scratch hold, at least kSubChunk; 0 where those kernels do not run (decode-only
  // states, other geometries).
  int attn_tokens = 0, index_tokens = 0;
  // Tensor-core prefill inputs (states made with them, max_chunk > 1): f16 activation rows with their row factors
  // (convert_f32_to_f16): xn's, converted once per sub-layer, and one buffer for the other inputs
  // (qr, attn, low, the routed and shared SwiGLU outputs, the head input) converted just before
  // their projection; the prefill attention writes attn's itself, a factor per token and out_a group.
  __half *xn16 = nullptr, *in16 = nullptr;  // [T][D] / [max(T·widest input, T·K·F)]
  __half *xn16_lo = nullptr, *in16_lo = nullptr;  // their low parts (split products), same sizes
  float *xn16_scale = nullptr, *in16_scale = nullptr;  // [T] / [T·max(K, G)]
  // out_a's G groups as one grouped GEMM: its rows t·G + g listed group by group, and the groups'
  // offsets (fill_group_major, once per chunk).
  int32_t *out_a_rows = nullptr, *out_a_offsets = nullptr;  // [T·G] / [G + 1]
  // The shared expert's down-projection input (sh_mid), converted on the side stream while the
  // routed experts use in16 on the main stream: its own buffers, [T][F] / [T].
  __half *side16 = nullptr, *side16_lo = nullptr;
  float* side16_scale = nullptr;
  // gemm()'s split-K partials (gemm.h GemmSplitK), one buffer for the main stream and one for the
  // side stream, kSplitKFloats each.
  float *split_k = nullptr, *split_k_side = nullptr;
  // The routed pairs sorted by expert (gemm.h ExpertSort).
  int32_t *sort_offsets = nullptr, *sort_row_pair = nullptr, *sort_row_token = nullptr, *sort_pair_row = nullptr;
  float* sort_row_w = nullptr;            // [T·K] route weights in sorted order
  void* sort_workspace = nullptr;
};

// A split-K scratch's floats: the partials of 8 slices of 512 rows × 1 024 outputs, or 2 of 512 ×
// 4 096, or 16 of 128 × 2 048 (gemm() takes fewer slices where they do not fit).
inline constexpr int64_t kSplitKFloats = int64_t{4} << 20;

// Tokens per launch of the attention and indexer kernels inside a chunk (bounds their scratch).
inline constexpr int kSubChunk = 16;
inline constexpr int64_t kPrefillIndexLaunchBytes = int64_t{256} << 20;
// The prefill attention's split partials take more: each launch ends in a tail of part-empty waves
// (≈ 30 µs a launch on the H100), and 256 MB cut a 4096-token chunk into 11 launches per layer.
// 1 GB (3 launches): the attention stage −9 %, +0.8 GB at 4096-token chunks (docs/PERF.md, session 14).
inline constexpr int64_t kPrefillAttentionLaunchBytes = int64_t{1} << 30;

// Rows of state.logits_all: a chunk that wants every token's logits is at most this long (the
// session splits longer ones), so a long prefill chunk does not cost max_chunk·n_vocab floats.
inline constexpr int kMaxLogitsRows = 128;

class DeviceState {
 public:
  // A clear error with the missing amount when the device cannot hold it.
  // tensor_core: with the scratch of tensor-core prefill chunks (ChunkShape::tensor_core).
  // hidden_rows: with `hidden` (always for the MTP block's model).
  static Result<std::unique_ptr<DeviceState>> create(const DeviceModel& model, int64_t n_ctx, int max_chunk,
                                                     bool tensor_core, cudaStream_t stream, bool hidden_rows = false);
  // What create() with these arguments allocates: bytes() and checkpoint_bytes() of the state.
  struct Footprint {
    uint64_t bytes, checkpoint_bytes;
  };
  static Footprint footprint(const DeviceModel& model, int64_t n_ctx, int max_chunk, bool tensor_core,
                             bool hidden_rows = false);

  int64_t n_ctx() const { return n_ctx_; }
  int max_chunk() const { return max_chunk_; }
  // Longest chunk whose every-token logits fit logits_all.
  int max_logits_chunk() const { return std::min(max_chunk_, kMaxLogitsRows); }
  uint64_t bytes() const { return arena_.size(); }

  // Device scalars and buffers.
  int* pos = nullptr;          // position of the next token to evaluate
  int32_t* tokens = nullptr;   // [max_chunk] input tokens of the chunk
  float* logits = nullptr;     // [n_vocab] next-token logits of the last evaluated position
  float* logits_all = nullptr;  // [min(max_chunk, kMaxLogitsRows)][n_vocab]
  // The MTP pairs' hyper-connection states, [max_chunk][4D] (null unless made with hidden_rows): a
  // chunk of the main model leaves its final streams X there (before the head's collapse); the MTP
  // block's chunk reads its pairs' H there (MODEL.md §10.1).
  float* hidden = nullptr;
  // The first position of the raw window (MODEL.md §10.2: where the MTP block's window starts);
  // read by the attention only in the MTP block's chunks, 0 otherwise.
  int* window_start = nullptr;
  std::vector<LayerBuffers> layers;
  Scratch scratch;

  // The rollback region (logits, rings, frontiers): contiguous, checkpoint_bytes() long.
  uint8_t* checkpoint_region() const { return arena_.base(); }
  uint64_t checkpoint_bytes() const { return checkpoint_bytes_; }
  // What the decode step at position `pos` writes there (MODEL.md §12.2): the logits, ring row
  // pos mod window, and per compressor the slot of pos, or with ratio 4 the whole frontier when
  // pos ends a window (slots 0..3 then take 4..7). A speculative step's checkpoint copies only
  // these; CudaDeviceState.StepWriteSetCoversEveryChangedByte holds the kernels to the list.
  std::vector<RegionSpan> step_write_set(int64_t pos) const;
  // What a multi-token step of at most 4 tokens (kStepChunkMax) wrote for position `pos` that a
  // state without pos may still read (a rejected draft token, its spans restored from before the
  // step): ring row pos mod window; per compressor the slot of pos, which after a window's end
  // that is dropped too may hold a kept position of the current window (pos − r); and where pos
  // ends a ratio-4 window, the frontiers' previous-window slots 0..3. The step's tokens have
  // distinct slots, so these spans of its positions do not overlap. What else it wrote, compressed
  // rows, lies past the rows a state without pos holds (MODEL.md §12.2).
  std::vector<RegionSpan> draft_reject_set(int64_t pos) const;

  // Back to the empty sequence: frontiers (kv 0, gate -inf), logits 0, pos 0, window start 0 (queued on
  // stream).
  Status reset(cudaStream_t stream);

  // The state of n evaluated positions as a cpu::State (the backend-independent snapshot form),
  // and back. Both synchronise the stream.
  Status download(int64_t n, cpu::State& out, cudaStream_t stream) const;
  Status upload(const cpu::State& in, cudaStream_t stream);

 private:
  DeviceState(const DeviceModel& m, int64_t n_ctx, int max_chunk, bool tensor_core, bool hidden_rows)
      : model_(m), n_ctx_(n_ctx), max_chunk_(max_chunk), tensor_core_(tensor_core),
        hidden_rows_(hidden_rows || m.is_mtp_block()) {}
  uint64_t lay_out(uint8_t* base);

  const DeviceModel& model_;
  int64_t n_ctx_;
  int max_chunk_;
  bool tensor_core_;
  bool hidden_rows_;
  uint64_t checkpoint_bytes_ = 0;
  DeviceArena arena_;
};

}  // namespace dsv4::cuda
