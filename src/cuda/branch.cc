#include "cuda/branch.h"

#include "cuda/check.h"

namespace dsv4::cuda {

Result<std::unique_ptr<Branch>> Branch::create() {
  std::unique_ptr<Branch> b(new Branch());
  DSV4_CUDA_TRY(cudaStreamCreateWithFlags(&b->side_, cudaStreamNonBlocking));
  DSV4_CUDA_TRY(cudaEventCreateWithFlags(&b->forked_, cudaEventDisableTiming));
  DSV4_CUDA_TRY(cudaEventCreateWithFlags(&b->joined_, cudaEventDisableTiming));
  return b;
}

Branch::~Branch() {
  if (side_) {
    cudaStreamSynchronize(side_);
    cudaStreamDestroy(side_);
  }
  if (forked_) cudaEventDestroy(forked_);
  if (joined_) cudaEventDestroy(joined_);
}

Status Branch::fork(cudaStream_t main) {
  DSV4_CUDA_TRY(cudaEventRecord(forked_, main));
  return cuda_status(cudaStreamWaitEvent(side_, forked_, 0), "branch fork");
}

Status Branch::join(cudaStream_t main) {
  DSV4_CUDA_TRY(cudaEventRecord(joined_, side_));
  return cuda_status(cudaStreamWaitEvent(main, joined_, 0), "branch join");
}

}  // namespace dsv4::cuda
