// Model configuration read entirely from GGUF metadata (FORMATS.md §2) and cross-checked
// against tensor shapes. Nothing model-sized is a compile-time constant.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "gguf/gguf.h"
#include "util/status.h"

namespace dsv4::model {

struct Config {
  std::string name;           // general.name (informational)
  int64_t n_layer = 0;        // block_count (main layers; MTP not counted)
  int64_t n_embd = 0;         // embedding_length, D
  int64_t n_vocab = 0;        // vocab_size
  int64_t n_ctx_train = 0;    // context_length (informational)
  int64_t n_head = 0;         // attention.head_count, H
  int64_t head_dim = 0;       // attention.key_length == value_length, Dh
  int64_t n_rot = 0;          // rope.dimension_count, Dr (last Dr dims of each head)
  int64_t q_lora_rank = 0;    // attention.q_lora_rank
  int64_t o_lora_rank = 0;    // attention.output_lora_rank (per group)
  int64_t n_out_group = 0;    // attention.output_group_count
  int64_t window = 0;         // attention.sliding_window (includes the current token)
  int64_t n_index_head = 0;   // attention.indexer.head_count
  int64_t index_head_dim = 0; // attention.indexer.key_length
  int64_t index_top_k = 0;    // attention.indexer.top_k
  std::vector<int64_t> compress_ratio;  // per main layer (first n_layer entries)
  float rope_theta = 0;       // rope.freq_base (ratio-0 layers)
  float compress_rope_theta = 0;  // attention.compress_rope_freq_base
  float rope_scaling_factor = 0;  // rope.scaling.factor (YaRN, compressed layers)
  int64_t rope_orig_ctx = 0;      // rope.scaling.original_context_length
  float yarn_beta_fast = 0;
  float yarn_beta_slow = 0;
  float rms_eps = 0;          // attention.layer_norm_rms_epsilon
  int64_t n_hc = 0;           // hyper_connection.count
  int64_t sinkhorn_iters = 0; // hyper_connection.sinkhorn_iterations
  float hc_eps = 0;           // hyper_connection.epsilon
  int64_t n_expert = 0;       // expert_count
  int64_t n_expert_used = 0;  // expert_used_count
  int64_t n_ff_expert = 0;    // expert_feed_forward_length
  int64_t n_hash_layer = 0;   // hash_layer_count
  float expert_weights_scale = 0;
  bool expert_weights_norm = true;
  std::vector<float> swiglu_clamp;  // per main layer
  // The MTP block's entries (MODEL.md §10, FORMATS.md §2.2: the arrays' entry n_layer where they
  // have one): its compress ratio (0 in the published files: the block is sliding-only) and its
  // SwiGLU clamp (the last layer's where the array stops at n_layer).
  int64_t mtp_compress_ratio = 0;
  float mtp_swiglu_clamp = 0;
  // Tokenizer ids that the model needs (resolved by string in tokenizer/, these are the
  // metadata values for inspection only).
  int64_t bos_id = -1;
  int64_t eos_id = -1;

  // Derived.
  int64_t n_nope() const { return head_dim - n_rot; }
  int64_t hc_dim() const { return n_hc * n_embd; }
  int64_t hc_mix() const { return (2 + n_hc) * n_hc; }
  int64_t ratio(int64_t layer) const { return compress_ratio[static_cast<size_t>(layer)]; }
  bool has_compressor(int64_t layer) const { return ratio(layer) != 0; }
  bool has_indexer(int64_t layer) const { return ratio(layer) == 4; }
  bool is_hash_layer(int64_t layer) const { return layer < n_hash_layer; }
  // Compressor width multiplier: 2 for the overlapping ratio-4 compressor, else 1.
  int64_t compress_width(int64_t layer) const { return ratio(layer) == 4 ? 2 : 1; }
  int64_t heads_per_group() const { return n_head / n_out_group; }
};

// Reads every key of FORMATS.md §2.2 (any integer or float width), validates ranges and
// internal consistency (errors name the key), without looking at tensors.
Result<Config> read_config(const gguf::File& file);

// Bytes of one session's decode state held in f32 for a context of n_ctx tokens (MODEL.md
// §12): raw windows, compressed and indexer rows, compressor frontiers, and the logits.
uint64_t session_state_bytes_f32(const Config& config, int64_t n_ctx);

// Key names (with the "deepseek4." prefix) shared by the reader and gen-model.
namespace keys {
inline constexpr const char* kArch = "general.architecture";
inline constexpr const char* kArchName = "deepseek4";
}  // namespace keys

}  // namespace dsv4::model
