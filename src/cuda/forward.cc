// forward.h, in the order of MODEL.md §3 / cpu/forward.cc.
#include "cuda/forward.h"

#include <algorithm>
#include <utility>

#include "cuda/attention.h"
#include "cuda/branch.h"
#include "cuda/check.h"
#include "cuda/chunk_gemm.h"
#include "cuda/compressor.h"
#include "cuda/fill.h"
#include "cuda/gemm.h"
#include "cuda/hc.h"
#include "cuda/indexer.h"
#include "cuda/prefill_attention.h"
#include "cuda/prefill_indexer.h"
#include "cuda/matvec.h"
#include "cuda/moe.h"
#include "cuda/norms.h"
#include "cuda/routed_experts.h"

namespace dsv4::cuda {

Status project(const DeviceTensor& w, const float* x, int T, float* y, const int32_t* zeros, cudaStream_t stream) {
  if (T == 1) return matvec(w.type, w.data, w.ne0, w.ne1, x, y, stream);
  ExpertMatvec m;
  m.type = w.type;
  m.w = w.data;
  m.n_in = w.ne0;
  m.n_out = w.ne1;
  m.n_expert = 1;
  m.experts = zeros;
  m.n_slots = T;
  m.x = x;
  m.x_stride = w.ne0;
  return matvec_experts(m, y, stream);
}

bool chunk_needs_index_scoring(const model::Config& c, int64_t pos0, int T) {
  for (int64_t l = 0; l < c.n_layer; ++l) {
    if (c.ratio(l) == 4) return (pos0 + T) / 4 > c.index_top_k;
  }
  return false;
}

namespace {

// Floats of one indexer score row (IndexerArgs::score_cap): the state's capacity / 4, or for a
// chunk whose positions all lie below `end` (ChunkShape::end) the end / 4 rows its tokens can see,
// rounded up to a multiple of 64.
int64_t score_row_floats(int64_t score_cap, int64_t end) {
  if (end <= 0) return score_cap;
  return std::min(score_cap, (end / 4 + 63) / 64 * 64);
}

// Tensor-core chunks of at least this many tokens run their projections as GEMMs. The matvec over
// T token slots reads every weight T times (experts: once per routed slot), the GEMM once per tile
// of 64–128 rows, so it reads fewer weight bytes from 2 tokens on (the crossover in time was not
// measured; decode, T = 1, keeps the matvec and its graph).
constexpr int kGemmMinTokens = 2;

// Two projections of the same rows: one launch when they are stored back to back (token t's
// rows then sit side by side in buf), else two (into buf and buf2).
struct PairOut {
  float* first;
  float* second;
  int64_t first_stride, second_stride;
};

class ChunkForward {
 public:
  ChunkForward(const DeviceModel& m, DeviceState& s, const ChunkShape& shape, const SimModes& modes, cudaStream_t stream,
               StageProfile* profile, Branch* branch)
      : m_(m), c_(m.config), s_(s), sc_(s.scratch), shape_(shape), modes_(modes), stream_(stream), T_(shape.T),
        gemm_(shape.tensor_core && shape.T >= kGemmMinTokens && s.scratch.xn16 != nullptr),
        split_(shape.split_products), profile_(profile),
        branch_(profile ? nullptr : branch) {}

  Status run() {
    if (profile_) DSV4_TRY(profile_->start(stream_));
    DSV4_TRY(embed_tokens(m_.token_embd, s_.tokens, T_, x_, stream_));
    if (gemm_) {
      DSV4_TRY(fill_group_major(sc_.out_a_rows, sc_.out_a_offsets, T_, static_cast<int>(c_.n_out_group), stream_));
    }
    // The first sub-layer's hc_pre; every later collapse comes out of the hc_post before it (post()).
    DSV4_TRY(hc_mixer_partials(x_, m_.layers[0].hc_attn_fn, kHcMix, T_, c_.n_embd, sc_.hc_partial, stream_));
    DSV4_TRY(finish_collapse(attn_hc(0)));
    for (int64_t l = 0; l < c_.n_layer; ++l) {
      DSV4_TRY(attention_sublayer(l));
      DSV4_TRY(ffn_sublayer(l));
    }
    DSV4_TRY(head());
    DSV4_TRY(mark("head"));
    return advance_position(s_.pos, T_, stream_);
  }

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
  Status dense(const DeviceTensor& w, const float* x, float* y, GemmInput in) {
    if (!takes(w)) return project(w, x, T_, y, sc_.zeros, stream_);
    const __half* x16 = sc_.xn16;
    const __half* x16_lo = sc_.xn16_lo;
    const float* scale = sc_.xn16_scale;
    if (x != sc_.xn) {
      DSV4_TRY(convert(x, w.ne0, T_, w.ne0, in.hi, in.lo, in.scale));
      x16 = in.hi;
      x16_lo = in.lo;
      scale = in.scale;
    }
    return gemm(gemm_weights(w), x16, w.ne0, scale, T_, y, w.ne1, stream_, GemmTile::kAuto, lo_or_null(x16_lo),
                split_k_);
  }

