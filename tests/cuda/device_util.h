// Helpers for the forward-pass kernel tests: a stream, typed uploads and downloads,
// error measures.
#pragma once

#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "cuda/cuda_test_util.h"

namespace dsv4::cuda::testing {

// A non-blocking stream of the test's own (synchronised before every download).
class TestStream {
 public:
  TestStream() { ok_ = cudaStreamCreateWithFlags(&s_, cudaStreamNonBlocking) == cudaSuccess; }
  ~TestStream() {
    if (ok_) cudaStreamDestroy(s_);
  }
  cudaStream_t get() const { return s_; }
  bool ok() const { return ok_; }

 private:
  cudaStream_t s_ = nullptr;
  bool ok_ = false;
};

// `v` into an existing buffer: false if the buffer is missing or too small. Complete on return: a
// pageable cudaMemcpy may return before its DMA lands, and the tests' kernels run on non-blocking
// streams that do not wait for the legacy stream's copies.
template <class T>
bool upload(const DeviceBuffer& b, const std::vector<T>& v) {
  return b.ok() && b.size() >= v.size() * sizeof(T) &&
         cudaMemcpy(b.get(), v.data(), v.size() * sizeof(T), cudaMemcpyHostToDevice) == cudaSuccess &&
         cudaDeviceSynchronize() == cudaSuccess;
}

// A device copy of `v` (poisoned tail when `extra` > 0 elements are added), complete on return.
template <class T>
DeviceBuffer upload(const std::vector<T>& v, size_t extra = 0) {
  DeviceBuffer b((v.size() + extra) * sizeof(T));
  if (b.ok()) {
    EXPECT_TRUE(upload(b, v));
  }
  return b;
}

template <class T>
std::vector<T> download(const T* p, size_t n) {
  std::vector<T> v(n);
  if (n > 0) {
    EXPECT_EQ(cudaMemcpy(v.data(), p, n * sizeof(T), cudaMemcpyDeviceToHost), cudaSuccess);
  }
  return v;
}
template <class T>
std::vector<T> download(const DeviceBuffer& b, size_t n) {
  return download(b.get<T>(), n);
}

inline std::vector<float> normal_vector(size_t n, std::mt19937_64& rng, float mean = 0.0f, float stddev = 1.0f) {
  std::normal_distribution<float> d(mean, stddev);
  std::vector<float> v(n);
  for (float& x : v) x = d(rng);
  return v;
}

// ‖a − b‖ / ‖b‖ over n values (NaN anywhere gives +inf).
inline double rel_l2(const float* a, const float* b, size_t n) {
  double diff = 0, norm = 0;
  for (size_t i = 0; i < n; ++i) {
    if (!std::isfinite(a[i]) || !std::isfinite(b[i])) return INFINITY;
    diff += (double(a[i]) - b[i]) * (double(a[i]) - b[i]);
    norm += double(b[i]) * b[i];
  }
  return norm > 0 ? std::sqrt(diff / norm) : std::sqrt(diff);
}

// Largest |a − b| / (|b| + floor) over n values.
inline double max_rel(const float* a, const float* b, size_t n, double floor) {
  double worst = 0;
  for (size_t i = 0; i < n; ++i) {
    if (!std::isfinite(a[i]) || !std::isfinite(b[i])) return INFINITY;
    worst = std::max(worst, std::fabs(double(a[i]) - b[i]) / (std::fabs(double(b[i])) + floor));
  }
  return worst;
}

}  // namespace dsv4::cuda::testing
