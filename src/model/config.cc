#include "model/config.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>

namespace dsv4::model {
namespace {

// Reads keys of one file with uniform error messages naming the key.
class MetadataReader {
 public:
  explicit MetadataReader(const gguf::File& file) : file_(file) {}

  Result<int64_t> integer(const std::string& key, int64_t min, int64_t max) const {
    const gguf::Value* v = file_.find(key);
    if (v == nullptr) return make_error("missing metadata key " + key);
    std::optional<int64_t> x = v->as_int();
    if (!x) {
      return make_error("metadata key " + key + ": expected an integer, found " +
                        gguf::value_type_name(v->type));
    }
    if (*x < min || *x > max) {
      return make_error("metadata key " + key + ": value " + std::to_string(*x) +
                        " outside [" + std::to_string(min) + ", " + std::to_string(max) + "]");
    }
    return *x;
  }

  Result<float> real(const std::string& key, double min, double max) const {
    const gguf::Value* v = file_.find(key);
    if (v == nullptr) return make_error("missing metadata key " + key);
    std::optional<double> x = v->as_float();
    if (!x) {
      return make_error("metadata key " + key + ": expected a number, found " +
                        gguf::value_type_name(v->type));
    }
    if (!std::isfinite(*x) || *x < min || *x > max) {
      return make_error("metadata key " + key + ": value " + std::to_string(*x) +
                        " outside [" + std::to_string(min) + ", " + std::to_string(max) + "]");
    }
    return static_cast<float>(*x);
  }

  Result<bool> boolean(const std::string& key) const {
    const gguf::Value* v = file_.find(key);
    if (v == nullptr) return make_error("missing metadata key " + key);
    std::optional<bool> x = v->as_bool();
    if (!x) {
      return make_error("metadata key " + key + ": expected a bool, found " +
                        gguf::value_type_name(v->type));
    }
    return *x;
  }

  Result<std::vector<int64_t>> int_array(const std::string& key, size_t min_len) const {
    const gguf::Value* v = file_.find(key);
    if (v == nullptr) return make_error("missing metadata key " + key);
    if (!v->is_array() || v->ints.size() != v->array_size() || v->element_type == gguf::ValueType::BOOL) {
      return make_error("metadata key " + key + ": expected an array of integers");
    }
    if (v->ints.size() < min_len) {
      return make_error("metadata key " + key + ": has " + std::to_string(v->ints.size()) +
                        " entries, need at least " + std::to_string(min_len));
    }
    return v->ints;
  }

  Result<std::vector<double>> float_array(const std::string& key, size_t min_len) const {
    const gguf::Value* v = file_.find(key);
    if (v == nullptr) return make_error("missing metadata key " + key);
    if (!v->is_array()) return make_error("metadata key " + key + ": expected an array");
    std::vector<double> out;
    if (v->floats.size() == v->array_size() && !v->floats.empty()) {
      out = v->floats;
    } else if (v->ints.size() == v->array_size() && v->element_type != gguf::ValueType::BOOL) {
      out.assign(v->ints.begin(), v->ints.end());
    } else {
      return make_error("metadata key " + key + ": expected an array of numbers");
    }
    if (out.size() < min_len) {
      return make_error("metadata key " + key + ": has " + std::to_string(out.size()) +
                        " entries, need at least " + std::to_string(min_len));
    }
    return out;
  }

  const gguf::Value* find(const std::string& key) const { return file_.find(key); }