  Result<PairOut> dense_pair(const PairedTensor& p, const float* x, float* buf, float* buf2) {
    if (p.fused()) {
      DSV4_TRY(dense(p.both, x, buf));
      return PairOut{buf, buf + p.a.ne1, p.both.ne1, p.both.ne1};
    }
    DSV4_TRY(dense(p.a, x, buf));
    DSV4_TRY(dense(p.b, x, buf2));
    return PairOut{buf, buf2, p.a.ne1, p.b.ne1};
  }

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
  Status output_a(const DeviceTensor& out_a, bool fed) {
    const int64_t G = c_.n_out_group, O = c_.o_lora_rank, n_in = out_a.ne0;
    if (out_a_gemm(out_a)) {
      if (!fed) DSV4_TRY(convert(sc_.attn, n_in, T_ * G, n_in, sc_.in16, sc_.in16_lo, sc_.in16_scale));
      GroupedGemm gg;
      gg.w = GemmWeights{out_a.type, out_a.data, n_in, O, G};
      gg.n_groups = static_cast<int>(G);
      gg.offsets = sc_.out_a_offsets;
      gg.n_rows = T_ * G;
      gg.x = sc_.in16;
      gg.x_lo = lo_or_null(sc_.in16_lo);
      gg.x_stride = n_in;
      gg.x_scale = sc_.in16_scale;
      gg.x_rows = sc_.out_a_rows;
      gg.x_count = T_ * G;
      gg.y = sc_.low;
      gg.y_stride = O;
      gg.y_rows = sc_.out_a_rows;
      gg.y_count = T_ * G;
      return grouped_gemm(gg, stream_);
    }
    ExpertMatvec oa;
    oa.type = out_a.type;
    oa.w = out_a.data;
    oa.n_in = n_in;
    oa.n_out = O;
    oa.n_expert = G;
    // One token: group g is slot g, no id list, so the launch fetches weights before the wait (PDL).
    oa.experts = T_ == 1 ? nullptr : sc_.groups;
    oa.n_slots = static_cast<int>(T_ * G);
    oa.x = sc_.attn;
    oa.x_stride = n_in;
    return matvec_experts(oa, sc_.low, stream_);
  }

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
  Status finish_collapse(NextHc next) {
    HcPreArgs& a = next.args;
    a.x = x_;
    if (!next.head) return hc_pre_from_partials(a, stream_);
    const int first = shape_.all_logits ? 0 : T_ - 1;
    a.x = x_ + first * 4 * c_.n_embd;
    a.partial = sc_.hc_partial + hc_partial_doubles(first, c_.n_embd, kHcStreams);
    a.T = T_ - first;
    return hc_head_from_partials(a, stream_);
  }

  // §5.3's Sinkhorn of the comb logits the collapse left in mix: only the sub-layer's hc_post reads
  // comb, so it runs beside the sub-layer (on the side stream where there is one, first thing).
  Status sinkhorn() { return hc_comb(sc_.mix, T_, c_.hc_eps, static_cast<int>(c_.sinkhorn_iters), stream_); }

  // X <- hc_post(X, f) (§5.4), then the collapse `next` of the new X: for one token one clustered
  // launch (hc_post_collapse: the two launches cost more than their work), for longer chunks
  // hc_post leaving next's partial sums and the collapse finished from them.
  Status post(const float* f, int n_parts, const float* extra, NextHc next) {
    HcPostArgs a;
    a.x = x_;
    a.f = f;
    a.n_parts = n_parts;
    a.f_extra = extra;
    a.mix = sc_.mix;
    a.out = x_next_;
    a.T = T_;
    a.D = c_.n_embd;
    if (T_ == 1 && c_.n_embd <= kHcPostCollapseMaxDims) {
      DSV4_TRY(hc_post_collapse(a, next.args, next.head, stream_));
      std::swap(x_, x_next_);
      return mark("hc_post + hc_pre");
    }
    a.next_fn = &next.args.fn;
    a.next_M = next.head ? kHcStreams : kHcMix;
    a.partial = sc_.hc_partial;
    DSV4_TRY(hc_post(a, stream_));
    std::swap(x_, x_next_);
    DSV4_TRY(mark("hc_post"));
    return finish_collapse(next);
  }

