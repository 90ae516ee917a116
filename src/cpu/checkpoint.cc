// Rollback checkpoints of the CPU state (MODEL.md §12.4).
#include <string>

#include "cpu/state.h"

namespace dsv4::cpu {

uint64_t Checkpoint::bytes() const {
  uint64_t floats = logits.size();
  for (const Layer& l : layers) {
    floats += l.raw.size() + l.comp_front.kv.size() + l.comp_front.gate.size() +
              l.index_front.kv.size() + l.index_front.gate.size();
  }
  return floats * sizeof(float);
}

Checkpoint State::checkpoint() const {
  Checkpoint cp;
  cp.n = n_;
  cp.mode = mode_;
  cp.logits = logits_;
  cp.layers.reserve(layers_.size());
  for (const LayerState& ls : layers_) {
    cp.layers.push_back({ls.raw, ls.n_comp, ls.n_index, ls.comp_front, ls.index_front});
  }
  return cp;
}

Status State::rollback(const Checkpoint& cp) {
  if (cp.layers.size() != layers_.size() || cp.logits.size() != logits_.size()) {
    return make_error("checkpoint taken from a different model configuration");
  }
  if (cp.n > n_) {
    return make_error("checkpoint at position " + std::to_string(cp.n) + " is ahead of the state (" +
                      std::to_string(n_) + ")");
  }
  for (size_t l = 0; l < layers_.size(); ++l) {
    const Checkpoint::Layer& c = cp.layers[l];
    const LayerState& ls = layers_[l];
    if (c.raw.size() != ls.raw.size() || c.n_comp > ls.n_comp || c.n_index > ls.n_index ||
        c.comp_front.kv.size() != ls.comp_front.kv.size() ||
        c.index_front.kv.size() != ls.index_front.kv.size()) {
      return make_error("checkpoint does not belong to this timeline (layer " + std::to_string(l) + ")");
    }
  }
  for (size_t l = 0; l < layers_.size(); ++l) {
    const Checkpoint::Layer& c = cp.layers[l];
    LayerState& ls = layers_[l];
    ls.raw = c.raw;
    ls.n_comp = c.n_comp;
    ls.n_index = c.n_index;
    ls.comp.resize(static_cast<size_t>(c.n_comp * head_dim_));
    ls.index.resize(static_cast<size_t>(c.n_index * index_head_dim_));
    ls.comp_front = c.comp_front;
    ls.index_front = c.index_front;
  }
  n_ = cp.n;
  mode_ = cp.mode;
  logits_ = cp.logits;
  return Status();
}

}  // namespace dsv4::cpu
