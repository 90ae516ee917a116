// §8.5 the routed experts of a chunk, after the routing left each token's K expert ids
// (scratch.experts) and route weights (scratch.route_w): gate/up of the selected experts, the
// weighted SwiGLU, down, into scratch.ydown as [T][K][D] in slot order (hc_post sums the slots).
//   routed_experts_matvec:  the matvec over the (token, slot) pairs (decode, the f32 prefill, or
//                           shapes the GEMM does not take);
//   routed_experts_grouped: the pairs sorted by expert, grouped tensor-core GEMMs over gathered
//                           xn rows (scratch.xn16, converted after hc_pre), scattered back.
#pragma once

#include <functional>

#include <cuda_runtime_api.h>

#include "cuda/device_model.h"
#include "cuda/device_state.h"
#include "model/config.h"
#include "util/status.h"

namespace dsv4::cuda {

struct RoutedExpertsStep {
  const model::Config* config = nullptr;
  const DeviceLayer* layer = nullptr;
  Scratch* scratch = nullptr;
  int T = 0;                // tokens of the chunk
  float limit = 0.0f;       // the layer's SwiGLU clamp
  bool split = false;       // grouped: split-f16 GEMM inputs (PrefillMath::kTensorCoreSplit)
  // A multi-token step (ChunkShape::step_kernels): every token's outputs the bits of a decode step.
  bool as_steps = false;
  cudaStream_t stream = nullptr;
  // Queued on `stream` between the gate/up and the down launches of routed_experts_matvec, once on
  // every path (the decode step's shared-expert down projection: forward_ffn.cc); none: nothing.
  // routed_experts_grouped does not call it.
  std::function<Status()> before_down;
};
Status routed_experts_matvec(const RoutedExpertsStep& s);
Status routed_experts_grouped(const RoutedExpertsStep& s);

}  // namespace dsv4::cuda
