// What the device micro-benchmarks (hc_bench, attention_bench) share: fatal checks, inputs filled
// on the device, and launch timing with events.
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "util/status.h"

namespace dsv4::bench {

inline void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) {
    std::fprintf(stderr, "error: %s: %s\n", what, cudaGetErrorString(e));
    std::exit(1);
  }
}

inline void check(const Status& s) {
  if (!s.ok()) {
    std::fprintf(stderr, "error: %s\n", s.message().c_str());
    std::exit(1);
  }
}

template <class T>
T* device_alloc(size_t n) {
  T* p = nullptr;
  check(cudaMalloc(&p, n * sizeof(T)), "cudaMalloc");
  return p;
}

// Uniform values in [-1, 1) from a hash of (index, seed); of each row of `width`, the dims below
// exact_dims rounded to multiples of 2^-4 (exact in f16 after any power-of-two scale, as official
// mode's FP8-simulated dims are).
static __global__ void fill_uniform_kernel(float* p, size_t n, uint32_t seed, int width, int exact_dims) {
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<size_t>(gridDim.x) * blockDim.x) {
    uint32_t h = static_cast<uint32_t>(i) * 2654435761u ^ seed;
    h ^= h >> 15;
    h *= 2246822519u;
    h ^= h >> 13;
    float v = (static_cast<float>(h & 0xFFFF) - 32768.0f) / 32768.0f;
    if (static_cast<int>(i % width) < exact_dims) v = rintf(v * 16.0f) / 16.0f;
    p[i] = v;
  }
}

inline float* random_floats(size_t n, uint32_t seed, int width = 1, int exact_dims = 0) {
  float* p = device_alloc<float>(n);
  fill_uniform_kernel<<<1024, 256>>>(p, n, seed, width, exact_dims);
  check(cudaGetLastError(), "fill");
  return p;
}

// µs per launch: a warm-up launch, then 5 rounds of `per_round` back-to-back launches timed with
// events; the median round's mean.
template <class Launch>
double mean_us(Launch launch, cudaStream_t s, int per_round) {
  cudaEvent_t a, b;
  check(cudaEventCreate(&a), "event");
  check(cudaEventCreate(&b), "event");
  launch();
  std::vector<double> rounds;
  for (int r = 0; r < 5; ++r) {
    check(cudaEventRecord(a, s), "record");
    for (int i = 0; i < per_round; ++i) launch();
    check(cudaEventRecord(b, s), "record");
    check(cudaEventSynchronize(b), "sync");
    float ms = 0;
    check(cudaEventElapsedTime(&ms, a, b), "elapsed");
    rounds.push_back(ms * 1000.0 / per_round);
  }
  std::sort(rounds.begin(), rounds.end());
  check(cudaEventDestroy(a), "event");
  check(cudaEventDestroy(b), "event");
  return rounds[rounds.size() / 2];
}

}  // namespace dsv4::bench
