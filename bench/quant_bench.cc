// Throughput of the CPU weight kernels: dot_row on one thread (cache-resident and streaming
// from memory) and matvec on the default pool. Reports weight bytes/s and elements/s.
//
//   quant_bench --benchmark_filter=Dot
#include <benchmark/benchmark.h>

#include <cstdint>
#include <random>
#include <vector>

#include "quant/quant.h"

namespace {

using dsv4::quant::TensorType;

struct Type {
  TensorType t;
  int64_t block_elems, block_bytes;
};
const Type kTypes[] = {
    {TensorType::F32, 1, 4},       {TensorType::F16, 1, 2},      {TensorType::BF16, 1, 2},
    {TensorType::Q8_0, 32, 34},    {TensorType::Q2_K, 256, 84},  {TensorType::Q4_K, 256, 144},
    {TensorType::IQ2_XXS, 256, 66},
};

// Valid weights of the given shape, via the quantiser (random bytes could hold NaN scales).
std::vector<uint8_t> make_weights(const Type& ty, int64_t n_in, int64_t n_out) {
  std::mt19937_64 rng(1);
  std::normal_distribution<float> normal(0.0f, 0.02f);
  std::vector<float> row(static_cast<size_t>(n_in));
  const int64_t rb = n_in / ty.block_elems * ty.block_bytes;
  std::vector<uint8_t> w(static_cast<size_t>(rb * n_out));
  // Quantising every row (IQ2_XXS is slow to quantise) is not needed for timing: repeat a
  // few distinct rows.
  const int64_t distinct = std::min<int64_t>(n_out, 16);
  for (int64_t o = 0; o < distinct; ++o) {
    for (float& v : row) v = normal(rng);
    dsv4::quant::quantize_row(ty.t, row.data(), w.data() + o * rb, n_in);
  }
  for (int64_t o = distinct; o < n_out; ++o) {
    std::copy_n(w.data() + (o % distinct) * rb, rb, w.data() + o * rb);
  }
  return w;
}

std::vector<float> make_x(int64_t n) {
  std::mt19937_64 rng(2);
  std::normal_distribution<float> normal;
  std::vector<float> x(static_cast<size_t>(n));
  for (float& v : x) v = normal(rng);
  return x;
}

// Arg 0: type index; arg 1: rows (16 stays in L1/L2, 4096 streams from memory).
void BM_Dot(benchmark::State& state) {
  const Type& ty = kTypes[state.range(0)];
  const int64_t n = 4096, rows = state.range(1);
  const auto w = make_weights(ty, n, rows);
  const auto x = make_x(n);
  const int64_t rb = n / ty.block_elems * ty.block_bytes;
  for (auto _ : state) {
    float s = 0;
    for (int64_t o = 0; o < rows; ++o) s += dsv4::quant::dot_row(ty.t, w.data() + o * rb, x.data(), n);
    benchmark::DoNotOptimize(s);
  }
  state.SetBytesProcessed(state.iterations() * rb * rows);
  state.SetItemsProcessed(state.iterations() * n * rows);
  state.SetLabel(dsv4::gguf::type_name(ty.t));
}
BENCHMARK(BM_Dot)->ArgsProduct({{0, 1, 2, 3, 4, 5, 6}, {16, 4096}});

void BM_Matvec(benchmark::State& state) {
  const Type& ty = kTypes[state.range(0)];
  const int64_t n_in = 4096, n_out = 4096;
  const auto w = make_weights(ty, n_in, n_out);
  const auto x = make_x(n_in);
  std::vector<float> y(static_cast<size_t>(n_out));
  for (auto _ : state) {
    dsv4::quant::matvec(ty.t, w.data(), n_in, n_out, x.data(), y.data());
    benchmark::DoNotOptimize(y.data());
  }
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(w.size()));
  state.SetItemsProcessed(state.iterations() * n_in * n_out);
  state.SetLabel(dsv4::gguf::type_name(ty.t));
}
BENCHMARK(BM_Matvec)->DenseRange(0, 6)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
