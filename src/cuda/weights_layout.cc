#include "cuda/weights_layout.h"

#include <cassert>

#include "cpu/rope.h"

namespace dsv4::cuda::detail {

uint64_t TensorSpec::row_bytes() const {
  const auto t = gguf::type_traits(type);
  assert(t && ne0 % t->block_elems == 0);
  return static_cast<uint64_t>(ne0 / t->block_elems * t->block_bytes);
}

namespace {

// Every tensor starts on a 256-byte boundary (the fast matvec needs 16).
constexpr uint64_t kAlign = 256;

class Layout {
 public:
  Layout(uint8_t* base, std::vector<FillJob>& jobs) : base_(base), jobs_(jobs) {}

  uint64_t size() const { return top_; }

  DeviceTensor matrix(const TensorSpec& s, uint64_t seed) {
    if (!s.present) return {};
    const uint64_t off = take(s.bytes());
    add_job(FillJob::Kind::kCopy, off, s.bytes(), s, {}, seed);
    return view(s, off, s.ne1, s.ne2);
  }

  // Back to back when both exist and share type and row length (one launch computes both).
  PairedTensor pair(const TensorSpec& a, const TensorSpec& b, uint64_t seed) {
    PairedTensor p;
    if (a.present && b.present && a.type == b.type && a.ne0 == b.ne0 && a.ne2 == 1 && b.ne2 == 1) {
      const uint64_t off = take(a.bytes() + b.bytes());
      add_job(FillJob::Kind::kCopy, off, a.bytes(), a, {}, seed);
      add_job(FillJob::Kind::kCopy, off + a.bytes(), b.bytes(), b, {}, seed + 1);
      p.a = view(a, off, a.ne1, 1);
      p.b = view(b, off + a.bytes(), b.ne1, 1);
      p.both = view(a, off, a.ne1 + b.ne1, 1);
      return p;
    }
    p.a = matrix(a, seed);
    p.b = matrix(b, seed + 1);
    return p;
  }

  // Expert slabs of gate and up alternating (slab e of `both` = gate rows, then up rows); only
  // `both` is addressable then. Separate tensors when the types differ.
  PairedTensor interleaved(const TensorSpec& gate, const TensorSpec& up, uint64_t seed) {
    PairedTensor p;
    if (gate.present && up.present && gate.type == up.type && gate.ne0 == up.ne0 &&
        gate.ne1 == up.ne1 && gate.ne2 == up.ne2) {
      const uint64_t bytes = gate.bytes() + up.bytes();
      const uint64_t off = take(bytes);
      add_job(FillJob::Kind::kInterleave, off, bytes, gate, up, seed);
      p.both = view(gate, off, 2 * gate.ne1, gate.ne2);
      return p;
    }
    p.a = matrix(gate, seed);
    p.b = matrix(up, seed + 1);
    return p;
  }

  const float* f32(const TensorSpec& s, uint64_t seed) {
    if (!s.present) return nullptr;
    const uint64_t bytes = static_cast<uint64_t>(s.elements()) * 4;
    const uint64_t off = take(bytes);
    add_job(FillJob::Kind::kF32, off, bytes, s, {}, seed);
    return base_ ? reinterpret_cast<const float*>(base_ + off) : nullptr;
  }

  const float* host_f32(std::vector<float> values) {
    const uint64_t bytes = values.size() * 4;
    const uint64_t off = take(bytes);
    FillJob j;
    j.kind = FillJob::Kind::kF32;
    j.offset = off;
    j.bytes = bytes;
    j.values = std::move(values);
    if (base_) jobs_.push_back(std::move(j));
    return base_ ? reinterpret_cast<const float*>(base_ + off) : nullptr;
  }

