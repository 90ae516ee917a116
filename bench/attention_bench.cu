// attention_bench: TFLOP/s of cuda/prefill_attention.h (a block per split with the combine, and
// a block per whole token; the layer's row conversion) at DeepSeek V4 Flash's geometry (64 heads of 512, window 128, top-k 512, RoPE on the
// last 64 dims) for a chunk of T tokens at position 2048: a CSA layer (ratio 4, every token on the
// indexer's 512 rows), an HCA layer (ratio 128) and a sliding-window layer, with f32 rows and with
// rows whose first 448 dims are exact in f16 (official mode's FP8-simulated nope dims, the
// two-MMA path). Flops counted: 2·H·hd per row and token for the scores and again for P·V (the
// products the model asks for); "MMA" counts what the split operands issue (3 f16 MMAs per
// product, 2 on exact slabs) against the card's mma.sync ceiling measured in the same run
// (m16n8k16 f16 → f32, register operands, 8 independent chains per warp, every SM busy: the
// instruction the kernel issues, with no operand traffic). Each figure: 5 rounds of 5 back-to-back
// launches timed with events, the median round's mean. The output is the forward pass's: out_a's
// split f16 input in groups of 8 heads. Needs a GPU; not a test.
//
//   attention_bench [T]   (default 4096)
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "cuda/gemm_kernel.cuh"
#include "cuda/prefill_attention.h"
#include "device_bench.cuh"

namespace {

using namespace dsv4;
using bench::check;
using bench::device_alloc;
using bench::random_floats;

constexpr int kChains = 8, kMmaLoops = 4096;

__global__ void mma_peak_kernel(float* sink, uint32_t seed) {
  uint32_t a[4], b[2];
  for (int i = 0; i < 4; ++i) a[i] = seed ^ (threadIdx.x * 7u + i);
  for (int i = 0; i < 2; ++i) b[i] = seed ^ (threadIdx.x * 13u + i);
  float c[kChains][4] = {};
  for (int it = 0; it < kMmaLoops; ++it) {
#pragma unroll
    for (int k = 0; k < kChains; ++k) cuda::detail::mma_f16(c[k], a, b);
  }
  float v = 0;
  for (int k = 0; k < kChains; ++k) v += c[k][0] + c[k][1] + c[k][2] + c[k][3];
  if (v == 1.2345f) sink[threadIdx.x] = v;  // keeps the chains alive
}

// TFLOP/s of mma.sync m16n8k16 (f16 → f32) on every SM: the ceiling of the kernel's instruction.
double mma_ceiling_tflops(int sms, cudaStream_t s) {
  float* sink = device_alloc<float>(256);
  const int blocks = 4 * sms;
  const double us = bench::mean_us([&] { mma_peak_kernel<<<blocks, 256, 0, s>>>(sink, 0x3c003c00u); }, s, 5);
  check(cudaGetLastError(), "mma peak");
  cudaFree(sink);
  const double mmas = static_cast<double>(blocks) * 8 * kChains * kMmaLoops;  // 8 warps a block
  return mmas * 2.0 * 16 * 8 * 16 / us / 1e6;
}

}  // namespace

