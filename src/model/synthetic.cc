#include "model/synthetic.h"

#include <cmath>
#include <cstring>
#include <memory>

#include "model/synthetic_vocab.h"
#include "quant/quant.h"
#include "util/half.h"

namespace dsv4::model {
namespace {

using gguf::TensorType;
using gguf::Value;
using gguf::ValueType;

struct Preset {
  std::string name;
  int64_t n_layer, n_embd, n_vocab, n_ctx, n_head, head_dim, n_rot, q_lora, o_lora, n_group,
      window, n_index_head, index_dim, top_k, n_hc, n_expert, n_used, n_ff, n_hash;
  std::vector<int64_t> ratios;  // per layer (+ one trailing 0 for the MTP block)
  bool full_size;               // random valid blocks instead of quantising generated floats
  TensorType routed_gate_up, routed_down;
};

// Flash schedule: ratio 0 for layers 0-1, then 4 (even) / 128 (odd), plus the MTP entry.
std::vector<int64_t> flash_ratios(int64_t n_layer) {
  std::vector<int64_t> r;
  for (int64_t l = 0; l < n_layer; ++l) r.push_back(l < 2 ? 0 : (l % 2 == 0 ? 4 : 128));
  r.push_back(0);
  return r;
}

std::vector<Preset> presets() {
  Preset flash{"flash-q2", 43, 4096, 129280, 1048576, 64, 512, 64, 1024, 1024, 8, 128, 64, 128,
               512, 4, 256, 6, 2048, 3, flash_ratios(43), true, TensorType::IQ2_XXS,
               TensorType::Q2_K};
  Preset flash_q4 = flash;
  flash_q4.name = "flash-q4";
  flash_q4.routed_gate_up = TensorType::Q4_K;
  flash_q4.routed_down = TensorType::Q4_K;
  return {
      // Fast unit-test model: every layer kind (sliding, overlapping ratio 4 with indexer,
      // non-overlapping ratio 16) with short sequences.
      {"tiny", 4, 128, 512, 4096, 4, 96, 32, 64, 32, 2, 16, 4, 64, 8, 4, 8, 2, 64, 2,
       {0, 4, 16, 4, 0}, false, TensorType::IQ2_XXS, TensorType::Q2_K},
      // Real head geometry (head 512, rope 64, indexer head 128, window 128) at small width.
      {"small", 5, 256, 1024, 65536, 8, 512, 64, 128, 64, 2, 128, 4, 128, 16, 4, 16, 6, 256, 3,
       {0, 0, 4, 128, 4, 0}, false, TensorType::IQ2_XXS, TensorType::Q2_K},
      flash,
      flash_q4,
  };
}

// xoshiro256** seeded by splitmix64: fixed integer arithmetic, identical on every machine.
class Rng {
 public:
  explicit Rng(uint64_t seed) {
    for (uint64_t& s : s_) {
      seed += 0x9e3779b97f4a7c15ull;
      uint64_t z = seed;
      z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
      z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
      s = z ^ (z >> 31);
    }
  }
  uint64_t next() {
    const uint64_t result = rotl(s_[1] * 5, 7) * 9;
    const uint64_t t = s_[1] << 17;
    s_[2] ^= s_[0];
    s_[3] ^= s_[1];
    s_[1] ^= s_[2];
    s_[0] ^= s_[3];
    s_[2] ^= t;
    s_[3] = rotl(s_[3], 45);
    return result;
  }
  // Uniform in [0, 1) with 24 bits.
  float uniform() { return static_cast<float>(next() >> 40) * (1.0f / 16777216.0f); }
  // Approximately standard normal: Irwin-Hall sum of 4 uniforms, rescaled. Pure arithmetic
  // (no libm), so the bytes do not depend on the platform's transcendental functions.
  float normal() {
    const float s = uniform() + uniform() + uniform() + uniform();
    return (s - 2.0f) * 1.7320508f;
  }