  const int32_t* int32(const TensorSpec& s, uint64_t seed) {
    if (!s.present) return nullptr;
    const uint64_t bytes = static_cast<uint64_t>(s.elements()) * 4;
    const uint64_t off = take(bytes);
    add_job(FillJob::Kind::kInt32, off, bytes, s, {}, seed);
    return base_ ? reinterpret_cast<const int32_t*>(base_ + off) : nullptr;
  }

 private:
  uint64_t take(uint64_t bytes) {
    const uint64_t off = top_;
    top_ = (top_ + bytes + kAlign - 1) / kAlign * kAlign;
    return off;
  }
  void add_job(FillJob::Kind kind, uint64_t off, uint64_t bytes, const TensorSpec& a, const TensorSpec& b,
               uint64_t seed) {
    if (!base_) return;  // measuring only
    FillJob j;
    j.kind = kind;
    j.offset = off;
    j.bytes = bytes;
    j.spec = a;
    j.spec2 = b;
    j.seed = seed;
    jobs_.push_back(std::move(j));
  }
  DeviceTensor view(const TensorSpec& s, uint64_t off, int64_t ne1, int64_t ne2) const {
    DeviceTensor t;
    t.type = s.type;
    t.ne0 = s.ne0;
    t.ne1 = ne1;
    t.ne2 = ne2;
    t.row_bytes = static_cast<int64_t>(s.row_bytes());
    t.data = base_ ? base_ + off : reinterpret_cast<const uint8_t*>(1);  // present while measuring
    return t;
  }