  Status attention_sublayer(int64_t l) {
    const DeviceLayer& L = m_.layers[static_cast<size_t>(l)];
    LayerBuffers& B = s_.layers[static_cast<size_t>(l)];
    const int64_t R = c_.q_lora_rank, hd = c_.head_dim, H = c_.n_head;
    const int64_t ratio = c_.ratio(l);
    const float* omega = m_.omega(l);
    // xn = hc_pre(X; hc_attn_*) and mix came out of the hc_post before (post()).
    DSV4_TRY(convert_xn());
    DSV4_TRY(mark("hc_pre"));

    // §7.6-7.7 and the indexer's weights read only xn: beside the q path (after hc_pre's
    // Sinkhorn). Compressors run before any attention of the chunk.
    const bool scoring = ratio == 4 && shape_.index_scoring;
    DSV4_TRY(fork([&]() -> Status {
      DSV4_TRY(sinkhorn());
      if (ratio != 0) {
        DSV4_TRY(compress(L.comp, L.comp_ape, L.comp_norm, B.comp_kv, B.comp_gate, B.comp_rows, l, false,
                          sc_.comp_proj, sc_.comp_proj2));
      }
      if (ratio == 4) {
        DSV4_TRY(compress(L.index_comp, L.index_comp_ape, L.index_comp_norm, B.index_kv, B.index_gate, B.index_rows,
                          l, true, sc_.index_proj, sc_.index_proj2));
      }
      if (scoring) DSV4_TRY(dense(L.index_proj, sc_.xn, sc_.iw));
      return mark("compressors");
    }));

    // §7.2-7.3: q_a and kv read the same x.
    DSV4_ASSIGN_OR_RETURN(PairOut qkv, dense_pair(L.q_a_kv, sc_.xn, sc_.qa, sc_.kv_raw));
    // Decode: q_b normalises q_a itself as it stages it (one launch less), except where the
    // indexer's q_b needs qr anyway: there q_b reads it too (measured 0.013 ms per step faster than
    // the fused form beside the norm launch, whose warps each recompute the norm; docs/PERF.md).
    const DeviceTensor& qb = L.q_b;
    if (T_ == 1 && !scoring && can_fuse_rms_norm(qb.type, qb.data, qb.ne0, qb.ne1, qkv.first, L.q_a_norm)) {
      DSV4_TRY(matvec_rms_norm(qb.type, qb.data, qb.ne0, qb.ne1, qkv.first, L.q_a_norm, c_.rms_eps, sc_.q, stream_));
    } else {
      DSV4_TRY(rms_norm_rows(qkv.first, qkv.first_stride, L.q_a_norm, R, c_.rms_eps, sc_.qr, R, T_, stream_));
      DSV4_TRY(dense(L.q_b, sc_.qr, sc_.q));
    }
    // The indexer's queries read only qr: before the join, which waits for the side stream's rows
    // and head weights (the decode step's CSA layers waited ≈ 7 µs for this projection after it).
    if (scoring) {
      DSV4_TRY(dense(L.index_q_b, sc_.qr, sc_.iq));
      if (!prefill_indexer()) DSV4_TRY(indexer_queries(indexer_args(B, l, 0, T_), stream_));
    }
    // §7.8-7.10 below: chunks of more than one token run the prefill kernel (all heads per block)
    // where the state sized its scratch for it; q_kv_finish leaves their queries split for it.
    const bool prefill = T_ > 1 && sc_.attn_tokens > 0;
    QkvFinishArgs qf;
    qf.q = sc_.q;
    if (prefill) qf.q_exp = sc_.q_exp;
    qf.kv_in = qkv.second;
    qf.kv_stride = qkv.second_stride;
    qf.kv_norm = L.kv_a_norm;
    qf.kv_out = sc_.kv;
    qf.omega = omega;
    qf.pos0 = s_.pos;
    qf.T = T_;
    qf.H = static_cast<int>(H);
    qf.hd = static_cast<int>(hd);
    qf.n_rot = static_cast<int>(c_.n_rot);
    qf.eps = c_.rms_eps;
    qf.fp8 = modes_.fp8_kv;
    DSV4_TRY(q_kv_finish(qf, stream_));
    DSV4_TRY(mark("q/kv projections + norms + rope"));
    DSV4_TRY(join());
    if (scoring) {
      DSV4_TRY(index(B, l));
      DSV4_TRY(mark("indexer"));
    }

    // §7.8-7.10, sub-chunks of tokens bound the split scratch (whole tokens need none).
    const bool whole = prefill && prefill_attention_whole_tokens(T_);
    const int sub = whole ? T_ : prefill ? sc_.attn_tokens : kSubChunk;
    const bool feeds_out_a = attention_feeds_out_a(L.out_a, prefill);
    for (int t0 = 0; t0 < T_; t0 += sub) {
      AttentionArgs a;
      a.q = sc_.q + t0 * H * hd;
      if (prefill) a.q_exp = sc_.q_exp + t0 * H;
      a.kv_chunk = sc_.kv;
      a.ring = B.ring;
      a.comp = B.comp_rows;
      a.selected = sc_.selected;
      a.sinks = L.sinks;
      a.omega = omega;
      a.pos0 = s_.pos;
      a.t0 = t0;
      a.part_o = sc_.part_o;
      a.part_ml = sc_.part_ml;
      a.out = sc_.attn + t0 * H * hd;
      a.T = std::min(sub, T_ - t0);
      a.H = static_cast<int>(H);
      a.hd = static_cast<int>(hd);
      a.n_rot = static_cast<int>(c_.n_rot);
      a.window = static_cast<int>(c_.window);
      a.ratio = static_cast<int>(ratio);
      a.top_k = static_cast<int>(c_.index_top_k);
      a.splits = prefill ? B.prefill_splits : B.attn_splits;
      a.whole_tokens = whole;
      if (T_ == 1) a.store_ring = B.ring;
      if (feeds_out_a) {
        a.out16 = sc_.in16 + t0 * H * hd;
        a.out16_lo = split_ ? sc_.in16_lo + t0 * H * hd : nullptr;
        a.out16_scale = sc_.in16_scale + t0 * c_.n_out_group;
        a.out16_group = static_cast<int>(H / c_.n_out_group);
      }
      // The layer's rows are split once, for all its launches.
      if (prefill && t0 == 0) DSV4_TRY(prefill_attention_rows(a, T_, sc_.attn_rows, stream_));
      DSV4_TRY(prefill ? prefill_attention(a, sc_.attn_rows, stream_) : attention(a, stream_));
    }
    // A longer chunk's raw rows enter the ring only after every token of the chunk has attended.
    if (T_ > 1) {
      DSV4_TRY(store_raw_rows(sc_.kv, B.ring, s_.pos, T_, static_cast<int>(c_.window), static_cast<int>(hd), stream_));
    }
    DSV4_TRY(mark("attention"));

    DSV4_TRY(output_a(L.out_a, feeds_out_a));
    DSV4_TRY(dense(L.out_b, sc_.low, sc_.out));
    DSV4_TRY(mark("output projections"));
    return post(sc_.out, 1, nullptr, ffn_hc(l));
  }