 private:
  static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
  uint64_t s_[4];
};

// Per-tensor seed from the model seed and the tensor name, so tensors are independent of
// generation order.
uint64_t tensor_seed(uint64_t seed, const std::string& name) {
  uint64_t h = 1469598103934665603ull ^ seed;
  for (unsigned char ch : name) h = (h ^ ch) * 1099511628211ull;
  return h;
}

// How a tensor's values are distributed.
struct Init {
  float mean = 0;
  float stddev = 1;
};

// Fills a tensor of any type. Small presets generate f32 values and quantise them; full-size
// presets write random but valid blocks with scales chosen for the same magnitude.
void fill_tensor(uint8_t* dst, uint64_t size, TensorType type, int64_t ne0, uint64_t seed,
                 Init init, bool random_blocks) {
  Rng rng(seed);
  if (random_blocks && type != TensorType::F32 && type != TensorType::F16 &&
      type != TensorType::BF16) {
    for (uint64_t i = 0; i < size; i += 8) {
      const uint64_t r = rng.next();
      std::memcpy(dst + i, &r, std::min<uint64_t>(8, size - i));
    }
    // Overwrite each block's f16 scale fields: element magnitude ≈ stddev.
    const auto traits = *gguf::type_traits(type);
    auto put_f16 = [](uint8_t* p, float v) {
      const uint16_t h = f32_to_f16(v);
      std::memcpy(p, &h, 2);
    };
    const float s = init.stddev;
    for (uint64_t b = 0; b < size; b += static_cast<uint64_t>(traits.block_bytes)) {
      switch (type) {
        case TensorType::Q8_0: put_f16(dst + b, s / 73.9f); break;
        case TensorType::Q2_K: put_f16(dst + b + 80, s / 9.0f); put_f16(dst + b + 82, s / 18.0f); break;
        case TensorType::Q4_K: put_f16(dst + b, s / 145.0f); put_f16(dst + b + 2, s / 290.0f); break;
        case TensorType::IQ2_XXS: put_f16(dst + b, s / 58.0f); break;
        default: break;
      }
    }
    return;
  }
  const int64_t n_rows = static_cast<int64_t>(size / gguf::row_bytes(type, ne0).value());
  const uint64_t row = gguf::row_bytes(type, ne0).value();
  std::vector<float> values(static_cast<size_t>(ne0));
  for (int64_t r = 0; r < n_rows; ++r) {
    for (float& v : values) v = init.mean + init.stddev * rng.normal();
    quant::quantize_row(type, values.data(), dst + static_cast<uint64_t>(r) * row, ne0);
  }
}

class ModelBuilder {
 public:
  ModelBuilder(const Preset& p, const SyntheticSpec& spec) : p_(p), spec_(spec) {}

  Status add(const std::string& name, TensorType type, std::vector<uint64_t> ne, Init init) {
    if (ne[0] % gguf::type_traits(type)->block_elems != 0) type = TensorType::F32;
    const uint64_t seed = tensor_seed(spec_.seed, name);
    const bool random_blocks = p_.full_size;
    const int64_t ne0 = static_cast<int64_t>(ne[0]);
    return writer_.add_generated_tensor(
        name, type, std::move(ne), [=](uint8_t* dst, uint64_t size) {
          fill_tensor(dst, size, type, ne0, seed, init, random_blocks);
        });
  }

  // Types follow the published layout in mixed mode (FORMATS.md §3) and are all F32 otherwise.
  TensorType vector_type() const { return TensorType::F32; }
  TensorType small_type() const { return mixed() ? TensorType::F16 : TensorType::F32; }
  TensorType dense_type(uint64_t ne0) const {
    return mixed() && ne0 % 32 == 0 ? TensorType::Q8_0 : TensorType::F32;
  }
  TensorType routed_type(TensorType published, uint64_t ne0) const {
    if (!mixed()) return TensorType::F32;
    return ne0 % 256 == 0 ? published : dense_type(ne0);
  }
  bool mixed() const { return spec_.types == WeightTypes::kMixed; }

  gguf::Writer& writer() { return writer_; }

