#include "cuda/cost_model.h"

#include <algorithm>
#include <cstdio>

#include "cuda/check.h"

namespace dsv4::cuda {

namespace {

uint64_t bytes_of(const DeviceTensor& t) { return t.present() ? t.bytes() : 0; }
uint64_t bytes_of(const PairedTensor& p) { return p.fused() ? bytes_of(p.both) : bytes_of(p.a) + bytes_of(p.b); }
double elems_of(const DeviceTensor& t) {
  return t.present() ? static_cast<double>(t.ne0) * static_cast<double>(t.ne1) * static_cast<double>(t.ne2) : 0.0;
}
double elems_of(const PairedTensor& p) { return p.fused() ? elems_of(p.both) : elems_of(p.a) + elems_of(p.b); }

bool scoring(const model::Config& c, int64_t context) { return context / 4 > c.index_top_k; }

// Compressed rows a token attends at this context in a layer of ratio r.
int64_t attended_comp_rows(const model::Config& c, int64_t r, int64_t context) {
  if (r == 0) return 0;
  if (r == 4) return std::min<int64_t>(context / 4, c.index_top_k);
  return context / r;
}

}  // namespace

uint64_t decode_step_bytes(const DeviceModel& m, int64_t ctx) {
  const model::Config& c = m.config;
  const double share = static_cast<double>(c.n_expert_used) / static_cast<double>(c.n_expert);
  double bytes = static_cast<double>(m.token_embd.row_bytes + bytes_of(m.output_hc_fn) + bytes_of(m.output));
  for (int64_t l = 0; l < c.n_layer; ++l) {
    const DeviceLayer& L = m.layers[static_cast<size_t>(l)];
    bytes += static_cast<double>(bytes_of(L.hc_attn_fn) + bytes_of(L.hc_ffn_fn) + bytes_of(L.q_a_kv) + bytes_of(L.q_b) +
                                 bytes_of(L.out_a) + bytes_of(L.out_b) + bytes_of(L.comp) + bytes_of(L.index_comp) +
                                 bytes_of(L.gate_inp) + bytes_of(L.shexp_gate_up) + bytes_of(L.shexp_down));
    if (scoring(c, ctx)) bytes += static_cast<double>(bytes_of(L.index_q_b) + bytes_of(L.index_proj));
    bytes += share * static_cast<double>(bytes_of(L.gate_up_exps) + bytes_of(L.down_exps));
    // f32 KV rows: the raw window, the attended compressed rows, the scanned indexer rows.
    const int64_t r = c.ratio(l);
    double rows = static_cast<double>(std::min<int64_t>(ctx, c.window) + attended_comp_rows(c, r, ctx));
    bytes += rows * static_cast<double>(c.head_dim) * 4.0;
    if (r == 4 && scoring(c, ctx)) bytes += static_cast<double>(ctx / 4) * static_cast<double>(c.index_head_dim) * 4.0;
  }
  return static_cast<uint64_t>(bytes);
}

double prefill_flops_per_token(const DeviceModel& m, int64_t ctx) {
  const model::Config& c = m.config;
  const double share = static_cast<double>(c.n_expert_used) / static_cast<double>(c.n_expert);
  double flops = 0;
  for (int64_t l = 0; l < c.n_layer; ++l) {
    const DeviceLayer& L = m.layers[static_cast<size_t>(l)];
    double elems = elems_of(L.hc_attn_fn) + elems_of(L.hc_ffn_fn) + elems_of(L.q_a_kv) + elems_of(L.q_b) +
                   elems_of(L.out_a) + elems_of(L.out_b) + elems_of(L.comp) + elems_of(L.index_comp) +
                   elems_of(L.gate_inp) + elems_of(L.shexp_gate_up) + elems_of(L.shexp_down) +
                   share * (elems_of(L.gate_up_exps) + elems_of(L.down_exps));
    if (scoring(c, ctx)) elems += elems_of(L.index_q_b) + elems_of(L.index_proj);
    flops += 2.0 * elems;
    const int64_t r = c.ratio(l);
    const double rows = static_cast<double>(std::min<int64_t>(ctx, c.window) + attended_comp_rows(c, r, ctx));
    flops += 4.0 * static_cast<double>(c.n_head) * static_cast<double>(c.head_dim) * rows;  // QKᵀ and PV
    if (r == 4 && scoring(c, ctx)) {
      flops += 2.0 * static_cast<double>(c.n_index_head) * static_cast<double>(c.index_head_dim) * static_cast<double>(ctx / 4);
    }
  }
  return flops;
}

std::string device_description() {
  int device = 0;
  cudaDeviceProp p{};
  if (cudaGetDevice(&device) != cudaSuccess || cudaGetDeviceProperties(&p, device) != cudaSuccess) return "cuda (unknown)";
  char mem[64];
  std::snprintf(mem, sizeof mem, ", %.1f GiB, %d SMs", static_cast<double>(p.totalGlobalMem) / (1024.0 * 1024.0 * 1024.0),
                p.multiProcessorCount);
  return std::string(p.name) + mem;
}

Result<double> measure_copy_gb_per_s() {
  constexpr size_t kBytes = size_t{512} << 20;
  void *a = nullptr, *b = nullptr;
  cudaStream_t stream = nullptr;
  cudaEvent_t start = nullptr, stop = nullptr;
  auto cleanup = [&]() {
    if (a) cudaFree(a);
    if (b) cudaFree(b);
    if (start) cudaEventDestroy(start);
    if (stop) cudaEventDestroy(stop);
    if (stream) cudaStreamDestroy(stream);
  };
  auto body = [&]() -> Result<double> {
    DSV4_CUDA_TRY(cudaMalloc(&a, kBytes));
    DSV4_CUDA_TRY(cudaMalloc(&b, kBytes));
    DSV4_CUDA_TRY(cudaMemset(a, 1, kBytes));
    DSV4_CUDA_TRY(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
    DSV4_CUDA_TRY(cudaEventCreate(&start));
    DSV4_CUDA_TRY(cudaEventCreate(&stop));
    float best = 0;
    for (int i = 0; i < 6; ++i) {
      DSV4_CUDA_TRY(cudaEventRecord(start, stream));
      DSV4_CUDA_TRY(cudaMemcpyAsync(b, a, kBytes, cudaMemcpyDeviceToDevice, stream));
      DSV4_CUDA_TRY(cudaEventRecord(stop, stream));
      DSV4_CUDA_TRY(cudaEventSynchronize(stop));
      float ms = 0;
      DSV4_CUDA_TRY(cudaEventElapsedTime(&ms, start, stop));
      if (i > 0 && (best == 0 || ms < best)) best = ms;  // the first copy warms up
    }
    return 2.0 * static_cast<double>(kBytes) / (static_cast<double>(best) * 1e-3) / 1e9;
  };
  Result<double> r = body();
  cleanup();
  return r;
}

}  // namespace dsv4::cuda
