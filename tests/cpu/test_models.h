// Synthetic models for the CPU forward tests, built once per process and kept alive (the model
// views the serialized bytes).
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "cpu/forward.h"
#include "cpu/state.h"
#include "gguf/gguf.h"
#include "model/synthetic.h"
#include "model/weights.h"

namespace dsv4::cpu::testing {

inline const model::Model& synthetic_model(const std::string& preset,
                                           model::WeightTypes types = model::WeightTypes::kF32) {
  struct Entry {
    std::vector<uint8_t> bytes;
    std::shared_ptr<const model::Model> model;
  };
  static std::map<std::pair<std::string, int>, std::unique_ptr<Entry>> cache;
  auto key = std::make_pair(preset, static_cast<int>(types));
  auto it = cache.find(key);
  if (it == cache.end()) {
    auto e = std::make_unique<Entry>();
    model::SyntheticSpec spec;
    spec.preset = preset;
    spec.types = types;
    auto writer = model::make_synthetic_model(spec);
    EXPECT_TRUE(writer.ok()) << writer.error().message;
    e->bytes = writer.value().serialize();
    auto file = gguf::File::parse(e->bytes, "synthetic-" + preset);
    EXPECT_TRUE(file.ok()) << file.error().message;
    auto m = model::load_model_from_file(std::move(file).value());
    EXPECT_TRUE(m.ok()) << m.error().message;
    e->model = std::move(m).value();
    it = cache.emplace(key, std::move(e)).first;
  }
  return *it->second->model;
}

// The same preset with its MTP block as ds4 ships it (the block's bytes apart: the model's bytes
// and fingerprint are those without it), as the engine builds it for synthetic_mtp.
inline const model::Model& synthetic_model_with_block(const std::string& preset,
                                                      model::WeightTypes types = model::WeightTypes::kF32) {
  struct Entry {
    std::vector<uint8_t> main, block;
    std::shared_ptr<const model::Model> model;
  };
  static std::map<std::pair<std::string, int>, std::unique_ptr<Entry>> cache;
  auto key = std::make_pair(preset, static_cast<int>(types));
  auto it = cache.find(key);
  if (it == cache.end()) {
    auto e = std::make_unique<Entry>();
    model::SyntheticSpec spec;
    spec.preset = preset;
    spec.types = types;
    e->main = model::make_synthetic_model(spec).value().serialize();
    spec.mtp = model::MtpTensors::kOnly;
    e->block = model::make_synthetic_model(spec).value().serialize();
    auto m = model::load_model_with_mtp(gguf::File::parse(e->main, "synthetic-" + preset).value(),
                                        gguf::File::parse(e->block, "synthetic-mtp-" + preset).value());
    EXPECT_TRUE(m.ok()) << m.error().message;
    e->model = std::move(m).value();
    it = cache.emplace(key, std::move(e)).first;
  }
  return *it->second->model;
}

// Deterministic token ids in [0, n_vocab).
inline std::vector<int32_t> test_tokens(int64_t n, int64_t n_vocab, uint64_t seed = 7) {
  std::vector<int32_t> t(static_cast<size_t>(n));
  uint64_t x = seed * 0x9e3779b97f4a7c15ull + 1;
  for (auto& v : t) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    v = static_cast<int32_t>(x % static_cast<uint64_t>(n_vocab));
  }
  return t;
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
