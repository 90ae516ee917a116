// indexer_bench: the decode step's lightning indexer (cuda/indexer.h: queries prepared, scores on the
// tensor cores, the top-k) for one token at contexts from 4K to 1M, at DeepSeek V4 Flash's geometry
// (64 heads of 128, top-k 512, official mode: FP4 queries, rows exact in f16 as the FP4 rows are):
// the whole select as the forward runs it (the top-k from the score kernel's histogram from
// kIndexerTopkBinsFrom candidates), with the one-block radix select, and from the histogram at any
// count, and the radix select alone on the same scores. Bytes counted for the scores: the f32 rows
// read once, against the card's copy rate measured in the same run. Each figure: 5 rounds of 20
// back-to-back launches timed with events, the median round's mean ("rest": the radix select
// launch's query preparation and scores, all but the top-k). The contexts' rows are the visible ones
// (context / 4): a launch at one of them costs about what the decode graph's does there (launched
// alone, without PDL overlap), without the 60 s of prefill cuda_forward_bench needs to reach 278K.
// Needs a GPU; not a test.
//
//   indexer_bench [CONTEXT]   (one context only: for profiling its launches)
#include <cuda_runtime.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "cuda/cost_model.h"
#include "cuda/indexer.h"
#include "device_bench.cuh"

using namespace dsv4;
using bench::check;
using bench::device_alloc;
using bench::random_floats;

int main(int argc, char** argv) {
  std::vector<int64_t> contexts = {4096, 49152, 65536, 98304, 147456, 278528, 1048576};
  if (argc > 2 || (argc == 2 && std::atoll(argv[1]) < 4)) {
    std::fprintf(stderr, "usage: indexer_bench [CONTEXT]\n");
    return 2;
  }
  if (argc == 2) contexts = {std::atoll(argv[1])};
  const int IH = 64, idh = 128, n_rot = 64, top_k = 512;
  const Result<double> copy = cuda::measure_copy_gb_per_s();
  if (!copy.ok()) {
    std::fprintf(stderr, "indexer_bench: %s\n", copy.status().message().c_str());
    return 1;
  }
  cudaDeviceProp prop{};
  check(cudaGetDeviceProperties(&prop, 0), "properties");
  std::printf("indexer_bench on %s: copy ceiling %.0f GB/s; %d heads of %d, top-k %d, one token\n", prop.name, *copy,
              IH, idh, top_k);
  std::printf("%-9s %7s %12s %12s %12s %10s %8s %10s %8s\n", "context", "rows", "select µs", "radix sel.",
              "bins sel.", "radix µs", "rest µs", "rows GB/s", "of copy");
  cudaStream_t s;
  check(cudaStreamCreate(&s), "stream");
  const std::vector<float> omega_host(n_rot / 2, 0.01f);
  float* omega = device_alloc<float>(omega_host.size());
  check(cudaMemcpy(omega, omega_host.data(), omega_host.size() * sizeof(float), cudaMemcpyHostToDevice), "omega");
  for (const int64_t context : contexts) {
    const int64_t rows = context / 4;
    const int pos = static_cast<int>(4 * rows - 1);  // (pos + 1) / 4 = rows visible
    int* pos0 = device_alloc<int>(1);
    check(cudaMemcpy(pos0, &pos, sizeof(int), cudaMemcpyHostToDevice), "position");
    float* q = random_floats(static_cast<size_t>(IH) * idh, 1);
    float* w = random_floats(IH, 2);
    float* k_rows = random_floats(static_cast<size_t>(rows) * idh, 3, idh, idh);
    float* scores = device_alloc<float>(static_cast<size_t>(rows));
    int32_t* selected = device_alloc<int32_t>(top_k);
    int32_t* n = device_alloc<int32_t>(1);
    uint32_t* scratch = device_alloc<uint32_t>(cuda::kIndexerTopkScratchWords);
    check(cudaMemset(scratch, 0, cuda::kIndexerTopkScratchWords * sizeof(uint32_t)), "scratch");
    const int32_t n_host = static_cast<int32_t>(rows);
    check(cudaMemcpy(n, &n_host, sizeof(n_host), cudaMemcpyHostToDevice), "n");
    cuda::IndexerArgs a;
    a.q = q;
    a.w = w;
    a.rows = k_rows;
    a.scores = scores;
    a.selected = selected;
    a.omega = omega;
    a.pos0 = pos0;
    a.T = 1;
    a.IH = IH;
    a.idh = idh;
    a.n_rot = n_rot;
    a.top_k = top_k;
    a.score_cap = rows;
    a.sim = true;
    // Each launch prepares q in place again (RoPE and FP4 of the last launch's queries): the values
    // stay finite and spread, which is all the timing needs.
    const double radix_select_us = bench::mean_us([&] { check(cuda::indexer_select(a, s)); }, s, 20);
    const double radix_us =
        bench::mean_us([&] { check(cuda::top_k_rows(scores, rows, n, 1, top_k, selected, s)); }, s, 20);
    a.topk_scratch = scratch;
    const double select_us = bench::mean_us([&] { check(cuda::indexer_select(a, s)); }, s, 20);
    a.topk_bins_from = 0;
    const double bins_select_us = bench::mean_us([&] { check(cuda::indexer_select(a, s)); }, s, 20);
    const double rest_us = radix_select_us - radix_us;
    const double gb_per_s = static_cast<double>(rows) * idh * sizeof(float) / rest_us / 1e3;
    std::printf("%-9lld %7lld %12.2f %12.2f %12.2f %10.2f %8.2f %10.0f %7.1f%%\n", static_cast<long long>(context),
                static_cast<long long>(rows), select_us, radix_select_us, bins_select_us, radix_us, rest_us, gb_per_s,
                100.0 * gb_per_s / *copy);
    for (void* p : {static_cast<void*>(pos0), static_cast<void*>(q), static_cast<void*>(w),
                    static_cast<void*>(k_rows), static_cast<void*>(scores), static_cast<void*>(selected),
                    static_cast<void*>(n), static_cast<void*>(scratch)}) {
      check(cudaFree(p), "free");
    }
  }
  check(cudaFree(omega), "free");
  check(cudaStreamDestroy(s), "stream");
  return 0;
}
