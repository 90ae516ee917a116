// MODEL.md §12 state: allocation, frontier initialisation, snapshot round trips and rejection of
// bad snapshots.
#include "cpu/state.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "util/half.h"

namespace dsv4::cpu {
namespace {

model::Config small_config() {
  model::Config c;
  c.n_layer = 3;
  c.head_dim = 8;
  c.n_rot = 4;
  c.window = 4;
  c.index_head_dim = 8;
  c.n_vocab = 10;
  c.compress_ratio = {0, 4, 8};
  return c;
}

// A state as if 10 positions had been evaluated, with recognisable values everywhere.
State filled_state(const model::Config& c, int64_t max_ctx) {
  State s = State::create(c, max_ctx).value();
  s.set_n(10);
  s.set_mode(SimOptions::official());
  float v = 1.0f;
  for (int64_t l = 0; l < 3; ++l) {
    for (int64_t p = 6; p < 10; ++p) {
      float* row = s.raw_slot(l, p);
      for (int i = 0; i < 8; ++i) row[i] = v++;
    }
    LayerState& ls = s.layer(l);
    if (ls.ratio == 0) continue;
    for (int64_t r = 0; r < 10 / ls.ratio; ++r) {
      float* row = s.append_comp(l);
      for (int i = 0; i < 8; ++i) row[i] = -(v++);
    }
    for (size_t i = 0; i < ls.comp_front.kv.size(); i += 3) ls.comp_front.kv[i] = v++;
    for (size_t i = 0; i < ls.comp_front.gate.size(); i += 5) ls.comp_front.gate[i] = v++;
    if (ls.ratio == 4) {
      for (int64_t r = 0; r < 2; ++r) {
        float* row = s.append_index(l);
        for (int i = 0; i < 8; ++i) row[i] = 0.5f * (v++);
      }
      ls.index_front.kv[7] = 42.0f;
    }
  }
  for (int i = 0; i < 10; ++i)
    s.mutable_logits()[static_cast<size_t>(i)] = static_cast<float>(i) * 0.25f;
  return s;
}

TEST(State, CreateShapesAndInitialFrontiers) {
  const model::Config c = small_config();
  State s = State::create(c, 64).value();
  EXPECT_EQ(s.n(), 0);
  EXPECT_FALSE(s.mode().has_value());
  EXPECT_EQ(s.layer(0).comp_front.slots, 0);
  // Ratio 4: 2·4 slots of 2·d; ratio 8: 8 slots of d; the indexer frontier 8 slots of 2·d_I.
  EXPECT_EQ(s.layer(1).comp_front.slots, 8);
  EXPECT_EQ(s.layer(1).comp_front.width, 16);
  EXPECT_EQ(s.layer(1).index_front.slots, 8);
  EXPECT_EQ(s.layer(1).index_front.width, 16);
  EXPECT_EQ(s.layer(2).comp_front.slots, 8);
  EXPECT_EQ(s.layer(2).comp_front.width, 8);
  EXPECT_EQ(s.layer(2).index_front.slots, 0);
  for (float g : s.layer(1).comp_front.gate) EXPECT_EQ(g, -INFINITY);
  for (float k : s.layer(1).comp_front.kv) EXPECT_EQ(k, 0.0f);
  EXPECT_FALSE(State::create(c, 0).ok());
}

TEST(State, SnapshotRoundTripIsBitExact) {
  const model::Config c = small_config();
  const State a = filled_state(c, 64);
  const std::vector<uint8_t> bytes = a.serialize();
  State b = State::create(c, 32).value();  // another capacity that still holds it
  ASSERT_TRUE(b.restore(bytes).ok());
  EXPECT_EQ(b.serialize(), bytes);
  EXPECT_EQ(b.n(), 10);
  ASSERT_TRUE(b.mode().has_value());
  EXPECT_TRUE(*b.mode() == SimOptions::official());
  for (int64_t l = 0; l < 3; ++l) {
    for (int64_t p = 6; p < 10; ++p) {
      EXPECT_EQ(0, std::memcmp(a.raw_slot(l, p), b.raw_slot(l, p), 8 * sizeof(float)));
    }
    EXPECT_EQ(a.layer(l).comp, b.layer(l).comp);
    EXPECT_EQ(a.layer(l).index, b.layer(l).index);
    EXPECT_EQ(a.layer(l).n_comp, b.layer(l).n_comp);
    EXPECT_EQ(a.layer(l).n_index, b.layer(l).n_index);
    // Bitwise: the gates hold -inf.
    ASSERT_EQ(a.layer(l).comp_front.gate.size(), b.layer(l).comp_front.gate.size());
    for (size_t i = 0; i < a.layer(l).comp_front.gate.size(); ++i) {
      EXPECT_EQ(f32_bits(a.layer(l).comp_front.gate[i]), f32_bits(b.layer(l).comp_front.gate[i]));
    }
    EXPECT_EQ(a.layer(l).index_front.kv, b.layer(l).index_front.kv);
  }
  EXPECT_EQ(std::vector<float>(a.logits().begin(), a.logits().end()),
            std::vector<float>(b.logits().begin(), b.logits().end()));
}

TEST(State, EmptySnapshotAndReset) {
  const model::Config c = small_config();
  State a = State::create(c, 16).value();
  const std::vector<uint8_t> empty = a.serialize();
  State b = filled_state(c, 16);
  ASSERT_TRUE(b.restore(empty).ok());
  EXPECT_EQ(b.n(), 0);
  EXPECT_EQ(b.serialize(), empty);
  State d = filled_state(c, 16);
  d.reset();
  EXPECT_EQ(d.serialize(), empty);
}

TEST(State, RejectsBadSnapshotsAndStaysUnchanged) {
  const model::Config c = small_config();
  const std::vector<uint8_t> bytes = filled_state(c, 64).serialize();
  State target = State::create(c, 64).value();
  const std::vector<uint8_t> before = target.serialize();

  for (size_t cut = 0; cut < bytes.size(); cut += 7) {
    EXPECT_FALSE(target.restore(std::span<const uint8_t>(bytes.data(), cut)).ok()) << cut;
  }
  std::vector<uint8_t> trailing = bytes;
  trailing.push_back(0);
  EXPECT_FALSE(target.restore(trailing).ok());
  std::vector<uint8_t> magic = bytes;
  magic[0] ^= 1;
  EXPECT_FALSE(target.restore(magic).ok());
  std::vector<uint8_t> version = bytes;
  version[8] = 9;
  EXPECT_FALSE(target.restore(version).ok());

  // Capacity too small for n = 10.
  State tiny = State::create(c, 8).value();
  EXPECT_FALSE(tiny.restore(bytes).ok());
  // Another configuration.
  model::Config other = c;
  other.compress_ratio = {0, 4, 4};
  State o = State::create(other, 64).value();
  EXPECT_FALSE(o.restore(bytes).ok());
  other = c;
  other.window = 5;
  State w = State::create(other, 64).value();
  EXPECT_FALSE(w.restore(bytes).ok());

  EXPECT_EQ(target.serialize(), before);
}

}  // namespace
}  // namespace dsv4::cpu
