// gemm_bench: TFLOP/s of cuda::gemm / cuda::grouped_gemm at the DeepSeek V4 Flash prefill shapes
// (FORMATS.md §3.2, hidden 4096), against cuBLAS bf16 GEMM measured in the same run: the same
// shape with bf16 weights (what the tensor cores give this M×N×K through cuBLAS), and an 8192³
// product as the card's dense bf16 ceiling. Needs a GPU; not a test.
//
//   gemm_bench [--quick | --profile | --int8 | --wgmma | --moe-wgmma | --moe-at N | --moe-short |
//               --moe-one N TILE | --dense-one N K M]
//   (--quick: n = 2048 only;
//   --profile: see profile_launches; --int8: the MoE down projection in f16, split and int8 mode
//   (int8: mma.sync and wgmma; also with skewed routing) at 2048 and 4096 tokens, and the int8
//   activation conversion; --wgmma: the dense Q8_0 shapes and the F16 compressor / indexer ones
//   in f16 mode, split on mma.sync and split on wgmma at 2048 and 4096 tokens; --moe-wgmma: the routed
//   experts' fused gate/up (IQ2_XXS 4096 → 2·2048, 256 experts, 6 per token) in split mode on
//   mma.sync (small and large tile) and on both wgmma tiles and their tails pair at 2048 and 4096
//   tokens with uniform routing, at 3072 and 6144, and at 2048 and 4096 tokens with skewed routing
//   (expert popularity ∝ rank^-0.5: the hottest expert 16× as likely as the coldest); --moe-at N:
//   the routed experts as a chunk of N tokens runs them, gate/up split (the 128-token wgmma tile,
//   and the tails pair) and down int8, both on wgmma; --moe-short: the routed experts at 128, 512
//   and 640 tokens on every tile that takes them; --moe-one N TILE: one routed-expert launch kind,
//   for ncu; --dense-one N K M: one dense Q8_0 GEMM of N tokens, K → M, split on the wgmma tile,
//   for ncu)
//
// Weights are random valid blocks made on the device (every f16 scale a moderate value), X random
// f16 (cuBLAS: bf16, the same tensor-core rate). Each figure: 5 rounds of 20 back-to-back launches
// timed with events, the median round's mean. cuBLAS is loaded with dlopen (libcublas.so.13), so
// the binary also runs where it is absent (the cuBLAS columns then read "-").
#include <cublas_api.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <dlfcn.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "cuda/gemm.h"
#include "cuda/matvec.h"
#include "gguf/types.h"

namespace {

using dsv4::cuda::GemmTile;
using dsv4::cuda::GemmWeights;
using dsv4::gguf::TensorType;

#define CHECK_CUDA(expr)                                                                       \
  do {                                                                                         \
    const cudaError_t e_ = (expr);                                                             \
    if (e_ != cudaSuccess) {                                                                   \
      std::fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #expr, cudaGetErrorString(e_)); \
      std::exit(1);                                                                            \
    }                                                                                          \
  } while (0)
#define CHECK_OK(expr)                                                                    \
  do {                                                                                    \
    const ::dsv4::Status s_ = (expr);                                                     \
    if (!s_.ok()) {                                                                       \
      std::fprintf(stderr, "%s:%d: %s\n", __FILE__, __LINE__, s_.message().c_str());      \
      std::exit(1);                                                                       \
    }                                                                                     \
  } while (0)

// ---- cuBLAS through dlopen ----
struct Cublas {
  using Create = cublasStatus_t (*)(cublasHandle_t*);
  using SetStream = cublasStatus_t (*)(cublasHandle_t, cudaStream_t);
  using GemmEx = cublasStatus_t (*)(cublasHandle_t, cublasOperation_t, cublasOperation_t, int, int, int,
                                    const void*, const void*, cudaDataType, int, const void*, cudaDataType,
                                    int, const void*, void*, cudaDataType, int, cublasComputeType_t,
                                    cublasGemmAlgo_t);
  cublasHandle_t handle = nullptr;
  GemmEx gemm_ex = nullptr;

