#include "model/synthetic.h"

#include <gtest/gtest.h>

#include <optional>
#include <set>

#include "model/synthetic_vocab.h"
#include "model/weights.h"

namespace dsv4::model {
namespace {

std::vector<uint8_t> build(const std::string& preset, uint64_t seed, WeightTypes types,
                           std::optional<int64_t> n_layer = std::nullopt) {
  SyntheticSpec spec;
  spec.preset = preset;
  spec.seed = seed;
  spec.types = types;
  spec.n_layer = n_layer;
  Result<gguf::Writer> w = make_synthetic_model(spec);
  EXPECT_TRUE(w.ok()) << (w.ok() ? "" : w.error().message);
  return w->serialize();
}

TEST(Synthetic, SameArgumentsSameBytes) {
  EXPECT_EQ(build("tiny", 7, WeightTypes::kF32), build("tiny", 7, WeightTypes::kF32));
  EXPECT_NE(build("tiny", 7, WeightTypes::kF32), build("tiny", 8, WeightTypes::kF32));
}

TEST(Synthetic, PresetsLoadAndBindInBothTypeModes) {
  for (const char* preset : {"tiny", "small"}) {
    for (WeightTypes types : {WeightTypes::kF32, WeightTypes::kMixed}) {
      // Quantising the small preset's experts to IQ2_XXS is slow: one layer shows the layout.
      const bool slow = types == WeightTypes::kMixed && std::string(preset) == "small";
      std::vector<uint8_t> bytes = build(preset, 1, types, slow ? std::optional<int64_t>(1) : std::nullopt);
      Result<gguf::File> file = gguf::File::parse(bytes, preset);
      ASSERT_TRUE(file.ok()) << file.error().message;
      Result<std::shared_ptr<const Model>> m = load_model_from_file(std::move(*file));
      ASSERT_TRUE(m.ok()) << m.error().message;
      const Config& c = (*m)->config;
      EXPECT_EQ(c.n_layer, static_cast<int64_t>((*m)->weights.layers.size()));
      EXPECT_EQ(c.compress_ratio.size(), static_cast<size_t>(c.n_layer));
      if (types == WeightTypes::kMixed) {
        EXPECT_EQ((*m)->weights.layers[0].attn_q_a.type(), gguf::TensorType::Q8_0);
        EXPECT_EQ((*m)->weights.token_embd.type(), gguf::TensorType::F16);
      } else {
        EXPECT_EQ((*m)->weights.layers[0].attn_q_a.type(), gguf::TensorType::F32);
      }
    }
  }
}

TEST(Synthetic, SmallMixedUsesPublishedRoutedTypes) {
  std::vector<uint8_t> bytes = build("small", 1, WeightTypes::kMixed, 1);
  Result<gguf::File> file = gguf::File::parse(bytes, "small");
  ASSERT_TRUE(file.ok());
  EXPECT_EQ(file->tensor("blk.0.ffn_gate_exps.weight")->type, gguf::TensorType::IQ2_XXS);
  EXPECT_EQ(file->tensor("blk.0.ffn_down_exps.weight")->type, gguf::TensorType::Q2_K);
}

TEST(Synthetic, UnknownPresetAndBadLayerCountAreErrors) {
  SyntheticSpec spec;
  spec.preset = "huge";
  EXPECT_FALSE(make_synthetic_model(spec).ok());
  spec.preset = "tiny";
  spec.n_layer = 0;
  EXPECT_FALSE(make_synthetic_model(spec).ok());
  spec.n_layer = 99;
  EXPECT_FALSE(make_synthetic_model(spec).ok());
}

TEST(SyntheticVocab, HasSpecialsBytesAndMerges) {
  Result<SyntheticVocab> v = make_synthetic_vocab(512);
  ASSERT_TRUE(v.ok());
  EXPECT_EQ(v->tokens.size(), 512u);
  EXPECT_EQ(v->tokens[0], "<｜begin▁of▁sentence｜>");
  EXPECT_EQ(v->tokens[1], "<｜end▁of▁sentence｜>");
  EXPECT_EQ(v->tokens[3 + ' '], "Ġ");
  EXPECT_EQ(v->tokens[3 + 'a'], "a");
  EXPECT_GT(v->merges.size(), 50u);
  bool has_user = false, has_think = false;
  for (const std::string& t : v->tokens) {
    has_user = has_user || t == "<｜User｜>";
    has_think = has_think || t == "</think>";
  }
  EXPECT_TRUE(has_user);
  EXPECT_TRUE(has_think);
  // Every merge joins two existing tokens into one that exists.
  std::set<std::string> tokens(v->tokens.begin(), v->tokens.end());
  for (const std::string& m : v->merges) {
    const size_t sp = m.find(' ');
    ASSERT_NE(sp, std::string::npos);
    EXPECT_TRUE(tokens.count(m.substr(0, sp))) << m;
    EXPECT_TRUE(tokens.count(m.substr(sp + 1))) << m;
    EXPECT_TRUE(tokens.count(m.substr(0, sp) + m.substr(sp + 1))) << m;
  }
  EXPECT_FALSE(make_synthetic_vocab(100).ok());
}

}  // namespace
}  // namespace dsv4::model
