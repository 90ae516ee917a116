// The CUDA forward pass's chunk (forward.h's forward_chunk): the class whose methods queue the
// chunk's kernels in the order of MODEL.md §3-§9, the model-level steps in forward.cc, the
// attention sub-layer (§7) in forward_attention.cc, the FFN sub-layer (§8) in forward_ffn.cc.
// Internal to cuda/.
#pragma once

#include <cuda_fp16.h>
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstdint>
#include <utility>

#include "cuda/branch.h"
#include "cuda/chunk_gemm.h"
#include "cuda/device_model.h"
#include "cuda/device_state.h"
#include "cuda/forward.h"
#include "cuda/gemm.h"
#include "cuda/hc.h"
#include "cuda/indexer.h"
#include "cuda/prefill_attention.h"
#include "util/status.h"

namespace dsv4::cuda {

// Floats of one indexer score row (IndexerArgs::score_cap): the state's capacity / 4, or for a
// chunk whose positions all lie below `end` (ChunkShape::end) the end / 4 rows its tokens can see,
// rounded up to a multiple of 64.
inline int64_t score_row_floats(int64_t score_cap, int64_t end) {
  if (end <= 0) return score_cap;
  return std::min(score_cap, (end / 4 + 63) / 64 * 64);
}

// Tensor-core chunks of at least this many tokens run their projections as GEMMs. The matvec over
// T token slots reads every weight T times (experts: once per routed slot), the GEMM once per tile
// of 64–128 rows. In time (H200, full flash-q2, docs/PERF.md session 35) a whole chunk on the
// matvec is faster at 2 and 4 tokens (17.6 / 27.8 ms against 27.4 / 31.8) and slower from 8 on; but
// DeviceSession runs chunks of up to kStepChunkMax tokens as multi-token steps (faster than both),
// so only chunks with every token's logits reach this path that short. Decode, T = 1, keeps the
// matvec and its graph.
inline constexpr int kGemmMinTokens = 2;

// Two projections of the same rows: one launch when they are stored back to back (token t's
// rows then sit side by side in buf), else two (into buf and buf2).
struct PairOut {
  float* first;
  float* second;
  int64_t first_stride, second_stride;
};

// One chunk's forward pass queued on a stream (forward_chunk makes one per call): the state,
// the scratch, the chunk's shape and the two streams it works on.
class ChunkForward {
 public:
  ChunkForward(const DeviceModel& m, DeviceState& s, const ChunkShape& shape, const SimModes& modes,
               cudaStream_t stream, StageProfile* profile, Branch* branch)
      : m_(m), c_(m.config), s_(s), sc_(s.scratch), shape_(shape), modes_(modes), stream_(stream), T_(shape.T),
        gemm_(shape.tensor_core && !shape.step_kernels && shape.T >= kGemmMinTokens && s.scratch.xn16 != nullptr),
        split_(shape.split_products), profile_(profile),
        branch_(profile ? nullptr : branch) {}

  // §3: the embedding (the MTP block: its input, §10.1), the layers' two sub-layers, the head.
  Status run();

 private:
  Status mark(const char* stage) { return profile_ ? profile_->mark(stage, stream_) : Status(); }

  // Queues `side` on the side stream, after everything queued so far, when there is one (else in
  // line). The main stream goes on with what does not read side's results; join() before it does.
  template <class Side>
  Status fork(Side&& side) {
    if (!branch_) return side();
    DSV4_TRY(branch_->fork(stream_));
    cudaStream_t main = std::exchange(stream_, branch_->stream());
    const GemmSplitK main_split_k = std::exchange(split_k_, GemmSplitK{sc_.split_k_side, split_k_bytes()});
    const Status queued = side();
    stream_ = main;
    split_k_ = main_split_k;
    return queued;
  }
  Status join() { return branch_ ? branch_->join(stream_) : Status(); }