  uint8_t* base_;
  std::vector<FillJob>& jobs_;
  uint64_t top_ = 0;
};

// A distinct seed for each (layer, role) of the synthetic weights.
uint64_t seed_of(int64_t layer, Role role) {
  return (static_cast<uint64_t>(layer + 1) << 16) * 64 + static_cast<uint64_t>(role) * 4;
}

// ω of the layers with ratio 0 (compressed = false) or any other ratio; zeros when the model has
// no such layer (the table is then never read).
std::vector<float> rope_table(const model::Config& c, bool compressed) {
  for (int64_t l = 0; l < c.n_layer; ++l) {
    if ((c.ratio(l) != 0) == compressed) return cpu::layer_rope_frequencies(c, l);
  }
  return std::vector<float>(static_cast<size_t>(c.n_rot / 2), 0.0f);
}

}  // namespace

uint64_t lay_out_model(const model::Config& c, const DescribeFn& describe, uint8_t* base, DeviceModel& m,
                       std::vector<FillJob>& jobs) {
  Layout lay(base, jobs);
  auto d = [&](int64_t l, Role r) { return describe(l, r); };
  m.token_embd = lay.matrix(d(-1, Role::kTokenEmbd), seed_of(-1, Role::kTokenEmbd));
  m.output = lay.matrix(d(-1, Role::kOutput), seed_of(-1, Role::kOutput));
  m.output_hc_fn = lay.matrix(d(-1, Role::kOutputHcFn), seed_of(-1, Role::kOutputHcFn));
  m.output_norm = lay.f32(d(-1, Role::kOutputNorm), seed_of(-1, Role::kOutputNorm));
  m.output_hc_base = lay.f32(d(-1, Role::kOutputHcBase), seed_of(-1, Role::kOutputHcBase));
  m.output_hc_scale = lay.f32(d(-1, Role::kOutputHcScale), seed_of(-1, Role::kOutputHcScale));
  m.mtp_input.e_proj = lay.matrix(d(-1, Role::kMtpEProj), seed_of(-1, Role::kMtpEProj));
  m.mtp_input.h_proj = lay.matrix(d(-1, Role::kMtpHProj), seed_of(-1, Role::kMtpHProj));
  m.mtp_input.enorm = lay.f32(d(-1, Role::kMtpENorm), seed_of(-1, Role::kMtpENorm));
  m.mtp_input.hnorm = lay.f32(d(-1, Role::kMtpHNorm), seed_of(-1, Role::kMtpHNorm));
  m.omega_main = lay.host_f32(rope_table(c, false));
  m.omega_comp = lay.host_f32(rope_table(c, true));
  m.layers.assign(static_cast<size_t>(c.n_layer), DeviceLayer{});
  for (int64_t l = 0; l < c.n_layer; ++l) {
    DeviceLayer& L = m.layers[static_cast<size_t>(l)];
    auto s = [&](Role r) { return seed_of(l, r); };
    L.ratio = c.ratio(l);
    L.hc_attn_fn = lay.matrix(d(l, Role::kHcAttnFn), s(Role::kHcAttnFn));
    L.hc_ffn_fn = lay.matrix(d(l, Role::kHcFfnFn), s(Role::kHcFfnFn));
    L.hc_attn_scale = lay.f32(d(l, Role::kHcAttnScale), s(Role::kHcAttnScale));
    L.hc_attn_base = lay.f32(d(l, Role::kHcAttnBase), s(Role::kHcAttnBase));
    L.hc_ffn_scale = lay.f32(d(l, Role::kHcFfnScale), s(Role::kHcFfnScale));
    L.hc_ffn_base = lay.f32(d(l, Role::kHcFfnBase), s(Role::kHcFfnBase));
    L.attn_norm = lay.f32(d(l, Role::kAttnNorm), s(Role::kAttnNorm));
    L.ffn_norm = lay.f32(d(l, Role::kFfnNorm), s(Role::kFfnNorm));
    L.q_a_kv = lay.pair(d(l, Role::kQA), d(l, Role::kKv), s(Role::kQA));
    L.q_b = lay.matrix(d(l, Role::kQB), s(Role::kQB));
    L.out_a = lay.matrix(d(l, Role::kOutA), s(Role::kOutA));
    L.out_b = lay.matrix(d(l, Role::kOutB), s(Role::kOutB));
    L.q_a_norm = lay.f32(d(l, Role::kQANorm), s(Role::kQANorm));
    L.kv_a_norm = lay.f32(d(l, Role::kKvANorm), s(Role::kKvANorm));
    L.sinks = lay.f32(d(l, Role::kSinks), s(Role::kSinks));
    L.comp = lay.pair(d(l, Role::kCompKv), d(l, Role::kCompGate), s(Role::kCompKv));
    L.comp_ape = lay.f32(d(l, Role::kCompApe), s(Role::kCompApe));
    L.comp_norm = lay.f32(d(l, Role::kCompNorm), s(Role::kCompNorm));
    L.index_comp = lay.pair(d(l, Role::kIndexCompKv), d(l, Role::kIndexCompGate), s(Role::kIndexCompKv));
    L.index_comp_ape = lay.f32(d(l, Role::kIndexCompApe), s(Role::kIndexCompApe));
    L.index_comp_norm = lay.f32(d(l, Role::kIndexCompNorm), s(Role::kIndexCompNorm));
    L.index_q_b = lay.matrix(d(l, Role::kIndexQB), s(Role::kIndexQB));
    L.index_proj = lay.matrix(d(l, Role::kIndexProj), s(Role::kIndexProj));
    L.gate_inp = lay.matrix(d(l, Role::kGateInp), s(Role::kGateInp));
    L.exp_probs_b = lay.f32(d(l, Role::kExpProbsB), s(Role::kExpProbsB));
    L.tid2eid = lay.int32(d(l, Role::kTid2eid), s(Role::kTid2eid));
    L.gate_up_exps = lay.interleaved(d(l, Role::kGateExps), d(l, Role::kUpExps), s(Role::kGateExps));
    L.down_exps = lay.matrix(d(l, Role::kDownExps), s(Role::kDownExps));
    L.shexp_gate_up = lay.pair(d(l, Role::kShGate), d(l, Role::kShUp), s(Role::kShGate));
    L.shexp_down = lay.matrix(d(l, Role::kShDown), s(Role::kShDown));
  }
  return lay.size();
}

}  // namespace dsv4::cuda::detail
