// chunk_forward.h: the attention sub-layer (MODEL.md §7): hc_pre's xn, the compressors and the
// indexer's weights beside the q path, q_a / kv / q_b, the indexer, the sparse attention, the
// output projections, and hc_post with the FFN's collapse.
#include "cuda/attention.h"
#include "cuda/check.h"
#include "cuda/chunk_forward.h"
#include "cuda/compressor.h"
#include "cuda/matvec.h"
#include "cuda/norms.h"
#include "cuda/prefill_indexer.h"

namespace dsv4::cuda {

Status ChunkForward::output_a(const DeviceTensor& out_a, bool fed) {
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
  // Slot t·G + g is group g of token t: tokens 2i and 2i + 1 of a group share its weights (an odd
  // count's last token alone).
  if (T_ > 1) oa.pair_stride = static_cast<int>(G);
  return matvec_experts(oa, sc_.low, stream_);
}

Status ChunkForward::attention_sublayer(int64_t l) {
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
  // A multi-token step normalises as the decode step does (the same bits), two tokens a launch.
  const DeviceTensor& qb = L.q_b;
  if ((T_ == 1 || shape_.step_kernels) && !scoring &&
      can_fuse_rms_norm(qb.type, qb.data, qb.ne0, qb.ne1, qkv.first, L.q_a_norm) && qkv.first_stride % 4 == 0) {
    for (int t = 0; t < T_; t += 2) {
      const int tokens = std::min(2, T_ - t);
      DSV4_TRY(matvec_rms_norm(qb.type, qb.data, qb.ne0, qb.ne1, qkv.first + t * qkv.first_stride, L.q_a_norm,
                               c_.rms_eps, sc_.q + t * qb.ne1, stream_, MatvecTuning{}, tokens, qkv.first_stride));
    }
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
  const bool prefill = T_ > 1 && !shape_.step_kernels && sc_.attn_tokens > 0;
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
    if (m_.is_mtp_block()) a.window_start = s_.window_start;
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

Status ChunkForward::compress(const PairedTensor& w, const float* ape, const float* norm, float* front_kv,
                              float* front_gate, float* rows, int64_t l, bool indexer, float* buf, float* buf2) {
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
  a.pooled = sc_.comp_pooled;
  a.counters = sc_.comp_counters;
  return compressor_chunk(a, stream_);
}

IndexerArgs ChunkForward::indexer_args(const LayerBuffers& B, int64_t l, int t0, int T) const {
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

Status ChunkForward::index(const LayerBuffers& B, int64_t l) {
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

}  // namespace dsv4::cuda
