// upload_model (device_model.h): a bound GGUF model copied into one device arena.
//
// Copies are split into pieces of at most kStage bytes and handed to kWorkers host threads. Each
// worker owns a pinned staging buffer and a stream: it waits until its previous copy has left the
// buffer, memcpys the next piece from the mapping into it (page faults of a cold file happen
// here), and queues the host-to-device copy. So reading the file, the memcpys and the PCIe
// transfers of different pieces overlap.
#include <cuda_runtime_api.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <mutex>
#include <thread>

#include "cuda/check.h"
#include "cuda/device_model.h"
#include "cuda/weights_layout.h"
#include "quant/quant.h"

namespace dsv4::cuda {

namespace {

constexpr int kWorkers = 4;
constexpr uint64_t kStage = uint64_t{64} << 20;

std::string gib(uint64_t bytes) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f GiB", static_cast<double>(bytes) / (1024.0 * 1024.0 * 1024.0));
  return buf;
}

// One host-to-device copy of a piece of a job.
struct Piece {
  const uint8_t* src;
  uint8_t* dst;
  uint64_t bytes;
};

// The pieces of every job; f32 and int32 jobs are converted on the host first (into `owned`).
std::vector<Piece> pieces_of(const std::vector<detail::FillJob>& jobs, uint8_t* base,
                             std::vector<std::vector<uint8_t>>& owned) {
  std::vector<Piece> out;
  auto split = [&](const uint8_t* src, uint8_t* dst, uint64_t bytes) {
    for (uint64_t at = 0; at < bytes; at += kStage) out.push_back({src + at, dst + at, std::min(kStage, bytes - at)});
  };
  for (const detail::FillJob& j : jobs) {
    uint8_t* dst = base + j.offset;
    switch (j.kind) {
      case detail::FillJob::Kind::kCopy:
      case detail::FillJob::Kind::kInt32: split(j.spec.data, dst, j.bytes); break;
      case detail::FillJob::Kind::kInterleave: {
        const uint64_t slab = j.spec.row_bytes() * static_cast<uint64_t>(j.spec.ne1);
        for (int64_t e = 0; e < j.spec.ne2; ++e) {
          split(j.spec.data + e * slab, dst + 2 * e * slab, slab);
          split(j.spec2.data + e * slab, dst + (2 * e + 1) * slab, slab);
        }
        break;
      }
      case detail::FillJob::Kind::kF32: {
        std::vector<float> v = j.values;
        if (v.empty()) {
          v.resize(static_cast<size_t>(j.spec.elements()));
          quant::dequantize_row(j.spec.type, j.spec.data, v.data(), j.spec.elements());
        }
        owned.emplace_back(v.size() * 4);
        std::memcpy(owned.back().data(), v.data(), v.size() * 4);
        split(owned.back().data(), dst, owned.back().size());
        break;
      }
    }
  }
  return out;
}

Status copy_pieces(const std::vector<Piece>& pieces) {
  uint64_t largest = 0;
  for (const Piece& p : pieces) largest = std::max(largest, p.bytes);
  const int workers = static_cast<int>(std::min<size_t>(kWorkers, pieces.size()));
  std::atomic<size_t> next{0};
  std::mutex mu;
  Status failure;
  auto fail = [&](const Status& s) {
    std::lock_guard<std::mutex> lock(mu);
    if (failure.ok()) failure = s;
  };
  auto work = [&]() {
    uint8_t* stage = nullptr;
    cudaStream_t stream = nullptr;
    Status s = cuda_status(cudaHostAlloc(reinterpret_cast<void**>(&stage), largest, cudaHostAllocDefault),
                           "pinned staging buffer");
    if (s.ok()) s = cuda_status(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), "upload stream");
    while (s.ok()) {
      const size_t i = next.fetch_add(1);
      if (i >= pieces.size()) break;
      s = cuda_status(cudaStreamSynchronize(stream), "weight upload");
      if (!s.ok()) break;
      std::memcpy(stage, pieces[i].src, pieces[i].bytes);
      s = cuda_status(cudaMemcpyAsync(pieces[i].dst, stage, pieces[i].bytes, cudaMemcpyHostToDevice, stream),
                      "weight upload");
    }
    if (stream) {
      const Status done = cuda_status(cudaStreamSynchronize(stream), "weight upload");
      if (s.ok()) s = done;
      cudaStreamDestroy(stream);
    }
    if (stage) cudaFreeHost(stage);
    if (!s.ok()) fail(s);
  };
  std::vector<std::thread> threads;
  for (int w = 1; w < workers; ++w) threads.emplace_back(work);
  work();
  for (std::thread& t : threads) t.join();
  return failure;
}

