// Synthetic models for the CPU forward tests, built once per process and kept alive (the model
// views the serialized bytes).
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "cpu/forward.h"
#include "cpu/state.h"
#include "gguf/gguf.h"
#include "model/synthetic.h"
#include "model/weights.h"

namespace dsv4::cpu::testing {

// A preset's model, built once per process; with_block: with its MTP block as ds4 ships it (the
// block's bytes apart, so the model's bytes and fingerprint are those without it), as the engine
// builds it for synthetic_mtp.
inline const model::Model& cached_synthetic_model(const std::string& preset, model::WeightTypes types,
                                                  bool with_block) {
  struct Entry {
    std::vector<uint8_t> main, block;
    std::shared_ptr<const model::Model> model;
  };
  static std::map<std::tuple<std::string, int, bool>, std::unique_ptr<Entry>> cache;
  auto key = std::make_tuple(preset, static_cast<int>(types), with_block);
  auto it = cache.find(key);
  if (it == cache.end()) {
    auto e = std::make_unique<Entry>();
    model::SyntheticSpec spec;
    spec.preset = preset;
    spec.types = types;
    auto writer = model::make_synthetic_model(spec);
    EXPECT_TRUE(writer.ok()) << writer.error().message;
    e->main = writer.value().serialize();
    auto file = gguf::File::parse(e->main, "synthetic-" + preset);
    EXPECT_TRUE(file.ok()) << file.error().message;
    if (with_block) {
      spec.mtp = model::MtpTensors::kOnly;
      e->block = model::make_synthetic_model(spec).value().serialize();
    }
    auto m = with_block ? model::load_model_with_mtp(std::move(file).value(),
                                                     gguf::File::parse(e->block, "synthetic-mtp-" + preset).value())
                        : model::load_model_from_file(std::move(file).value());
    EXPECT_TRUE(m.ok()) << m.error().message;
    e->model = std::move(m).value();
    it = cache.emplace(key, std::move(e)).first;
  }
  return *it->second->model;
}

inline const model::Model& synthetic_model(const std::string& preset,
                                           model::WeightTypes types = model::WeightTypes::kF32) {
  return cached_synthetic_model(preset, types, false);
}
inline const model::Model& synthetic_model_with_block(const std::string& preset,
                                                      model::WeightTypes types = model::WeightTypes::kF32) {
  return cached_synthetic_model(preset, types, true);
}

// The test inputs' xorshift64 stream, started from `seed`.
inline uint64_t next_xorshift(uint64_t& x) {
  x ^= x << 13;
  x ^= x >> 7;
  x ^= x << 17;
  return x;
}

// Deterministic token ids in [0, n_vocab).
inline std::vector<int32_t> test_tokens(int64_t n, int64_t n_vocab, uint64_t seed = 7) {
  std::vector<int32_t> t(static_cast<size_t>(n));
  uint64_t x = seed * 0x9e3779b97f4a7c15ull + 1;
  for (auto& v : t) v = static_cast<int32_t>(next_xorshift(x) % static_cast<uint64_t>(n_vocab));
  return t;
}

// Deterministic values uniform in [lo, hi).
inline std::vector<float> test_values(int64_t n, float lo, float hi, uint64_t seed = 7) {
  std::vector<float> v(static_cast<size_t>(n));
  uint64_t x = seed * 0x9e3779b97f4a7c15ull + 1;
  for (float& f : v) {
    const double u = static_cast<double>(next_xorshift(x) >> 11) / 9007199254740992.0;
    f = static_cast<float>(lo + (hi - lo) * u);
  }
  return v;
}

// Runs `tokens` through a fresh state in chunks of `chunk` tokens; returns all logits.
inline std::vector<float> run_chunked(const model::Model& m, const std::vector<int32_t>& tokens,
                                      int64_t chunk, SimOptions sim, State* out_state = nullptr) {
  State s = State::create(m.config, 4096).value();
  const int64_t V = m.config.n_vocab;
  std::vector<float> logits(tokens.size() * static_cast<size_t>(V));
  for (size_t off = 0; off < tokens.size(); off += static_cast<size_t>(chunk)) {
    const size_t n = std::min(tokens.size() - off, static_cast<size_t>(chunk));
    Status st = forward(m, s, std::span<const int32_t>(tokens.data() + off, n), sim,
                        logits.data() + off * static_cast<size_t>(V));
    EXPECT_TRUE(st.ok()) << st.message();
  }
  if (out_state) *out_state = std::move(s);
  return logits;
}

}  // namespace dsv4::cpu::testing