 private:
  const gguf::File& file_;
};

constexpr int64_t kMaxDim = int64_t{1} << 20;
std::string k(const char* suffix) { return std::string("deepseek4.") + suffix; }

Status check(bool ok, const std::string& message) {
  if (ok) return Status();
  return make_error(message);
}

Status read_into(const MetadataReader& md, Config& c) {
  if (const gguf::Value* arch = md.find(keys::kArch)) {
    const std::string* s = arch->as_string();
    if (s == nullptr || *s != keys::kArchName) {
      return make_error(std::string("metadata key general.architecture: expected \"") +
                        keys::kArchName + "\", found " + (s ? "\"" + *s + "\"" : "a non-string"));
    }
  } else {
    return make_error("missing metadata key general.architecture");
  }
  if (const gguf::Value* name = md.find("general.name"); name && name->as_string()) {
    c.name = *name->as_string();
  }
  DSV4_ASSIGN_OR_RETURN(c.n_layer, md.integer(k("block_count"), 1, 4096));
  DSV4_ASSIGN_OR_RETURN(c.n_embd, md.integer(k("embedding_length"), 1, kMaxDim));
  DSV4_ASSIGN_OR_RETURN(c.n_vocab, md.integer(k("vocab_size"), 1, int64_t{1} << 24));
  DSV4_ASSIGN_OR_RETURN(c.n_ctx_train, md.integer(k("context_length"), 1, int64_t{1} << 40));
  DSV4_ASSIGN_OR_RETURN(c.n_head, md.integer(k("attention.head_count"), 1, 4096));
  DSV4_ASSIGN_OR_RETURN(int64_t n_head_kv, md.integer(k("attention.head_count_kv"), 1, 4096));
  DSV4_TRY(check(n_head_kv == 1, "metadata key deepseek4.attention.head_count_kv: must be 1 "
                                 "(one shared KV head), found " + std::to_string(n_head_kv)));
  DSV4_ASSIGN_OR_RETURN(c.head_dim, md.integer(k("attention.key_length"), 2, 65536));
  DSV4_ASSIGN_OR_RETURN(int64_t value_length, md.integer(k("attention.value_length"), 1, 65536));
  DSV4_TRY(check(value_length == c.head_dim,
                 "metadata key deepseek4.attention.value_length: must equal key_length (K = V), "
                 "found " + std::to_string(value_length) + " vs " + std::to_string(c.head_dim)));
  DSV4_ASSIGN_OR_RETURN(c.n_rot, md.integer(k("rope.dimension_count"), 2, 65536));
  DSV4_ASSIGN_OR_RETURN(c.q_lora_rank, md.integer(k("attention.q_lora_rank"), 1, kMaxDim));
  DSV4_ASSIGN_OR_RETURN(c.o_lora_rank, md.integer(k("attention.output_lora_rank"), 1, kMaxDim));
  DSV4_ASSIGN_OR_RETURN(c.n_out_group, md.integer(k("attention.output_group_count"), 1, 4096));
  DSV4_ASSIGN_OR_RETURN(c.window, md.integer(k("attention.sliding_window"), 1, kMaxDim));
  DSV4_ASSIGN_OR_RETURN(c.n_index_head, md.integer(k("attention.indexer.head_count"), 1, 4096));
  DSV4_ASSIGN_OR_RETURN(c.index_head_dim, md.integer(k("attention.indexer.key_length"), 2, 65536));
  DSV4_ASSIGN_OR_RETURN(c.index_top_k, md.integer(k("attention.indexer.top_k"), 1, kMaxDim));
  DSV4_ASSIGN_OR_RETURN(std::vector<int64_t> ratios,
                        md.int_array(k("attention.compress_ratios"), static_cast<size_t>(c.n_layer)));
  c.compress_ratio.assign(ratios.begin(), ratios.begin() + c.n_layer);
  if (ratios.size() > static_cast<size_t>(c.n_layer)) c.mtp_compress_ratio = ratios[static_cast<size_t>(c.n_layer)];
  for (int64_t l = 0; l < c.n_layer; ++l) {
    const int64_t r = c.compress_ratio[static_cast<size_t>(l)];
    DSV4_TRY(check(r == 0 || (r >= 2 && r <= 65536),
                   "metadata key deepseek4.attention.compress_ratios: entry " + std::to_string(l) +
                       " is " + std::to_string(r) + " (expected 0 or a ratio in [2, 65536])"));
  }
  DSV4_ASSIGN_OR_RETURN(c.compress_rope_theta, md.real(k("attention.compress_rope_freq_base"), 1.0, 1e12));
  DSV4_ASSIGN_OR_RETURN(c.rms_eps, md.real(k("attention.layer_norm_rms_epsilon"), 0.0, 1.0));
  DSV4_ASSIGN_OR_RETURN(c.rope_theta, md.real(k("rope.freq_base"), 1.0, 1e12));
  DSV4_ASSIGN_OR_RETURN(c.rope_scaling_factor, md.real(k("rope.scaling.factor"), 1.0, 1e6));
  DSV4_ASSIGN_OR_RETURN(c.rope_orig_ctx,
                        md.integer(k("rope.scaling.original_context_length"), 1, int64_t{1} << 40));
  DSV4_ASSIGN_OR_RETURN(c.yarn_beta_fast, md.real(k("rope.scaling.yarn_beta_fast"), 0.0, 1e6));
  DSV4_ASSIGN_OR_RETURN(c.yarn_beta_slow, md.real(k("rope.scaling.yarn_beta_slow"), 0.0, 1e6));
  DSV4_ASSIGN_OR_RETURN(c.n_hc, md.integer(k("hyper_connection.count"), 1, 64));
  DSV4_ASSIGN_OR_RETURN(c.sinkhorn_iters, md.integer(k("hyper_connection.sinkhorn_iterations"), 1, 1000));
  DSV4_ASSIGN_OR_RETURN(c.hc_eps, md.real(k("hyper_connection.epsilon"), 0.0, 1.0));
  DSV4_ASSIGN_OR_RETURN(c.n_expert, md.integer(k("expert_count"), 1, 65536));
  DSV4_ASSIGN_OR_RETURN(c.n_expert_used, md.integer(k("expert_used_count"), 1, 65536));
  DSV4_ASSIGN_OR_RETURN(c.n_ff_expert, md.integer(k("expert_feed_forward_length"), 1, kMaxDim));
  DSV4_ASSIGN_OR_RETURN(int64_t n_shared, md.integer(k("expert_shared_count"), 0, 64));
  DSV4_TRY(check(n_shared == 1, "metadata key deepseek4.expert_shared_count: must be 1, found " +
                                    std::to_string(n_shared)));
  DSV4_ASSIGN_OR_RETURN(c.n_hash_layer, md.integer(k("hash_layer_count"), 0, c.n_layer));
  DSV4_ASSIGN_OR_RETURN(c.expert_weights_scale, md.real(k("expert_weights_scale"), 0.0, 1e6));
  DSV4_ASSIGN_OR_RETURN(c.expert_weights_norm, md.boolean(k("expert_weights_norm")));
  DSV4_ASSIGN_OR_RETURN(std::vector<double> clamp,
                        md.float_array(k("swiglu_clamp_exp"), static_cast<size_t>(c.n_layer)));
  for (int64_t l = 0; l < c.n_layer; ++l) {
    const double v = clamp[static_cast<size_t>(l)];
    DSV4_TRY(check(std::isfinite(v) && v >= 0,
                   "metadata key deepseek4.swiglu_clamp_exp: entry " + std::to_string(l) +
                       " must be a finite non-negative number"));
    c.swiglu_clamp.push_back(static_cast<float>(v));
  }
  const size_t mtp_clamp = std::min(clamp.size() - 1, static_cast<size_t>(c.n_layer));
  DSV4_TRY(check(std::isfinite(clamp[mtp_clamp]) && clamp[mtp_clamp] >= 0,
                 "metadata key deepseek4.swiglu_clamp_exp: entry " + std::to_string(mtp_clamp) +
                     " must be a finite non-negative number"));
  c.mtp_swiglu_clamp = static_cast<float>(clamp[mtp_clamp]);
  for (const char* group_key : {"expert_group_count", "expert_group_used_count"}) {
    if (md.find(k(group_key)) != nullptr) {
      DSV4_ASSIGN_OR_RETURN(int64_t groups, md.integer(k(group_key), 0, 65536));
      DSV4_TRY(check(groups == 0, "metadata key " + k(group_key) +
                                      ": group-limited routing is not part of this model (found " +
                                      std::to_string(groups) + ")"));
    }
  }
  if (md.find("tokenizer.ggml.bos_token_id")) {
    DSV4_ASSIGN_OR_RETURN(c.bos_id, md.integer("tokenizer.ggml.bos_token_id", 0, c.n_vocab - 1));
  }
  if (md.find("tokenizer.ggml.eos_token_id")) {
    DSV4_ASSIGN_OR_RETURN(c.eos_id, md.integer("tokenizer.ggml.eos_token_id", 0, c.n_vocab - 1));
  }
  return Status();
}

// Relations between keys that the forward pass relies on.
Status validate(const Config& c) {
  DSV4_TRY(check(c.n_rot % 2 == 0, "deepseek4.rope.dimension_count must be even (RoPE pairs)"));
  DSV4_TRY(check(c.n_rot <= c.head_dim,
                 "deepseek4.rope.dimension_count exceeds attention.key_length"));
  DSV4_TRY(check(c.n_rot <= c.index_head_dim,
                 "deepseek4.rope.dimension_count exceeds attention.indexer.key_length"));
  DSV4_TRY(check(c.n_head % c.n_out_group == 0,
                 "deepseek4.attention.output_group_count must divide attention.head_count"));
  DSV4_TRY(check(c.n_expert_used <= c.n_expert,
                 "deepseek4.expert_used_count exceeds expert_count"));
  DSV4_TRY(check(c.rope_scaling_factor >= 1.0f, "deepseek4.rope.scaling.factor must be >= 1"));
  DSV4_TRY(check(c.n_nope() % 64 == 0,
                 "deepseek4.attention.key_length - rope.dimension_count must be a multiple of 64 "
                 "(the FP8 KV simulation works on blocks of 64)"));
  DSV4_TRY(check(c.index_head_dim % 32 == 0,
                 "deepseek4.attention.indexer.key_length must be a multiple of 32 "
                 "(the FP4 indexer simulation works on blocks of 32)"));
  for (int64_t l = 0; l < c.n_layer; ++l) {
    if (c.ratio(l) == 4) {
      DSV4_TRY(check((c.index_head_dim & (c.index_head_dim - 1)) == 0,
                     "deepseek4.attention.indexer.key_length must be a power of two "
                     "(Hadamard rotation of the indexer)"));
      break;
    }
  }
  return Status();
}

}  // namespace

Result<Config> read_config(const gguf::File& file) {
  Config c;
  MetadataReader md(file);
  Status s = read_into(md, c);
  if (s.ok()) s = validate(c);
  if (!s.ok()) return s.error().with_context(file.label());
  return c;
}

uint64_t session_state_bytes_f32(const Config& c, int64_t n_ctx) {
  const uint64_t f = 4, Dh = static_cast<uint64_t>(c.head_dim), ID = static_cast<uint64_t>(c.index_head_dim);
  const uint64_t n = static_cast<uint64_t>(n_ctx);
  uint64_t bytes = static_cast<uint64_t>(c.n_vocab) * f;
  for (int64_t l = 0; l < c.n_layer; ++l) {
    bytes += static_cast<uint64_t>(std::min<int64_t>(c.window, n_ctx)) * Dh * f;
    const uint64_t r = static_cast<uint64_t>(c.ratio(l));
    if (r == 0) continue;
    const uint64_t cw = static_cast<uint64_t>(c.compress_width(l));
    bytes += n / r * Dh * f;                 // compressed rows
    bytes += 2 * cw * r * cw * Dh * f;       // frontier: kv + gate, c·r slots of c·d
    if (c.has_indexer(l)) {
      bytes += n / r * ID * f;
      bytes += 2 * cw * r * cw * ID * f;
    }
  }
  return bytes;
}

}  // namespace dsv4::model