  Status compress(const PairedTensor& w, const float* ape, const float* norm, float* front_kv, float* front_gate,
                  float* rows, int64_t l, bool indexer, float* buf, float* buf2) {
    DSV4_ASSIGN_OR_RETURN(PairOut p, dense_pair(w, sc_.xn, buf, buf2));
    CompressorArgs a;
    a.kv = p.first;
    a.gate = p.second;
    if (p.first_stride != p.second_stride) return make_error("cuda forward: compressor kv/gate widths differ");
    a.proj_stride = p.first_stride;
    a.ape = ape;
    a.front_kv = front_kv;
    a.front_gate = front_gate;
    a.norm = norm;
    a.rows = rows;
    a.omega = m_.omega(l);
    a.pos0 = s_.pos;
    a.T = T_;
    a.ratio = static_cast<int>(c_.ratio(l));
    a.d = static_cast<int>(indexer ? c_.index_head_dim : c_.head_dim);
    a.n_rot = static_cast<int>(c_.n_rot);
    a.indexer = indexer;
    a.sim = indexer ? modes_.fp4_indexer : modes_.fp8_kv;
    a.eps = c_.rms_eps;
    return compressor_chunk(a, stream_);
  }

  // Chunks of more than one token: the tiled prefill scores (prefill_indexer.h, which prepares its
  // own queries).
  bool prefill_indexer() const { return T_ > 1 && sc_.index_tokens > 0; }

