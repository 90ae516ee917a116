// stage_profile.h.
#include "cuda/stage_profile.h"

#include <algorithm>

#include "cuda/check.h"

namespace dsv4::cuda {

StageProfile::~StageProfile() {
  if (start_) cudaEventDestroy(start_);
  for (auto& m : marks_) cudaEventDestroy(m.second);
}

Status StageProfile::start(cudaStream_t stream) {
  if (!start_) DSV4_CUDA_TRY(cudaEventCreate(&start_));
  return cuda_status(cudaEventRecord(start_, stream), "profile event");
}

Status StageProfile::mark(const char* stage, cudaStream_t stream) {
  cudaEvent_t e = nullptr;
  DSV4_CUDA_TRY(cudaEventCreate(&e));
  marks_.emplace_back(stage, e);
  return cuda_status(cudaEventRecord(e, stream), "profile event");
}

Result<std::vector<std::pair<std::string, double>>> StageProfile::totals() const {
  std::vector<std::pair<std::string, double>> out;
  cudaEvent_t prev = start_;
  for (const auto& [stage, e] : marks_) {
    float ms = 0;
    DSV4_CUDA_TRY(cudaEventElapsedTime(&ms, prev, e));
    prev = e;
    auto it = std::find_if(out.begin(), out.end(), [&](const auto& p) { return p.first == stage; });
    if (it == out.end()) {
      out.emplace_back(stage, ms);
    } else {
      it->second += ms;
    }
  }
  return out;
}

}  // namespace dsv4::cuda