detail::TensorSpec spec_of(const model::Tensor& t) {
  detail::TensorSpec s;
  if (!t.present()) return s;
  s.present = true;
  s.type = t.type();
  s.ne0 = t.ne(0);
  s.ne1 = t.ne(1);
  s.ne2 = t.ne(2);
  s.data = t.data();
  return s;
}

const model::Tensor& tensor_of(const model::Weights& w, int64_t layer, detail::Role role) {
  using R = detail::Role;
  static const model::Tensor kAbsent;
  if (layer < 0) {
    switch (role) {
      case R::kTokenEmbd: return w.token_embd;
      case R::kOutput: return w.output;
      case R::kOutputNorm: return w.output_norm;
      case R::kOutputHcFn: return w.output_hc_fn;
      case R::kOutputHcBase: return w.output_hc_base;
      case R::kOutputHcScale: return w.output_hc_scale;
      default: return kAbsent;
    }
  }
  const model::LayerWeights& l = w.layers[static_cast<size_t>(layer)];
  switch (role) {
    case R::kHcAttnFn: return l.hc_attn_fn;
    case R::kHcAttnScale: return l.hc_attn_scale;
    case R::kHcAttnBase: return l.hc_attn_base;
    case R::kHcFfnFn: return l.hc_ffn_fn;
    case R::kHcFfnScale: return l.hc_ffn_scale;
    case R::kHcFfnBase: return l.hc_ffn_base;
    case R::kAttnNorm: return l.attn_norm;
    case R::kFfnNorm: return l.ffn_norm;
    case R::kQA: return l.attn_q_a;
    case R::kQANorm: return l.attn_q_a_norm;
    case R::kQB: return l.attn_q_b;
    case R::kKv: return l.attn_kv;
    case R::kKvANorm: return l.attn_kv_a_norm;
    case R::kSinks: return l.attn_sinks;
    case R::kOutA: return l.attn_output_a;
    case R::kOutB: return l.attn_output_b;
    case R::kCompApe: return l.attn_compressor_ape;
    case R::kCompKv: return l.attn_compressor_kv;
    case R::kCompGate: return l.attn_compressor_gate;
    case R::kCompNorm: return l.attn_compressor_norm;
    case R::kIndexQB: return l.indexer_attn_q_b;
    case R::kIndexProj: return l.indexer_proj;
    case R::kIndexCompApe: return l.indexer_compressor_ape;
    case R::kIndexCompKv: return l.indexer_compressor_kv;
    case R::kIndexCompGate: return l.indexer_compressor_gate;
    case R::kIndexCompNorm: return l.indexer_compressor_norm;
    case R::kGateInp: return l.ffn_gate_inp;
    case R::kExpProbsB: return l.exp_probs_b;
    case R::kTid2eid: return l.ffn_gate_tid2eid;
    case R::kGateExps: return l.ffn_gate_exps;
    case R::kUpExps: return l.ffn_up_exps;
    case R::kDownExps: return l.ffn_down_exps;
    case R::kShGate: return l.ffn_gate_shexp;
    case R::kShUp: return l.ffn_up_shexp;
    case R::kShDown: return l.ffn_down_shexp;
    default: return kAbsent;
  }
}

}  // namespace

DeviceArena::~DeviceArena() {
  if (base_) cudaFree(base_);
}

Status DeviceArena::allocate(uint64_t bytes, const std::string& what) {
  size_t free_bytes = 0, total = 0;
  DSV4_CUDA_TRY(cudaMemGetInfo(&free_bytes, &total));
  // Leave room for the CUDA context's own needs and the sessions' first allocations.
  constexpr uint64_t kHeadroom = uint64_t{512} << 20;
  if (bytes + kHeadroom > free_bytes) {
    return make_error(what + " needs " + gib(bytes) + " of device memory (plus " + gib(kHeadroom) +
                      " headroom) but only " + gib(free_bytes) + " of " + gib(total) + " are free: " +
                      gib(bytes + kHeadroom - free_bytes) + " missing");
  }
  void* p = nullptr;
  DSV4_CUDA_TRY(cudaMalloc(&p, bytes ? bytes : 1));
  base_ = static_cast<uint8_t*>(p);
  size_ = bytes;
  return Status();
}

