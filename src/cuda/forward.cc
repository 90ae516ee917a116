// forward.h, in the order of MODEL.md §3 / cpu/forward.cc: the chunk's model-level steps (the
// embedding, the hyper-connections' collapses, the head); the sub-layers are forward_attention.cc
// (§7) and forward_ffn.cc (§8), the class chunk_forward.h.
#include "cuda/forward.h"

#include <algorithm>
#include <utility>

#include "cuda/check.h"
#include "cuda/chunk_forward.h"
#include "cuda/fill.h"
#include "cuda/hc.h"
#include "cuda/matvec.h"
#include "cuda/mtp_input.h"
#include "cuda/norms.h"

namespace dsv4::cuda {

ExpertMatvec tensor_matvec(const DeviceTensor& w) {
  ExpertMatvec m;
  m.type = w.type;
  m.w = w.data;
  m.n_in = w.ne0;
  m.n_out = w.ne1;
  m.n_expert = w.ne2;
  return m;
}

Status project(const DeviceTensor& w, const float* x, int T, float* y, const int32_t* zeros, cudaStream_t stream,
               bool as_steps) {
  if (T == 1) return matvec(w.type, w.data, w.ne0, w.ne1, x, y, stream);
  ExpertMatvec m = tensor_matvec(w);
  m.n_expert = 1;
  m.n_slots = T;
  m.x = x;
  m.x_stride = w.ne0;
  // Tokens 2i and 2i + 1 share the weights: where the kernel can, each is decoded once for both
  // (an odd count's last token alone).
  m.pair_stride = 1;
  m.experts = zeros;  // slab 0 for every slot
  if (as_steps) {
    // A one-token step's F16 launch on the F16 row tile: a multi-token step's takes it too, a pair
    // of tokens (or the last, odd one) a launch, so that each token has the bits of its own step.
    const Result<MatvecPlan> one = plan_matvec(w.type, w.ne0, w.ne1, 1);
    if (one.ok() && one->rows_per_warp == 32 && w.type == TensorType::F16) {
      m.experts = nullptr;  // a dense pair (or token): its weights fetched before the kernel ahead of it ends
      for (int t = 0; t < T; t += 2) {
        m.n_slots = std::min(2, T - t);
        m.pair_stride = m.n_slots == 2 ? 1 : 0;
        m.x = x + t * w.ne0;
        DSV4_TRY(matvec_experts(m, y + t * w.ne1, stream));
      }
      return Status();
    }
  }
  return matvec_experts(m, y, stream);
}

bool chunk_needs_index_scoring(const model::Config& c, int64_t pos0, int T) {
  for (int64_t l = 0; l < c.n_layer; ++l) {
    if (c.ratio(l) == 4) return (pos0 + T) / 4 > c.index_top_k;
  }
  return false;
}

Status ChunkForward::run() {
  if (profile_) DSV4_TRY(profile_->start(stream_));
  DSV4_TRY(m_.is_mtp_block() ? mtp_input() : embed_tokens(m_.token_embd, s_.tokens, T_, x_, stream_));
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
  if (s_.hidden && !m_.is_mtp_block()) {
    DSV4_CUDA_TRY(cudaMemcpyAsync(s_.hidden, x_, sizeof(float) * T_ * 4 * c_.n_embd, cudaMemcpyDeviceToDevice,
                                  stream_));
  }
  if (!shape_.no_logits) {
    DSV4_TRY(head());
    DSV4_TRY(mark("head"));
  }
  return advance_position(s_.pos, T_, stream_);
}

Status ChunkForward::mtp_input() {
  const MtpInput& in = m_.mtp_input;
  const int64_t D = c_.n_embd, HD = 4 * D;
  // E' = e_proj·RMSNorm_enorm(Embed[t]) into the head's rows (free until the head).
  DSV4_TRY(embed_tokens(m_.token_embd, s_.tokens, T_, x_next_, stream_));
  DSV4_TRY(rms_norm_rows(x_next_, HD, in.enorm, D, c_.rms_eps, sc_.xn, D, T_, stream_));
  DSV4_TRY(convert_xn());
  DSV4_TRY(dense(in.e_proj, sc_.xn, sc_.head));
  // X[h] = E' + h_proj·RMSNorm_hnorm(H[h]), stream by stream (hnorm per stream, MODEL.md §6).
  for (int h = 0; h < 4; ++h) {
    DSV4_TRY(rms_norm_rows(s_.hidden + h * D, HD, in.hnorm, D, c_.rms_eps, sc_.xn, D, T_, stream_));
    DSV4_TRY(convert_xn());
    DSV4_TRY(dense(in.h_proj, sc_.xn, sc_.out));
    DSV4_TRY(add_stream_rows(sc_.head, sc_.out, x_ + h * D, HD, T_, D, stream_));
  }
  return mark("mtp input");
}

Status ChunkForward::dense(const DeviceTensor& w, const float* x, float* y, GemmInput in) {
  if (!takes(w)) return project(w, x, T_, y, sc_.zeros, stream_, shape_.step_kernels);
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

Result<PairOut> ChunkForward::dense_pair(const PairedTensor& p, const float* x, float* buf, float* buf2) {
  if (p.fused()) {
    DSV4_TRY(dense(p.both, x, buf));
    return PairOut{buf, buf + p.a.ne1, p.both.ne1, p.both.ne1};
  }
  DSV4_TRY(dense(p.a, x, buf));
  DSV4_TRY(dense(p.b, x, buf2));
  return PairOut{buf, buf2, p.a.ne1, p.b.ne1};
}

Status ChunkForward::finish_collapse(NextHc next) {
  HcPreArgs& a = next.args;
  a.x = x_;
  if (!next.head) return hc_pre_from_partials(a, stream_);
  const int first = shape_.all_logits ? 0 : T_ - 1;
  a.x = x_ + first * 4 * c_.n_embd;
  a.partial = sc_.hc_partial + hc_partial_doubles(first, c_.n_embd, kHcStreams);
  a.T = T_ - first;
  return hc_head_from_partials(a, stream_);
}

Status ChunkForward::post(const float* f, int n_parts, const float* extra, NextHc next) {
  HcPostArgs a;
  a.x = x_;
  a.f = f;
  a.n_parts = n_parts;
  a.f_extra = extra;
  a.mix = sc_.mix;
  a.out = x_next_;
  a.T = T_;
  a.D = c_.n_embd;
  // A multi-token step's collapses too (a cluster per token), but the head's: it collapses only the
  // last token, into the head's first row.
  const bool fused = T_ == 1 || (shape_.step_kernels && !next.head);
  if (fused && c_.n_embd <= kHcPostCollapseMaxDims) {
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

Status ChunkForward::head() {
  const int64_t V = c_.n_vocab;
  const int rows = shape_.all_logits ? T_ : 1;
  if (!shape_.all_logits) return project(m_.output, sc_.head, 1, s_.logits, sc_.zeros, stream_);
  if (rows > s_.max_logits_chunk()) return make_error("cuda forward: chunk too long for every token's logits");
  DSV4_TRY(dense(m_.output, sc_.head, s_.logits_all));
  return cuda_status(cudaMemcpyAsync(s_.logits, s_.logits_all + (T_ - 1) * V, V * sizeof(float),
                                     cudaMemcpyDeviceToDevice, stream_),
                     "logits copy");
}

Status forward_chunk(const DeviceModel& model, DeviceState& state, const ChunkShape& shape, const SimModes& modes,
                     cudaStream_t stream, StageProfile* profile, Branch* branch) {
  if (shape.T < 1 || shape.T > state.max_chunk()) return make_error("cuda forward: chunk length out of range");
  return ChunkForward(model, state, shape, modes, stream, profile, branch).run();
}

}  // namespace dsv4::cuda
