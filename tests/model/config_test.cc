#include "model/config.h"

#include <gtest/gtest.h>

#include "model/synthetic.h"
#include "model/weights.h"

namespace dsv4::model {
namespace {

gguf::Writer tiny_writer() {
  SyntheticSpec spec;
  spec.preset = "tiny";
  Result<gguf::Writer> w = make_synthetic_model(spec);
  EXPECT_TRUE(w.ok());
  return std::move(*w);
}

// Parses a modified tiny model and returns the config error message ("" if it loads).
std::string load_error(gguf::Writer& w) {
  std::vector<uint8_t> bytes = w.serialize();
  Result<gguf::File> file = gguf::File::parse(bytes, "test.gguf");
  if (!file.ok()) return "parse: " + file.error().message;
  Result<std::shared_ptr<const Model>> m = load_model_from_file(std::move(*file));
  return m.ok() ? "" : m.error().message;
}

TEST(Config, TinyReadsEveryKey) {
  gguf::Writer w = tiny_writer();
  std::vector<uint8_t> bytes = w.serialize();
  Result<gguf::File> file = gguf::File::parse(bytes, "tiny");
  ASSERT_TRUE(file.ok());
  Result<Config> c = read_config(*file);
  ASSERT_TRUE(c.ok()) << c.error().message;
  EXPECT_EQ(c->n_layer, 4);
  EXPECT_EQ(c->n_embd, 128);
  EXPECT_EQ(c->head_dim, 96);
  EXPECT_EQ(c->n_rot, 32);
  EXPECT_EQ(c->compress_ratio, (std::vector<int64_t>{0, 4, 16, 4}));
  EXPECT_FLOAT_EQ(c->compress_rope_theta, 160000.0f);
  EXPECT_FLOAT_EQ(c->expert_weights_scale, 1.5f);
  EXPECT_EQ(c->n_hash_layer, 2);
  EXPECT_TRUE(c->has_indexer(1));
  EXPECT_FALSE(c->has_indexer(2));
  EXPECT_EQ(c->compress_width(1), 2);
  EXPECT_EQ(c->compress_width(2), 1);
  EXPECT_EQ(c->hc_mix(), 24);
}

TEST(Config, AcceptsAnyIntegerWidth) {
  gguf::Writer w = tiny_writer();
  w.set("deepseek4.embedding_length", gguf::Value::make_u64(128));
  w.set("deepseek4.attention.head_count", gguf::Value::make_i32(4));
  EXPECT_EQ(load_error(w), "");
}

TEST(Config, ErrorsNameTheKey) {
  struct Case {
    const char* key;
    gguf::Value value;
    const char* expect;
  };
  std::vector<Case> cases = {
      {"deepseek4.attention.head_count_kv", gguf::Value::make_u32(2), "head_count_kv"},
      {"deepseek4.attention.value_length", gguf::Value::make_u32(64), "value_length"},
      {"deepseek4.embedding_length", gguf::Value::make_string("wide"), "embedding_length"},
      {"deepseek4.block_count", gguf::Value::make_u32(0), "block_count"},
      {"deepseek4.attention.output_group_count", gguf::Value::make_u32(3), "output_group_count"},
      {"deepseek4.rope.dimension_count", gguf::Value::make_u32(31), "dimension_count"},
      {"deepseek4.expert_shared_count", gguf::Value::make_u32(2), "expert_shared_count"},
      {"deepseek4.expert_group_count", gguf::Value::make_u32(8), "expert_group_count"},
      {"general.architecture", gguf::Value::make_string("llama"), "general.architecture"},
      {"deepseek4.attention.compress_ratios",
       gguf::Value::make_int_array(gguf::ValueType::U32, {0, 4}), "compress_ratios"},
      {"deepseek4.swiglu_clamp_exp",
       gguf::Value::make_float_array(gguf::ValueType::F32, {10.0}), "swiglu_clamp_exp"},
  };
  for (Case& c : cases) {
    gguf::Writer w = tiny_writer();
    w.set(c.key, c.value);
    const std::string err = load_error(w);
    EXPECT_NE(err.find(c.expect), std::string::npos) << c.key << " -> '" << err << "'";
    EXPECT_NE(err.find("test.gguf"), std::string::npos) << err;
  }
}

TEST(Config, StateBytesGrowWithContext) {
  gguf::Writer w = tiny_writer();
  std::vector<uint8_t> bytes = w.serialize();
  Result<gguf::File> file = gguf::File::parse(bytes, "tiny");
  ASSERT_TRUE(file.ok());
  Result<Config> c = read_config(*file);
  ASSERT_TRUE(c.ok());
  EXPECT_LT(session_state_bytes_f32(*c, 64), session_state_bytes_f32(*c, 4096));
}

}  // namespace
}  // namespace dsv4::model