  bool load(cudaStream_t stream) {
    void* lib = dlopen("libcublas.so.13", RTLD_NOW);
    if (!lib) lib = dlopen("libcublas.so", RTLD_NOW);
    if (!lib) {
      std::printf("cuBLAS: not loadable (%s); cuBLAS columns omitted\n", dlerror());
      return false;
    }
    auto create = reinterpret_cast<Create>(dlsym(lib, "cublasCreate_v2"));
    auto set_stream = reinterpret_cast<SetStream>(dlsym(lib, "cublasSetStream_v2"));
    gemm_ex = reinterpret_cast<GemmEx>(dlsym(lib, "cublasGemmEx"));
    if (!create || !set_stream || !gemm_ex || create(&handle) != CUBLAS_STATUS_SUCCESS ||
        set_stream(handle, stream) != CUBLAS_STATUS_SUCCESS) {
      std::printf("cuBLAS: symbols or handle missing; cuBLAS columns omitted\n");
      gemm_ex = nullptr;
      return false;
    }
    return true;
  }
  // Y[n][m] (f32, row-major) = X[n][k] · W[m][k]ᵀ, both bf16 row-major: column-major
  // Yᵀ (m × n) = op(W) (m × k, W is k × m column-major, so transposed) · Xᵀ (k × n).
  bool run(const __nv_bfloat16* w, const __nv_bfloat16* x, float* y, int m, int n, int k) const {
    const float one = 1.0f, zero = 0.0f;
    return gemm_ex(handle, CUBLAS_OP_T, CUBLAS_OP_N, m, n, k, &one, w, CUDA_R_16BF, k, x, CUDA_R_16BF, k,
                   &zero, y, CUDA_R_32F, m, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT) == CUBLAS_STATUS_SUCCESS;
  }
};

// ---- random device data ----
__device__ uint32_t hash32(uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdULL;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ULL;
  x ^= x >> 33;
  return static_cast<uint32_t>(x);
}
__device__ float uniform(uint64_t i, uint64_t seed) {  // [-1, 1)
  return static_cast<float>(hash32(i * 0x9E3779B97F4A7C15ULL + seed) >> 8) * (2.0f / 16777216.0f) - 1.0f;
}

// Block formats: random bytes, then each f16 scale field (offsets f0, f1; -1 = none) set to a
// moderate positive half in [2^-8, 2^-7).
__global__ void init_blocks(uint8_t* w, int64_t n_blocks, int block_bytes, int f0, int f1, uint64_t seed) {
  for (int64_t b = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; b < n_blocks; b += int64_t{gridDim.x} * blockDim.x) {
    uint8_t* p = w + b * block_bytes;
    for (int i = 0; i < block_bytes; ++i) p[i] = static_cast<uint8_t>(hash32(b * 977 + i + seed));
    for (int f : {f0, f1}) {
      if (f < 0) continue;
      const uint16_t h = static_cast<uint16_t>(0x1C00 | (hash32(b * 31 + f + seed) & 0x3FF));
      p[f] = static_cast<uint8_t>(h);
      p[f + 1] = static_cast<uint8_t>(h >> 8);
    }
  }
}
__global__ void init_plain(TensorType type, void* w, int64_t n, uint64_t seed) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n; i += int64_t{gridDim.x} * blockDim.x) {
    const float v = 0.05f * uniform(i, seed);
    if (type == TensorType::F32) static_cast<float*>(w)[i] = v;
    if (type == TensorType::F16) static_cast<__half*>(w)[i] = __float2half(v);
    if (type == TensorType::BF16) static_cast<__nv_bfloat16*>(w)[i] = __float2bfloat16(v);
  }
}

