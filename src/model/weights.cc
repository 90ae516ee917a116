#include "model/weights.h"

#include <algorithm>
#include <cstring>
#include <set>
#include <string>
#include <utility>

#include "quant/quant.h"
#include "util/sha256.h"

namespace dsv4::model {

using gguf::TensorType;

uint64_t Tensor::row_bytes() const {
  Result<uint64_t> r = gguf::row_bytes(type(), ne(0));
  assert(r.ok());  // shapes were validated by the reader
  return r.value();
}

const uint8_t* Tensor::row(int64_t r, int64_t slab) const {
  assert(r >= 0 && r < ne(1) && slab >= 0 && slab < ne(2));
  return data() + (static_cast<uint64_t>(slab) * static_cast<uint64_t>(ne(1)) +
                   static_cast<uint64_t>(r)) * row_bytes();
}

std::vector<float> Tensor::to_f32() const {
  const int64_t n = static_cast<int64_t>(info->n_elements());
  std::vector<float> out(static_cast<size_t>(n));
  quant::dequantize_row(type(), data(), out.data(), n);
  return out;
}

namespace {

// Which stored types each kind of tensor may have. The published files use the first type of
// each list; the others serve test models and conversions.
enum class Kind {
  kVector,   // norms, sinks, HC scale/base, router bias: F32 (F16/BF16 accepted)
  kSmallMatrix,  // HC fn, compressors, APE, indexer, router, embedding: F16 (BF16/F32)
  kDense,    // attention projections, shared experts, LM head: Q8_0 (F16/BF16/F32)
  kRouted,   // routed experts: IQ2_XXS, Q2_K, Q4_K (Q8_0/F16/BF16/F32)
  kIndex,    // tid2eid: I32
};

std::vector<TensorType> allowed_types(Kind kind) {
  switch (kind) {
    case Kind::kVector:
      return {TensorType::F32, TensorType::F16, TensorType::BF16};
    case Kind::kSmallMatrix:
      return {TensorType::F16, TensorType::BF16, TensorType::F32};
    case Kind::kDense:
      return {TensorType::Q8_0, TensorType::F16, TensorType::BF16, TensorType::F32};
    case Kind::kRouted:
      return {TensorType::IQ2_XXS, TensorType::Q2_K, TensorType::Q4_K, TensorType::Q8_0,
              TensorType::F16,     TensorType::BF16, TensorType::F32};
    case Kind::kIndex:
      return {TensorType::I32};
  }
  return {};
}

std::string shape_string(const std::vector<uint64_t>& ne) {
  std::string s = "(";
  for (size_t i = 0; i < ne.size(); ++i) s += (i ? ", " : "") + std::to_string(ne[i]);
  return s + ")";
}

class Binder {
 public:
  explicit Binder(const gguf::File& file) : file_(file) {}

  // Binds a required tensor with an exact shape.
  Status bind(Tensor& out, const std::string& name, Kind kind, std::vector<uint64_t> shape) {
    const gguf::TensorInfo* info = file_.tensor(name);
    if (info == nullptr) return make_error("missing tensor " + name);
    bound_.insert(name);
    if (info->ne != shape) {
      return make_error("tensor " + name + ": expected shape " + shape_string(shape) +
                        ", found " + shape_string(info->ne));
    }
    const std::vector<TensorType> allowed = allowed_types(kind);
    bool ok = false;
    std::string list;
    for (size_t i = 0; i < allowed.size(); ++i) {
      ok = ok || allowed[i] == info->type;
      list += (i == 0 ? "" : (i + 1 == allowed.size() ? " or " : ", ")) + gguf::type_name(allowed[i]);
    }
    if (!ok) {
      return make_error("tensor " + name + ": expected " + list + ", found " +
                        gguf::type_name(info->type));
    }
    out.info = info;
    return Status();
  }