int main(int argc, char** argv) {
  const int T = argc > 1 ? std::atoi(argv[1]) : 4096;
  if (argc > 2 || T < 2) {
    std::fprintf(stderr, "usage: attention_bench [T ≥ 2]\n");
    return 2;
  }
  const int H = 64, hd = 512, n_rot = 64, W = 128, top_k = 512, pos0 = 2048, nope = 448;
  cudaDeviceProp prop{};
  check(cudaGetDeviceProperties(&prop, 0), "properties");
  cudaStream_t s;
  check(cudaStreamCreate(&s), "stream");
  const double ceiling = mma_ceiling_tflops(prop.multiProcessorCount, s);
  std::printf("attention_bench on %s: mma.sync f16 → f32 ceiling %.0f TFLOP/s\n", prop.name, ceiling);
  std::printf("chunk of %d tokens at %d; %d heads of %d, window %d, top-k %d\n", T, pos0, H, hd, W, top_k);

  const int64_t last = pos0 + T, comp_cap = last / 4;
  float* q = random_floats(static_cast<size_t>(T) * H * hd, 1);
  int* q_exp = device_alloc<int>(static_cast<size_t>(T) * H);
  // In the forward pass q_kv_finish leaves the queries in this form; here it is made once, untimed.
  check(cuda::prefill_attention_split_queries(q, q_exp, T, H, hd, s));
  float* out = device_alloc<float>(static_cast<size_t>(T) * H * hd);
  __half* out16 = device_alloc<__half>(static_cast<size_t>(T) * H * hd);
  __half* out16_lo = device_alloc<__half>(static_cast<size_t>(T) * H * hd);
  float* out16_scale = device_alloc<float>(static_cast<size_t>(T) * 8);
  float* sinks = random_floats(H, 2);
  std::vector<float> omega_host(n_rot / 2);
  for (int j = 0; j < n_rot / 2; ++j) omega_host[j] = std::pow(10000.0f, -2.0f * j / n_rot);
  float* omega = device_alloc<float>(omega_host.size());
  check(cudaMemcpy(omega, omega_host.data(), omega_host.size() * 4, cudaMemcpyHostToDevice), "upload");
  int* dpos = device_alloc<int>(1);
  check(cudaMemcpy(dpos, &pos0, sizeof(int), cudaMemcpyHostToDevice), "upload");
  // The indexer's selection of token t: top_k rows spread over the (pos0 + t + 1) / 4 it sees.
  std::vector<int32_t> sel_host(static_cast<size_t>(T) * top_k);
  for (int t = 0; t < T; ++t) {
    const int64_t n_vis = (pos0 + t + 1) / 4;
    for (int i = 0; i < top_k; ++i) {
      sel_host[static_cast<size_t>(t) * top_k + i] = static_cast<int32_t>(i * n_vis / top_k);
    }
  }
  int32_t* selected = device_alloc<int32_t>(sel_host.size());
  check(cudaMemcpy(selected, sel_host.data(), sel_host.size() * 4, cudaMemcpyHostToDevice), "upload");
  const int64_t cap = cuda::prefill_attention_row_capacity(W, T, comp_cap);
  cuda::PrefillAttnRows rows;
  rows.rows = device_alloc<__half>(static_cast<size_t>(cap) * 2 * hd);
  rows.meta = device_alloc<int2>(static_cast<size_t>(cap));
  const int splits = cuda::prefill_attention_splits(W + std::max<int64_t>(top_k, comp_cap / 32));  // HCA's at most
  float* part_o = device_alloc<float>(static_cast<size_t>(T) * H * splits * hd);
  float* part_ml = device_alloc<float>(static_cast<size_t>(T) * H * splits * 2);

  std::printf("%-16s %-10s %-6s %8s %10s %10s %10s %8s %12s\n", "layer", "rows", "blocks", "rows/tok", "µs", "TFLOP/s",
              "MMA TF/s", "of ceil", "rows µs");
  struct Layer {
    const char* name;
    int ratio;
  };
  for (const Layer& layer : {Layer{"CSA (ratio 4)", 4}, Layer{"HCA (ratio 128)", 128}, Layer{"sliding", 0}}) {
    for (const int exact_dims : {0, nope}) {
      float* kv = random_floats(static_cast<size_t>(T) * hd, 3, hd, exact_dims);
      float* ring = random_floats(static_cast<size_t>(W) * hd, 4, hd, exact_dims);
      float* comp = random_floats(static_cast<size_t>(std::max<int64_t>(comp_cap, 1)) * hd, 5, hd, exact_dims);
      cuda::AttentionArgs a;
      a.q = q;
      a.q_exp = q_exp;
      a.kv_chunk = kv;
      a.ring = ring;
      a.comp = comp;
      a.selected = selected;
      a.sinks = sinks;
      a.omega = omega;
      a.pos0 = dpos;
      a.out = out;
      a.part_o = part_o;
      a.part_ml = part_ml;
      a.splits = splits;
      a.T = T;
      a.H = H;
      a.hd = hd;
      a.n_rot = n_rot;
      a.window = W;
      a.ratio = layer.ratio;
      a.top_k = top_k;
      a.out16 = out16;
      a.out16_lo = out16_lo;
      a.out16_scale = out16_scale;
      a.out16_group = H / 8;
      const double rows_us = bench::mean_us([&] { check(cuda::prefill_attention_rows(a, T, rows, s)); }, s, 5);
      double row_count = 0;  // Σ over tokens of the rows each sees
      for (int t = 0; t < T; ++t) {
        const int64_t p = pos0 + t, raw = std::min<int64_t>(W, p + 1);
        const int64_t comp_rows = layer.ratio == 0   ? 0
                                  : layer.ratio == 4 ? std::min<int64_t>(top_k, (p + 1) / 4)
                                                     : (p + 1) / layer.ratio;
        row_count += static_cast<double>(raw + comp_rows);
      }
      const double flops = 4.0 * H * hd * row_count;
      const double exact_share = static_cast<double>(exact_dims) / hd;
      const double mma_flops = flops * (3.0 * (1.0 - exact_share) + 2.0 * exact_share);
      for (const bool whole : {false, true}) {
        a.whole_tokens = whole;
        const double us = bench::mean_us([&] { check(cuda::prefill_attention(a, rows, s)); }, s, 5);
        const double mma_tflops = mma_flops / us / 1e6;
        std::printf("%-16s %-10s %-6s %8.0f %10.1f %10.1f %10.1f %7.1f%% %12.1f\n", layer.name,
                    exact_dims ? "fp8 nope" : "f32", whole ? "token" : "split", row_count / T, us, flops / us / 1e6,
                    mma_tflops, ceiling > 0 ? 100.0 * mma_tflops / ceiling : 0.0, rows_us);
      }
      cudaFree(kv);
      cudaFree(ring);
      cudaFree(comp);
    }
  }
  return 0;
}
