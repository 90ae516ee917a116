// cuda_bench: the card's copy ceiling and the GB/s of the matvec kernels (cuda/matvec.h) on decode
// shapes of DeepSeek V4 Flash, as a fraction of that ceiling.
//
// Method (.library/device/METHOD.md): random data (never zeros); each case rotates over weight
// copies (or, for experts, random expert lists over a tensor) totalling ≥ 4× the L2 size, so the
// weights come from HBM; the launches of one case are captured into a CUDA graph and the graph is
// replayed (after warm-up) between two events; the median replay time / launches is reported. The
// copy ceiling is measured in the same binary: cudaMemcpyAsync device-to-device and a 16-byte copy
// kernel over 1 GiB, counting bytes read + bytes written; the larger is the ceiling.
//
//   cuda_bench              default launch shapes, then a sweep over the fast kernel's launch shapes
//   cuda_bench --quick      default launch shapes only
//   cuda_bench --only TEXT  default launch shapes of the cases named ...TEXT... (for ncu)
//   cuda_bench --sweep TEXT the cases named ...TEXT...: default launch shapes, then the sweep
//
// Bytes counted per launch: the weights read (rows × row bytes, per selected expert) plus the
// activations read and the outputs written.
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "cuda/matvec.h"

namespace {

using dsv4::cuda::ExpertMatvec;
using dsv4::cuda::MatvecImpl;
using dsv4::cuda::MatvecTuning;
using dsv4::gguf::TensorType;

#define CHECK_CUDA(expr)                                                                   \
  do {                                                                                     \
    const cudaError_t check_e_ = (expr);                                                   \
    if (check_e_ != cudaSuccess) {                                                         \
      std::fprintf(stderr, "cuda_bench: %s failed at %s:%d: %s (%s)\n", #expr, __FILE__, __LINE__, \
                   cudaGetErrorName(check_e_), cudaGetErrorString(check_e_));              \
      std::exit(1);                                                                        \
    }                                                                                      \
  } while (0)

#define CHECK_STATUS(expr)                                                                  \
  do {                                                                                      \
    const ::dsv4::Status check_s_ = (expr);                                                 \
    if (!check_s_.ok()) {                                                                   \
      std::fprintf(stderr, "cuda_bench: %s failed: %s\n", #expr, check_s_.message().c_str()); \
      std::exit(1);                                                                         \
    }                                                                                       \
  } while (0)

// ---- random device data ----

__device__ uint64_t mix64(uint64_t z) {
  z += 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// A moderate half (±2^[-8, 2] with a random mantissa) from 64 random bits.
__device__ uint16_t moderate_half(uint64_t r) {
  const uint16_t exp = static_cast<uint16_t>(7 + (r >> 20) % 11);
  return static_cast<uint16_t>(((r & 1) << 15) | (exp << 10) | ((r >> 8) & 0x3FF));
}

__global__ void fill_bytes(uint8_t* p, size_t n, uint64_t seed) {
  for (size_t i = (blockIdx.x * size_t{blockDim.x} + threadIdx.x) * 8; i < n; i += size_t{gridDim.x} * blockDim.x * 8) {
    const uint64_t r = mix64(seed ^ i);
    for (int k = 0; k < 8 && i + k < n; ++k) p[i + k] = static_cast<uint8_t>(r >> (8 * k));
  }
}

// Replaces the f16 fields of every block (or every element of a plain type) with sane values.
__global__ void fix_blocks(uint8_t* p, size_t n_blocks, int block_bytes, int off0, int off1,
                           int plain, uint64_t seed) {
  for (size_t b = blockIdx.x * size_t{blockDim.x} + threadIdx.x; b < n_blocks; b += size_t{gridDim.x} * blockDim.x) {
    const uint64_t r = mix64(seed ^ (b * 0x100000001B3ull));
    uint8_t* blk = p + b * block_bytes;
    if (plain == 32) {  // F32: a moderate float
      const float f = __half2float(__ushort_as_half(moderate_half(r)));
      memcpy(blk, &f, 4);
    } else if (plain == 16) {
      const uint16_t h = moderate_half(r);
      memcpy(blk, &h, 2);
    } else if (plain == 17) {  // BF16 with a moderate exponent
      const uint16_t h = static_cast<uint16_t>(((r & 1) << 15) | ((120 + (r >> 20) % 11) << 7) | ((r >> 8) & 0x7F));
      memcpy(blk, &h, 2);
    } else {
      if (off0 >= 0) {
        const uint16_t h = moderate_half(r);
        memcpy(blk + off0, &h, 2);
      }
      if (off1 >= 0) {
        const uint16_t h = moderate_half(r >> 32);
        memcpy(blk + off1, &h, 2);
      }
    }
  }
}

__global__ void fill_floats(float* p, size_t n, uint64_t seed) {
  for (size_t i = blockIdx.x * size_t{blockDim.x} + threadIdx.x; i < n; i += size_t{gridDim.x} * blockDim.x) {
    const uint64_t r = mix64(seed ^ i);
    p[i] = static_cast<float>(static_cast<int64_t>(r >> 40) - (int64_t{1} << 23)) / 8388608.0f;  // [-1, 1)
  }
}

__global__ void copy16(const uint4* __restrict__ src, uint4* __restrict__ dst, size_t n) {
  for (size_t i = blockIdx.x * size_t{blockDim.x} + threadIdx.x; i < n; i += size_t{gridDim.x} * blockDim.x) {
    dst[i] = src[i];
  }
}

struct TypeInfo {
  TensorType t;
  const char* name;
  int64_t block_elems, block_bytes;
  int off0, off1, plain;
};

TypeInfo info(TensorType t) {
  switch (t) {
    case TensorType::F32: return {t, "F32", 1, 4, -1, -1, 32};
    case TensorType::F16: return {t, "F16", 1, 2, -1, -1, 16};
    case TensorType::BF16: return {t, "BF16", 1, 2, -1, -1, 17};
    case TensorType::Q8_0: return {t, "Q8_0", 32, 34, 0, -1, 0};
    case TensorType::Q2_K: return {t, "Q2_K", 256, 84, 80, 82, 0};
    case TensorType::Q4_K: return {t, "Q4_K", 256, 144, 0, 2, 0};
    case TensorType::IQ2_XXS: return {t, "IQ2_XXS", 256, 66, 0, -1, 0};
    default: return {t, "?", 1, 1, -1, -1, 0};
  }
}

void fill_weights(uint8_t* p, size_t bytes, const TypeInfo& ti, uint64_t seed) {
  fill_bytes<<<1024, 256>>>(p, bytes, seed);
  CHECK_CUDA(cudaGetLastError());
  fix_blocks<<<1024, 256>>>(p, bytes / ti.block_bytes, static_cast<int>(ti.block_bytes), ti.off0, ti.off1,
                            ti.plain, seed * 31 + 7);
  CHECK_CUDA(cudaGetLastError());
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0.0 : v[v.size() / 2];
}

// Median over `reps` replays of `graph`, in milliseconds.
double time_graph(cudaGraphExec_t exec, cudaStream_t s, int warmup, int reps) {
  cudaEvent_t a, b;
  CHECK_CUDA(cudaEventCreate(&a));
  CHECK_CUDA(cudaEventCreate(&b));
  for (int i = 0; i < warmup; ++i) CHECK_CUDA(cudaGraphLaunch(exec, s));
  CHECK_CUDA(cudaStreamSynchronize(s));
  std::vector<double> t;
  for (int i = 0; i < reps; ++i) {
    CHECK_CUDA(cudaEventRecord(a, s));
    CHECK_CUDA(cudaGraphLaunch(exec, s));
    CHECK_CUDA(cudaEventRecord(b, s));
    CHECK_CUDA(cudaEventSynchronize(b));
    float ms = 0;
    CHECK_CUDA(cudaEventElapsedTime(&ms, a, b));
    t.push_back(ms);
  }
  CHECK_CUDA(cudaEventDestroy(a));
  CHECK_CUDA(cudaEventDestroy(b));
  return median(t);
}

struct Device {
  cudaDeviceProp prop{};
  size_t l2 = 0;
  double copy_gbps = 0;
};

// Device-to-device copy of 1 GiB: bytes read + bytes written over the median time.
double measure_copy(cudaStream_t s) {
  const size_t bytes = size_t{1} << 30;
  void *src = nullptr, *dst = nullptr;
  CHECK_CUDA(cudaMalloc(&src, bytes));
  CHECK_CUDA(cudaMalloc(&dst, bytes));
  fill_bytes<<<1024, 256, 0, s>>>(static_cast<uint8_t*>(src), bytes, 1);
  CHECK_CUDA(cudaGetLastError());
  cudaEvent_t a, b;
  CHECK_CUDA(cudaEventCreate(&a));
  CHECK_CUDA(cudaEventCreate(&b));
  double best = 0;
  for (int variant = 0; variant < 2; ++variant) {
    std::vector<double> t;
    for (int i = 0; i < 13; ++i) {
      CHECK_CUDA(cudaEventRecord(a, s));
      if (variant == 0) {
        CHECK_CUDA(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, s));
      } else {
        copy16<<<132 * 8, 512, 0, s>>>(static_cast<const uint4*>(src), static_cast<uint4*>(dst), bytes / 16);
        CHECK_CUDA(cudaGetLastError());
      }
      CHECK_CUDA(cudaEventRecord(b, s));
      CHECK_CUDA(cudaEventSynchronize(b));
      float ms = 0;
      CHECK_CUDA(cudaEventElapsedTime(&ms, a, b));
      if (i >= 3) t.push_back(ms);  // the first runs warm up
    }
    const double gbps = 2.0 * bytes / (median(t) * 1e-3) / 1e9;
    std::printf("copy ceiling: %-28s %8.1f GB/s (1 GiB, read + write, median of %zu)\n",
                variant == 0 ? "cudaMemcpyAsync D2D" : "16-byte copy kernel", gbps, t.size());
    best = std::max(best, gbps);
  }
  CHECK_CUDA(cudaEventDestroy(a));
  CHECK_CUDA(cudaEventDestroy(b));
  CHECK_CUDA(cudaFree(src));
  CHECK_CUDA(cudaFree(dst));
  return best;
}

struct Case {
  const char* what;  // the model tensor it stands for
  TensorType type;
  int64_t n_in, n_out;
  int slots = 0;      // 0: dense; else experts
  bool sum = false;   // experts summed (MoE down)
  int64_t n_expert = 0;
  bool x_per_slot = false;  // per-slot form with one activation vector per slot (attention output_a)
  bool swiglu = false;      // per-slot gate and up rows, the SwiGLU fused into the launch (MoE down)
  bool no_ids = false;      // slot j is slab j (experts == null, as the decode's output_a): the
                            // launches rotate over n_expert / slots copies by their base pointer
};

struct Result {
  double us = 0, gbps = 0;
  int rows = 0, warps = 0;
};

// Times one case with one implementation and tuning. Weight copies / expert lists rotate so the
// weights come from HBM.
Result run_case(const Case& c, const Device& dev, MatvecImpl impl, MatvecTuning tuning, bool quiet_errors) {
  const TypeInfo ti = info(c.type);
  const int64_t row_bytes = c.n_in / ti.block_elems * ti.block_bytes;
  const int64_t matrix = row_bytes * c.n_out;
  const size_t rotate = std::max<size_t>(4 * dev.l2, size_t{256} << 20);
  int copies = 1;
  int64_t n_expert = c.n_expert;
  size_t w_bytes;
  if (c.slots == 0) {
    copies = static_cast<int>(std::clamp<int64_t>((rotate + matrix - 1) / matrix, 1, 256));
    w_bytes = static_cast<size_t>(matrix) * copies;
  } else {
    w_bytes = static_cast<size_t>(matrix) * n_expert;
  }
  const int launches = std::max(32, copies);  // every copy once per graph replay
  const int slots = std::max(1, c.slots);
  const bool x_per_slot = c.sum || c.x_per_slot || c.swiglu;
  const int64_t x_elems = (x_per_slot ? slots : 1) * c.n_in * (c.swiglu ? 2 : 1);
  const int64_t y_elems = (c.slots && !c.sum ? slots : 1) * c.n_out;

  uint8_t* w = nullptr;
  float *x = nullptr, *y = nullptr, *scale = nullptr;
  int32_t* ids = nullptr;
  CHECK_CUDA(cudaMalloc(&w, w_bytes));
  CHECK_CUDA(cudaMalloc(&x, x_elems * 4));
  CHECK_CUDA(cudaMalloc(&y, y_elems * 4));
  CHECK_CUDA(cudaMalloc(&scale, slots * 4));
  CHECK_CUDA(cudaMalloc(&ids, static_cast<size_t>(launches) * slots * 4));
  fill_weights(w, w_bytes, ti, 0x1234 + c.n_in * 7 + c.n_out);
  fill_floats<<<256, 256>>>(x, x_elems, 99);
  CHECK_CUDA(cudaGetLastError());
  fill_floats<<<1, 32>>>(scale, slots, 5);
  CHECK_CUDA(cudaGetLastError());
  // Expert lists: distinct random experts per launch, as the router picks them.
  std::mt19937 rng(42);
  std::vector<int32_t> h_ids(static_cast<size_t>(launches) * slots);
  for (int l = 0; l < launches; ++l) {
    std::vector<int32_t> all(static_cast<size_t>(std::max<int64_t>(n_expert, 1)));
    for (size_t e = 0; e < all.size(); ++e) all[e] = static_cast<int32_t>(e);
    std::shuffle(all.begin(), all.end(), rng);
    for (int j = 0; j < slots; ++j) h_ids[static_cast<size_t>(l * slots + j)] = all[static_cast<size_t>(j) % all.size()];
  }
  CHECK_CUDA(cudaMemcpy(ids, h_ids.data(), h_ids.size() * 4, cudaMemcpyHostToDevice));
  CHECK_CUDA(cudaDeviceSynchronize());

  cudaStream_t s;
  CHECK_CUDA(cudaStreamCreate(&s));
  cudaGraph_t graph = nullptr;
  CHECK_CUDA(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal));
  std::string error;
  for (int l = 0; l < launches && error.empty(); ++l) {
    if (c.slots == 0) {
      const dsv4::Status st = dsv4::cuda::matvec(c.type, w + static_cast<size_t>(l % copies) * matrix, c.n_in,
                                                 c.n_out, x, y, s, impl, tuning);
      if (!st.ok()) error = st.message();
    } else {
      ExpertMatvec m;
      m.type = c.type;
      m.w = w;
      m.n_in = c.n_in;
      m.n_out = c.n_out;
      m.n_expert = n_expert;
      m.experts = ids + l * slots;
      if (c.no_ids) {
        m.w = w + static_cast<size_t>(l % (n_expert / slots)) * slots * matrix;
        m.n_expert = slots;
        m.experts = nullptr;
      }
      m.n_slots = slots;
      m.x = x;
      m.x_stride = x_per_slot ? c.n_in : 0;
      m.slot_scale = c.sum ? scale : nullptr;
      if (c.swiglu) {  // slot j's gate at j·2n_in, its up at j·2n_in + n_in, as the forward pass has them
        m.x_stride = 2 * c.n_in;
        m.up = x + c.n_in;
        m.act_weights = scale;
        m.act_limit = 10.0f;
      }
      const dsv4::Status st = c.sum ? dsv4::cuda::matvec_experts_sum(m, y, s, impl, tuning)
                                    : dsv4::cuda::matvec_experts(m, y, s, impl, tuning);
      if (!st.ok()) error = st.message();
    }
  }
  CHECK_CUDA(cudaStreamEndCapture(s, &graph));
  Result r;
  if (!error.empty()) {
    if (!quiet_errors) std::fprintf(stderr, "cuda_bench: %s\n", error.c_str());
  } else {
    cudaGraphExec_t exec = nullptr;
    CHECK_CUDA(cudaGraphInstantiate(&exec, graph, 0));
    const double ms = time_graph(exec, s, 3, 25) / launches;
    CHECK_CUDA(cudaGraphExecDestroy(exec));
    const double bytes = static_cast<double>(matrix) * slots + 4.0 * (x_elems + y_elems);
    r.us = ms * 1e3;
    r.gbps = bytes / (ms * 1e-3) / 1e9;
  }
  CHECK_CUDA(cudaGraphDestroy(graph));
  CHECK_CUDA(cudaStreamDestroy(s));
  CHECK_CUDA(cudaFree(w));
  CHECK_CUDA(cudaFree(x));
  CHECK_CUDA(cudaFree(y));
  CHECK_CUDA(cudaFree(scale));
  CHECK_CUDA(cudaFree(ids));
  return r;
}

std::string shape(const Case& c) {
  char b[96];
  if (c.slots == 0) {
    std::snprintf(b, sizeof b, "%lld -> %lld", static_cast<long long>(c.n_in), static_cast<long long>(c.n_out));
  } else {
    std::snprintf(b, sizeof b, "%lld -> %lld x%d%s", static_cast<long long>(c.n_in),
                  static_cast<long long>(c.n_out), c.slots, c.sum ? " sum" : "");
  }
  return b;
}

}  // namespace

