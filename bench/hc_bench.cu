// hc_bench: GB/s of the chunk kernels of cuda/hc.h (hc_post leaving the next mixer's records, and
// hc_mixer_partials) at DeepSeek V4 Flash's width (4096, four streams, a 24-row F16 mixer) against
// the card's copy rate measured in the same run. Shapes: the attention's hc_post (one part), the
// FFN's (six routed parts and the shared expert's row), the first layer's partial sums, each at
// chunk lengths from 1 to 4096 tokens. Bytes counted: every row read and written once, the records
// and the mixer. Each figure: 5 rounds of 20 back-to-back launches timed with events, the median
// round's mean. Needs a GPU; not a test.
//
//   hc_bench [--quick]   (--quick: 2048 and 4096 tokens only)
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "device_bench.cuh"
#include "cuda/cost_model.h"
#include "cuda/hc.h"

using namespace dsv4;
using bench::check;
using bench::random_floats;

int main(int argc, char** argv) {
  const bool quick = argc > 1 && std::strcmp(argv[1], "--quick") == 0;
  if (argc > 1 && !quick) {
    std::fprintf(stderr, "usage: hc_bench [--quick]\n");
    return 2;
  }
  const int64_t D = 4096, HD = cuda::kHcStreams * D;
  const int kParts = 6, kMaxT = 4096;
  const Result<double> copy = cuda::measure_copy_gb_per_s();
  if (!copy.ok()) {
    std::fprintf(stderr, "hc_bench: %s\n", copy.status().message().c_str());
    return 1;
  }
  cudaDeviceProp prop{};
  check(cudaGetDeviceProperties(&prop, 0), "properties");
  std::printf("hc_bench on %s: copy ceiling %.0f GB/s; D = %lld, mixer 24 × %lld F16\n", prop.name, *copy,
              static_cast<long long>(D), static_cast<long long>(HD));

  cudaStream_t s;
  check(cudaStreamCreate(&s), "stream");
  float* x = random_floats(static_cast<size_t>(kMaxT) * HD, 1);
  float* out = random_floats(static_cast<size_t>(kMaxT) * HD, 2);
  float* f = random_floats(static_cast<size_t>(kMaxT) * kParts * D, 3);
  float* extra = random_floats(static_cast<size_t>(kMaxT) * D, 4);
  float* mix = random_floats(static_cast<size_t>(kMaxT) * cuda::kHcMixSize, 5);
  std::vector<uint16_t> mixer_host(static_cast<size_t>(cuda::kHcMix) * HD, 0x2000);  // f16 ≈ 0.0078
  uint8_t* mixer = nullptr;
  check(cudaMalloc(&mixer, mixer_host.size() * 2), "cudaMalloc");
  check(cudaMemcpy(mixer, mixer_host.data(), mixer_host.size() * 2, cudaMemcpyHostToDevice), "upload");
  double* partial = nullptr;
  check(cudaMalloc(&partial, static_cast<size_t>(cuda::hc_partial_doubles(kMaxT, D)) * sizeof(double)), "cudaMalloc");
  check(cudaDeviceSynchronize(), "fill");
  cuda::DeviceTensor fn;
  fn.type = gguf::TensorType::F16;
  fn.ne0 = HD;
  fn.ne1 = cuda::kHcMix;
  fn.row_bytes = HD * 2;
  fn.data = mixer;

  std::printf("%-28s %6s %10s %10s %8s\n", "kernel", "T", "µs", "GB/s", "of copy");
  const std::vector<int> lengths =
      quick ? std::vector<int>{2048, 4096} : std::vector<int>{1, 2, 16, 64, 512, 2048, 4096};
  for (int T : lengths) {
    const double records = static_cast<double>(cuda::hc_partial_doubles(T, D)) * sizeof(double);
    const double mixer_bytes = static_cast<double>(mixer_host.size()) * 2;
    const double state = static_cast<double>(T) * HD * sizeof(float);
    const double row = static_cast<double>(T) * D * sizeof(float);
    auto report = [&](const char* what, double us, double bytes) {
      std::printf("%-28s %6d %10.2f %10.0f %7.1f%%\n", what, T, us, bytes / us / 1e3, 100.0 * bytes / us / 1e3 / *copy);
    };
    for (int parts : {1, kParts}) {
      cuda::HcPostArgs a;
      a.x = x;
      a.f = f;
      a.n_parts = parts;
      a.f_extra = parts > 1 ? extra : nullptr;
      a.mix = mix;
      a.out = out;
      a.T = T;
      a.D = D;
      a.next_fn = &fn;
      a.partial = partial;
      const double us = bench::mean_us([&] { check(cuda::hc_post(a, s)); }, s, 20);
      const double bytes = 2 * state + (parts + (parts > 1 ? 1 : 0)) * row + records + mixer_bytes;
      report(parts > 1 ? "hc_post (FFN: 6 parts + 1)" : "hc_post (attention: 1 part)", us, bytes);
    }
    const double us =
        bench::mean_us([&] { check(cuda::hc_mixer_partials(x, fn, cuda::kHcMix, T, D, partial, s)); }, s, 20);
    report("hc_mixer_partials", us, state + records + mixer_bytes);
  }
  return 0;
}
