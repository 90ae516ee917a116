// A second stream for the independent branches of a forward chunk (the compressors beside the q
// path, the shared expert beside the routed experts). fork() makes the side stream wait for what
// the main stream has queued so far, join() makes the main stream wait for the side's work; in a
// captured decode step the pair becomes two parallel paths of the graph. A decode step is a chain
// of small, latency-bound kernels, so work that does not depend on the chain fills idle SMs.
#pragma once

#include <cuda_runtime_api.h>

#include <memory>

#include "util/status.h"

namespace dsv4::cuda {

class Branch {
 public:
  static Result<std::unique_ptr<Branch>> create();
  ~Branch();
  Branch(const Branch&) = delete;
  Branch& operator=(const Branch&) = delete;

  cudaStream_t stream() const { return side_; }
  Status fork(cudaStream_t main);
  Status join(cudaStream_t main);

 private:
  Branch() = default;
  cudaStream_t side_ = nullptr;
  cudaEvent_t forked_ = nullptr;
  cudaEvent_t joined_ = nullptr;
};

}  // namespace dsv4::cuda
