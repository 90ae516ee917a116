// MODEL.md §12: allocation, reset and the snapshot byte format documented in state.h.
#include "cpu/state.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <string>

#include "util/half.h"

namespace dsv4::cpu {

namespace {

constexpr char kMagic[8] = {'D', 'S', 'V', '4', 'C', 'P', 'U', 'S'};
constexpr uint32_t kFormatVersion = 1;

class Writer {
 public:
  void bytes(const void* p, size_t n) {
    if (n == 0) return;
    const auto* b = static_cast<const uint8_t*>(p);
    out_.insert(out_.end(), b, b + n);
  }
  void u32(uint32_t v) {
    for (int i = 0; i < 4; ++i) out_.push_back(static_cast<uint8_t>(v >> (8 * i)));
  }
  void i64(int64_t v) {
    const auto u = static_cast<uint64_t>(v);
    for (int i = 0; i < 8; ++i) out_.push_back(static_cast<uint8_t>(u >> (8 * i)));
  }
  void f32s(const float* p, int64_t n) {
    if constexpr (std::endian::native == std::endian::little) {
      bytes(p, static_cast<size_t>(n) * 4);
    } else {
      for (int64_t i = 0; i < n; ++i) u32(f32_bits(p[i]));
    }
  }
  std::vector<uint8_t> take() { return std::move(out_); }

 private:
  std::vector<uint8_t> out_;
};

class Reader {
 public:
  explicit Reader(std::span<const uint8_t> b) : b_(b) {}
  bool ok() const { return ok_; }
  bool at_end() const { return pos_ == b_.size(); }
  size_t pos() const { return pos_; }
  bool take(void* dst, size_t n) {
    if (!ok_ || b_.size() - pos_ < n) return ok_ = false;
    if (n == 0) return true;
    std::memcpy(dst, b_.data() + pos_, n);
    pos_ += n;
    return true;
  }
  uint32_t u32() {
    uint8_t b[4] = {};
    take(b, 4);
    uint32_t v = 0;
    for (int i = 0; i < 4; ++i) v |= static_cast<uint32_t>(b[i]) << (8 * i);
    return v;
  }
  int64_t i64() {
    uint8_t b[8] = {};
    take(b, 8);
    uint64_t v = 0;
    for (int i = 0; i < 8; ++i) v |= static_cast<uint64_t>(b[i]) << (8 * i);
    return static_cast<int64_t>(v);
  }
  // n floats into dst (dst must hold n); checks the length first so a hostile count cannot
  // make the caller allocate: callers size dst only after `has_f32s`.
  bool has_f32s(int64_t n) const {
    return ok_ && n >= 0 && static_cast<uint64_t>(n) <= (b_.size() - pos_) / 4;
  }
  void f32s(float* dst, int64_t n) {
    if (!has_f32s(n)) {
      ok_ = false;
      return;
    }
    if constexpr (std::endian::native == std::endian::little) {
      take(dst, static_cast<size_t>(n) * 4);
    } else {
      for (int64_t i = 0; i < n; ++i) dst[i] = f32_from_bits(u32());
    }
  }