  // The indexer's launch of tokens t0 .. t0 + T - 1 of the chunk.
  IndexerArgs indexer_args(const LayerBuffers& B, int64_t l, int t0, int T) const {
    const int64_t IH = c_.n_index_head, idh = c_.index_head_dim;
    IndexerArgs a;
    a.q = sc_.iq + t0 * IH * idh;
    a.w = sc_.iw + t0 * IH;
    a.rows = B.index_rows;
    a.scores = sc_.scores;
    a.selected = sc_.selected + static_cast<int64_t>(t0) * c_.index_top_k;
    a.omega = m_.omega(l);
    a.pos0 = s_.pos;
    a.t0 = t0;
    a.T = T;
    a.IH = static_cast<int>(IH);
    a.idh = static_cast<int>(idh);
    a.n_rot = static_cast<int>(c_.n_rot);
    a.top_k = static_cast<int>(c_.index_top_k);
    a.score_cap = score_row_floats(sc_.score_cap, shape_.end);
    a.sim = modes_.fp4_indexer;
    if (!prefill_indexer()) a.topk_scratch = sc_.topk_scratch;  // launches of kSubChunk tokens at most
    return a;
  }

  // The head weights (sc_.iw) were projected beside the q path; the queries (sc_.iq) after it, and
  // (but for the prefill scores) prepared there (indexer_queries).
  Status index(const LayerBuffers& B, int64_t l) {
    // Sub-chunks as long as the state's score scratch allows: its rows as long as the chunk's
    // positions need where the host knows them, ChunkShape::end.
    const bool prefill = prefill_indexer();
    const int64_t score_cap = score_row_floats(sc_.score_cap, shape_.end);
    int sub = kSubChunk;  // tokens a launch: as many score rows as the scratch holds
    if (prefill) sub = static_cast<int>(std::min<int64_t>(T_, int64_t{sc_.index_tokens} * sc_.score_cap / score_cap));
    // The rows the whole chunk ranks, split once for all its launches.
    if (prefill) DSV4_TRY(prefill_indexer_rows(indexer_args(B, l, 0, T_), sc_.index_split, stream_));
    for (int t0 = 0; t0 < T_; t0 += sub) {
      const IndexerArgs a = indexer_args(B, l, t0, std::min(sub, T_ - t0));
      DSV4_TRY(prefill ? prefill_indexer_select(a, sc_.index_n, sc_.index_split, stream_) : indexer_rank(a, stream_));
    }
    return Status();
  }