void* random_weights(TensorType type, int64_t n_in, int64_t n_rows, uint64_t seed) {
  const auto traits = dsv4::gguf::type_traits(type);
  const int64_t elems = n_in * n_rows, bytes = elems / traits->block_elems * traits->block_bytes;
  void* w = nullptr;
  CHECK_CUDA(cudaMalloc(&w, static_cast<size_t>(bytes)));
  switch (type) {
    case TensorType::Q8_0: init_blocks<<<1024, 256>>>(static_cast<uint8_t*>(w), elems / 32, 34, 0, -1, seed); break;
    case TensorType::Q2_K: init_blocks<<<1024, 256>>>(static_cast<uint8_t*>(w), elems / 256, 84, 80, 82, seed); break;
    case TensorType::Q4_K: init_blocks<<<1024, 256>>>(static_cast<uint8_t*>(w), elems / 256, 144, 0, 2, seed); break;
    case TensorType::IQ2_XXS: init_blocks<<<1024, 256>>>(static_cast<uint8_t*>(w), elems / 256, 66, 0, -1, seed); break;
    default: init_plain<<<1024, 256>>>(type, w, elems, seed); break;
  }
  CHECK_CUDA(cudaGetLastError());
  return w;
}
__nv_bfloat16* random_bf16(int64_t n, uint64_t seed) {
  void* p = nullptr;
  CHECK_CUDA(cudaMalloc(&p, static_cast<size_t>(n) * 2));
  init_plain<<<1024, 256>>>(TensorType::BF16, p, n, seed);
  CHECK_CUDA(cudaGetLastError());
  return static_cast<__nv_bfloat16*>(p);
}
// The GEMM's activations (f16; cuBLAS keeps bf16, the same tensor-core rate).
__half* random_f16(int64_t n, uint64_t seed) {
  void* p = nullptr;
  CHECK_CUDA(cudaMalloc(&p, static_cast<size_t>(n) * 2));
  init_plain<<<1024, 256>>>(TensorType::F16, p, n, seed);
  CHECK_CUDA(cudaGetLastError());
  return static_cast<__half*>(p);
}

// ---- timing ----
template <class F>
double time_us(cudaStream_t stream, F&& launch) {
  constexpr int kRounds = 5, kReps = 20;
  cudaEvent_t a, b;
  CHECK_CUDA(cudaEventCreate(&a));
  CHECK_CUDA(cudaEventCreate(&b));
  for (int i = 0; i < 3; ++i) launch();
  std::vector<double> rounds;
  for (int r = 0; r < kRounds; ++r) {
    CHECK_CUDA(cudaEventRecord(a, stream));
    for (int i = 0; i < kReps; ++i) launch();
    CHECK_CUDA(cudaEventRecord(b, stream));
    CHECK_CUDA(cudaEventSynchronize(b));
    float ms = 0;
    CHECK_CUDA(cudaEventElapsedTime(&ms, a, b));
    rounds.push_back(1000.0 * ms / kReps);
  }
  std::sort(rounds.begin(), rounds.end());
  CHECK_CUDA(cudaEventDestroy(a));
  CHECK_CUDA(cudaEventDestroy(b));
  return rounds[kRounds / 2];
}

const char* tile_name(GemmTile tile) {
  return tile == GemmTile::kLarge   ? "large"
         : tile == GemmTile::kSmall ? "small"
         : tile == GemmTile::kWgmma   ? "wgmma"
         : tile == GemmTile::kWgmma64 ? "wgmma64"
         : tile == GemmTile::kWgmmaTails ? "wgmma+64"
         : tile == GemmTile::kWgmmaNarrow ? "wgmma16"
         : tile == GemmTile::kWgmmaNarrowPair ? "wgmma16+64"
                                      : "auto";
}

struct Bench {
  cudaStream_t stream = nullptr;
  Cublas cublas;
  bool have_cublas = false;
  double ceiling = 0;  // TFLOP/s, cuBLAS 8192³
  bool split = false;  // the GEMMs' split mode (x_lo given: f32-level products)
  bool int8 = false;   // grouped_gemm's int8 mode (activation limbs), MoE cases only

  std::string type_label(TensorType type) const {
    return dsv4::gguf::type_name(type) + (split ? "/split" : int8 ? "/int8" : "");
  }

  double cublas_tflops(int64_t m, int64_t n, int64_t k) {
    if (!have_cublas) return 0;
    __nv_bfloat16* w = random_bf16(m * k, 11);
    __nv_bfloat16* x = random_bf16(n * k, 12);
    float* y = nullptr;
    CHECK_CUDA(cudaMalloc(&y, static_cast<size_t>(m * n) * 4));
    bool ok = true;
    const double us = time_us(stream, [&] { ok = ok && cublas.run(w, x, y, static_cast<int>(m), static_cast<int>(n), static_cast<int>(k)); });
    CHECK_CUDA(cudaFree(w));
    CHECK_CUDA(cudaFree(x));
    CHECK_CUDA(cudaFree(y));
    return ok ? 2.0 * m * n * k / us * 1e-6 : 0;
  }

