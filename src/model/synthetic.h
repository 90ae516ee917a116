// Deterministic synthetic DeepSeek V4 models (what `dsv4 gen-model` writes): the same bytes on
// every machine for the same arguments, every metadata key of FORMATS.md, a valid byte-level
// BPE tokenizer, and weights with realistic scales (peaked next-token distributions).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "gguf/gguf.h"
#include "util/status.h"

namespace dsv4::model {

enum class WeightTypes {
  kF32,        // every float tensor F32 (reference comparisons)
  kMixed,      // the published layout: F16 / Q8_0 / routed IQ2_XXS+Q2_K (q2) or Q4_K (q4)
};

// The MTP block's tensors (mtp.0.*, FORMATS.md §3.4): none, after the model's in the same file,
// or alone (ds4's separate MTP file; the same tensors, byte for byte, as in the combined file).
enum class MtpTensors { kNone, kWith, kOnly };

struct SyntheticSpec {
  std::string preset;      // tiny | small | flash-q2 | flash-q4
  uint64_t seed = 1;
  WeightTypes types = WeightTypes::kF32;
  // Optional vocabulary to embed (tokens, types, merges); empty = the preset's own byte-level
  // BPE vocabulary.
  std::vector<std::string> vocab_tokens;
  std::vector<int32_t> vocab_types;
  std::vector<std::string> vocab_merges;
  // Overrides for experiments (e.g. fewer layers of a full-size preset).
  std::optional<int64_t> n_layer;
  MtpTensors mtp = MtpTensors::kNone;
};

// Names of the presets gen-model accepts.
std::vector<std::string> synthetic_presets();

// Builds the model as a GGUF writer whose tensors are generated while writing, so full-size
// presets stream to disk one tensor at a time.
Result<gguf::Writer> make_synthetic_model(const SyntheticSpec& spec);

}  // namespace dsv4::model
