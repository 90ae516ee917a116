#include "cuda/device_state.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "cuda/attention.h"
#include "cuda/check.h"
#include "cuda/fill.h"
#include "cuda/gemm.h"
#include "cuda/hc.h"
#include "cuda/indexer.h"
#include "cuda/prefill_attention.h"
#include "cuda/prefill_indexer.h"

namespace dsv4::cuda {

namespace {

// Rows [row, row + rows) of a [..][width] f32 array inside the region at `base`, as a span of it.
RegionSpan region_rows(const uint8_t* base, const float* start, int64_t row, int64_t rows, int64_t width) {
  const uint64_t offset = static_cast<uint64_t>(reinterpret_cast<const uint8_t*>(start + row * width) - base);
  return {offset, static_cast<uint64_t>(rows * width) * sizeof(float)};
}

// Bump allocation over one arena (nullptr base: measuring).
class Carve {
 public:
  explicit Carve(uint8_t* base) : base_(base) {}
  template <class T>
  T* take(int64_t n) {
    const uint64_t off = top_;
    top_ = (top_ + static_cast<uint64_t>(std::max<int64_t>(n, 1)) * sizeof(T) + 255) / 256 * 256;
    return base_ ? reinterpret_cast<T*>(base_ + off) : nullptr;
  }
  uint64_t top() const { return top_; }