  void row(const char* name, const char* type, int64_t n, int64_t k, int64_t m, const char* tile, double us,
           double flops, double same_shape) {
    const double tf = flops / us * 1e-6;
    std::printf("%-28s %-8s %6lld %6lld %6lld %-6s %9.1f %8.1f", name, type, static_cast<long long>(n),
                static_cast<long long>(k), static_cast<long long>(m), tile, us, tf);
    if (same_shape > 0) {
      std::printf(" %8.1f %6.1f%%", same_shape, 100.0 * tf / same_shape);
    } else {
      std::printf(" %8s %7s", "-", "-");
    }
    if (ceiling > 0) std::printf(" %6.1f%%", 100.0 * tf / ceiling);
    std::printf("\n");
    std::fflush(stdout);
  }

  void dense(const char* name, TensorType type, int64_t k, int64_t m, int64_t n, GemmTile tile = GemmTile::kAuto) {
    void* w = random_weights(type, k, m, 1);
    __half* x = random_f16(n * k, 2);
    __half* x_lo = split ? random_f16(n * k, 5) : nullptr;
    float* y = nullptr;
    CHECK_CUDA(cudaMalloc(&y, static_cast<size_t>(n * m) * 4));
    const GemmWeights gw{type, w, k, m, 1};
    const double us =
        time_us(stream, [&] { CHECK_OK(dsv4::cuda::gemm(gw, x, k, nullptr, n, y, m, stream, tile, x_lo)); });
    row(name, type_label(type).c_str(), n, k, m, tile_name(tile), us, 2.0 * n * m * k, cublas_tflops(m, n, k));
    CHECK_CUDA(cudaFree(w));
    CHECK_CUDA(cudaFree(x));
    if (x_lo) CHECK_CUDA(cudaFree(x_lo));
    CHECK_CUDA(cudaFree(y));
  }