  // Tensors that must not exist in a layer of this kind (they would be silently ignored).
  Status forbid(const std::string& name, const std::string& why) {
    if (file_.tensor(name) != nullptr) return make_error("unexpected tensor " + name + ": " + why);
    return Status();
  }

  Status check_all_bound(int64_t n_layer) const {
    const std::string extra_layer = "blk." + std::to_string(n_layer) + ".";
    for (const gguf::TensorInfo& t : file_.tensors()) {
      if (bound_.count(t.name)) continue;
      // MTP blocks (ds4's mtp.0.* and llama.cpp's blk.<n_layer>.*) are loaded separately.
      if (t.name.rfind("mtp.", 0) == 0 || t.name.rfind(extra_layer, 0) == 0) continue;
      return make_error("unexpected tensor " + t.name + " (not part of this configuration)");
    }
    return Status();
  }

 private:
  const gguf::File& file_;
  std::set<std::string> bound_;
};

using U = uint64_t;

// Layer l of configuration c, its tensors named with prefix p ("blk.N." or the MTP block's).
Status bind_layer(Binder& b, const Config& c, int64_t l, const std::string& p, LayerWeights& w) {
  const std::string who = p.substr(0, p.size() - 1);
  const U D = static_cast<U>(c.n_embd), Dh = static_cast<U>(c.head_dim);
  const U H = static_cast<U>(c.n_head), mix = static_cast<U>(c.hc_mix());
  const U hc = static_cast<U>(c.hc_dim());
  DSV4_TRY(b.bind(w.hc_attn_fn, p + "hc_attn_fn.weight", Kind::kSmallMatrix, {hc, mix}));
  DSV4_TRY(b.bind(w.hc_attn_scale, p + "hc_attn_scale.weight", Kind::kVector, {3}));
  DSV4_TRY(b.bind(w.hc_attn_base, p + "hc_attn_base.weight", Kind::kVector, {mix}));
  DSV4_TRY(b.bind(w.hc_ffn_fn, p + "hc_ffn_fn.weight", Kind::kSmallMatrix, {hc, mix}));
  DSV4_TRY(b.bind(w.hc_ffn_scale, p + "hc_ffn_scale.weight", Kind::kVector, {3}));
  DSV4_TRY(b.bind(w.hc_ffn_base, p + "hc_ffn_base.weight", Kind::kVector, {mix}));
  DSV4_TRY(b.bind(w.attn_norm, p + "attn_norm.weight", Kind::kVector, {D}));
  DSV4_TRY(b.bind(w.ffn_norm, p + "ffn_norm.weight", Kind::kVector, {D}));

  const U q_rank = static_cast<U>(c.q_lora_rank), G = static_cast<U>(c.n_out_group);
  const U o_rank = static_cast<U>(c.o_lora_rank);
  DSV4_TRY(b.bind(w.attn_q_a, p + "attn_q_a.weight", Kind::kDense, {D, q_rank}));
  DSV4_TRY(b.bind(w.attn_q_a_norm, p + "attn_q_a_norm.weight", Kind::kVector, {q_rank}));
  DSV4_TRY(b.bind(w.attn_q_b, p + "attn_q_b.weight", Kind::kDense, {q_rank, H * Dh}));
  DSV4_TRY(b.bind(w.attn_kv, p + "attn_kv.weight", Kind::kDense, {D, Dh}));
  DSV4_TRY(b.bind(w.attn_kv_a_norm, p + "attn_kv_a_norm.weight", Kind::kVector, {Dh}));
  DSV4_TRY(b.bind(w.attn_sinks, p + "attn_sinks.weight", Kind::kVector, {H}));
  DSV4_TRY(b.bind(w.attn_output_a, p + "attn_output_a.weight", Kind::kDense, {H * Dh / G, G * o_rank}));
  DSV4_TRY(b.bind(w.attn_output_b, p + "attn_output_b.weight", Kind::kDense, {G * o_rank, D}));

  const U ratio = static_cast<U>(c.ratio(l));
  const U cw = static_cast<U>(c.compress_width(l));
  if (ratio != 0) {
    DSV4_TRY(b.bind(w.attn_compressor_ape, p + "attn_compressor_ape.weight", Kind::kSmallMatrix, {cw * Dh, ratio}));
    DSV4_TRY(b.bind(w.attn_compressor_kv, p + "attn_compressor_kv.weight", Kind::kSmallMatrix, {D, cw * Dh}));
    DSV4_TRY(b.bind(w.attn_compressor_gate, p + "attn_compressor_gate.weight", Kind::kSmallMatrix, {D, cw * Dh}));
    DSV4_TRY(b.bind(w.attn_compressor_norm, p + "attn_compressor_norm.weight", Kind::kVector, {Dh}));
  } else {
    for (const char* n : {"attn_compressor_ape", "attn_compressor_kv", "attn_compressor_gate", "attn_compressor_norm"}) {
      DSV4_TRY(b.forbid(p + n + ".weight", who + " has compress ratio 0"));
    }
  }
  const U IH = static_cast<U>(c.n_index_head), ID = static_cast<U>(c.index_head_dim);
  if (c.has_indexer(l)) {
    DSV4_TRY(b.bind(w.indexer_attn_q_b, p + "indexer.attn_q_b.weight", Kind::kSmallMatrix, {q_rank, IH * ID}));
    DSV4_TRY(b.bind(w.indexer_proj, p + "indexer.proj.weight", Kind::kSmallMatrix, {D, IH}));
    DSV4_TRY(b.bind(w.indexer_compressor_ape, p + "indexer_compressor_ape.weight", Kind::kSmallMatrix, {2 * ID, ratio}));
    DSV4_TRY(b.bind(w.indexer_compressor_kv, p + "indexer_compressor_kv.weight", Kind::kSmallMatrix, {D, 2 * ID}));
    DSV4_TRY(b.bind(w.indexer_compressor_gate, p + "indexer_compressor_gate.weight", Kind::kSmallMatrix, {D, 2 * ID}));
    DSV4_TRY(b.bind(w.indexer_compressor_norm, p + "indexer_compressor_norm.weight", Kind::kVector, {ID}));
  } else {
    for (const char* n : {"indexer.attn_q_b", "indexer.proj", "indexer_compressor_ape", "indexer_compressor_kv",
                          "indexer_compressor_gate", "indexer_compressor_norm"}) {
      DSV4_TRY(b.forbid(p + n + ".weight", who + " has no indexer (ratio != 4)"));
    }
  }

  const U E = static_cast<U>(c.n_expert), F = static_cast<U>(c.n_ff_expert);
  DSV4_TRY(b.bind(w.ffn_gate_inp, p + "ffn_gate_inp.weight", Kind::kSmallMatrix, {D, E}));
  if (c.is_hash_layer(l)) {
    DSV4_TRY(b.bind(w.ffn_gate_tid2eid, p + "ffn_gate_tid2eid.weight", Kind::kIndex,
                    {static_cast<U>(c.n_expert_used), static_cast<U>(c.n_vocab)}));
    DSV4_TRY(b.forbid(p + "exp_probs_b.bias", "hash-routed layers have no routing bias"));
  } else {
    DSV4_TRY(b.bind(w.exp_probs_b, p + "exp_probs_b.bias", Kind::kVector, {E}));
    DSV4_TRY(b.forbid(p + "ffn_gate_tid2eid.weight", "layer is not hash-routed"));
  }
  DSV4_TRY(b.bind(w.ffn_gate_exps, p + "ffn_gate_exps.weight", Kind::kRouted, {D, F, E}));
  DSV4_TRY(b.bind(w.ffn_up_exps, p + "ffn_up_exps.weight", Kind::kRouted, {D, F, E}));
  DSV4_TRY(b.bind(w.ffn_down_exps, p + "ffn_down_exps.weight", Kind::kRouted, {F, D, E}));
  if (w.ffn_gate_exps.type() != w.ffn_up_exps.type()) {
    return make_error("tensors " + p + "ffn_gate_exps.weight and " + p +
                      "ffn_up_exps.weight must share a type, found " +
                      gguf::type_name(w.ffn_gate_exps.type()) + " and " +
                      gguf::type_name(w.ffn_up_exps.type()));
  }
  DSV4_TRY(b.bind(w.ffn_gate_shexp, p + "ffn_gate_shexp.weight", Kind::kDense, {D, F}));
  DSV4_TRY(b.bind(w.ffn_up_shexp, p + "ffn_up_shexp.weight", Kind::kDense, {D, F}));
  DSV4_TRY(b.bind(w.ffn_down_shexp, p + "ffn_down_shexp.weight", Kind::kDense, {F, D}));
  return Status();
}

// Expert ids of hash layers come from the file: an out-of-range id would index past the
// expert slabs, so every entry is checked once at load.
Status validate_tid2eid(const Tensor& t, int64_t n_expert, const std::string& name) {
  const int64_t n = static_cast<int64_t>(t.info->n_elements());
  const uint8_t* p = t.data();
  for (int64_t i = 0; i < n; ++i) {
    int32_t v;
    std::memcpy(&v, p + 4 * i, 4);
    if (v < 0 || v >= n_expert) {
      return make_error("tensor " + name + ": entry " + std::to_string(i) + " is expert id " +
                        std::to_string(v) + ", outside [0, " + std::to_string(n_expert) + ")");
    }
  }
  return Status();
}

Status bind_all(const gguf::File& file, const Config& c, Weights& w) {
  Binder b(file);
  const U D = static_cast<U>(c.n_embd), V = static_cast<U>(c.n_vocab);
  const U n_hc = static_cast<U>(c.n_hc);
  DSV4_TRY(b.bind(w.token_embd, "token_embd.weight", Kind::kSmallMatrix, {D, V}));
  DSV4_TRY(b.bind(w.output, "output.weight", Kind::kDense, {D, V}));
  DSV4_TRY(b.bind(w.output_norm, "output_norm.weight", Kind::kVector, {D}));
  DSV4_TRY(b.bind(w.output_hc_fn, "output_hc_fn.weight", Kind::kSmallMatrix, {n_hc * D, n_hc}));
  DSV4_TRY(b.bind(w.output_hc_base, "output_hc_base.weight", Kind::kVector, {n_hc}));
  DSV4_TRY(b.bind(w.output_hc_scale, "output_hc_scale.weight", Kind::kVector, {1}));
  w.layers.resize(static_cast<size_t>(c.n_layer));
  for (int64_t l = 0; l < c.n_layer; ++l) {
    LayerWeights& lw = w.layers[static_cast<size_t>(l)];
    DSV4_TRY(bind_layer(b, c, l, "blk." + std::to_string(l) + ".", lw));
    if (c.is_hash_layer(l)) {
      DSV4_TRY(validate_tid2eid(lw.ffn_gate_tid2eid, c.n_expert,
                                "blk." + std::to_string(l) + ".ffn_gate_tid2eid.weight"));
    }
  }
  return b.check_all_bound(c.n_layer);
}

// The MTP block's one-layer configuration (MtpModel::block).
Result<Config> mtp_config(const Config& main) {
  if (main.mtp_compress_ratio != 0) {
    return make_error("metadata key deepseek4.attention.compress_ratios: the MTP block's entry is " +
                      std::to_string(main.mtp_compress_ratio) + " (dsv4 runs the sliding-only block of ratio 0)");
  }
  Config c = main;
  c.n_layer = 1;
  c.compress_ratio = {0};
  c.n_hash_layer = 0;
  c.swiglu_clamp = {main.mtp_swiglu_clamp};
  return c;
}

Status bind_mtp(const gguf::File& file, const Model& main, MtpModel& mtp) {
  const std::string p = "mtp.0.";
  if (file.tensor(p + "e_proj.weight") == nullptr) {
    return make_error("no MTP block: tensor " + p + "e_proj.weight missing (ds4's MTP file holds mtp.0.*)");
  }
  DSV4_ASSIGN_OR_RETURN(mtp.block.config, mtp_config(main.config));
  const Config& c = mtp.block.config;
  Binder b(file);
  const U D = static_cast<U>(c.n_embd), n_hc = static_cast<U>(c.n_hc);
  DSV4_TRY(b.bind(mtp.e_proj, p + "e_proj.weight", Kind::kDense, {D, D}));
  DSV4_TRY(b.bind(mtp.h_proj, p + "h_proj.weight", Kind::kDense, {D, D}));
  DSV4_TRY(b.bind(mtp.enorm, p + "enorm.weight", Kind::kVector, {D}));
  DSV4_TRY(b.bind(mtp.hnorm, p + "hnorm.weight", Kind::kVector, {D}));
  Weights& w = mtp.block.weights;
  w.token_embd = main.weights.token_embd;
  w.output = main.weights.output;
  DSV4_TRY(b.bind(w.output_norm, p + "norm.weight", Kind::kVector, {D}));
  DSV4_TRY(b.bind(w.output_hc_fn, p + "hc_head_fn.weight", Kind::kSmallMatrix, {n_hc * D, n_hc}));
  DSV4_TRY(b.bind(w.output_hc_base, p + "hc_head_base.weight", Kind::kVector, {n_hc}));
  DSV4_TRY(b.bind(w.output_hc_scale, p + "hc_head_scale.weight", Kind::kVector, {1}));
  w.layers.resize(1);
  return bind_layer(b, c, 0, p, w.layers[0]);
}

}  // namespace

Result<Weights> bind_weights(const gguf::File& file, const Config& config) {
  Weights w;
  Status s = bind_all(file, config, w);
  if (!s.ok()) return s.error().with_context(file.label());
  return w;
}

std::array<uint8_t, 32> model_fingerprint(const gguf::File& file) {
  Sha256 h;
  h.update(file.header_bytes());
  constexpr uint64_t kSample = 256;
  for (const gguf::TensorInfo& t : file.tensors()) {
    const uint64_t n = std::min(kSample, t.size);
    h.update({t.data, n});
    h.update({t.data + (t.size - n), n});
  }
  return h.finish();
}

namespace {

Result<std::shared_ptr<Model>> bind_model(gguf::File file) {
  auto model = std::make_shared<Model>();
  model->file = std::move(file);
  DSV4_ASSIGN_OR_RETURN(model->config, read_config(model->file));
  DSV4_ASSIGN_OR_RETURN(model->weights, bind_weights(model->file, model->config));
  return model;
}

}  // namespace

Result<std::shared_ptr<const Model>> load_model_from_file(gguf::File file) {
  DSV4_ASSIGN_OR_RETURN(std::shared_ptr<Model> model, bind_model(std::move(file)));
  return std::shared_ptr<const Model>(std::move(model));
}

Result<std::shared_ptr<const Model>> load_model_with_mtp(gguf::File file, gguf::File mtp_file) {
  DSV4_ASSIGN_OR_RETURN(std::shared_ptr<Model> model, bind_model(std::move(file)));
  auto mtp = std::make_shared<MtpModel>();
  mtp->block.file = std::move(mtp_file);
  Status s = bind_mtp(mtp->block.file, *model, *mtp);
  if (!s.ok()) return s.error().with_context(mtp->block.file.label());
  model->mtp = std::move(mtp);
  return std::shared_ptr<const Model>(std::move(model));
}

Result<std::shared_ptr<const Model>> load_model(const std::string& path) {
  DSV4_ASSIGN_OR_RETURN(gguf::File file, gguf::File::open(path));
  return load_model_from_file(std::move(file));
}

}  // namespace dsv4::model
