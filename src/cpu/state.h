// Decode-time state of one sequence on the CPU backend, MODEL.md §12: per layer the raw-window
// ring, the append-only compressed and indexer rows, the compressor frontiers and the counters,
// plus the next-token logits of the last evaluated position.
//
// Snapshot byte format (serialize / restore), version 1. Backend-independent; every integer is
// little-endian, every float an IEEE-754 binary32 bit pattern stored little-endian. The engine
// wraps it in its own versioned, checksummed envelope.
//
//   u8[8]  magic "DSV4CPUS"
//   u32    format version (1)
//   u32    mode flags: bit0 = mode recorded, bit1 = fp8_kv, bit2 = fp4_indexer
//   i64    n_layer, n (evaluated positions), head_dim, window, index_head_dim, n_vocab
//   per layer l = 0 .. n_layer-1:
//     i64  ratio, n_comp
//     f32  raw rows of positions max(0, n-window) .. n-1, oldest first   [min(n,window) × head_dim]
//     if ratio != 0:
//       f32  compressed rows 0 .. n_comp-1                               [n_comp × head_dim]
//       i64  slots, width; f32 kv[slots × width]; f32 gate[slots × width]   attention frontier
//     if ratio == 4:
//       f32  indexer rows 0 .. n_comp-1                                  [n_comp × index_head_dim]
//       i64  slots, width; f32 kv[slots × width]; f32 gate[slots × width]   indexer frontier
//   f32    logits [n_vocab] when n > 0
//
// Frontier layout (§12.2): ratio 4 has 2·4 slots of 2·d (slots 0..3 the previous window, 4..7 the
// current one); any other ratio r has r slots of d. Gates hold the APE-added logits; unwritten
// slots hold kv 0 and gate -inf.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "cpu/sim.h"
#include "model/config.h"
#include "util/status.h"

namespace dsv4::cpu {

// Pooling candidates of one compressor (§7.6): slot-major kv and gate values.
struct Frontier {
  int64_t slots = 0;
  int64_t width = 0;
  std::vector<float> kv;    // slots × width, initially 0
  std::vector<float> gate;  // slots × width, initially -inf (weight exactly 0 in the softmax)

  void init(int64_t n_slots, int64_t n_width);
  void clear();  // back to (0, -inf)
  float* kv_slot(int64_t s) { return kv.data() + s * width; }
  float* gate_slot(int64_t s) { return gate.data() + s * width; }
};

struct LayerState {
  int64_t ratio = 0;
  std::vector<float> raw;    // window × head_dim ring; position p lives in slot p mod window
  std::vector<float> comp;   // n_comp × head_dim (capacity reserved for the max context)
  std::vector<float> index;  // n_comp × index_head_dim (ratio 4 only)
  int64_t n_comp = 0;        // compressed rows = floor(n / ratio)
  int64_t n_index = 0;       // indexer rows = floor(n / 4) on ratio-4 layers
  Frontier comp_front;       // ratio != 0
  Frontier index_front;      // ratio == 4
};

// A rollback point (MODEL.md §12.4): everything of a state at position n except the compressed
// and indexer rows, which are append-only and so are truncated on rollback. Its size does not
// depend on the context length.
struct Checkpoint {
  struct Layer {
    std::vector<float> raw;
    int64_t n_comp = 0;
    int64_t n_index = 0;
    Frontier comp_front;
    Frontier index_front;
  };
  int64_t n = 0;
  std::optional<SimOptions> mode;
  std::vector<Layer> layers;
  std::vector<float> logits;

  uint64_t bytes() const;
};

class State {
 public:
  // Allocates the state of a sequence of at most max_ctx positions for this configuration.
  // Compressed-row storage is reserved (not touched) up front, so it never moves.
  static Result<State> create(const model::Config& config, int64_t max_ctx);

  int64_t n() const { return n_; }  // positions evaluated so far
  int64_t max_ctx() const { return max_ctx_; }
  // The mode of the first forward; a different mode is refused afterwards.
  const std::optional<SimOptions>& mode() const { return mode_; }
  // Next-token logits after position n-1 (n_vocab values; meaningful when n > 0).
  std::span<const float> logits() const { return logits_; }

  // Back to the empty sequence (n = 0, no rows, initial frontiers, no mode).
  void reset();

  Checkpoint checkpoint() const;
  // Returns to a checkpoint taken earlier on this same timeline (the tokens evaluated since
  // must extend the ones before it; the engine guarantees that). Errors when the checkpoint
  // is ahead of this state or from another configuration; the state is then unchanged.
  Status rollback(const Checkpoint& cp);

  std::vector<uint8_t> serialize() const;
  // Replaces this state by a snapshot taken from a state of the same configuration (any
  // max_ctx that can hold it). On error the state is unchanged.
  Status restore(std::span<const uint8_t> bytes);

  // Backend internals (forward pass).
  LayerState& layer(int64_t l) { return layers_[static_cast<size_t>(l)]; }
  const LayerState& layer(int64_t l) const { return layers_[static_cast<size_t>(l)]; }
  int64_t n_layer() const { return static_cast<int64_t>(layers_.size()); }
  int64_t head_dim() const { return head_dim_; }
  int64_t window() const { return window_; }
  int64_t index_head_dim() const { return index_head_dim_; }
  int64_t n_vocab() const { return n_vocab_; }
  float* raw_slot(int64_t l, int64_t pos) {
    return layer(l).raw.data() + (pos % window_) * head_dim_;
  }
  const float* raw_slot(int64_t l, int64_t pos) const {
    return layer(l).raw.data() + (pos % window_) * head_dim_;
  }
  // Appends one compressed row / indexer row (uninitialised) and returns it.
  float* append_comp(int64_t l);
  float* append_index(int64_t l);
  void set_n(int64_t n) { n_ = n; }
  void set_mode(SimOptions m) { mode_ = m; }
  std::vector<float>& mutable_logits() { return logits_; }

 private:
  State blank_like() const;  // same shapes and capacity, empty sequence

  int64_t n_ = 0;
  int64_t max_ctx_ = 0;
  int64_t head_dim_ = 0, window_ = 0, index_head_dim_ = 0, n_vocab_ = 0;
  std::optional<SimOptions> mode_;
  std::vector<LayerState> layers_;
  std::vector<float> logits_;
};

}  // namespace dsv4::cpu