  // MoE: n tokens, each routed to 6 distinct experts of 256, one projection k → m of the expert
  // tensor, X gathered by token (gate/up) or already in sorted order (down). Routing uniform, or
  // with zipf > 0 expert popularity ∝ rank^-zipf (ranks 1..256 dealt to the experts at random).
  void moe(const char* name, TensorType type, int64_t k, int64_t m, int64_t n, bool gather,
           std::vector<GemmTile> tiles = {GemmTile::kSmall, GemmTile::kLarge}, double zipf = 0) {
    constexpr int kExperts = 256, kTopK = 6;
    void* w = random_weights(type, k, m * kExperts, 3);
    std::mt19937 rng(7), rank_rng(11);
    std::vector<double> rank(kExperts), popularity(kExperts);
    for (int e = 0; e < kExperts; ++e) rank[static_cast<size_t>(e)] = e + 1.0;
    std::shuffle(rank.begin(), rank.end(), rank_rng);
    for (size_t e = 0; e < rank.size(); ++e) popularity[e] = std::pow(rank[e], -zipf);
    std::discrete_distribution<int> pick(popularity.begin(), popularity.end());
    std::vector<int32_t> topk(static_cast<size_t>(n * kTopK));
    for (int64_t t = 0; t < n; ++t) {
      for (int j = 0; j < kTopK; ++j) {
        int e;
        bool dup;
        do {
          e = zipf > 0 ? pick(rng) : static_cast<int>(rng() % kExperts);
          dup = false;
          for (int i = 0; i < j; ++i) dup = dup || topk[static_cast<size_t>(t * kTopK + i)] == e;
        } while (dup);
        topk[static_cast<size_t>(t * kTopK + j)] = e;
      }
    }
    const int64_t pairs = n * kTopK;
    int32_t *d_topk, *off, *rp, *rt, *pr;
    void* ws;
    CHECK_CUDA(cudaMalloc(&d_topk, topk.size() * 4));
    CHECK_CUDA(cudaMemcpy(d_topk, topk.data(), topk.size() * 4, cudaMemcpyHostToDevice));
    CHECK_CUDA(cudaMalloc(&off, (kExperts + 1) * 4));
    CHECK_CUDA(cudaMalloc(&rp, pairs * 4));
    CHECK_CUDA(cudaMalloc(&rt, pairs * 4));
    CHECK_CUDA(cudaMalloc(&pr, pairs * 4));
    CHECK_CUDA(cudaMalloc(&ws, std::max<size_t>(4, dsv4::cuda::sort_by_expert_workspace_bytes(n, kTopK, kExperts))));
    dsv4::cuda::ExpertSort s;
    s.topk = d_topk;
    s.n_tokens = n;
    s.top_k = kTopK;
    s.n_expert = kExperts;
    s.offsets = off;
    s.row_pair = rp;
    s.row_token = rt;
    s.pair_row = pr;
    s.workspace = ws;
    const double sort_us = time_us(stream, [&] { CHECK_OK(dsv4::cuda::sort_by_expert(s, stream)); });
    const int64_t x_rows = gather ? n : pairs;
    __half* x = int8 ? nullptr : random_f16(x_rows * k, 4);
    __half* x_lo = split ? random_f16(x_rows * k, 6) : nullptr;
    // int8: random f32 rows converted once (the conversion timed on its own).
    void *xf = nullptr, *limbs = nullptr, *records = nullptr;
    if (int8) {
      CHECK_CUDA(cudaMalloc(&xf, static_cast<size_t>(x_rows * k) * 4));
      CHECK_CUDA(cudaMalloc(&limbs, static_cast<size_t>(3 * x_rows * k)));
      CHECK_CUDA(cudaMalloc(&records, static_cast<size_t>(x_rows * (k / 256) * 80)));
      init_plain<<<1024, 256>>>(TensorType::F32, xf, x_rows * k, 4);
      CHECK_CUDA(cudaGetLastError());
      const double conv_us = time_us(stream, [&] {
        CHECK_OK(dsv4::cuda::convert_f32_to_int8(static_cast<float*>(xf), k, x_rows, k, static_cast<int8_t*>(limbs), k,
                                                 static_cast<uint8_t*>(records), stream));
      });
      std::printf("%-28s convert_f32_to_int8 %lld x %lld: %.1f us\n", name, static_cast<long long>(x_rows),
                  static_cast<long long>(k), conv_us);
    }
    float* y = nullptr;
    CHECK_CUDA(cudaMalloc(&y, static_cast<size_t>(pairs * m) * 4));
    dsv4::cuda::GroupedGemm g;
    g.w = {type, w, k, m, kExperts};
    g.n_groups = kExperts;
    g.offsets = off;
    g.n_rows = pairs;
    g.x = x;
    g.x_lo = x_lo;
    g.x_stride = k;
    g.x_rows = gather ? rt : nullptr;
    g.x_count = x_rows;
    g.y = y;
    g.y_stride = m;
    g.x_limbs = static_cast<const int8_t*>(limbs);
    g.x_records = static_cast<const uint8_t*>(records);
    for (GemmTile tile : tiles) {
      if (int8 && tile == GemmTile::kLarge) continue;  // one tile shape
      const double us = time_us(stream, [&] { CHECK_OK(dsv4::cuda::grouped_gemm(g, stream, tile)); });
      row(name, type_label(type).c_str(), pairs, k, m, tile_name(tile), us, 2.0 * pairs * m * k,
          tile == tiles.front() ? cublas_tflops(m, pairs, k) : 0);
    }
    if (zipf > 0) {
      std::vector<int32_t> offsets(kExperts + 1);
      CHECK_CUDA(cudaMemcpy(offsets.data(), off, offsets.size() * 4, cudaMemcpyDeviceToHost));
      std::vector<int32_t> sizes(kExperts);
      for (int e = 0; e < kExperts; ++e) sizes[static_cast<size_t>(e)] = offsets[e + 1] - offsets[e];
      std::sort(sizes.begin(), sizes.end());
      std::printf("%-28s rows per expert (zipf %.2f): min %d, median %d, max %d\n", name, zipf, sizes.front(),
                  sizes[kExperts / 2], sizes.back());
    }
    std::printf("%-28s sort_by_expert %lld pairs: %.1f us\n", name, static_cast<long long>(pairs), sort_us);
    for (void* p : {static_cast<void*>(d_topk), static_cast<void*>(off), static_cast<void*>(rp),
                    static_cast<void*>(rt), static_cast<void*>(pr), ws, w, static_cast<void*>(x),
                    static_cast<void*>(x_lo), static_cast<void*>(y), xf, limbs, records}) {
      CHECK_CUDA(cudaFree(p));
    }
  }
};

}  // namespace