  Status ffn_sublayer(int64_t l) {
    const DeviceLayer& L = m_.layers[static_cast<size_t>(l)];
    const int64_t E = c_.n_expert, K = c_.n_expert_used, F = c_.n_ff_expert;
    const float limit = c_.swiglu_clamp[static_cast<size_t>(l)];
    // xn = hc_pre(X; hc_ffn_*) and mix came out of the attention's hc_post (post()).
    DSV4_TRY(convert_xn());
    DSV4_TRY(mark("hc_pre"));

    // §8.6 shared expert (after hc_pre's Sinkhorn), beside the router and the routed experts (its
    // GEMM form converts its down input into side16, not the routed GEMMs' in16). Decode: the down
    // projection stages SwiGLU(gate, up) itself (the same bits in one launch less) and runs on the
    // main stream between the routed gate/up and down launches, each following the one before by
    // PDL: on the side stream beside the routed down projection the step was 0.06–0.08 ms longer
    // (docs/PERF.md, session 21); the four MoE matvecs take turns for the SMs either way.
    const DeviceTensor& down = L.shexp_down;
    PairOut sh{};
    bool down_in_line = false;
    auto shared_expert = [&]() -> Status {
      DSV4_TRY(sinkhorn());
      DSV4_ASSIGN_OR_RETURN(sh, dense_pair(L.shexp_gate_up, sc_.xn, sc_.sh_gu, sc_.sh_gu + T_ * F));
      SwigluArgs ss;
      ss.gate = sh.first;
      ss.up = sh.second;
      if (sh.first_stride != sh.second_stride) return make_error("cuda forward: shared gate/up widths differ");
      ExpertMatvec fused;
      fused.type = down.type;
      fused.w = down.data;
      fused.n_in = down.ne0;
      fused.n_out = down.ne1;
      fused.n_slots = 1;
      fused.x = sh.first;
      fused.up = sh.second;
      if (T_ == 1 && can_fuse_swiglu(fused)) {
        down_in_line = true;
        return Status();
      }
      ss.stride = sh.first_stride;
      ss.out = sc_.sh_mid;
      ss.n_slots = T_;
      ss.F = F;
      ss.limit = limit;
      DSV4_TRY(swiglu(ss, stream_));
      DSV4_TRY(dense(L.shexp_down, sc_.sh_mid, sc_.shared, GemmInput{sc_.side16, sc_.side16_lo, sc_.side16_scale}));
      return mark("shared expert");
    };
    DSV4_TRY(fork(shared_expert));

    // §8.2-8.4 routing.
    DSV4_TRY(dense(L.gate_inp, sc_.xn, sc_.router));
    RouteArgs ra;
    ra.logits = sc_.router;
    ra.bias = c_.is_hash_layer(l) ? nullptr : L.exp_probs_b;
    ra.tid2eid = L.tid2eid;
    ra.tokens = s_.tokens;
    ra.experts = sc_.experts;
    ra.weights = sc_.route_w;
    ra.T = T_;
    ra.E = static_cast<int>(E);
    ra.K = static_cast<int>(K);
    ra.normalize = c_.expert_weights_norm;
    ra.scale = c_.expert_weights_scale;
    DSV4_TRY(moe_route(ra, stream_));
    DSV4_TRY(mark("router"));

    // §8.5 routed experts: gate/up of the selected slabs, the weighted activation, down.
    RoutedExpertsStep experts;
    experts.config = &c_;
    experts.layer = &L;
    experts.scratch = &sc_;
    experts.T = T_;
    experts.limit = limit;
    experts.split = split_;
    experts.stream = stream_;
    const PairedTensor& gu = L.gate_up_exps;
    if (takes(L.down_exps) && (gu.fused() ? takes(gu.both) : takes(gu.a) && takes(gu.b))) {
      DSV4_TRY(routed_experts_grouped(experts));  // T ≥ kGemmMinTokens: never down_in_line
    } else {
      if (down_in_line) {
        experts.before_down = [&]() -> Status {
          DSV4_TRY(join());
          return matvec_swiglu(down.type, down.data, down.ne0, down.ne1, sh.first, sh.second, limit, sc_.shared,
                               stream_);
        };
      }
      DSV4_TRY(routed_experts_matvec(experts));
    }
    DSV4_TRY(mark("routed experts"));

    DSV4_TRY(join());

    // §8.7: f = Σ routed (slot order) + shared, then hc_post and the next layer's (or the head's) collapse.
    const bool last = l + 1 == c_.n_layer;
    return post(sc_.ydown, static_cast<int>(K), sc_.shared, last ? head_hc() : attn_hc(l + 1));
  }

  // §9 on the rows hc_head left in sc_.head (the last layer's post()).
  Status head() {
    const int64_t V = c_.n_vocab;
    const int rows = shape_.all_logits ? T_ : 1;
    if (!shape_.all_logits) return project(m_.output, sc_.head, 1, s_.logits, sc_.zeros, stream_);
    if (rows > s_.max_logits_chunk()) return make_error("cuda forward: chunk too long for every token's logits");
    DSV4_TRY(dense(m_.output, sc_.head, s_.logits_all));
    return cuda_status(cudaMemcpyAsync(s_.logits, s_.logits_all + (T_ - 1) * V, V * sizeof(float),
                                       cudaMemcpyDeviceToDevice, stream_),
                       "logits copy");
  }

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

}  // namespace

Status forward_chunk(const DeviceModel& model, DeviceState& state, const ChunkShape& shape, const SimModes& modes,
                     cudaStream_t stream, StageProfile* profile, Branch* branch) {
  if (shape.T < 1 || shape.T > state.max_chunk()) return make_error("cuda forward: chunk length out of range");
  return ChunkForward(model, state, shape, modes, stream, profile, branch).run();
}

}  // namespace dsv4::cuda