 private:
  uint8_t* base_;
  uint64_t top_ = 0;
};

}  // namespace

uint64_t DeviceState::lay_out(uint8_t* base) {
  const model::Config& c = model_.config;
  const int64_t T = max_chunk_, D = c.n_embd, hd = c.head_dim, R = c.q_lora_rank, H = c.n_head;
  const int64_t idh = c.index_head_dim, IH = c.n_index_head, E = c.n_expert, K = c.n_expert_used;
  const int64_t F = c.n_ff_expert, G = c.n_out_group, W = c.window;
  Carve cv(base);
  // The rollback region.
  logits = cv.take<float>(c.n_vocab);
  layers.assign(static_cast<size_t>(c.n_layer), LayerBuffers{});
  bool any_indexer = false;
  int64_t cd_max = 0;
  int max_splits = 1, max_prefill_splits = 1;
  for (int64_t l = 0; l < c.n_layer; ++l) {
    LayerBuffers& L = layers[static_cast<size_t>(l)];
    const int64_t r = c.ratio(l);
    L.ring = cv.take<float>(W * hd);
    if (r != 0) {
      L.comp_slots = static_cast<int>(r == 4 ? 8 : r);
      L.comp_width = static_cast<int>(r == 4 ? 2 * hd : hd);
      L.comp_kv = cv.take<float>(int64_t{L.comp_slots} * L.comp_width);
      L.comp_gate = cv.take<float>(int64_t{L.comp_slots} * L.comp_width);
      cd_max = std::max<int64_t>(cd_max, L.comp_width);
    }
    if (r == 4) {
      L.index_slots = 8;
      L.index_width = static_cast<int>(2 * idh);
      L.index_kv = cv.take<float>(int64_t{L.index_slots} * L.index_width);
      L.index_gate = cv.take<float>(int64_t{L.index_slots} * L.index_width);
      any_indexer = true;
    }
    const int64_t comp_rows = r == 0 ? 0 : (r == 4 ? std::min<int64_t>(c.index_top_k, n_ctx_ / 4) : n_ctx_ / r);
    L.attn_splits = attention_splits(std::min<int64_t>(W, n_ctx_) + comp_rows);
    max_splits = std::max(max_splits, L.attn_splits);
    L.prefill_splits = prefill_attention_splits(std::min<int64_t>(W, n_ctx_) + comp_rows);
    max_prefill_splits = std::max(max_prefill_splits, L.prefill_splits);
  }
  checkpoint_bytes_ = cv.top();
  for (int64_t l = 0; l < c.n_layer; ++l) {
    LayerBuffers& L = layers[static_cast<size_t>(l)];
    const int64_t r = c.ratio(l);
    if (r == 0) continue;
    L.comp_cap = n_ctx_ / r;
    L.comp_rows = cv.take<float>(L.comp_cap * hd);
    if (r == 4) L.index_rows = cv.take<float>(L.comp_cap * idh);
  }
  pos = cv.take<int>(1);
  window_start = cv.take<int>(1);
  tokens = cv.take<int32_t>(T);
  hidden = hidden_rows_ ? cv.take<float>(T * 4 * D) : nullptr;
  logits_all = cv.take<float>(std::min<int64_t>(T, kMaxLogitsRows) * c.n_vocab);
  Scratch& s = scratch;
  s.x = cv.take<float>(T * 4 * D);
  s.x_next = cv.take<float>(T * 4 * D);
  s.hc_partial = cv.take<double>(hc_partial_doubles(T, D));
  s.mix = cv.take<float>(T * kHcMixSize);
  s.xn = cv.take<float>(T * D);
  s.qa = cv.take<float>(T * (R + hd));
  s.kv_raw = cv.take<float>(T * hd);
  s.qr = cv.take<float>(T * R);
  s.q = cv.take<float>(T * H * hd);
  s.kv = cv.take<float>(T * hd);
  s.comp_proj = cv.take<float>(T * 2 * cd_max);
  s.comp_proj2 = cv.take<float>(T * cd_max);
  s.index_proj = cv.take<float>(T * 4 * idh);
  s.index_proj2 = cv.take<float>(T * 2 * idh);
  s.comp_windows = 0;
  for (int64_t l = 0; l < c.n_layer; ++l) {
    const int64_t r = c.ratio(l);
    if (r != 0 && r != 4) s.comp_windows = std::max(s.comp_windows, static_cast<int>(T / r + 1));
  }
  s.comp_pooled = cv.take<float>(int64_t{s.comp_windows} * hd);
  s.comp_counters = cv.take<unsigned>(s.comp_windows);
  s.score_cap = any_indexer ? n_ctx_ / 4 : 0;
  // Prefill launches take as many tokens as their scratch budget holds (chunks of T > 1).
  const auto launch_tokens = [&](int64_t launch_bytes, int64_t bytes_per_token) {
    return static_cast<int>(std::clamp<int64_t>(launch_bytes / std::max<int64_t>(bytes_per_token, 1),
                                                 std::min<int64_t>(T, kSubChunk), T));
  };
  const bool prefill_attn = T > 1 && prefill_attention_supported(static_cast<int>(H), static_cast<int>(hd));
  const bool prefill_index = T > 1 && prefill_indexer_supported(static_cast<int>(IH), static_cast<int>(idh));
  // The split form's partials serve only launches shorter than kPrefillAttnWholeFrom tokens (longer
  // ones take whole tokens, which keep their sums in attn).
  const int split_tokens = launch_tokens(kPrefillAttentionLaunchBytes, H * max_prefill_splits * (hd + 2) * 4);
  s.attn_tokens = prefill_attn ? std::min(split_tokens, static_cast<int>(kPrefillAttnWholeFrom - 1)) : 0;
  s.index_tokens = prefill_index ? launch_tokens(kPrefillIndexLaunchBytes, s.score_cap * 4) : 0;
  if (any_indexer) {
    s.iq = cv.take<float>(T * IH * idh);
    s.iw = cv.take<float>(T * IH);
    s.scores = cv.take<float>(int64_t{std::max<int>(s.index_tokens, kSubChunk)} * s.score_cap);
    s.index_n = cv.take<int32_t>(prefill_index ? T : 0);  // a launch's tokens: up to the chunk (ChunkShape::end)
    if (prefill_index) {  // rows split once per layer
      const int64_t n = prefill_indexer_row_capacity(s.score_cap);
      s.index_split.rows = cv.take<__half>(prefill_indexer_row_halves(n, static_cast<int>(idh)));
      s.index_split.inv = cv.take<float>(n);
      s.index_split.tile_lo = cv.take<int32_t>(n / 64);
      s.index_split.capacity = n;
    }
    s.selected = cv.take<int32_t>(T * c.index_top_k);
    s.topk_scratch = cv.take<uint32_t>(int64_t{std::min<int64_t>(T, kSubChunk)} * kIndexerTopkScratchWords);
  }
  const int64_t sub = std::min<int64_t>(T, kSubChunk);
  const int64_t parts = std::max(sub * max_splits, int64_t{s.attn_tokens} * max_prefill_splits);
  s.part_o = cv.take<float>(parts * H * hd);
  s.part_ml = cv.take<float>(parts * H * 2);
  if (prefill_attn) {  // rows split once per layer
    int64_t comp_cap = 0;
    for (const LayerBuffers& L : layers) comp_cap = std::max(comp_cap, L.comp_cap);
    const int64_t n = prefill_attention_row_capacity(static_cast<int>(W), static_cast<int>(T), comp_cap);
    s.attn_rows.rows = cv.take<__half>(n * 2 * hd);
    s.attn_rows.meta = cv.take<int2>(n);
    s.q_exp = cv.take<int>(T * H);
  }
  s.attn = cv.take<float>(T * H * hd);
  s.low = cv.take<float>(T * G * c.o_lora_rank);
  s.out = cv.take<float>(T * D);
  s.router = cv.take<float>(T * E);
  s.experts = cv.take<int32_t>(T * K);
  s.route_w = cv.take<float>(T * K);
  s.gu = cv.take<float>(T * K * 2 * F);
  s.mid = cv.take<float>(T * K * F);
  s.ydown = cv.take<float>(T * K * D);
  s.sh_gu = cv.take<float>(T * 2 * F);
  s.sh_mid = cv.take<float>(T * F);
  s.shared = cv.take<float>(T * D);
  s.head = cv.take<float>(T * D);
  s.zeros = cv.take<int32_t>(T);
  s.groups = cv.take<int32_t>(T * G);
  if (tensor_core_ && T > 1) {
    const int64_t widest = std::max({D, R, H * hd, G * c.o_lora_rank, F});
    s.xn16 = cv.take<__half>(T * D);
    s.xn16_lo = cv.take<__half>(T * D);
    s.xn16_scale = cv.take<float>(T);
    s.in16 = cv.take<__half>(std::max(T * widest, T * K * F));
    s.in16_lo = cv.take<__half>(std::max(T * widest, T * K * F));
    s.in16_scale = cv.take<float>(T * std::max(K, G));  // a factor per row: routed rows, or out_a's per group
    s.out_a_rows = cv.take<int32_t>(T * G);
    s.out_a_offsets = cv.take<int32_t>(G + 1);
    s.side16 = cv.take<__half>(T * F);
    s.side16_lo = cv.take<__half>(T * F);
    s.side16_scale = cv.take<float>(T);
    s.split_k = cv.take<float>(kSplitKFloats);
    s.split_k_side = cv.take<float>(kSplitKFloats);
    s.sort_offsets = cv.take<int32_t>(E + 1);
    s.sort_row_pair = cv.take<int32_t>(T * K);
    s.sort_row_token = cv.take<int32_t>(T * K);
    s.sort_pair_row = cv.take<int32_t>(T * K);
    s.sort_row_w = cv.take<float>(T * K);
    s.sort_workspace = cv.take<uint8_t>(static_cast<int64_t>(
        sort_by_expert_workspace_bytes(T, static_cast<int>(K), static_cast<int>(E))));
  }
  return cv.top();
}

DeviceState::Footprint DeviceState::footprint(const DeviceModel& model, int64_t n_ctx, int max_chunk,
                                              bool tensor_core, bool hidden_rows) {
  DeviceState s(model, n_ctx, max_chunk, tensor_core, hidden_rows);
  const uint64_t bytes = s.lay_out(nullptr);
  return {bytes, s.checkpoint_bytes_};
}

Result<std::unique_ptr<DeviceState>> DeviceState::create(const DeviceModel& model, int64_t n_ctx, int max_chunk,
                                                         bool tensor_core, cudaStream_t stream, bool hidden_rows) {
  if (n_ctx < 1 || max_chunk < 1) return make_error("cuda state: context and chunk must be positive");
  if (n_ctx > (int64_t{1} << 30)) return make_error("cuda state: context of " + std::to_string(n_ctx) + " too large");
  std::unique_ptr<DeviceState> s(new DeviceState(model, n_ctx, max_chunk, tensor_core, hidden_rows));
  const uint64_t bytes = s->lay_out(nullptr);
  DSV4_TRY(s->arena_.allocate(bytes, "a session of " + std::to_string(n_ctx) + " tokens"));
  s->lay_out(s->arena_.base());
  const model::Config& c = model.config;
  DSV4_CUDA_TRY(cudaMemsetAsync(s->scratch.zeros, 0, sizeof(int32_t) * max_chunk, stream));
  DSV4_CUDA_TRY(cudaMemsetAsync(s->scratch.comp_counters, 0, sizeof(unsigned) * s->scratch.comp_windows, stream));
  if (s->scratch.topk_scratch != nullptr) {
    const int64_t words = std::min<int64_t>(max_chunk, kSubChunk) * kIndexerTopkScratchWords;
    DSV4_CUDA_TRY(cudaMemsetAsync(s->scratch.topk_scratch, 0, sizeof(uint32_t) * words, stream));
  }
  DSV4_TRY(fill_iota_mod(s->scratch.groups, int64_t{max_chunk} * c.n_out_group, static_cast<int>(c.n_out_group), stream));
  DSV4_TRY(s->reset(stream));
  return s;
}

Status DeviceState::reset(cudaStream_t stream) {
  DSV4_CUDA_TRY(cudaMemsetAsync(checkpoint_region(), 0, checkpoint_bytes_, stream));
  for (const LayerBuffers& L : layers) {
    if (L.comp_gate) DSV4_TRY(fill_f32(L.comp_gate, int64_t{L.comp_slots} * L.comp_width, -INFINITY, stream));
    if (L.index_gate) DSV4_TRY(fill_f32(L.index_gate, int64_t{L.index_slots} * L.index_width, -INFINITY, stream));
  }
  DSV4_CUDA_TRY(cudaMemsetAsync(pos, 0, sizeof(int), stream));
  DSV4_CUDA_TRY(cudaMemsetAsync(window_start, 0, sizeof(int), stream));
  return Status();
}

std::vector<RegionSpan> DeviceState::step_write_set(int64_t pos) const {
  const model::Config& c = model_.config;
  std::vector<RegionSpan> spans;
  auto add = [&](const float* start, int64_t row, int64_t rows, int64_t width) {
    spans.push_back(region_rows(checkpoint_region(), start, row, rows, width));
  };
  add(logits, 0, 1, c.n_vocab);
  for (int64_t l = 0; l < c.n_layer; ++l) {
    const LayerBuffers& L = layers[static_cast<size_t>(l)];
    add(L.ring, pos % c.window, 1, c.head_dim);
    const int64_t r = c.ratio(l);
    if (r == 0) continue;
    auto frontier = [&](const float* kv, const float* gate, int slots, int width) {
      const bool whole = r == 4 && pos % 4 == 3;
      const int64_t slot = r == 4 ? 4 + pos % 4 : pos % r;
      add(kv, whole ? 0 : slot, whole ? slots : 1, width);
      add(gate, whole ? 0 : slot, whole ? slots : 1, width);
    };
    frontier(L.comp_kv, L.comp_gate, L.comp_slots, L.comp_width);
    if (L.index_kv) frontier(L.index_kv, L.index_gate, L.index_slots, L.index_width);
  }
  return spans;
}

std::vector<RegionSpan> DeviceState::draft_reject_set(int64_t pos) const {
  const model::Config& c = model_.config;
  std::vector<RegionSpan> spans;
  auto add = [&](const float* start, int64_t row, int64_t rows, int64_t width) {
    spans.push_back(region_rows(checkpoint_region(), start, row, rows, width));
  };
  for (int64_t l = 0; l < c.n_layer; ++l) {
    const LayerBuffers& L = layers[static_cast<size_t>(l)];
    add(L.ring, pos % c.window, 1, c.head_dim);
    const int64_t r = c.ratio(l);
    if (r == 0) continue;
    auto frontier = [&](const float* kv, const float* gate, int width) {
      const int64_t slot = r == 4 ? 4 + pos % 4 : pos % r;
      add(kv, slot, 1, width);
      add(gate, slot, 1, width);
      if (r == 4 && pos % 4 == 3) {
        add(kv, 0, 4, width);
        add(gate, 0, 4, width);
      }
    };
    frontier(L.comp_kv, L.comp_gate, L.comp_width);
    if (L.index_kv) frontier(L.index_kv, L.index_gate, L.index_width);
  }
  return spans;
}

Status DeviceState::download(int64_t n, cpu::State& out, cudaStream_t stream) const {
  const model::Config& c = model_.config;
  auto d2h = [&](void* dst, const void* src, uint64_t bytes) {
    return cuda_status(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, stream), "state download");
  };
  for (int64_t l = 0; l < c.n_layer; ++l) {
    const LayerBuffers& L = layers[static_cast<size_t>(l)];
    cpu::LayerState& ls = out.layer(l);
    DSV4_TRY(d2h(ls.raw.data(), L.ring, ls.raw.size() * 4));
    const int64_t r = c.ratio(l);
    if (r == 0) continue;
    const int64_t n_comp = n / r;
    ls.comp.resize(static_cast<size_t>(n_comp * c.head_dim));
    ls.n_comp = n_comp;
    DSV4_TRY(d2h(ls.comp.data(), L.comp_rows, ls.comp.size() * 4));
    DSV4_TRY(d2h(ls.comp_front.kv.data(), L.comp_kv, ls.comp_front.kv.size() * 4));
    DSV4_TRY(d2h(ls.comp_front.gate.data(), L.comp_gate, ls.comp_front.gate.size() * 4));
    if (r == 4) {
      ls.index.resize(static_cast<size_t>(n_comp * c.index_head_dim));
      ls.n_index = n_comp;
      DSV4_TRY(d2h(ls.index.data(), L.index_rows, ls.index.size() * 4));
      DSV4_TRY(d2h(ls.index_front.kv.data(), L.index_kv, ls.index_front.kv.size() * 4));
      DSV4_TRY(d2h(ls.index_front.gate.data(), L.index_gate, ls.index_front.gate.size() * 4));
    }
  }
  DSV4_TRY(d2h(out.mutable_logits().data(), logits, out.mutable_logits().size() * 4));
  DSV4_CUDA_TRY(cudaStreamSynchronize(stream));
  out.set_n(n);
  return Status();
}