  // Whether a chunk GEMM takes w (in the chunk's mode).
  bool takes(const DeviceTensor& w) const { return gemm_ && gemm_takes(w, split_); }
  Status convert(const float* x, int64_t stride, int64_t rows, int64_t cols, __half* hi, __half* lo, float* scale) {
    return convert_gemm_input(split_, x, stride, rows, cols, hi, lo, scale, stream_);
  }
  const __half* lo_or_null(const __half* lo) const { return split_ ? lo : nullptr; }

  // The f16 copy of xn that every GEMM reading xn shares (after each hc_pre).
  Status convert_xn() {
    if (!gemm_) return Status();
    return convert(sc_.xn, c_.n_embd, T_, c_.n_embd, sc_.xn16, sc_.xn16_lo, sc_.xn16_scale);
  }

  // Where dense() converts an input other than xn: in16 on the main stream, the side branch's
  // own buffers beside it.
  struct GemmInput {
    __half* hi;
    __half* lo;
    float* scale;
  };

  // y[t] = W·x[t] for the chunk's T rows (x rows of W.ne0 values, y rows of W.ne1): tensor-core
  // GEMM for a prefill chunk, else (decode, or a shape the GEMM does not take) the matvec.
  Status dense(const DeviceTensor& w, const float* x, float* y) {
    return dense(w, x, y, GemmInput{sc_.in16, sc_.in16_lo, sc_.in16_scale});
  }
  Status dense(const DeviceTensor& w, const float* x, float* y, GemmInput in);

  Result<PairOut> dense_pair(const PairedTensor& p, const float* x, float* buf, float* buf2);

  // Whether out_a runs as G GEMMs on the chunk (else the grouped matvec).
  bool out_a_gemm(const DeviceTensor& out_a) const {
    return takes(out_a) && c_.o_lora_rank * out_a.row_bytes % 16 == 0;
  }
  // Whether the prefill attention writes out_a's GEMM input itself (AttentionArgs::out16: per token
  // and group a row factor, in16_scale [T_][G]) instead of f32 rows for convert().
  bool attention_feeds_out_a(const DeviceTensor& out_a, bool prefill_attention) const {
    const int64_t G = c_.n_out_group, H = c_.n_head;
    return prefill_attention && out_a_gemm(out_a) && H % G == 0 && out_a.ne0 == H / G * c_.head_dim &&
           prefill_attention_f16_output_supported(static_cast<int>(H / G), static_cast<int>(c_.head_dim));
  }

  // §7.11: wo_a row block g reads only the heads of group g (G "experts" of o_rank rows). A chunk's
  // attn rows are T·G rows of n_in (row t·G + g: token t's heads of group g), converted with a factor
  // each (fed: the attention wrote them): one grouped GEMM over them, group g's rows t·G + g in
  // token order (out_a_rows), into low's rows of o_rank likewise. (G GEMMs of T rows each filled
  // only T/128 · o_rank/128 CTAs: 32 of the H200's 132 at T = 512.) Decode: one grouped matvec.
  Status output_a(const DeviceTensor& out_a, bool fed);

  HcPreArgs hc_args(const DeviceTensor& fn, const float* scale, const float* base, const float* norm) const {
    HcPreArgs a;
    a.x = x_;
    a.fn = fn;
    a.scale = scale;
    a.base = base;
    a.norm = norm;
    a.partial = sc_.hc_partial;
    a.mix = sc_.mix;
    a.out = sc_.xn;
    a.T = T_;
    a.D = c_.n_embd;
    a.rms_eps = c_.rms_eps;
    a.hc_eps = c_.hc_eps;
    a.sinkhorn_iters = static_cast<int>(c_.sinkhorn_iters);
    return a;
  }

