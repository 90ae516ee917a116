// chunk_forward.h: the FFN sub-layer (MODEL.md §8): hc_pre's xn, the shared expert beside the
// router and the routed experts, and hc_post with the next layer's (or the head's) collapse.
#include "cuda/check.h"
#include "cuda/chunk_forward.h"
#include "cuda/matvec.h"
#include "cuda/moe.h"
#include "cuda/routed_experts.h"

namespace dsv4::cuda {

Status ChunkForward::ffn_sublayer(int64_t l) {
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
    ExpertMatvec fused = tensor_matvec(down);
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
  experts.as_steps = shape_.step_kernels;
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

}  // namespace dsv4::cuda