Status DeviceState::upload(const cpu::State& in, cudaStream_t stream) {
  const model::Config& c = model_.config;
  if (in.n() > n_ctx_) return make_error("cuda state: " + std::to_string(in.n()) + " positions exceed the context");
  if (in.n_layer() != c.n_layer || in.head_dim() != c.head_dim || in.window() != c.window ||
      in.n_vocab() != c.n_vocab) {
    return make_error("cuda state: snapshot of another configuration");
  }
  auto h2d = [&](void* dst, const void* src, uint64_t bytes) {
    return cuda_status(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, stream), "state upload");
  };
  for (int64_t l = 0; l < c.n_layer; ++l) {
    const LayerBuffers& L = layers[static_cast<size_t>(l)];
    const cpu::LayerState& ls = in.layer(l);
    if (ls.raw.size() != static_cast<size_t>(c.window * c.head_dim)) return make_error("cuda state: raw window size");
    DSV4_TRY(h2d(L.ring, ls.raw.data(), ls.raw.size() * 4));
    if (c.ratio(l) == 0) continue;
    if (ls.n_comp > L.comp_cap || ls.comp_front.kv.size() != static_cast<size_t>(L.comp_slots) * L.comp_width) {
      return make_error("cuda state: compressor state of layer " + std::to_string(l) + " does not fit");
    }
    DSV4_TRY(h2d(L.comp_rows, ls.comp.data(), static_cast<uint64_t>(ls.n_comp * c.head_dim) * 4));
    DSV4_TRY(h2d(L.comp_kv, ls.comp_front.kv.data(), ls.comp_front.kv.size() * 4));
    DSV4_TRY(h2d(L.comp_gate, ls.comp_front.gate.data(), ls.comp_front.gate.size() * 4));
    if (c.ratio(l) == 4) {
      if (ls.index_front.kv.size() != static_cast<size_t>(L.index_slots) * L.index_width) {
        return make_error("cuda state: indexer state of layer " + std::to_string(l) + " does not fit");
      }
      DSV4_TRY(h2d(L.index_rows, ls.index.data(), static_cast<uint64_t>(ls.n_index * c.index_head_dim) * 4));
      DSV4_TRY(h2d(L.index_kv, ls.index_front.kv.data(), ls.index_front.kv.size() * 4));
      DSV4_TRY(h2d(L.index_gate, ls.index_front.gate.data(), ls.index_front.gate.size() * 4));
    }
  }
  DSV4_TRY(h2d(logits, in.logits().data(), in.logits().size() * 4));
  const int n = static_cast<int>(in.n());
  DSV4_TRY(h2d(pos, &n, sizeof(int)));
  DSV4_CUDA_TRY(cudaStreamSynchronize(stream));
  return Status();
}

}  // namespace dsv4::cuda
