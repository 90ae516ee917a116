// generate_synthetic_model (device_model.h): the full-size presets of `dsv4 gen-model` (flash-q2,
// flash-q4) generated directly in device memory, so benchmarks need no 86 GB file.
//
// The geometry is DeepSeek V4 Flash's (MODEL.md §1), the types the published mix (FORMATS.md §3;
// routed experts IQ2_XXS/Q2_K for q2, Q4_K for q4), the magnitudes those of model/synthetic.cc:
// block formats get random bytes with their f16 scale fields set so that an element's magnitude is
// about the tensor's standard deviation (the same per-format divisors as gen-model), plain tensors
// Irwin-Hall normal values. Deterministic from the seed; not byte-identical to gen-model's files
// (another generator), which is why such a model has its own fingerprint in the engine.
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <chrono>
#include <cmath>
#include <cstring>
#include <utility>

#include "cuda/check.h"
#include "cuda/device_model.h"
#include "cuda/weights_layout.h"
#include "util/half.h"

namespace dsv4::cuda {

namespace {

using gguf::TensorType;
using detail::Role;
using detail::TensorSpec;

__device__ __forceinline__ uint64_t mix64(uint64_t z) {
  z += 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// Uniform in [0, 1) with 24 bits.
__device__ __forceinline__ float uniform24(uint64_t r) {
  return static_cast<float>(r >> 40) * (1.0f / 16777216.0f);
}

// Approximately standard normal (Irwin-Hall of 4 uniforms), as model/synthetic.cc draws them.
__device__ __forceinline__ float normal_at(uint64_t seed, uint64_t i) {
  const uint64_t a = mix64(seed ^ (4 * i)), b = mix64(seed ^ (4 * i + 1));
  const uint64_t c = mix64(seed ^ (4 * i + 2)), d = mix64(seed ^ (4 * i + 3));
  const float s = uniform24(a) + uniform24(b) + uniform24(c) + uniform24(d);
  return (s - 2.0f) * 1.7320508f;
}

__global__ void fill_random_bytes(uint8_t* p, uint64_t n, uint64_t seed) {
  const uint64_t stride = static_cast<uint64_t>(gridDim.x) * blockDim.x;
  for (uint64_t w = blockIdx.x * static_cast<uint64_t>(blockDim.x) + threadIdx.x; w * 8 < n; w += stride) {
    const uint64_t r = mix64(seed ^ (w * 0x100000001B3ull));
    const uint64_t at = w * 8;
    if (at + 8 <= n && (reinterpret_cast<uintptr_t>(p + at) & 7) == 0) {
      *reinterpret_cast<uint64_t*>(p + at) = r;
    } else {
      for (uint64_t k = 0; k < 8 && at + k < n; ++k) p[at + k] = static_cast<uint8_t>(r >> (8 * k));
    }
  }
}

// Sets the f16 scale fields of every block: field at off0 to v0 and, when off1 >= 0, at off1 to v1.
__global__ void set_block_scales(uint8_t* p, uint64_t n_blocks, int block_bytes, int off0, uint16_t v0,
                                 int off1, uint16_t v1) {
  const uint64_t stride = static_cast<uint64_t>(gridDim.x) * blockDim.x;
  for (uint64_t b = blockIdx.x * static_cast<uint64_t>(blockDim.x) + threadIdx.x; b < n_blocks; b += stride) {
    uint8_t* blk = p + b * block_bytes;
    blk[off0] = static_cast<uint8_t>(v0);
    blk[off0 + 1] = static_cast<uint8_t>(v0 >> 8);
    if (off1 >= 0) {
      blk[off1] = static_cast<uint8_t>(v1);
      blk[off1 + 1] = static_cast<uint8_t>(v1 >> 8);
    }
  }
}

// n values mean + stddev·N(0,1) stored as f32 (kind 0), f16 (1) or bf16 (2).
__global__ void fill_normal(uint8_t* p, uint64_t n, int kind, float mean, float stddev, uint64_t seed) {
  const uint64_t stride = static_cast<uint64_t>(gridDim.x) * blockDim.x;
  for (uint64_t i = blockIdx.x * static_cast<uint64_t>(blockDim.x) + threadIdx.x; i < n; i += stride) {
    const float v = mean + stddev * normal_at(seed, i);
    if (kind == 0) {
      reinterpret_cast<float*>(p)[i] = v;
    } else if (kind == 1) {
      reinterpret_cast<__half*>(p)[i] = __float2half_rn(v);
    } else {
      const uint32_t u = __float_as_uint(v);
      reinterpret_cast<uint16_t*>(p)[i] = static_cast<uint16_t>((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);
    }
  }
}

// tid2eid: k distinct expert ids per token.
__global__ void fill_tid2eid(int32_t* p, int64_t n_vocab, int k, int n_expert, uint64_t seed) {
  const int64_t t = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (t >= n_vocab) return;
  int32_t* row = p + t * k;
  uint64_t r = seed ^ (static_cast<uint64_t>(t) * 0x9E3779B97F4A7C15ull);
  for (int i = 0; i < k; ++i) {
    bool fresh;
    int32_t e;
    do {
      r = mix64(r);
      e = static_cast<int32_t>(r % static_cast<uint64_t>(n_expert));
      fresh = true;
      for (int j = 0; j < i; ++j) fresh = fresh && row[j] != e;
    } while (!fresh);
    row[i] = e;
  }
}

constexpr int kThreads = 256;
int blocks_for(uint64_t n) { return static_cast<int>(std::min<uint64_t>((n + kThreads - 1) / kThreads, 65536)); }

// MODEL.md §1 with the Flash schedule of §2; `layers` main layers.
model::Config flash_config(int64_t layers) {
  model::Config c;
  c.name = "dsv4 device-generated synthetic flash";
  c.n_layer = layers;
  c.n_embd = 4096;
  c.n_vocab = 129280;
  c.n_ctx_train = 1048576;
  c.n_head = 64;
  c.head_dim = 512;
  c.n_rot = 64;
  c.q_lora_rank = 1024;
  c.o_lora_rank = 1024;
  c.n_out_group = 8;
  c.window = 128;
  c.n_index_head = 64;
  c.index_head_dim = 128;
  c.index_top_k = 512;
  for (int64_t l = 0; l < layers; ++l) c.compress_ratio.push_back(l < 2 ? 0 : (l % 2 == 0 ? 4 : 128));
  c.rope_theta = 10000.0f;
  c.compress_rope_theta = 160000.0f;
  c.rope_scaling_factor = 16.0f;
  c.rope_orig_ctx = 65536;
  c.yarn_beta_fast = 32.0f;
  c.yarn_beta_slow = 1.0f;
  c.rms_eps = 1e-6f;
  c.n_hc = 4;
  c.sinkhorn_iters = 20;
  c.hc_eps = 1e-6f;
  c.n_expert = 256;
  c.n_expert_used = 6;
  c.n_ff_expert = 2048;
  c.n_hash_layer = std::min<int64_t>(3, layers);
  c.expert_weights_scale = 1.5f;
  c.expert_weights_norm = true;
  c.swiglu_clamp.assign(static_cast<size_t>(layers), 10.0f);
  c.bos_id = 0;
  c.eos_id = 1;
  return c;
}

TensorSpec plain(TensorType type, int64_t ne0, int64_t ne1, int64_t ne2, float mean, float stddev) {
  TensorSpec s;
  s.present = true;
  s.type = type;
  s.ne0 = ne0;
  s.ne1 = ne1;
  s.ne2 = ne2;
  s.mean = mean;
  s.stddev = stddev;
  return s;
}

// The published q2/q4 layout of one tensor and its magnitude (model/synthetic.cc's choices).
TensorSpec describe_flash(const model::Config& c, bool q4, int64_t l, Role role) {
  const int64_t D = c.n_embd, HD = c.hc_dim(), M = c.hc_mix(), Dh = c.head_dim, H = c.n_head;
  const int64_t R = c.q_lora_rank, G = c.n_out_group, OR = c.o_lora_rank, E = c.n_expert, F = c.n_ff_expert;
  const int64_t IH = c.n_index_head, ID = c.index_head_dim;
  auto scaled = [](TensorType t, int64_t ne0, int64_t ne1, int64_t ne2 = 1, float gain = 1.0f) {
    return plain(t, ne0, ne1, ne2, 0.0f, gain / std::sqrt(static_cast<float>(ne0)));
  };
  const TensorSpec norm_d = plain(TensorType::F32, D, 1, 1, 1.0f, 0.1f);
  const TensorType routed_gu = q4 ? TensorType::Q4_K : TensorType::IQ2_XXS;
  const TensorType routed_down = q4 ? TensorType::Q4_K : TensorType::Q2_K;
  if (l < 0) {
    switch (role) {
      case Role::kTokenEmbd: return plain(TensorType::F16, D, c.n_vocab, 1, 0.0f, 0.5f);
      case Role::kOutput: return scaled(TensorType::Q8_0, D, c.n_vocab, 1, 4.0f);
      case Role::kOutputNorm: return norm_d;
      case Role::kOutputHcFn: return scaled(TensorType::F16, HD, c.n_hc);
      case Role::kOutputHcBase: return plain(TensorType::F32, c.n_hc, 1, 1, 0.0f, 0.5f);
      case Role::kOutputHcScale: return plain(TensorType::F32, 1, 1, 1, 1.0f, 0.2f);
      default: return {};
    }
  }
  const int64_t ratio = c.ratio(l);
  const int64_t cw = c.compress_width(l);
  const bool comp = ratio != 0, indexer = ratio == 4, hash = c.is_hash_layer(l);
  switch (role) {
    case Role::kHcAttnFn:
    case Role::kHcFfnFn: return scaled(TensorType::F16, HD, M);
    case Role::kHcAttnScale:
    case Role::kHcFfnScale: return plain(TensorType::F32, 3, 1, 1, 1.0f, 0.2f);
    case Role::kHcAttnBase:
    case Role::kHcFfnBase: return plain(TensorType::F32, M, 1, 1, 0.0f, 0.5f);
    case Role::kAttnNorm:
    case Role::kFfnNorm: return norm_d;
    case Role::kQA: return scaled(TensorType::Q8_0, D, R);
    case Role::kQANorm: return plain(TensorType::F32, R, 1, 1, 1.0f, 0.1f);
    case Role::kQB: return scaled(TensorType::Q8_0, R, H * Dh);
    case Role::kKv: return scaled(TensorType::Q8_0, D, Dh);
    case Role::kKvANorm: return plain(TensorType::F32, Dh, 1, 1, 1.0f, 0.1f);
    case Role::kSinks: return plain(TensorType::F32, H, 1, 1, 1.0f, 1.0f);
    case Role::kOutA: return scaled(TensorType::Q8_0, H * Dh / G, G * OR);
    case Role::kOutB: return scaled(TensorType::Q8_0, G * OR, D);
    case Role::kCompApe: return comp ? plain(TensorType::F16, cw * Dh, ratio, 1, 0.0f, 0.5f) : TensorSpec{};
    case Role::kCompKv:
    case Role::kCompGate: return comp ? scaled(TensorType::F16, D, cw * Dh) : TensorSpec{};
    case Role::kCompNorm: return comp ? plain(TensorType::F32, Dh, 1, 1, 1.0f, 0.1f) : TensorSpec{};
    case Role::kIndexQB: return indexer ? scaled(TensorType::F16, R, IH * ID) : TensorSpec{};
    case Role::kIndexProj: return indexer ? scaled(TensorType::F16, D, IH) : TensorSpec{};
    case Role::kIndexCompApe: return indexer ? plain(TensorType::F16, 2 * ID, 4, 1, 0.0f, 0.5f) : TensorSpec{};
    case Role::kIndexCompKv:
    case Role::kIndexCompGate: return indexer ? scaled(TensorType::F16, D, 2 * ID) : TensorSpec{};
    case Role::kIndexCompNorm: return indexer ? plain(TensorType::F32, ID, 1, 1, 1.0f, 0.1f) : TensorSpec{};
    case Role::kGateInp: return scaled(TensorType::F16, D, E);
    case Role::kExpProbsB: return hash ? TensorSpec{} : plain(TensorType::F32, E, 1, 1, 0.0f, 0.1f);
    case Role::kTid2eid: return hash ? plain(TensorType::I32, c.n_expert_used, c.n_vocab, 1, 0, 0) : TensorSpec{};
    case Role::kGateExps:
    case Role::kUpExps: return scaled(routed_gu, D, F, E);
    case Role::kDownExps: return scaled(routed_down, F, D, E);
    case Role::kShGate:
    case Role::kShUp: return scaled(TensorType::Q8_0, D, F);
    case Role::kShDown: return scaled(TensorType::Q8_0, F, D);
    default: return {};
  }
}

// Random valid blocks: random bytes, then the f16 scales (model/synthetic.cc's divisors).
Status fill_blocks(uint8_t* dst, const TensorSpec& s, uint64_t bytes, uint64_t seed, cudaStream_t stream) {
  fill_random_bytes<<<blocks_for(bytes / 8 + 1), kThreads, 0, stream>>>(dst, bytes, seed);
  const auto traits = *gguf::type_traits(s.type);
  const uint64_t n_blocks = bytes / static_cast<uint64_t>(traits.block_bytes);
  const float sd = s.stddev;
  int off0 = -1, off1 = -1;
  float v0 = 0, v1 = 0;
  switch (s.type) {
    case TensorType::Q8_0: off0 = 0; v0 = sd / 73.9f; break;
    case TensorType::Q2_K: off0 = 80; v0 = sd / 9.0f; off1 = 82; v1 = sd / 18.0f; break;
    case TensorType::Q4_K: off0 = 0; v0 = sd / 145.0f; off1 = 2; v1 = sd / 290.0f; break;
    case TensorType::IQ2_XXS: off0 = 0; v0 = sd / 58.0f; break;
    default: return make_error("synthetic weights: no block generator for " + gguf::type_name(s.type));
  }
  set_block_scales<<<blocks_for(n_blocks), kThreads, 0, stream>>>(dst, n_blocks, static_cast<int>(traits.block_bytes),
                                                                   off0, f32_to_f16(v0), off1, f32_to_f16(v1));
  return cuda_status(cudaGetLastError(), "synthetic weight kernels");
}

Status run_job(uint8_t* base, const detail::FillJob& j, int64_t n_expert, cudaStream_t stream) {
  uint8_t* dst = base + j.offset;
  const TensorSpec& s = j.spec;
  const uint64_t seed = j.seed * 0x2545F4914F6CDD1Dull;
  switch (j.kind) {
    case detail::FillJob::Kind::kF32:
      if (!j.values.empty()) {
        return cuda_status(cudaMemcpyAsync(dst, j.values.data(), j.bytes, cudaMemcpyHostToDevice, stream),
                           "RoPE table upload");
      }
      fill_normal<<<blocks_for(j.bytes / 4), kThreads, 0, stream>>>(dst, j.bytes / 4, 0, s.mean, s.stddev, seed);
      break;
    case detail::FillJob::Kind::kInt32:
      fill_tid2eid<<<blocks_for(static_cast<uint64_t>(s.ne1)), kThreads, 0, stream>>>(
          reinterpret_cast<int32_t*>(dst), s.ne1, static_cast<int>(s.ne0), static_cast<int>(n_expert), seed);
      break;
    case detail::FillJob::Kind::kCopy:
    case detail::FillJob::Kind::kInterleave:
      if (s.type == TensorType::F32 || s.type == TensorType::F16 || s.type == TensorType::BF16) {
        const int kind = s.type == TensorType::F32 ? 0 : (s.type == TensorType::F16 ? 1 : 2);
        const uint64_t n = j.bytes / (s.type == TensorType::F32 ? 4 : 2);
        fill_normal<<<blocks_for(n), kThreads, 0, stream>>>(dst, n, kind, s.mean, s.stddev, seed);
      } else {
        DSV4_TRY(fill_blocks(dst, s, j.bytes, seed, stream));
      }
      break;
  }
  return cuda_status(cudaGetLastError(), "synthetic weight kernels");
}

}  // namespace

namespace {

// A model of configuration c whose tensors `describe` draws, generated in its arena.
Result<std::unique_ptr<DeviceModel>> generate_described(const model::Config& c, const detail::DescribeFn& describe,
                                                        uint64_t seed, const std::string& what) {
  const auto start = std::chrono::steady_clock::now();
  auto m = std::make_unique<DeviceModel>();
  m->config = c;
  DSV4_TRY(check_device_config(c));
  std::vector<detail::FillJob> jobs;
  const uint64_t bytes = detail::lay_out_model(c, describe, nullptr, *m, jobs);
  DSV4_TRY(m->arena.allocate(bytes, what));
  jobs.clear();
  detail::lay_out_model(c, describe, m->arena.base(), *m, jobs);
  cudaStream_t stream = nullptr;
  DSV4_CUDA_TRY(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  auto fill_all = [&]() -> Status {
    for (const detail::FillJob& j : jobs) {
      detail::FillJob seeded = j;
      seeded.seed = j.seed ^ (seed * 0x9E3779B97F4A7C15ull);
      DSV4_TRY(run_job(m->arena.base(), seeded, c.n_expert, stream));
      if (j.values.empty()) m->weight_bytes += j.bytes;
    }
    return Status();
  };
  const Status s = fill_all();
  const Status done = cuda_status(cudaStreamSynchronize(stream), "synthetic weight generation");
  cudaStreamDestroy(stream);
  DSV4_TRY(s);
  DSV4_TRY(done);
  m->load_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return Result<std::unique_ptr<DeviceModel>>(std::move(m));
}

Status check_preset(const std::string& preset) {
  if (preset == "flash-q2" || preset == "flash-q4") return Status();
  return make_error("unknown full-size preset '" + preset + "' for device generation (flash-q2, flash-q4)");
}

}  // namespace

Result<std::unique_ptr<DeviceModel>> generate_synthetic_model(const std::string& preset, int64_t n_layer,
                                                             uint64_t seed) {
  DSV4_TRY(check_preset(preset));
  if (n_layer < 0 || n_layer > 43) return make_error("--layers must be in [1, 43] for " + preset);
  const model::Config c = flash_config(n_layer == 0 ? 43 : n_layer);
  const bool q4 = preset == "flash-q4";
  const detail::DescribeFn describe = [&](int64_t layer, Role role) { return describe_flash(c, q4, layer, role); };
  return generate_described(c, describe, seed, "synthetic " + preset);
}

Result<std::unique_ptr<DeviceModel>> generate_synthetic_mtp_block(const std::string& preset, uint64_t seed,
                                                                  const DeviceModel& main) {
  DSV4_TRY(check_preset(preset));
  // model::Weights' MTP configuration (weights.cc mtp_config): one sliding-only, top-k routed layer.
  model::Config c = flash_config(1);
  c.n_hash_layer = 0;
  const int64_t D = c.n_embd;
  const detail::DescribeFn describe = [&](int64_t layer, Role role) -> TensorSpec {
    const float proj_sd = 1.0f / std::sqrt(static_cast<float>(D));
    switch (role) {
      case Role::kTokenEmbd:
      case Role::kOutput: return {};  // main's
      case Role::kMtpEProj:
      case Role::kMtpHProj: return plain(TensorType::Q8_0, D, D, 1, 0.0f, proj_sd);
      case Role::kMtpENorm:
      case Role::kMtpHNorm: return plain(TensorType::F32, D, 1, 1, 1.0f, 0.1f);
      default: return describe_flash(c, /*q4=*/true, layer, role);  // the published block's Q4_K experts
    }
  };
  // Seeds apart from the main model's (the same roles at layer 0 there).
  DSV4_ASSIGN_OR_RETURN(std::unique_ptr<DeviceModel> m,
                        generate_described(c, describe, seed ^ 0x4D5450ull, "synthetic MTP block of " + preset));
  m->token_embd = main.token_embd;
  m->output = main.output;
  return Result<std::unique_ptr<DeviceModel>>(std::move(m));
}

}  // namespace dsv4::cuda
