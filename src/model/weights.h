// Weight binding: every tensor of FORMATS.md §3 located by name, its shape checked against the
// configuration and its type against what the engine can run (published q2/q4 mixes, and
// F32/F16/BF16 everywhere a test model needs them).
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "gguf/gguf.h"
#include "model/config.h"
#include "util/status.h"

namespace dsv4::model {

// Non-owning view of one tensor inside the mapped file.
struct Tensor {
  const gguf::TensorInfo* info = nullptr;

  bool present() const { return info != nullptr; }
  gguf::TensorType type() const { return info->type; }
  const uint8_t* data() const { return info->data; }
  int64_t ne(size_t d) const { return info->ne_at(d); }
  // Bytes of one row (ne[0] elements).
  uint64_t row_bytes() const;
  // Row `r` of a 2-D tensor, or of slab `slab` of a 3-D tensor (experts).
  const uint8_t* row(int64_t r, int64_t slab = 0) const;
  // Whole tensor widened to f32 (small tensors: norms, HC parameters, APE, sinks, bias).
  std::vector<float> to_f32() const;
};

struct LayerWeights {
  // Hyper-connections (attention and FFN sub-layers).
  Tensor hc_attn_fn, hc_attn_scale, hc_attn_base;
  Tensor hc_ffn_fn, hc_ffn_scale, hc_ffn_base;
  Tensor attn_norm, ffn_norm;
  // Attention.
  Tensor attn_q_a, attn_q_a_norm, attn_q_b, attn_kv, attn_kv_a_norm, attn_sinks;
  Tensor attn_output_a, attn_output_b;
  // Attention compressor (ratio != 0).
  Tensor attn_compressor_ape, attn_compressor_kv, attn_compressor_gate, attn_compressor_norm;
  // Indexer (ratio == 4).
  Tensor indexer_attn_q_b, indexer_proj;
  Tensor indexer_compressor_ape, indexer_compressor_kv, indexer_compressor_gate,
      indexer_compressor_norm;
  // MoE.
  Tensor ffn_gate_inp;
  Tensor exp_probs_b;       // non-hash layers
  Tensor ffn_gate_tid2eid;  // hash layers
  Tensor ffn_gate_exps, ffn_up_exps, ffn_down_exps;
  Tensor ffn_gate_shexp, ffn_up_shexp, ffn_down_shexp;
};

struct Weights {
  Tensor token_embd, output, output_norm;
  Tensor output_hc_fn, output_hc_base, output_hc_scale;
  std::vector<LayerWeights> layers;
};

// Binds and validates every tensor; errors name the tensor and what was expected
// ("blk.7.attn_kv.weight: expected Q8_0, F16, BF16 or F32, found Q4_K").
Result<Weights> bind_weights(const gguf::File& file, const Config& config);

// Identity of a model file for snapshots and caches: sha256 over the metadata, the tensor table
// and the first and last 256 bytes of every tensor's data. Reading all weights (86 GB) at load
// is too slow; samples of every tensor tell apart files that share a layout (another seed, an
// imatrix variant, a requantisation).
std::array<uint8_t, 32> model_fingerprint(const gguf::File& file);

struct MtpModel;

// A loaded model: the mapping, its configuration and bound weights, and the MTP block when one
// was loaded with it.
struct Model {
  gguf::File file;
  Config config;
  Weights weights;
  std::shared_ptr<const MtpModel> mtp;
};

// The MTP block (MODEL.md §10, FORMATS.md §3.4: the `mtp.0.*` tensors) as a one-layer model of its
// own, so that the block and its head run on the main model's code: `block.config` is the main
// configuration with one layer (compress ratio 0, top-k routing, the block's SwiGLU clamp);
// `block.weights` holds that layer, the block's own head (mtp.0.norm as output_norm, mtp.0.hc_head_*
// as output_hc_*) and the main model's embedding and LM head (shared, MODEL.md §10.1);
// `block.file` is the file the block came from. Its input streams combine the main model's final
// hyper-connection state with the next token's embedding through these four tensors.
struct MtpModel {
  Model block;
  Tensor e_proj, h_proj, enorm, hnorm;
};

Result<std::shared_ptr<const Model>> load_model(const std::string& path);
// Same over bytes the caller keeps alive (tests).
Result<std::shared_ptr<const Model>> load_model_from_file(gguf::File file);
// The main model and the MTP block from `mtp_file` (ds4's separate file or any GGUF holding the
// mtp.0.* tensors, the main file included), its tensors validated against the main configuration.
Result<std::shared_ptr<const Model>> load_model_with_mtp(gguf::File file, gguf::File mtp_file);

}  // namespace dsv4::model