 private:
  std::span<const uint8_t> b_;
  size_t pos_ = 0;
  bool ok_ = true;
};

Error snapshot_error(const std::string& what) { return make_error("cpu state snapshot: " + what); }

}  // namespace

void Frontier::init(int64_t n_slots, int64_t n_width) {
  slots = n_slots;
  width = n_width;
  kv.assign(static_cast<size_t>(slots * width), 0.0f);
  gate.assign(static_cast<size_t>(slots * width), -INFINITY);
}

void Frontier::clear() {
  std::fill(kv.begin(), kv.end(), 0.0f);
  std::fill(gate.begin(), gate.end(), -INFINITY);
}

Result<State> State::create(const model::Config& c, int64_t max_ctx) {
  if (max_ctx <= 0) return make_error("cpu state: max_ctx must be positive");
  if (c.n_layer <= 0 || c.head_dim <= 0 || c.window <= 0 || c.n_vocab <= 0) {
    return make_error("cpu state: configuration has empty dimensions");
  }
  if (static_cast<int64_t>(c.compress_ratio.size()) < c.n_layer) {
    return make_error("cpu state: compress_ratios shorter than block_count");
  }
  State s;
  s.max_ctx_ = max_ctx;
  s.head_dim_ = c.head_dim;
  s.window_ = c.window;
  s.index_head_dim_ = c.index_head_dim;
  s.n_vocab_ = c.n_vocab;
  s.layers_.resize(static_cast<size_t>(c.n_layer));
  for (int64_t l = 0; l < c.n_layer; ++l) {
    LayerState& ls = s.layers_[static_cast<size_t>(l)];
    const int64_t r = c.ratio(l);
    if (r < 0)
      return make_error("cpu state: negative compress ratio at layer " + std::to_string(l));
    ls.ratio = r;
    ls.raw.assign(static_cast<size_t>(c.window * c.head_dim), 0.0f);
    if (r != 0) {
      const int64_t cw = (r == 4) ? 2 : 1;  // overlap doubles slots and width (§12.1)
      ls.comp_front.init(cw * r, cw * c.head_dim);
      ls.comp.reserve(static_cast<size_t>((max_ctx / r) * c.head_dim));
      if (r == 4) {
        if (c.index_head_dim <= 0) return make_error("cpu state: indexer head dim is zero");
        ls.index_front.init(2 * 4, 2 * c.index_head_dim);
        ls.index.reserve(static_cast<size_t>((max_ctx / 4) * c.index_head_dim));
      }
    }
  }
  s.logits_.assign(static_cast<size_t>(c.n_vocab), 0.0f);
  return s;
}

State State::blank_like() const {
  State s;
  s.max_ctx_ = max_ctx_;
  s.head_dim_ = head_dim_;
  s.window_ = window_;
  s.index_head_dim_ = index_head_dim_;
  s.n_vocab_ = n_vocab_;
  s.layers_.resize(layers_.size());
  for (size_t l = 0; l < layers_.size(); ++l) {
    const LayerState& from = layers_[l];
    LayerState& to = s.layers_[l];
    to.ratio = from.ratio;
    to.raw.assign(from.raw.size(), 0.0f);
    if (from.ratio != 0) {
      to.comp_front.init(from.comp_front.slots, from.comp_front.width);
      to.comp.reserve(static_cast<size_t>((max_ctx_ / from.ratio) * head_dim_));
    }
    if (from.ratio == 4) {
      to.index_front.init(from.index_front.slots, from.index_front.width);
      to.index.reserve(static_cast<size_t>((max_ctx_ / 4) * index_head_dim_));
    }
  }
  s.logits_.assign(logits_.size(), 0.0f);
  return s;
}

void State::reset() {
  n_ = 0;
  mode_.reset();
  for (LayerState& ls : layers_) {
    std::fill(ls.raw.begin(), ls.raw.end(), 0.0f);
    ls.comp.clear();
    ls.index.clear();
    ls.n_comp = 0;
    ls.n_index = 0;
    ls.comp_front.clear();
    ls.index_front.clear();
  }
  std::fill(logits_.begin(), logits_.end(), 0.0f);
}

float* State::append_comp(int64_t l) {
  LayerState& ls = layer(l);
  ls.comp.resize(static_cast<size_t>((ls.n_comp + 1) * head_dim_));
  return ls.comp.data() + (ls.n_comp++) * head_dim_;
}

float* State::append_index(int64_t l) {
  LayerState& ls = layer(l);
  ls.index.resize(static_cast<size_t>((ls.n_index + 1) * index_head_dim_));
  return ls.index.data() + (ls.n_index++) * index_head_dim_;
}

std::vector<uint8_t> State::serialize() const {
  Writer w;
  w.bytes(kMagic, sizeof(kMagic));
  w.u32(kFormatVersion);
  uint32_t flags = 0;
  if (mode_) flags = 1u | (mode_->fp8_kv ? 2u : 0u) | (mode_->fp4_indexer ? 4u : 0u);
  w.u32(flags);
  w.i64(n_layer());
  w.i64(n_);
  w.i64(head_dim_);
  w.i64(window_);
  w.i64(index_head_dim_);
  w.i64(n_vocab_);
  auto frontier = [&](const Frontier& f) {
    w.i64(f.slots);
    w.i64(f.width);
    w.f32s(f.kv.data(), f.slots * f.width);
    w.f32s(f.gate.data(), f.slots * f.width);
  };
  for (int64_t l = 0; l < n_layer(); ++l) {
    const LayerState& ls = layer(l);
    w.i64(ls.ratio);
    w.i64(ls.n_comp);
    for (int64_t p = std::max<int64_t>(0, n_ - window_); p < n_; ++p) {
      w.f32s(raw_slot(l, p), head_dim_);
    }
    if (ls.ratio != 0) {
      w.f32s(ls.comp.data(), ls.n_comp * head_dim_);
      frontier(ls.comp_front);
    }
    if (ls.ratio == 4) {
      w.f32s(ls.index.data(), ls.n_index * index_head_dim_);
      frontier(ls.index_front);
    }
  }
  if (n_ > 0) w.f32s(logits_.data(), n_vocab_);
  return w.take();
}

Status State::restore(std::span<const uint8_t> bytes) {
  Reader r(bytes);
  char magic[8] = {};
  r.take(magic, sizeof(magic));
  if (!r.ok() || std::memcmp(magic, kMagic, sizeof(kMagic)) != 0)
    return snapshot_error("bad magic");
  const uint32_t version = r.u32();
  if (version != kFormatVersion) {
    return snapshot_error("unsupported format version " + std::to_string(version));
  }
  const uint32_t flags = r.u32();
  const int64_t n_layer_in = r.i64();
  const int64_t n_in = r.i64();
  const int64_t dims[4] = {r.i64(), r.i64(), r.i64(), r.i64()};
  if (!r.ok()) return snapshot_error("truncated header");
  if ((flags & ~7u) != 0) return snapshot_error("unknown mode flags");
  if (n_layer_in != n_layer() || dims[0] != head_dim_ || dims[1] != window_ ||
      dims[2] != index_head_dim_ || dims[3] != n_vocab_) {
    return snapshot_error("taken from a different model configuration");
  }
  if (n_in < 0 || n_in > max_ctx_) {
    return snapshot_error("position count " + std::to_string(n_in) +
                          " exceeds this state's max_ctx " + std::to_string(max_ctx_));
  }

  // Decode into a fresh state so that a bad snapshot leaves *this untouched.
  State next = blank_like();
  next.n_ = n_in;
  if (flags & 1u) next.mode_ = SimOptions{(flags & 2u) != 0, (flags & 4u) != 0};
  auto frontier = [&](Frontier& f, const std::string& where) -> Status {
    const int64_t slots = r.i64(), width = r.i64();
    if (!r.ok() || slots != f.slots || width != f.width) {
      return snapshot_error(where + ": frontier shape mismatch");
    }
    r.f32s(f.kv.data(), slots * width);
    r.f32s(f.gate.data(), slots * width);
    if (!r.ok()) return snapshot_error(where + ": truncated frontier");
    return Status();
  };
  for (int64_t l = 0; l < n_layer(); ++l) {
    LayerState& ls = next.layer(l);
    const std::string where = "layer " + std::to_string(l);
    const int64_t ratio = r.i64(), n_comp = r.i64();
    if (!r.ok()) return snapshot_error(where + ": truncated");
    if (ratio != ls.ratio) return snapshot_error(where + ": compress ratio differs");
    const int64_t want_comp = ratio != 0 ? n_in / ratio : 0;
    if (n_comp != want_comp) return snapshot_error(where + ": compressed row count inconsistent");
    for (int64_t p = std::max<int64_t>(0, n_in - window_); p < n_in; ++p) {
      r.f32s(next.raw_slot(l, p), head_dim_);
    }
    if (!r.ok()) return snapshot_error(where + ": truncated raw window");
    if (ratio != 0) {
      if (!r.has_f32s(n_comp * head_dim_)) return snapshot_error(where + ": truncated rows");
      ls.comp.resize(static_cast<size_t>(n_comp * head_dim_));
      r.f32s(ls.comp.data(), n_comp * head_dim_);
      ls.n_comp = n_comp;
      DSV4_TRY(frontier(ls.comp_front, where));
    }
    if (ratio == 4) {
      if (!r.has_f32s(n_comp * index_head_dim_)) return snapshot_error(where + ": truncated rows");
      ls.index.resize(static_cast<size_t>(n_comp * index_head_dim_));
      r.f32s(ls.index.data(), n_comp * index_head_dim_);
      ls.n_index = n_comp;
      DSV4_TRY(frontier(ls.index_front, where));
    }
  }
  if (n_in > 0) r.f32s(next.logits_.data(), n_vocab_);
  if (!r.ok()) return snapshot_error("truncated logits");
  if (!r.at_end()) return snapshot_error("trailing bytes");
  *this = std::move(next);
  return Status();
}

}  // namespace dsv4::cpu
