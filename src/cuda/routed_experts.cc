// routed_experts.h.
#include "cuda/routed_experts.h"

#include "cuda/chunk_gemm.h"
#include "cuda/gemm.h"
#include "cuda/matvec.h"
#include "cuda/moe.h"

namespace dsv4::cuda {

// Decode, the f32 prefill, or expert shapes the GEMM does not take: the matvec over the chunk's
// (token, slot) pairs. A slot's input row is its token's xn row: decode reads xn for all K slots
// (stride 0), a longer chunk reads row t for token t's K slots where the kernel can (a few
// tokens' 2-bit row tiles), else replicates each row K times into ydown, free until the down
// projection writes it.
Status routed_experts_matvec(const RoutedExpertsStep& s) {
  const model::Config& c = *s.config;
  const DeviceLayer& L = *s.layer;
  Scratch& sc = *s.scratch;
  const int64_t D = c.n_embd, K = c.n_expert_used, F = c.n_ff_expert;
  const int TK = static_cast<int>(s.T * K);
  auto describe = [&](const DeviceTensor& w, int64_t n_in, int64_t n_out, const float* x, int64_t x_stride,
                      const int32_t* ids, int n_slots) {
    ExpertMatvec e;
    e.type = w.type;
    e.w = w.data;
    e.n_in = n_in;
    e.n_out = n_out;
    e.n_expert = w.ne2;
    e.experts = ids;
    e.n_slots = n_slots;
    e.x = x;
    e.x_stride = x_stride;
    return e;
  };
  // The down projection (slot j's x at x + j·x_stride, y rows of D). A multi-token step's T·K slots
  // whose activations the 2-bit row tile cannot stage together (from 3 tokens of 6 slots × 2048)
  // would run on another kernel, with other bits: there a launch for as many tokens as the row tile
  // stages (2 of the experts' shapes; its outputs are the bits of any launch of the same rows).
  auto down_launch = [&](const ExpertMatvec& down, float* y) -> Status {
    if (!s.as_steps || s.T == 1) return matvec_experts(down, y, s.stream);
    auto tokens = [&](int t, int n) {  // tokens t .. t + n − 1 of the launch
      ExpertMatvec part = down;
      part.n_slots = static_cast<int>(n * K);
      part.experts = down.experts + t * K;
      part.x = down.x + t * K * down.x_stride;
      if (part.up) part.up = down.up + t * K * down.x_stride;
      if (part.act_weights) part.act_weights = down.act_weights + t * K;
      return part;
    };
    for (int t = 0, n = 0; t < s.T; t += n) {
      n = s.T - t;
      while (n > 1 && !on_row_tile(tokens(t, n))) --n;
      DSV4_TRY(matvec_experts(tokens(t, n), y + t * K * D, s.stream));
    }
    return Status();
  };
  // The K slots of token t read xn's row t: where the kernel takes that as it is (a multi-token
  // step's 2-bit row tiles, ExpertMatvec::slots_per_x), else from a copy of the row per slot.
  const float* z = sc.xn;
  int64_t z_stride = 0;
  int z_slots = 1;
  if (s.T > 1) {
    z_stride = D;
    z_slots = static_cast<int>(K);
    const DeviceTensor& first = L.gate_up_exps.fused() ? L.gate_up_exps.both : L.gate_up_exps.a;
    ExpertMatvec shared_x = describe(first, D, first.ne1, z, z_stride, sc.experts, TK);
    shared_x.slots_per_x = z_slots;
    if (!can_share_x(shared_x)) {
      DSV4_TRY(replicate_rows(sc.xn, D, static_cast<int>(K), s.T, sc.ydown, s.stream));
      z = sc.ydown;
      z_slots = 1;
    }
  }
  // Where the 2-bit kernel takes the interleaved gate/up slabs, it writes the activated,
  // route-weighted values itself (ExpertMatvec::swiglu_rows), once per element, and the down
  // projection stages them as they are.
  SwigluArgs sw;
  if (L.gate_up_exps.fused()) {
    ExpertMatvec gate_up = describe(L.gate_up_exps.both, D, 2 * F, z, z_stride, sc.experts, TK);
    gate_up.slots_per_x = z_slots;
    ExpertMatvec activated = gate_up;
    activated.swiglu_rows = true;
    activated.act_weights = sc.route_w;
    activated.act_limit = s.limit;
    if (can_swiglu_rows(activated)) {
      DSV4_TRY(matvec_experts(activated, sc.mid, s.stream));
      if (s.before_down) DSV4_TRY(s.before_down());
      return down_launch(describe(L.down_exps, F, D, sc.mid, F, sc.experts, TK), sc.ydown);
    }
    DSV4_TRY(matvec_experts(gate_up, sc.gu, s.stream));
    sw.gate = sc.gu;
    sw.up = sc.gu + F;
    sw.stride = 2 * F;
  } else {
    ExpertMatvec gate = describe(L.gate_up_exps.a, D, F, z, z_stride, sc.experts, TK);
    ExpertMatvec up = describe(L.gate_up_exps.b, D, F, z, z_stride, sc.experts, TK);
    gate.slots_per_x = up.slots_per_x = z_slots;
    DSV4_TRY(matvec_experts(gate, sc.gu, s.stream));
    DSV4_TRY(matvec_experts(up, sc.gu + static_cast<int64_t>(TK) * F, s.stream));
    sw.gate = sc.gu;
    sw.up = sc.gu + static_cast<int64_t>(TK) * F;
    sw.stride = F;
  }
  // The down projection computes the SwiGLU as it stages its activations where its kernel can.
  ExpertMatvec down = describe(L.down_exps, F, D, sw.gate, sw.stride, sc.experts, TK);
  down.up = sw.up;
  down.act_weights = sc.route_w;
  down.act_limit = s.limit;
  if (s.before_down) DSV4_TRY(s.before_down());
  if (can_fuse_swiglu(down)) return down_launch(down, sc.ydown);
  sw.weights = sc.route_w;
  sw.out = sc.mid;
  sw.n_slots = TK;
  sw.F = F;
  sw.limit = s.limit;
  DSV4_TRY(swiglu(sw, s.stream));
  return down_launch(describe(L.down_exps, F, D, sc.mid, F, sc.experts, TK), sc.ydown);
}

// Prefill: the (token, slot) pairs sorted by expert, grouped gate/up over gathered xn rows,
// SwiGLU with the route weight on the sorted rows, grouped down scattered back to (token, slot)
// order, so hc_post sums the K routed outputs of a token in slot order as in decode.
Status routed_experts_grouped(const RoutedExpertsStep& s) {
  const model::Config& c = *s.config;
  const DeviceLayer& L = *s.layer;
  Scratch& sc = *s.scratch;
  const int64_t D = c.n_embd, K = c.n_expert_used, F = c.n_ff_expert, E = c.n_expert;
  const int64_t TK = s.T * K;
  ExpertSort es;
  es.topk = sc.experts;
  es.n_tokens = s.T;
  es.top_k = static_cast<int>(K);
  es.n_expert = static_cast<int>(E);
  es.offsets = sc.sort_offsets;
  es.row_pair = sc.sort_row_pair;
  es.row_token = sc.sort_row_token;
  es.pair_row = sc.sort_pair_row;
  es.pair_weight = sc.route_w;
  es.row_weight = sc.sort_row_w;
  es.workspace = sc.sort_workspace;
  DSV4_TRY(sort_by_expert(es, s.stream));

  auto grouped = [&](const DeviceTensor& w, const __half* x, const __half* x_lo, int64_t x_stride,
                     const float* x_scale, const int32_t* x_rows, float* y, int64_t y_stride, const int32_t* y_rows) {
    GroupedGemm g;
    g.w = gemm_weights(w);
    g.n_groups = static_cast<int>(E);
    g.offsets = sc.sort_offsets;
    g.n_rows = TK;
    g.x = x;
    g.x_lo = s.split ? x_lo : nullptr;
    g.x_stride = x_stride;
    g.x_scale = x_scale;
    g.x_rows = x_rows;
    g.x_count = x_rows ? s.T : TK;
    g.y = y;
    g.y_stride = y_stride;
    g.y_rows = y_rows;
    g.y_count = TK;
    return grouped_gemm(g, s.stream);
  };
  SwigluArgs sw;
  if (L.gate_up_exps.fused()) {
    DSV4_TRY(grouped(L.gate_up_exps.both, sc.xn16, sc.xn16_lo, D, sc.xn16_scale, sc.sort_row_token, sc.gu,
                     2 * F, nullptr));
    sw.gate = sc.gu;
    sw.up = sc.gu + F;
    sw.stride = 2 * F;
  } else {
    DSV4_TRY(grouped(L.gate_up_exps.a, sc.xn16, sc.xn16_lo, D, sc.xn16_scale, sc.sort_row_token, sc.gu, F,
                     nullptr));
    DSV4_TRY(grouped(L.gate_up_exps.b, sc.xn16, sc.xn16_lo, D, sc.xn16_scale, sc.sort_row_token,
                     sc.gu + TK * F, F, nullptr));
    sw.gate = sc.gu;
    sw.up = sc.gu + TK * F;
    sw.stride = F;
  }
  sw.weights = sc.sort_row_w;
  sw.out = sc.mid;
  sw.n_slots = static_cast<int>(TK);
  sw.F = F;
  sw.limit = s.limit;
  // The down projection on int8 tensor cores where they take its weights (gemm.h, int8 mode), in
  // both tensor-core maths (its products are exact, so f16 mode loses nothing by it, and it is
  // the faster kernel): the SwiGLU computed as it is converted to activation limbs and block
  // records, written into mid (3.3·TK·F of its 4·TK·F bytes) instead of the SwiGLU's floats.
  int8_t* limbs = reinterpret_cast<int8_t*>(sc.mid);
  uint8_t* records = reinterpret_cast<uint8_t*>(limbs + 3 * TK * F);
  if (gemm_int8_supports(L.down_exps.type, F) && reinterpret_cast<uintptr_t>(sc.mid) % 16 == 0) {
    DSV4_TRY(convert_swiglu_to_int8(sw.gate, sw.up, sw.stride, sw.weights, sw.limit, TK, F, limbs, F, records,
                                    s.stream));
    GroupedGemm g;
    g.w = gemm_weights(L.down_exps);
    g.n_groups = static_cast<int>(E);
    g.offsets = sc.sort_offsets;
    g.n_rows = TK;
    g.x_limbs = limbs;
    g.x_records = records;
    g.x_stride = F;
    g.x_count = TK;
    g.y = sc.ydown;
    g.y_stride = D;
    g.y_rows = sc.sort_row_pair;
    g.y_count = TK;
    return grouped_gemm(g, s.stream);
  }
  DSV4_TRY(swiglu(sw, s.stream));
  DSV4_TRY(convert_gemm_input(s.split, sc.mid, F, TK, F, sc.in16, sc.in16_lo, sc.in16_scale, s.stream));
  return grouped(L.down_exps, sc.in16, sc.in16_lo, F, sc.in16_scale, nullptr, sc.ydown, D, sc.sort_row_pair);
}

}  // namespace dsv4::cuda
