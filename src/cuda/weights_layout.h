// Where every tensor of a DeviceModel lives in its arena, and what must be written there. One
// description serves both ways of filling the arena: copies from a mapped GGUF (weights_upload.cc)
// and on-device generation of synthetic weights (synthetic_weights.cu). Internal to cuda/.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "cuda/device_model.h"

namespace dsv4::cuda::detail {

// One tensor as the source describes it: its type and shape, and either the bytes to copy
// (`data`, a mapped GGUF) or the distribution to draw from (synthetic weights).
struct TensorSpec {
  gguf::TensorType type = gguf::TensorType::F32;
  int64_t ne0 = 0, ne1 = 1, ne2 = 1;
  bool present = false;
  const uint8_t* data = nullptr;
  float mean = 0.0f, stddev = 0.0f;

  uint64_t row_bytes() const;
  uint64_t bytes() const { return row_bytes() * static_cast<uint64_t>(ne1 * ne2); }
  int64_t elements() const { return ne0 * ne1 * ne2; }
};

// What to write at one place of the arena.
struct FillJob {
  enum class Kind {
    kCopy,        // `bytes` bytes of spec (a GGUF tensor kept in its layout)
    kInterleave,  // slabs of spec and spec2 alternating: slab e = spec slab e, then spec2 slab e
    kF32,         // spec widened to f32
    kInt32,       // spec's I32 values (tid2eid)
  };
  Kind kind = Kind::kCopy;
  uint64_t offset = 0;  // in the arena
  uint64_t bytes = 0;   // bytes written at offset
  TensorSpec spec, spec2;
  std::vector<float> values;  // kF32 computed on the host (RoPE tables) instead of spec
  uint64_t seed = 0;          // per tensor, for synthetic weights
};

// The roles of the tensors (names of FORMATS.md §3 without the "blk.N." prefix).
enum class Role {
  kHcAttnFn, kHcAttnScale, kHcAttnBase, kHcFfnFn, kHcFfnScale, kHcFfnBase, kAttnNorm, kFfnNorm,
  kQA, kQANorm, kQB, kKv, kKvANorm, kSinks, kOutA, kOutB,
  kCompApe, kCompKv, kCompGate, kCompNorm,
  kIndexQB, kIndexProj, kIndexCompApe, kIndexCompKv, kIndexCompGate, kIndexCompNorm,
  kGateInp, kExpProbsB, kTid2eid, kGateExps, kUpExps, kDownExps, kShGate, kShUp, kShDown,
  // Global tensors (layer -1).
  kTokenEmbd, kOutput, kOutputNorm, kOutputHcFn, kOutputHcBase, kOutputHcScale,
  // The MTP block's input (layer -1 of the block's model, MODEL.md §10.1).
  kMtpEProj, kMtpHProj, kMtpENorm, kMtpHNorm,
};

// The source of tensors: describe(layer, role) for layer-less roles gets layer -1. Absent
// tensors (wrong layer kind) have present = false.
using DescribeFn = std::function<TensorSpec(int64_t layer, Role role)>;

// Lays the model out from `base` (nullptr: only measure). Fills m's pointers (valid only with a
// real base), appends the jobs and returns the arena size. The RoPE tables are jobs too.
uint64_t lay_out_model(const model::Config& config, const DescribeFn& describe, uint8_t* base,
                       DeviceModel& m, std::vector<FillJob>& jobs);

}  // namespace dsv4::cuda::detail