// --profile: one launch of each of three representative kernels and nothing else, for
// `ncu -k regex:gemm_kernel`.
void profile_launches(cudaStream_t stream) {
  for (TensorType t : {TensorType::BF16, TensorType::Q4_K}) {
    void* w = random_weights(t, 4096, 4096, 1);
    __half* x = random_f16(2048 * 4096, 2);
    float* y = nullptr;
    CHECK_CUDA(cudaMalloc(&y, size_t{2048} * 4096 * 4));
    CHECK_OK(dsv4::cuda::gemm({t, w, 4096, 4096, 1}, x, 4096, nullptr, 2048, y, 4096, stream, GemmTile::kLarge));
    CHECK_CUDA(cudaStreamSynchronize(stream));
    CHECK_CUDA(cudaFree(w));
    CHECK_CUDA(cudaFree(x));
    CHECK_CUDA(cudaFree(y));
  }
}

int main(int argc, char** argv) {
  const bool quick = argc > 1 && std::strcmp(argv[1], "--quick") == 0;
  const bool profile = argc > 1 && std::strcmp(argv[1], "--profile") == 0;
  cudaDeviceProp prop{};
  CHECK_CUDA(cudaGetDeviceProperties(&prop, 0));
  int driver = 0, runtime = 0;
  cudaDriverGetVersion(&driver);
  cudaRuntimeGetVersion(&runtime);
  std::printf("gemm_bench: %s, %d SMs, %.1f GiB, driver %d, runtime %d\n", prop.name, prop.multiProcessorCount,
              static_cast<double>(prop.totalGlobalMem) / (1 << 30), driver, runtime);
  Bench b;
  CHECK_CUDA(cudaStreamCreate(&b.stream));
  CHECK_OK(dsv4::cuda::prepare_matvec());
  if (profile) {
    profile_launches(b.stream);
    return 0;
  }
  b.have_cublas = b.cublas.load(b.stream);
  b.ceiling = b.cublas_tflops(8192, 8192, 8192);
  if (b.ceiling > 0) std::printf("ceiling: cuBLAS bf16 GEMM 8192x8192x8192 (f32 out): %.1f TFLOP/s\n", b.ceiling);
  std::printf("\n%-28s %-8s %6s %6s %6s %-6s %9s %8s %8s %7s %7s\n", "case", "type", "n", "k", "m", "tile", "us",
              "TFLOP/s", "cuBLAS", "of same", "of ceil");

  if (argc > 1 && std::strcmp(argv[1], "--int8") == 0) {
    for (const int64_t n : {int64_t{2048}, int64_t{4096}}) {
      for (const int mode : {0, 1, 2}) {
        b.split = mode == 1;
        b.int8 = mode == 2;
        if (b.int8) {
          b.moe("MoE down (q2)", TensorType::Q2_K, 2048, 4096, n, false, {GemmTile::kSmall, GemmTile::kWgmma});
        } else {
          b.moe("MoE down (q2)", TensorType::Q2_K, 2048, 4096, n, false);
        }
      }
      b.moe("MoE down, zipf 0.5", TensorType::Q2_K, 2048, 4096, n, false, {GemmTile::kSmall, GemmTile::kWgmma}, 0.5);
    }
    return 0;
  }
  // The dense Q8_0 shapes and the two largest F16 ones: f16 mode, split on mma.sync (large tile) and
  // split on wgmma.
  if (argc > 1 && std::strcmp(argv[1], "--wgmma") == 0) {
    for (const int64_t n : {int64_t{2048}, int64_t{4096}}) {
      for (const int mode : {0, 1, 2}) {
        b.split = mode > 0;
        const GemmTile tile = mode == 0 ? GemmTile::kAuto : mode == 1 ? GemmTile::kLarge : GemmTile::kWgmma;
        b.dense("attn q_a / output_a group", TensorType::Q8_0, 4096, 1024, n, tile);
        b.dense("attn kv", TensorType::Q8_0, 4096, 512, n, tile);
        b.dense("attn q_b", TensorType::Q8_0, 1024, 32768, n, tile);
        b.dense("attn output_b", TensorType::Q8_0, 8192, 4096, n, tile);
        b.dense("shared expert gate/up", TensorType::Q8_0, 4096, 2048, n, tile);
        b.dense("shared expert down", TensorType::Q8_0, 2048, 4096, n, tile);
        b.dense("compressor kv (F16)", TensorType::F16, 4096, 1024, n, tile);
        b.dense("indexer q_b (F16)", TensorType::F16, 1024, 8192, n, tile);
      }
    }
    return 0;
  }
  // The routed experts at one chunk length (uniform routing): gate/up split on the 128- and 64-token
  // wgmma tiles and their pairs, down in int8 on wgmma.
  if (argc > 2 && std::strcmp(argv[1], "--moe-at") == 0) {
    const int64_t n = std::atoll(argv[2]);
    b.split = true;
    b.moe("MoE gate+up fused (q2)", TensorType::IQ2_XXS, 4096, 4096, n, true,
          {GemmTile::kWgmma, GemmTile::kWgmma64, GemmTile::kWgmmaTails, GemmTile::kWgmmaNarrowPair});
    b.split = false;
    b.int8 = true;
    b.moe("MoE down (q2)", TensorType::Q2_K, 2048, 4096, n, false, {GemmTile::kWgmma});
    return 0;
  }
  // One dense Q8_0 GEMM of n tokens, k → m, split mode on the wgmma tile, for ncu.
  if (argc > 4 && std::strcmp(argv[1], "--dense-one") == 0) {
    b.split = true;
    b.dense("dense Q8_0", TensorType::Q8_0, std::atoll(argv[3]), std::atoll(argv[4]), std::atoll(argv[2]),
            GemmTile::kWgmma);
    return 0;
  }
  // One routed-expert launch kind at one chunk length (uniform routing), for ncu: gate/up on one
  // split tile (wgmma, wgmma64, wgmma16, wgmma+64, wgmma16+64) or the int8 down projection on its
  // 64-token (down) or 16-token tile (down16).
  if (argc > 3 && std::strcmp(argv[1], "--moe-one") == 0) {
    const int64_t n = std::atoll(argv[2]);
    const bool down16 = std::strcmp(argv[3], "down16") == 0;
    if (down16 || std::strcmp(argv[3], "down") == 0) {
      b.int8 = true;
      b.moe("MoE down (q2)", TensorType::Q2_K, 2048, 4096, n, false,
            {down16 ? GemmTile::kWgmmaNarrow : GemmTile::kWgmma});
      return 0;
    }
    for (const GemmTile tile : {GemmTile::kWgmma, GemmTile::kWgmma64, GemmTile::kWgmmaNarrow, GemmTile::kWgmmaTails,
                                GemmTile::kWgmmaNarrowPair}) {
      if (std::strcmp(argv[3], tile_name(tile)) != 0) continue;
      b.split = true;
      b.moe("MoE gate+up fused (q2)", TensorType::IQ2_XXS, 4096, 4096, n, true, {tile});
      return 0;
    }
    std::fprintf(stderr, "--moe-one N TILE: TILE is wgmma, wgmma64, wgmma16, wgmma+64, wgmma16+64, down or down16\n");
    return 1;
  }
  // The routed experts of short chunks (follow-up turns: ≈ 3, 12, 15 and 24 rows an expert), every
  // tile; then gate/up's short-chunk wgmma tiles at 3..24 rows an expert, uniform and with uneven
  // routing (zipf 0.5 and 1).
  if (argc > 1 && std::strcmp(argv[1], "--moe-short") == 0) {
    const std::vector<GemmTile> wgmma_short = {GemmTile::kWgmma64, GemmTile::kWgmmaNarrow, GemmTile::kWgmmaNarrowPair};
    for (const int64_t n : {int64_t{128}, int64_t{512}, int64_t{640}, int64_t{1024}}) {
      b.split = true;
      b.int8 = false;
      b.moe("MoE gate+up fused (q2)", TensorType::IQ2_XXS, 4096, 4096, n, true,
            {GemmTile::kSmall, GemmTile::kLarge, GemmTile::kWgmma64, GemmTile::kWgmmaNarrow,
             GemmTile::kWgmmaNarrowPair});
      b.split = false;
      b.int8 = true;
      b.moe("MoE down (q2)", TensorType::Q2_K, 2048, 4096, n, false,
            {GemmTile::kSmall, GemmTile::kWgmma, GemmTile::kWgmmaNarrow, GemmTile::kWgmmaNarrowPair});
    }
    b.split = true;
    b.int8 = false;
    for (const double zipf : {0.0, 0.5, 1.0}) {
      for (const int64_t n : {int64_t{128}, int64_t{256}, int64_t{384}, int64_t{512}, int64_t{1024}}) {
        const char* name = zipf == 0     ? "MoE gate+up, uniform"
                           : zipf == 0.5 ? "MoE gate+up, zipf 0.5"
                                         : "MoE gate+up, zipf 1";
        b.moe(name, TensorType::IQ2_XXS, 4096, 4096, n, true, wgmma_short, zipf);
      }
    }
    return 0;
  }
  // The routed experts' fused gate/up, split mode: mma.sync (both tiles) against wgmma.
  if (argc > 1 && std::strcmp(argv[1], "--moe-wgmma") == 0) {
    b.split = true;
    const std::vector<GemmTile> wgmma_tiles = {GemmTile::kWgmma, GemmTile::kWgmma64, GemmTile::kWgmmaTails};
    for (const int64_t n : {int64_t{2048}, int64_t{4096}}) {
      b.moe("MoE gate+up fused (q2)", TensorType::IQ2_XXS, 4096, 4096, n, true,
            {GemmTile::kSmall, GemmTile::kLarge, GemmTile::kWgmma, GemmTile::kWgmma64, GemmTile::kWgmmaTails});
    }
    for (const int64_t n : {int64_t{3072}, int64_t{6144}}) {
      b.moe("MoE gate+up fused (q2)", TensorType::IQ2_XXS, 4096, 4096, n, true, wgmma_tiles);
    }
    for (const int64_t n : {int64_t{2048}, int64_t{4096}}) {
      b.moe("MoE gate+up, zipf 0.5", TensorType::IQ2_XXS, 4096, 4096, n, true,
            {GemmTile::kLarge, GemmTile::kWgmma, GemmTile::kWgmma64, GemmTile::kWgmmaTails}, 0.5);
    }
    return 0;
  }
  const std::vector<int64_t> ns = quick ? std::vector<int64_t>{2048} : std::vector<int64_t>{512, 2048, 8192};
  for (const int64_t n : ns) {
    for (const bool split : {false, true}) {
      b.split = split;
      b.dense("attn q_a / output_a group", TensorType::Q8_0, 4096, 1024, n);
      b.dense("attn kv", TensorType::Q8_0, 4096, 512, n);
      b.dense("attn q_b", TensorType::Q8_0, 1024, 32768, n);
      b.dense("attn output_b", TensorType::Q8_0, 8192, 4096, n);
      b.dense("shared expert gate/up", TensorType::Q8_0, 4096, 2048, n);
      b.dense("shared expert down", TensorType::Q8_0, 2048, 4096, n);
      b.dense("compressor kv (ratio 4)", TensorType::F16, 4096, 1024, n);
      b.dense("indexer q_b", TensorType::F16, 1024, 8192, n);
      b.dense("router", TensorType::F16, 4096, 256, n);
      b.moe("MoE gate/up (q2)", TensorType::IQ2_XXS, 4096, 2048, n, true);
      b.moe("MoE down (q2)", TensorType::Q2_K, 2048, 4096, n, false);
      b.moe("MoE gate/up (q4)", TensorType::Q4_K, 4096, 2048, n, true);
      b.moe("MoE down (q4)", TensorType::Q4_K, 2048, 4096, n, false);
    }
  }
  // Decode cost per format: one square shape, both tiles, f16 then split mode.
  for (const bool split : {false, true}) {
    b.split = split;
    for (TensorType t : {TensorType::BF16, TensorType::F16, TensorType::F32, TensorType::Q8_0, TensorType::Q4_K,
                         TensorType::Q2_K, TensorType::IQ2_XXS}) {
      if (split && !dsv4::cuda::gemm_split_supports(t, 4096)) continue;
      for (GemmTile tile : {GemmTile::kLarge, GemmTile::kSmall}) {
        if (t == TensorType::F32 && tile == GemmTile::kLarge) continue;
        b.dense("format sweep", t, 4096, 4096, 2048, tile);
      }
    }
  }
  return 0;
}