  // The collapse that opens a sub-layer, hc_pre (§5.2-5.3: xn and mix), or after the last layer
  // the head's hc_head (§5.5: sc_.head).
  struct NextHc {
    HcPreArgs args;
    bool head = false;
  };
  NextHc attn_hc(int64_t l) const {
    const DeviceLayer& L = m_.layers[static_cast<size_t>(l)];
    return {hc_args(L.hc_attn_fn, L.hc_attn_scale, L.hc_attn_base, L.attn_norm), false};
  }
  NextHc ffn_hc(int64_t l) const {
    const DeviceLayer& L = m_.layers[static_cast<size_t>(l)];
    return {hc_args(L.hc_ffn_fn, L.hc_ffn_scale, L.hc_ffn_base, L.ffn_norm), false};
  }
  NextHc head_hc() const {
    HcPreArgs a = hc_args(m_.output_hc_fn, m_.output_hc_scale, m_.output_hc_base, m_.output_norm);
    a.mix = nullptr;
    a.out = sc_.head;
    return {a, true};
  }

  // The collapse of X from the partial sums in sc_.hc_partial. The head collapses the rows whose
  // logits the chunk returns: all of them, or the last token's.
  Status finish_collapse(NextHc next);

  // §5.3's Sinkhorn of the comb logits the collapse left in mix: only the sub-layer's hc_post reads
  // comb, so it runs beside the sub-layer (on the side stream where there is one, first thing).
  Status sinkhorn() { return hc_comb(sc_.mix, T_, c_.hc_eps, static_cast<int>(c_.sinkhorn_iters), stream_); }

  // X <- hc_post(X, f) (§5.4), then the collapse `next` of the new X: for one token one clustered
  // launch (hc_post_collapse: the two launches cost more than their work; a multi-token step's
  // tokens one cluster each), for longer chunks hc_post leaving next's partial sums and the
  // collapse finished from them.
  Status post(const float* f, int n_parts, const float* extra, NextHc next);

  // forward_attention.cc: §7, and the compressors' and indexer's steps it queues.
  Status attention_sublayer(int64_t l);

  Status compress(const PairedTensor& w, const float* ape, const float* norm, float* front_kv, float* front_gate,
                  float* rows, int64_t l, bool indexer, float* buf, float* buf2);

  // Chunks of more than one token: the tiled prefill scores (prefill_indexer.h, which prepares its
  // own queries).
  bool prefill_indexer() const { return T_ > 1 && !shape_.step_kernels && sc_.index_tokens > 0; }

  // The indexer's launch of tokens t0 .. t0 + T - 1 of the chunk.
  IndexerArgs indexer_args(const LayerBuffers& B, int64_t l, int t0, int T) const;

  // The head weights (sc_.iw) were projected beside the q path; the queries (sc_.iq) after it, and
  // (but for the prefill scores) prepared there (indexer_queries).
  Status index(const LayerBuffers& B, int64_t l);

  // forward_ffn.cc: §8.
  Status ffn_sublayer(int64_t l);

  // §9 on the rows hc_head left in sc_.head (the last layer's post()).
  Status head();

  // §10.1: the MTP block's input streams X from the pairs' H (s_.hidden) and next tokens (s_.tokens).
  Status mtp_input();

  const DeviceModel& m_;
  const model::Config& c_;
  DeviceState& s_;
  Scratch& sc_;
  ChunkShape shape_;
  SimModes modes_;
  cudaStream_t stream_;
  int T_;
  bool gemm_;   // the chunk's projections run as tensor-core GEMMs
  bool split_;  // in the GEMMs' split mode (f32-level products)
  StageProfile* profile_;
  Branch* branch_;  // the side stream of fork(); none: everything in line on stream_
  float* x_ = sc_.x;
  float* x_next_ = sc_.x_next;
  // The current stream's split-K scratch (fork() switches it with the stream).
  static size_t split_k_bytes() { return static_cast<size_t>(kSplitKFloats) * sizeof(float); }
  GemmSplitK split_k_{sc_.split_k, split_k_bytes()};
};

}  // namespace dsv4::cuda
