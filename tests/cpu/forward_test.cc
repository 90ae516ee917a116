// Model-level properties of the CPU forward on synthetic models: chunked prefill equals
// token-by-token decode bit for bit, snapshots continue bit-identically, the modes differ, the
// indexer top-k is live, and bad input leaves the state untouched.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <map>
#include <ostream>
#include <set>
#include <string>

#include "test_models.h"

namespace dsv4::cpu {
namespace {

using testing::run_chunked;
using testing::synthetic_model;
using testing::test_tokens;

// Index of the first differing float, or -1.
int64_t first_difference(const std::vector<float>& a, const std::vector<float>& b) {
  if (a.size() != b.size()) return 0;
  for (size_t i = 0; i < a.size(); ++i) {
    if (std::memcmp(&a[i], &b[i], sizeof(float)) != 0) return static_cast<int64_t>(i);
  }
  return -1;
}

struct Case {
  const char* preset;
  model::WeightTypes types;
  bool official;
  int64_t len;
  std::vector<int64_t> chunks;
};

void PrintTo(const Case& c, std::ostream* os) {
  *os << c.preset << (c.types == model::WeightTypes::kF32 ? "/f32/" : "/mixed/")
      << (c.official ? "official/" : "plain/") << c.len;
}

std::string case_name(const ::testing::TestParamInfo<Case>& info) {
  const Case& c = info.param;
  return std::string(c.preset) + (c.types == model::WeightTypes::kF32 ? "_f32_" : "_mixed_") +
         (c.official ? "official" : "plain");
}

class Chunking : public ::testing::TestWithParam<Case> {};

// tiny: window 16, ratios {0, 4, 16, 4}, top-k 8 (live from p = 35); 150 tokens give 37 ratio-4
// rows and 9 ratio-16 rows. small: window 128, ratios {0, 0, 4, 128, 4}, top-k 16 (live from
// p = 67); 300 tokens give 2 ratio-128 rows and cross the window.
TEST_P(Chunking, EveryChunkingIsBitIdentical) {
  const Case& c = GetParam();
  const model::Model& m = synthetic_model(c.preset, c.types);
  const SimOptions sim = c.official ? SimOptions::official() : SimOptions::plain();
  const std::vector<int32_t> tokens = test_tokens(c.len, m.config.n_vocab);
  State ref_state;
  const std::vector<float> ref = run_chunked(m, tokens, c.len, sim, &ref_state);
  const std::vector<uint8_t> ref_bytes = ref_state.serialize();
  for (float v : ref) ASSERT_TRUE(std::isfinite(v));
  for (int64_t chunk : c.chunks) {
    State s;
    const std::vector<float> got = run_chunked(m, tokens, chunk, sim, &s);
    const int64_t diff = first_difference(ref, got);
    EXPECT_EQ(diff, -1) << "chunk " << chunk << ": first difference at token "
                        << diff / m.config.n_vocab;
    EXPECT_TRUE(s.serialize() == ref_bytes) << "chunk " << chunk << ": states differ";
  }
}

INSTANTIATE_TEST_SUITE_P(
    Cpu, Chunking,
    ::testing::Values(
        Case{"tiny", model::WeightTypes::kF32, true, 150, {1, 3, 4, 5, 7, 16, 17, 33, 64, 65, 128}},
        Case{"tiny", model::WeightTypes::kF32, false, 150, {1, 4, 7, 17, 128}},
        Case{"tiny", model::WeightTypes::kMixed, true, 150, {1, 5, 16, 65}},
        // (small in mixed types is not used: generating its IQ2_XXS experts takes ~90 s.)
        Case{"small", model::WeightTypes::kF32, true, 300, {1, 7, 128, 129}},
        Case{"small", model::WeightTypes::kF32, false, 300, {1, 129}}),
    case_name);

TEST(Forward, IrregularScheduleOfDecodeAndPrefill) {
  const model::Model& m = synthetic_model("tiny");
  const SimOptions sim = SimOptions::official();
  const std::vector<int32_t> tokens = test_tokens(152, m.config.n_vocab, 9);
  const int64_t V = m.config.n_vocab;
  const std::vector<float> ref = run_chunked(m, tokens, 152, sim);
  State s = State::create(m.config, 152).value();
  std::vector<float> got(ref.size());
  int64_t off = 0;
  for (int64_t n : {1, 1, 2, 50, 1, 1, 30, 64, 1, 1}) {
    ASSERT_TRUE(forward(m, s, std::span<const int32_t>(tokens.data() + off, static_cast<size_t>(n)),
                        sim, got.data() + off * V)
                    .ok());
    off += n;
  }
  ASSERT_EQ(off, 152);
  EXPECT_EQ(first_difference(ref, got), -1);
  EXPECT_EQ(0, std::memcmp(s.logits().data(), ref.data() + 151 * V, static_cast<size_t>(V) * 4));
}

TEST(Forward, SnapshotMidSequenceContinuesBitIdentically) {
  const model::Model& m = synthetic_model("tiny");
  const SimOptions sim = SimOptions::official();
  const std::vector<int32_t> tokens = test_tokens(150, m.config.n_vocab, 11);
  const int64_t V = m.config.n_vocab;
  State full;
  const std::vector<float> ref = run_chunked(m, tokens, 150, sim, &full);

  // 70 tokens: partial ratio-4 (70 mod 4 = 2) and ratio-16 (70 mod 16 = 6) windows.
  for (int64_t cut : {70, 64, 37}) {
    State a = State::create(m.config, 4096).value();
    ASSERT_TRUE(forward(m, a, std::span<const int32_t>(tokens.data(), static_cast<size_t>(cut)),
                        sim, nullptr)
                    .ok());
    EXPECT_EQ(
        0, std::memcmp(a.logits().data(), ref.data() + (cut - 1) * V, static_cast<size_t>(V) * 4));
    const std::vector<uint8_t> snap = a.serialize();
    State b = State::create(m.config, 1024).value();
    ASSERT_TRUE(b.restore(snap).ok());
    std::vector<float> rest(static_cast<size_t>((150 - cut) * V));
    // Continue in chunks of 13 to mix restore with chunking.
    for (int64_t off = cut; off < 150; off += 13) {
      const int64_t n = std::min<int64_t>(13, 150 - off);
      ASSERT_TRUE(forward(m, b,
                          std::span<const int32_t>(tokens.data() + off, static_cast<size_t>(n)),
                          sim, rest.data() + (off - cut) * V)
                      .ok());
    }
    EXPECT_EQ(0, std::memcmp(rest.data(), ref.data() + cut * V, rest.size() * 4)) << "cut " << cut;
    EXPECT_TRUE(b.serialize() == full.serialize()) << "cut " << cut;
  }
}

TEST(Forward, OfficialAndPlainDiffer) {
  const model::Model& m = synthetic_model("tiny");
  const std::vector<int32_t> tokens = test_tokens(60, m.config.n_vocab, 3);
  const std::vector<float> off = run_chunked(m, tokens, 60, SimOptions::official());
  const std::vector<float> pl = run_chunked(m, tokens, 60, SimOptions::plain());
  // FP8 on the raw KV rows changes the very first token already.
  double max_diff = 0;
  for (size_t i = 0; i < off.size(); ++i)
    max_diff = std::max<double>(max_diff, std::fabs(off[i] - pl[i]));
  EXPECT_GT(max_diff, 1e-4);
  // Each simulation alone changes the result too (FP4 only acts once the indexer scores).
  const std::vector<float> fp8 = run_chunked(m, tokens, 60, SimOptions{true, false});
  const std::vector<float> fp4 = run_chunked(m, tokens, 60, SimOptions{false, true});
  EXPECT_NE(first_difference(fp8, pl), -1);
  EXPECT_NE(first_difference(fp4, pl), -1);
  EXPECT_NE(first_difference(fp8, off), -1);
  // FP4 touches only indexer queries/rows, which matter once a token has more than top_k = 8
  // eligible rows (p >= 35): the logits before that are identical to plain.
  const int64_t V = m.config.n_vocab;
  EXPECT_GE(first_difference(fp4, pl) / V, 35);
}

TEST(Forward, IndexerTopKIsLive) {
  const model::Model& m = synthetic_model("tiny");
  model::Model unlimited{m.file, m.config, m.weights, nullptr};
  unlimited.config.index_top_k = 1 << 20;  // every eligible row, always
  const std::vector<int32_t> tokens = test_tokens(120, m.config.n_vocab, 5);
  for (SimOptions sim : {SimOptions::official(), SimOptions::plain()}) {
    const std::vector<float> a = run_chunked(m, tokens, 120, sim);
    const std::vector<float> b = run_chunked(unlimited, tokens, 120, sim);
    const int64_t diff = first_difference(a, b);
    ASSERT_NE(diff, -1);
    // Identical while at most top_k = 8 rows are eligible (p < 35): skipping the indexer then is
    // the same as selecting everything.
    EXPECT_EQ(diff / m.config.n_vocab, 35);
  }
}

TEST(Forward, RejectsBadInputWithoutTouchingTheState) {
  const model::Model& m = synthetic_model("tiny");
  State s = State::create(m.config, 40).value();
  const std::vector<int32_t> tokens = test_tokens(30, m.config.n_vocab);
  ASSERT_TRUE(forward(m, s, tokens, SimOptions::official(), nullptr).ok());
  const std::vector<uint8_t> before = s.serialize();
  // Another mode.
  EXPECT_FALSE(
      forward(m, s, std::span<const int32_t>(tokens.data(), 1), SimOptions::plain(), nullptr).ok());
  // Capacity: 30 + 11 > 40.
  const std::vector<int32_t> eleven = test_tokens(11, m.config.n_vocab);
  EXPECT_FALSE(forward(m, s, eleven, SimOptions::official(), nullptr).ok());
  // Token ids out of range.
  const std::vector<int32_t> bad = {1, static_cast<int32_t>(m.config.n_vocab)};
  EXPECT_FALSE(forward(m, s, bad, SimOptions::official(), nullptr).ok());
  const std::vector<int32_t> neg = {-1};
  EXPECT_FALSE(forward(m, s, neg, SimOptions::official(), nullptr).ok());
  // A state of another model.
  State other = State::create(synthetic_model("small").config, 64).value();
  EXPECT_FALSE(
      forward(m, other, std::span<const int32_t>(tokens.data(), 1), SimOptions::official(), nullptr)
          .ok());
  EXPECT_TRUE(s.serialize() == before);
  // Empty input is fine and changes nothing.
  EXPECT_TRUE(forward(m, s, {}, SimOptions::official(), nullptr).ok());
  EXPECT_TRUE(s.serialize() == before);
}

TEST(Forward, DumpsNameEveryStage) {
  const model::Model& m = synthetic_model("tiny");
  State s = State::create(m.config, 64).value();
  const std::vector<int32_t> tokens = test_tokens(20, m.config.n_vocab);
  std::set<std::string> names;
  std::vector<int64_t> comp_rows_l1, comp_rows_l2;
  std::vector<float> dumped_logits;
  DumpFn dump = [&](std::string_view name, int64_t pos, std::span<const float> v) {
    names.insert(std::string(name));
    if (name == "blk.1.comp_row") comp_rows_l1.push_back(pos);
    if (name == "blk.2.comp_row") comp_rows_l2.push_back(pos);
    if (name == "logits") dumped_logits.insert(dumped_logits.end(), v.begin(), v.end());
  };
  std::vector<float> logits(20 * static_cast<size_t>(m.config.n_vocab));
  ASSERT_TRUE(forward(m, s, tokens, SimOptions::official(), logits.data(), dump).ok());
  for (const char* n :
       {"token_embd", "blk.0.attn_norm", "blk.0.q_lora_norm", "blk.0.q", "blk.0.kv",
        "blk.0.attn_heads", "blk.0.attn_low", "blk.0.attn_out", "blk.0.hc_attn", "blk.0.ffn_norm",
        "blk.0.ffn_moe", "blk.0.ffn_shexp", "blk.0.ffn_out", "blk.0.hc_ffn", "blk.1.comp_row",
        "blk.1.index_row", "blk.2.comp_row", "output_norm", "logits"}) {
    EXPECT_TRUE(names.count(n)) << n;
  }
  EXPECT_FALSE(names.count("blk.0.comp_row"));
  EXPECT_FALSE(names.count("blk.2.index_row"));
  // Rows are reported by the token that completes a window.
  EXPECT_EQ(comp_rows_l1, (std::vector<int64_t>{3, 7, 11, 15, 19}));
  EXPECT_EQ(comp_rows_l2, (std::vector<int64_t>{15}));
  EXPECT_EQ(dumped_logits, logits);

  // The state after 20 tokens: floor(n/r) rows per compressed layer, and the ring holds the raw
  // rows of the last `window` positions.
  EXPECT_EQ(s.n(), 20);
  EXPECT_EQ(s.layer(0).n_comp, 0);
  EXPECT_EQ(s.layer(1).n_comp, 5);
  EXPECT_EQ(s.layer(1).n_index, 5);
  EXPECT_EQ(s.layer(2).n_comp, 1);
  std::map<int64_t, std::vector<float>> kv2;
  State s2 = State::create(m.config, 64).value();
  DumpFn grab = [&](std::string_view name, int64_t pos, std::span<const float> v) {
    if (name == "blk.2.kv") kv2[pos].assign(v.begin(), v.end());
  };
  ASSERT_TRUE(forward(m, s2, tokens, SimOptions::official(), nullptr, grab).ok());
  for (int64_t p = 20 - m.config.window; p < 20; ++p) {
    EXPECT_EQ(0, std::memcmp(s2.raw_slot(2, p), kv2[p].data(), kv2[p].size() * 4)) << p;
  }
}

}  // namespace
}  // namespace dsv4::cpu
