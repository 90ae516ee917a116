// The model's weights resident in device memory (DESIGN.md §5): every tensor of model::Weights,
// copied unchanged in its GGUF block layout (the matvec kernels read it as it is), except that
//   * small vectors (norms, sinks, HC scale/base, APE, router bias) are widened to f32 once;
//   * projections that read the same input and share a type are laid out back to back, so one
//     launch computes both (q_a + kv, compressor kv + gate, indexer compressor kv + gate, shared
//     gate + up), and the routed gate and up slabs of each expert are interleaved (slab e = its
//     gate rows then its up rows), so the gate/up of the selected experts is one launch.
// Loading (from a mapped GGUF, through pinned staging buffers and overlapped copies) and
// on-device generation of synthetic presets live in weights_upload.cc / synthetic_weights.cu.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "gguf/types.h"
#include "model/config.h"
#include "model/weights.h"
#include "util/status.h"

namespace dsv4::cuda {

// A weight matrix (or a 3-D expert tensor) in device memory: ne1 rows of ne0 elements per slab,
// ne2 slabs, rows of row_bytes bytes.
struct DeviceTensor {
  gguf::TensorType type = gguf::TensorType::F32;
  int64_t ne0 = 0, ne1 = 0, ne2 = 1;
  int64_t row_bytes = 0;
  const uint8_t* data = nullptr;

  bool present() const { return data != nullptr; }
  int64_t slab_bytes() const { return row_bytes * ne1; }
  uint64_t bytes() const { return static_cast<uint64_t>(slab_bytes()) * static_cast<uint64_t>(ne2); }
};

// Two projections of the same input: `both` covers a's rows then b's rows when they are stored
// back to back (same type), else only a and b are set.
struct PairedTensor {
  DeviceTensor a, b, both;
  bool fused() const { return both.present(); }
};

struct DeviceLayer {
  int64_t ratio = 0;
  // Hyper-connections.
  DeviceTensor hc_attn_fn, hc_ffn_fn;
  const float *hc_attn_scale = nullptr, *hc_attn_base = nullptr;
  const float *hc_ffn_scale = nullptr, *hc_ffn_base = nullptr;
  const float *attn_norm = nullptr, *ffn_norm = nullptr;
  // Attention.
  PairedTensor q_a_kv;  // a = attn_q_a, b = attn_kv
  DeviceTensor q_b, out_a, out_b;
  const float *q_a_norm = nullptr, *kv_a_norm = nullptr, *sinks = nullptr;
  // Compressors: a = kv, b = gate; ape [ratio][c·d] f32.
  PairedTensor comp;
  const float *comp_ape = nullptr, *comp_norm = nullptr;
  PairedTensor index_comp;
  const float *index_comp_ape = nullptr, *index_comp_norm = nullptr;
  DeviceTensor index_q_b, index_proj;
  // MoE.
  DeviceTensor gate_inp;
  const float* exp_probs_b = nullptr;  // non-hash layers
  const int32_t* tid2eid = nullptr;    // hash layers: [n_vocab][n_expert_used]
  PairedTensor gate_up_exps;           // both = interleaved slabs of 2·F rows
  DeviceTensor down_exps;
  PairedTensor shexp_gate_up;
  DeviceTensor shexp_down;
};

// One device allocation holding every tensor, freed with the model.
class DeviceArena {
 public:
  DeviceArena() = default;
  DeviceArena(const DeviceArena&) = delete;
  DeviceArena& operator=(const DeviceArena&) = delete;
  ~DeviceArena();
  // Allocates `bytes`; the error says how much device memory is missing when it cannot.
  Status allocate(uint64_t bytes, const std::string& what);
  uint8_t* base() const { return base_; }
  uint64_t size() const { return size_; }

 private:
  uint8_t* base_ = nullptr;
  uint64_t size_ = 0;
};

// The MTP block's input projections and norms (MODEL.md §10.1): X[h] = e_proj·RMSNorm_enorm(Embed[t])
// + h_proj·RMSNorm_hnorm(H[h]).
struct MtpInput {
  DeviceTensor e_proj, h_proj;
  const float *enorm = nullptr, *hnorm = nullptr;
};

struct DeviceModel {
  model::Config config;
  std::vector<DeviceLayer> layers;
  DeviceTensor token_embd, output, output_hc_fn;
  const float *output_norm = nullptr, *output_hc_scale = nullptr, *output_hc_base = nullptr;
  // RoPE frequencies ω_j (cpu::layer_rope_frequencies) of the two regimes, n_rot/2 each.
  const float *omega_main = nullptr, *omega_comp = nullptr;
  DeviceArena arena;
  uint64_t weight_bytes = 0;  // GGUF tensor bytes resident (the f32 copies not counted)
  double load_seconds = 0, load_gb_per_s = 0;

  // Present only in the MTP block's model (upload_mtp_block): its chunks start from MtpInput over the
  // state's hidden rows and tokens instead of the embedding.
  MtpInput mtp_input;

  const float* omega(int64_t layer) const { return config.ratio(layer) == 0 ? omega_main : omega_comp; }
  bool is_mtp_block() const { return mtp_input.e_proj.present(); }
};

// Checks that the configuration is one the kernels handle (4 hyper-connection streams, head
// dims multiple of 32, ...): a clear error otherwise.
Status check_device_config(const model::Config& config);

// Uploads a bound model. Copies run from the mapping through pinned staging buffers on several
// streams at once; load_gb_per_s reports the rate.
Result<std::unique_ptr<DeviceModel>> upload_model(const model::Model& model);

// The MTP block of a model (model::MtpModel) as a one-layer DeviceModel of its own: its tensors in its
// arena, the embedding and LM head those of `main` (shared, MODEL.md §10.1), which must outlive it.
Result<std::unique_ptr<DeviceModel>> upload_mtp_block(const model::MtpModel& mtp, const DeviceModel& main);

// A full-size synthetic preset ("flash-q2", "flash-q4"; n_layer 0 = all 43) with its weights
// generated in device memory: valid random blocks of the published type mix with realistic
// scales, deterministic from the seed. No file involved.
Result<std::unique_ptr<DeviceModel>> generate_synthetic_model(const std::string& preset, int64_t n_layer,
                                                             uint64_t seed);
// The same preset's MTP block (model/synthetic.cc's: Q4_K routed experts) generated on the device,
// sharing `main`'s embedding and LM head as upload_mtp_block does.
Result<std::unique_ptr<DeviceModel>> generate_synthetic_mtp_block(const std::string& preset, uint64_t seed,
                                                                  const DeviceModel& main);

}  // namespace dsv4::cuda