 private:
  const Preset& p_;
  const SyntheticSpec& spec_;
  gguf::Writer writer_;
};

Init scaled(float fan_in, float gain = 1.0f) { return Init{0.0f, gain / std::sqrt(fan_in)}; }

void set_metadata(gguf::Writer& w, const Preset& p, int64_t n_layer) {
  auto u32 = [&](const std::string& k, int64_t v) {
    w.set("deepseek4." + k, Value::make_u32(static_cast<uint32_t>(v)));
  };
  auto f32 = [&](const std::string& k, float v) { w.set("deepseek4." + k, Value::make_f32(v)); };
  w.set("general.architecture", Value::make_string("deepseek4"));
  w.set("general.name", Value::make_string("dsv4 synthetic " + p.name));
  w.set("general.alignment", Value::make_u32(32));
  u32("block_count", n_layer);
  u32("embedding_length", p.n_embd);
  u32("vocab_size", p.n_vocab);
  w.set("deepseek4.context_length", Value::make_u64(static_cast<uint64_t>(p.n_ctx)));
  u32("attention.head_count", p.n_head);
  u32("attention.head_count_kv", 1);
  u32("attention.key_length", p.head_dim);
  u32("attention.value_length", p.head_dim);
  u32("rope.dimension_count", p.n_rot);
  u32("attention.q_lora_rank", p.q_lora);
  u32("attention.output_lora_rank", p.o_lora);
  u32("attention.output_group_count", p.n_group);
  u32("attention.sliding_window", p.window);
  u32("attention.indexer.head_count", p.n_index_head);
  u32("attention.indexer.key_length", p.index_dim);
  u32("attention.indexer.top_k", p.top_k);
  std::vector<int64_t> ratios(p.ratios.begin(), p.ratios.begin() + n_layer);
  ratios.push_back(0);  // the MTP block's entry, as the published files carry it
  w.set("deepseek4.attention.compress_ratios", Value::make_int_array(ValueType::U32, ratios));
  f32("attention.compress_rope_freq_base", 160000.0f);
  f32("attention.layer_norm_rms_epsilon", 1e-6f);
  f32("rope.freq_base", 10000.0f);
  f32("rope.scaling.factor", 16.0f);
  u32("rope.scaling.original_context_length", 65536);
  f32("rope.scaling.yarn_beta_fast", 32.0f);
  f32("rope.scaling.yarn_beta_slow", 1.0f);
  u32("hyper_connection.count", p.n_hc);
  u32("hyper_connection.sinkhorn_iterations", 20);
  f32("hyper_connection.epsilon", 1e-6f);
  u32("expert_count", p.n_expert);
  u32("expert_used_count", p.n_used);
  u32("expert_feed_forward_length", p.n_ff);
  u32("expert_shared_count", 1);
  u32("hash_layer_count", std::min(p.n_hash, n_layer));
  f32("expert_weights_scale", 1.5f);
  w.set("deepseek4.expert_weights_norm", Value::make_bool(true));
  u32("expert_gating_func", 4);  // llama.cpp's SQRT_SOFTPLUS (FORMATS.md §2.2)
  w.set("deepseek4.swiglu_clamp_exp",
        Value::make_float_array(ValueType::F32, std::vector<double>(static_cast<size_t>(n_layer), 10.0)));
}

Status set_tokenizer(gguf::Writer& w, const Preset& p, const SyntheticSpec& spec) {
  std::vector<std::string> tokens = spec.vocab_tokens;
  std::vector<int32_t> types = spec.vocab_types;
  std::vector<std::string> merges = spec.vocab_merges;
  int64_t bos = 0, eos = 1, pad = 2;
  if (!tokens.empty()) {
    // Special tokens are found by their strings (PROTOCOL.md §7 decision (c)).
    auto find = [&](const std::string& s, int64_t fallback) {
      for (size_t i = 0; i < tokens.size(); ++i) {
        if (tokens[i] == s) return static_cast<int64_t>(i);
      }
      return fallback;
    };
    bos = find("<｜begin▁of▁sentence｜>", 0);
    eos = find("<｜end▁of▁sentence｜>", 1);
    pad = find("<｜▁pad▁｜>", 2);
  } else {
    DSV4_ASSIGN_OR_RETURN(SyntheticVocab v, make_synthetic_vocab(p.n_vocab));
    tokens = std::move(v.tokens);
    types = std::move(v.types);
    merges = std::move(v.merges);
    bos = v.bos_id;
    eos = v.eos_id;
    pad = v.pad_id;
  }
  if (static_cast<int64_t>(tokens.size()) != p.n_vocab || types.size() != tokens.size()) {
    return make_error("vocabulary has " + std::to_string(tokens.size()) + " tokens and " +
                      std::to_string(types.size()) + " types; preset " + p.name + " needs " +
                      std::to_string(p.n_vocab));
  }
  w.set("tokenizer.ggml.model", Value::make_string("gpt2"));
  w.set("tokenizer.ggml.pre", Value::make_string("joyai-llm"));
  w.set("tokenizer.ggml.tokens", Value::make_string_array(std::move(tokens)));
  w.set("tokenizer.ggml.token_type",
        Value::make_int_array(ValueType::I32, std::vector<int64_t>(types.begin(), types.end())));
  w.set("tokenizer.ggml.merges", Value::make_string_array(std::move(merges)));
  w.set("tokenizer.ggml.bos_token_id", Value::make_u32(static_cast<uint32_t>(bos)));
  w.set("tokenizer.ggml.eos_token_id", Value::make_u32(static_cast<uint32_t>(eos)));
  w.set("tokenizer.ggml.padding_token_id", Value::make_u32(static_cast<uint32_t>(pad)));
  w.set("tokenizer.ggml.add_bos_token", Value::make_bool(false));
  return Status();
}

Status add_tid2eid(gguf::Writer& w, const std::string& name, const Preset& p, uint64_t seed) {
  const int64_t k = p.n_used, V = p.n_vocab, E = p.n_expert;
  return w.add_generated_tensor(
      name, TensorType::I32, {static_cast<uint64_t>(k), static_cast<uint64_t>(V)},
      [=](uint8_t* dst, uint64_t) {
        Rng rng(seed);
        std::vector<int32_t> row(static_cast<size_t>(k));
        for (int64_t t = 0; t < V; ++t) {
          // k distinct experts per token, as the official table has.
          for (int64_t i = 0; i < k; ++i) {
            int32_t e;
            bool fresh;
            do {
              e = static_cast<int32_t>(rng.next() % static_cast<uint64_t>(E));
              fresh = true;
              for (int64_t j = 0; j < i; ++j) fresh = fresh && row[static_cast<size_t>(j)] != e;
            } while (!fresh);
            row[static_cast<size_t>(i)] = e;
          }
          std::memcpy(dst + static_cast<uint64_t>(t * k) * 4, row.data(), static_cast<size_t>(k) * 4);
        }
      });
}

// One block's tensors, named with prefix x ("blk.N." or the MTP block's "mtp.0.").
Status add_layer(ModelBuilder& b, const Preset& p, const std::string& x, int64_t ratio, bool hash,
                 TensorType routed_gate_up, TensorType routed_down, uint64_t seed) {
  using U = uint64_t;
  const U D = static_cast<U>(p.n_embd), Dh = static_cast<U>(p.head_dim), H = static_cast<U>(p.n_head);
  const U hc = static_cast<U>(p.n_hc * p.n_embd), mix = static_cast<U>((2 + p.n_hc) * p.n_hc);
  const Init norm{1.0f, 0.1f};
  for (const char* sub : {"attn", "ffn"}) {
    DSV4_TRY(b.add(x + "hc_" + sub + "_fn.weight", b.small_type(), {hc, mix}, scaled(static_cast<float>(hc))));
    DSV4_TRY(b.add(x + "hc_" + sub + "_scale.weight", b.vector_type(), {3}, Init{1.0f, 0.2f}));
    DSV4_TRY(b.add(x + "hc_" + sub + "_base.weight", b.vector_type(), {mix}, Init{0.0f, 0.5f}));
  }
  DSV4_TRY(b.add(x + "attn_norm.weight", b.vector_type(), {D}, norm));
  DSV4_TRY(b.add(x + "ffn_norm.weight", b.vector_type(), {D}, norm));
  const U qr = static_cast<U>(p.q_lora), G = static_cast<U>(p.n_group), orank = static_cast<U>(p.o_lora);
  DSV4_TRY(b.add(x + "attn_q_a.weight", b.dense_type(D), {D, qr}, scaled(D)));
  DSV4_TRY(b.add(x + "attn_q_a_norm.weight", b.vector_type(), {qr}, norm));
  DSV4_TRY(b.add(x + "attn_q_b.weight", b.dense_type(qr), {qr, H * Dh}, scaled(qr)));
  DSV4_TRY(b.add(x + "attn_kv.weight", b.dense_type(D), {D, Dh}, scaled(D)));
  DSV4_TRY(b.add(x + "attn_kv_a_norm.weight", b.vector_type(), {Dh}, norm));
  DSV4_TRY(b.add(x + "attn_sinks.weight", b.vector_type(), {H}, Init{1.0f, 1.0f}));
  DSV4_TRY(b.add(x + "attn_output_a.weight", b.dense_type(H * Dh / G), {H * Dh / G, G * orank}, scaled(H * Dh / G)));
  DSV4_TRY(b.add(x + "attn_output_b.weight", b.dense_type(G * orank), {G * orank, D}, scaled(G * orank)));
  if (ratio != 0) {
    const U cw = ratio == 4 ? 2 : 1;
    DSV4_TRY(b.add(x + "attn_compressor_ape.weight", b.small_type(), {cw * Dh, static_cast<U>(ratio)}, Init{0.0f, 0.5f}));
    DSV4_TRY(b.add(x + "attn_compressor_kv.weight", b.small_type(), {D, cw * Dh}, scaled(D)));
    DSV4_TRY(b.add(x + "attn_compressor_gate.weight", b.small_type(), {D, cw * Dh}, scaled(D)));
    DSV4_TRY(b.add(x + "attn_compressor_norm.weight", b.vector_type(), {Dh}, norm));
  }
  if (ratio == 4) {
    const U IH = static_cast<U>(p.n_index_head), ID = static_cast<U>(p.index_dim);
    DSV4_TRY(b.add(x + "indexer.attn_q_b.weight", b.small_type(), {qr, IH * ID}, scaled(qr)));
    DSV4_TRY(b.add(x + "indexer.proj.weight", b.small_type(), {D, IH}, scaled(D)));
    DSV4_TRY(b.add(x + "indexer_compressor_ape.weight", b.small_type(), {2 * ID, 4}, Init{0.0f, 0.5f}));
    DSV4_TRY(b.add(x + "indexer_compressor_kv.weight", b.small_type(), {D, 2 * ID}, scaled(D)));
    DSV4_TRY(b.add(x + "indexer_compressor_gate.weight", b.small_type(), {D, 2 * ID}, scaled(D)));
    DSV4_TRY(b.add(x + "indexer_compressor_norm.weight", b.vector_type(), {ID}, norm));
  }
  const U E = static_cast<U>(p.n_expert), F = static_cast<U>(p.n_ff);
  DSV4_TRY(b.add(x + "ffn_gate_inp.weight", b.small_type(), {D, E}, scaled(D)));
  if (hash) {
    DSV4_TRY(add_tid2eid(b.writer(), x + "ffn_gate_tid2eid.weight", p, tensor_seed(seed, x + "tid2eid")));
  } else {
    DSV4_TRY(b.add(x + "exp_probs_b.bias", b.vector_type(), {E}, Init{0.0f, 0.1f}));
  }
  DSV4_TRY(b.add(x + "ffn_gate_exps.weight", b.routed_type(routed_gate_up, D), {D, F, E}, scaled(D)));
  DSV4_TRY(b.add(x + "ffn_up_exps.weight", b.routed_type(routed_gate_up, D), {D, F, E}, scaled(D)));
  DSV4_TRY(b.add(x + "ffn_down_exps.weight", b.routed_type(routed_down, F), {F, D, E}, scaled(F)));
  DSV4_TRY(b.add(x + "ffn_gate_shexp.weight", b.dense_type(D), {D, F}, scaled(D)));
  DSV4_TRY(b.add(x + "ffn_up_shexp.weight", b.dense_type(D), {D, F}, scaled(D)));
  DSV4_TRY(b.add(x + "ffn_down_shexp.weight", b.dense_type(F), {F, D}, scaled(F)));
  return Status();
}

// The MTP block as ds4 packages it (FORMATS.md §3.4): a sliding-only, top-k routed block with
// Q4_K routed experts in the published mix, its input projections and its own head.
Status add_mtp(ModelBuilder& b, const Preset& p, uint64_t seed) {
  const std::string x = "mtp.0.";
  const uint64_t D = static_cast<uint64_t>(p.n_embd), n_hc = static_cast<uint64_t>(p.n_hc);
  const Init norm{1.0f, 0.1f};
  DSV4_TRY(b.add(x + "e_proj.weight", b.dense_type(D), {D, D}, scaled(static_cast<float>(D))));
  DSV4_TRY(b.add(x + "h_proj.weight", b.dense_type(D), {D, D}, scaled(static_cast<float>(D))));
  DSV4_TRY(b.add(x + "enorm.weight", b.vector_type(), {D}, norm));
  DSV4_TRY(b.add(x + "hnorm.weight", b.vector_type(), {D}, norm));
  DSV4_TRY(b.add(x + "norm.weight", b.vector_type(), {D}, norm));
  DSV4_TRY(b.add(x + "hc_head_fn.weight", b.small_type(), {n_hc * D, n_hc}, scaled(static_cast<float>(n_hc * D))));
  DSV4_TRY(b.add(x + "hc_head_base.weight", b.vector_type(), {n_hc}, Init{0.0f, 0.5f}));
  DSV4_TRY(b.add(x + "hc_head_scale.weight", b.vector_type(), {1}, Init{1.0f, 0.2f}));
  return add_layer(b, p, x, 0, false, TensorType::Q4_K, TensorType::Q4_K, seed);
}

}  // namespace

std::vector<std::string> synthetic_presets() {
  std::vector<std::string> names;
  for (const Preset& p : presets()) names.push_back(p.name);
  return names;
}

Result<gguf::Writer> make_synthetic_model(const SyntheticSpec& spec) {
  const std::vector<Preset> all = presets();
  const Preset* preset = nullptr;
  for (const Preset& p : all) preset = p.name == spec.preset ? &p : preset;
  if (preset == nullptr) {
    std::string names;
    for (const Preset& p : all) names += (names.empty() ? "" : ", ") + p.name;
    return make_error("unknown preset '" + spec.preset + "' (known: " + names + ")");
  }
  Preset p = *preset;
  int64_t n_layer = p.n_layer;
  if (spec.n_layer) {
    if (*spec.n_layer < 1 || *spec.n_layer > p.n_layer) {
      return make_error("--layers must be in [1, " + std::to_string(p.n_layer) + "] for preset " + p.name);
    }
    n_layer = *spec.n_layer;
  }
  if (p.full_size && spec.types == WeightTypes::kF32) {
    return make_error("preset " + p.name + " is full size: only the published mixed types are supported");
  }
  if (!spec.vocab_tokens.empty()) {
    // An embedded vocabulary (e.g. the real V4 one) sets the vocabulary size.
    if (spec.vocab_tokens.size() < 259 || spec.vocab_tokens.size() > (1u << 24)) {
      return make_error("vocabulary of " + std::to_string(spec.vocab_tokens.size()) + " tokens is out of range");
    }
    p.n_vocab = static_cast<int64_t>(spec.vocab_tokens.size());
  }
  SyntheticSpec effective = spec;
  if (p.full_size) effective.types = WeightTypes::kMixed;
  ModelBuilder b(p, effective);
  gguf::Writer& w = b.writer();
  set_metadata(w, p, n_layer);
  DSV4_TRY(set_tokenizer(w, p, spec));
  const uint64_t D = static_cast<uint64_t>(p.n_embd), V = static_cast<uint64_t>(p.n_vocab);
  const uint64_t n_hc = static_cast<uint64_t>(p.n_hc);
  if (spec.mtp == MtpTensors::kOnly) {
    DSV4_TRY(add_mtp(b, p, spec.seed));
    return std::move(w);
  }
  DSV4_TRY(b.add("token_embd.weight", b.small_type(), {D, V}, Init{0.0f, 0.5f}));
  for (int64_t l = 0; l < n_layer; ++l) {
    DSV4_TRY(add_layer(b, p, "blk." + std::to_string(l) + ".", p.ratios[static_cast<size_t>(l)], l < p.n_hash,
                       p.routed_gate_up, p.routed_down, spec.seed));
  }
  DSV4_TRY(b.add("output_hc_fn.weight", b.small_type(), {n_hc * D, n_hc}, scaled(static_cast<float>(n_hc * D))));
  DSV4_TRY(b.add("output_hc_base.weight", b.vector_type(), {n_hc}, Init{0.0f, 0.5f}));
  DSV4_TRY(b.add("output_hc_scale.weight", b.vector_type(), {1}, Init{1.0f, 0.2f}));
  DSV4_TRY(b.add("output_norm.weight", b.vector_type(), {D}, Init{1.0f, 0.1f}));
  // Logit spread of a few units gives peaked next-token distributions, like a trained model.
  DSV4_TRY(b.add("output.weight", b.dense_type(D), {D, V}, scaled(static_cast<float>(D), 4.0f)));
  if (spec.mtp == MtpTensors::kWith) DSV4_TRY(add_mtp(b, p, spec.seed));
  return std::move(w);
}

}  // namespace dsv4::model