Status check_device_config(const model::Config& c) {
  auto fail = [](const std::string& what) { return Status(make_error("cuda backend: " + what)); };
  if (c.n_hc != 4) return fail("needs 4 hyper-connection streams, the model has " + std::to_string(c.n_hc));
  if (c.head_dim % 32 != 0 || c.head_dim > 1024) return fail("head dim must be a multiple of 32, at most 1024");
  if (c.index_head_dim != 32 && c.index_head_dim != 64 && c.index_head_dim != 128) {
    return fail("indexer head dim must be 32, 64 or 128 (the indexer's tensor-core tiles)");
  }
  if (c.n_rot / 2 > 64) return fail("at most 128 RoPE dims");
  if (c.n_embd % 4 != 0) return fail("hidden width must be a multiple of 4");
  if (c.n_expert_used > 16 || c.n_expert > 1024) return fail("at most 16 of 1024 experts");
  if (c.n_index_head > 64 || c.index_top_k > 4096) return fail("at most 64 indexer heads and a top-k of 4096");
  if (c.n_head % 8 != 0 && c.n_head % 4 != 0 && c.n_head % 2 != 0 && c.n_head != 1) {
    return fail("head count unsupported");
  }
  if (static_cast<int64_t>(c.swiglu_clamp.size()) < c.n_layer) return fail("swiglu clamp list too short");
  return Status();
}

namespace {

// The tensors `describe` names, copied into a new model's arena.
Result<std::unique_ptr<DeviceModel>> upload_described(const model::Config& config, const detail::DescribeFn& describe,
                                                      const std::string& what) {
  DSV4_TRY(check_device_config(config));
  const auto start = std::chrono::steady_clock::now();
  auto m = std::make_unique<DeviceModel>();
  m->config = config;
  std::vector<detail::FillJob> jobs;
  const uint64_t bytes = detail::lay_out_model(config, describe, nullptr, *m, jobs);
  DSV4_TRY(m->arena.allocate(bytes, what));
  jobs.clear();
  detail::lay_out_model(config, describe, m->arena.base(), *m, jobs);
  std::vector<std::vector<uint8_t>> owned;
  const std::vector<Piece> pieces = pieces_of(jobs, m->arena.base(), owned);
  DSV4_TRY(copy_pieces(pieces));
  for (const detail::FillJob& j : jobs) m->weight_bytes += j.values.empty() ? j.bytes : 0;  // not the RoPE tables
  m->load_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  m->load_gb_per_s = m->load_seconds > 0 ? static_cast<double>(bytes) / m->load_seconds / 1e9 : 0.0;
  return m;
}

}  // namespace

Result<std::unique_ptr<DeviceModel>> upload_model(const model::Model& model) {
  const detail::DescribeFn describe = [&](int64_t layer, detail::Role role) {
    return spec_of(tensor_of(model.weights, layer, role));
  };
  DSV4_ASSIGN_OR_RETURN(std::unique_ptr<DeviceModel> m,
                        upload_described(model.config, describe, "model " + model.file.label()));
  m->weight_bytes = 0;  // the file's bytes, as stored
  for (const gguf::TensorInfo& t : model.file.tensors()) m->weight_bytes += t.size;
  return m;
}

Result<std::unique_ptr<DeviceModel>> upload_mtp_block(const model::MtpModel& mtp, const DeviceModel& main) {
  using R = detail::Role;
  const detail::DescribeFn describe = [&](int64_t layer, R role) -> detail::TensorSpec {
    switch (role) {
      case R::kTokenEmbd:
      case R::kOutput: return {};  // main's
      case R::kMtpEProj: return spec_of(mtp.e_proj);
      case R::kMtpHProj: return spec_of(mtp.h_proj);
      case R::kMtpENorm: return spec_of(mtp.enorm);
      case R::kMtpHNorm: return spec_of(mtp.hnorm);
      default: return spec_of(tensor_of(mtp.block.weights, layer, role));
    }
  };
  DSV4_ASSIGN_OR_RETURN(std::unique_ptr<DeviceModel> m,
                        upload_described(mtp.block.config, describe, "the MTP block of " + mtp.block.file.label()));
  m->token_embd = main.token_embd;
  m->output = main.output;
  return m;
}

}  // namespace dsv4::cuda