int main(int argc, char** argv) {
  bool quick = false;
  std::string only;  // --only TEXT: just the cases whose name contains TEXT, default shapes (for ncu)
  bool sweep_only = false;  // --sweep TEXT: those cases, then their sweep
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--quick") == 0) {
      quick = true;
    } else if ((std::strcmp(argv[i], "--only") == 0 || std::strcmp(argv[i], "--sweep") == 0) && i + 1 < argc) {
      sweep_only = std::strcmp(argv[i], "--sweep") == 0;
      only = argv[++i];
    } else {
      std::fprintf(stderr, "usage: cuda_bench [--quick] [--only TEXT | --sweep TEXT]\n");
      return 2;
    }
  }
  int n = 0;
  const cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess || n == 0) {
    std::fprintf(stderr, "cuda_bench: no usable CUDA device (%s)\n",
                 e != cudaSuccess ? cudaGetErrorString(e) : "device count 0");
    return 1;
  }
  Device dev;
  CHECK_CUDA(cudaGetDeviceProperties(&dev.prop, 0));
  if (dev.prop.major != 9 || dev.prop.minor != 0) {
    std::fprintf(stderr, "cuda_bench: built for sm_90a only; device 0 is sm_%d%d\n", dev.prop.major,
                 dev.prop.minor);
    return 1;
  }
  dev.l2 = static_cast<size_t>(dev.prop.l2CacheSize);
  int mem_khz = 0, bus_bits = 0, sm_khz = 0, driver = 0, runtime = 0;
  cudaDeviceGetAttribute(&mem_khz, cudaDevAttrMemoryClockRate, 0);
  cudaDeviceGetAttribute(&bus_bits, cudaDevAttrGlobalMemoryBusWidth, 0);
  cudaDeviceGetAttribute(&sm_khz, cudaDevAttrClockRate, 0);
  cudaDriverGetVersion(&driver);
  cudaRuntimeGetVersion(&runtime);
  std::printf("device: %s, %d SMs, L2 %.0f MB, %.1f GiB, SM clock %.0f MHz, memory %d-bit @ %.0f MHz "
              "(datasheet-style peak %.0f GB/s), driver %d, runtime %d\n",
              dev.prop.name, dev.prop.multiProcessorCount, dev.l2 / 1e6,
              static_cast<double>(dev.prop.totalGlobalMem) / (1 << 30), sm_khz / 1e3, bus_bits, mem_khz / 1e3,
              2.0 * mem_khz * 1e3 * bus_bits / 8 / 1e9, driver, runtime);
  CHECK_STATUS(dsv4::cuda::prepare_matvec());

  cudaStream_t s;
  CHECK_CUDA(cudaStreamCreate(&s));
  dev.copy_gbps = measure_copy(s);
  CHECK_CUDA(cudaStreamDestroy(s));
  std::printf("copy ceiling used below: %.1f GB/s\n\n", dev.copy_gbps);

  // DeepSeek V4 Flash decode shapes (FORMATS.md §3.2): n_in -> n_out (GGUF ne = (n_in, n_out)).
  const std::vector<Case> cases = {
      {"attn q_a (Q8_0)", TensorType::Q8_0, 4096, 1024},
      {"attn kv (Q8_0)", TensorType::Q8_0, 4096, 512},
      {"attn q_b (Q8_0)", TensorType::Q8_0, 1024, 32768},
      {"attn output_a (Q8_0)", TensorType::Q8_0, 4096, 8192},
      // The model's form: 8 head groups as 8 slots with their own activations; 64 groups in the
      // tensor so that the rotation reads HBM, not L2.
      {"attn output_a, 8 groups (Q8_0)", TensorType::Q8_0, 4096, 1024, 8, false, 64, true},
      {"attn output_a, 8 groups, no ids (Q8_0)", TensorType::Q8_0, 4096, 1024, 8, false, 64, true, false, true},
      {"attn output_b (Q8_0)", TensorType::Q8_0, 8192, 4096},
      {"shared expert gate/up (Q8_0)", TensorType::Q8_0, 4096, 2048},
      {"shared expert down (Q8_0)", TensorType::Q8_0, 2048, 4096},
      {"LM head (Q8_0)", TensorType::Q8_0, 4096, 129280},
      {"compressor kv, ratio 4 (F16)", TensorType::F16, 4096, 1024},
      // The model's compressor launches: kv and gate rows in one matrix (HCA's is the 1024 above).
      {"CSA compressor kv+gate (F16)", TensorType::F16, 4096, 2048},
      {"indexer compressor kv+gate (F16)", TensorType::F16, 4096, 512},
      {"indexer q_b (F16)", TensorType::F16, 1024, 8192},
      {"router (F16)", TensorType::F16, 4096, 256},
      {"HC mixer (F16, 24 rows)", TensorType::F16, 16384, 24},
      {"BF16 4096 -> 2048", TensorType::BF16, 4096, 2048},
      {"F32 4096 -> 1024", TensorType::F32, 4096, 1024},
      {"expert slab gate (IQ2_XXS)", TensorType::IQ2_XXS, 4096, 2048},
      {"expert slab down (Q2_K)", TensorType::Q2_K, 2048, 4096},
      {"expert slab gate (Q4_K)", TensorType::Q4_K, 4096, 2048},
      {"MoE gate/up, 6 experts (IQ2_XXS)", TensorType::IQ2_XXS, 4096, 2048, 6, false, 256},
      {"MoE down, 6 experts summed (Q2_K)", TensorType::Q2_K, 2048, 4096, 6, true, 256},
      {"MoE down, 6 experts per slot (Q2_K)", TensorType::Q2_K, 2048, 4096, 6, false, 256, true},
      {"MoE down, 6 experts, SwiGLU fused (Q2_K)", TensorType::Q2_K, 2048, 4096, 6, false, 256, true, true},
      {"MoE gate/up, 6 experts (Q4_K)", TensorType::Q4_K, 4096, 2048, 6, false, 128},
      {"MoE down, 6 experts summed (Q4_K)", TensorType::Q4_K, 2048, 4096, 6, true, 128},
  };
  auto wanted = [&](const Case& c) { return only.empty() || std::string(c.what).find(only) != std::string::npos; };

  std::printf("%-36s %-8s %-22s %-9s %10s %9s %8s\n", "case", "type", "shape", "RxW/grid", "median us",
              "GB/s", "% copy");
  for (const Case& c : cases) {
    if (!wanted(c)) continue;
    auto plan = dsv4::cuda::plan_matvec(c.type, c.n_in, c.n_out, c.slots && !c.sum ? c.slots : 1);
    const Result r = run_case(c, dev, MatvecImpl::kFast, {}, false);
    char cfg[32];
    std::snprintf(cfg, sizeof cfg, "%dx%d/%d", plan.ok() ? plan->rows_per_warp : 0,
                  plan.ok() ? plan->warps_per_row : 0, plan.ok() ? plan->blocks : 0);
    std::printf("%-36s %-8s %-22s %-9s %10.2f %9.1f %7.1f%%\n", c.what, info(c.type).name, shape(c).c_str(),
                cfg, r.us, r.gbps, 100.0 * r.gbps / dev.copy_gbps);
    std::fflush(stdout);
  }
  if (!only.empty() && !sweep_only) return 0;
  if (only.empty()) {
    const Case c = cases[3];
    const Result r = run_case(c, dev, MatvecImpl::kReference, {}, false);
    std::printf("%-36s %-8s %-22s %-9s %10.2f %9.1f %7.1f%%\n", "(reference kernel, for scale)",
                info(c.type).name, shape(c).c_str(), "-", r.us, r.gbps, 100.0 * r.gbps / dev.copy_gbps);
  }
  if (quick) return 0;

  // R = 1, 2, 4: the f32 kernel; R = 16: the tensor-core kernel (Q8_0, Q2_K, Q4_K, IQ2_XXS); R = 32:
  // the row-tile kernels (Q8_0; Q2_K and IQ2_XXS).
  const std::vector<std::pair<int, int>> shapes = {{1, 1},  {1, 2},  {1, 4},  {1, 8},  {2, 1},  {2, 2},
                                                   {2, 4},  {2, 8},  {4, 1},  {4, 2},  {4, 4},  {4, 8},
                                                   {16, 1}, {16, 2}, {16, 4}, {16, 8}, {16, 16},
                                                   {32, 1}, {32, 2}, {32, 4}, {32, 8}};
  std::printf("\nsweep of the launch shape (R rows per warp x W warps per row; R = 16: tensor cores, R = 32: row "
              "tiles): median us\n");
  std::printf("%-36s %-8s %-22s", "case", "type", "shape");
  for (const auto& [r, w] : shapes) std::printf(" %7s", (std::to_string(r) + "x" + std::to_string(w)).c_str());
  std::printf("   best (%% copy)\n");
  for (const Case& c : cases) {
    if (!wanted(c)) continue;
    // Small ones are launch bound (but the F16 launches of a decode step are all small).
    if (!c.slots && c.n_out * c.n_in < (c.type == TensorType::F16 ? int64_t{1} << 20 : int64_t{8} << 20)) continue;
    std::printf("%-36s %-8s %-22s", c.what, info(c.type).name, shape(c).c_str());
    Result best;
    for (const auto& [r, w] : shapes) {
      if (sweep_only && r != 4 && r != 16 && r != 32) {  // --sweep: the defaults' kernels only
        std::printf(" %7s", "-");
        continue;
      }
      Result x = run_case(c, dev, MatvecImpl::kFast, {r, w}, true);
      std::printf(" %7.2f", x.us);  // 0.00: the shape does not apply
      if (x.us > 0 && (best.us == 0 || x.us < best.us)) {
        best = x;
        best.rows = r;
        best.warps = w;
      }
    }
    std::printf("   %dx%d (%.1f%%)\n", best.rows, best.warps, 100.0 * best.gbps / dev.copy_gbps);
    std::fflush(stdout);
  }
  return 0;
}
