// Stage timings of an un-captured forward chunk (forward.h's forward_chunk takes one).
#pragma once

#include <cuda_runtime_api.h>

#include <string>
#include <utility>
#include <vector>

#include "util/status.h"

namespace dsv4::cuda {

// Where the time of an un-captured chunk goes (benchmarks): an event is recorded after each
// stage of every layer; totals() sums the intervals by stage name. Not for captured chunks.
class StageProfile {
 public:
  StageProfile() = default;
  StageProfile(const StageProfile&) = delete;
  StageProfile& operator=(const StageProfile&) = delete;
  ~StageProfile();
  Status start(cudaStream_t stream);
  Status mark(const char* stage, cudaStream_t stream);
  // After the stream has finished: milliseconds per stage, in first-seen order.
  Result<std::vector<std::pair<std::string, double>>> totals() const;

 private:
  cudaEvent_t start_ = nullptr;
  std::vector<std::pair<const char*, cudaEvent_t>> marks_;
};

}  // namespace dsv4::cuda
