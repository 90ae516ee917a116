#include "model/weights.h"

#include <gtest/gtest.h>

#include <cstring>
#include <optional>

#include "model/synthetic.h"

namespace dsv4::model {
namespace {

// Rebuilds the tiny model with one tensor replaced (or dropped when `type` is empty).
std::string bind_error_with(const std::string& name, std::optional<gguf::TensorType> type,
                            std::vector<uint64_t> ne, const std::string& extra_name = "") {
  SyntheticSpec spec;
  spec.preset = "tiny";
  Result<gguf::Writer> base = make_synthetic_model(spec);
  EXPECT_TRUE(base.ok());
  std::vector<uint8_t> base_bytes = base->serialize();
  Result<gguf::File> base_file = gguf::File::parse(base_bytes, "base");
  EXPECT_TRUE(base_file.ok());
  gguf::Writer w;
  for (const auto& [key, value] : base_file->metadata()) w.set(key, value);
  for (const gguf::TensorInfo& t : base_file->tensors()) {
    if (t.name == name) {
      if (!type) continue;
      const uint64_t size = gguf::tensor_bytes(*type, ne).value();
      EXPECT_TRUE(w.add_tensor(name, *type, ne, std::vector<uint8_t>(size, 0)).ok());
      continue;
    }
    EXPECT_TRUE(w.add_tensor(t.name, t.type, t.ne, std::vector<uint8_t>(t.data, t.data + t.size)).ok());
  }
  if (!extra_name.empty()) {
    EXPECT_TRUE(w.add_tensor(extra_name, gguf::TensorType::F32, {4}, std::vector<uint8_t>(16, 0)).ok());
  }
  std::vector<uint8_t> bytes = w.serialize();
  Result<gguf::File> file = gguf::File::parse(bytes, "edited.gguf");
  if (!file.ok()) return "parse: " + file.error().message;
  Result<std::shared_ptr<const Model>> m = load_model_from_file(std::move(*file));
  return m.ok() ? "" : m.error().message;
}

TEST(Weights, MissingTensorIsNamed) {
  const std::string err = bind_error_with("blk.1.attn_kv.weight", std::nullopt, {});
  EXPECT_NE(err.find("missing tensor blk.1.attn_kv.weight"), std::string::npos) << err;
}

TEST(Weights, WrongShapeIsNamed) {
  const std::string err = bind_error_with("blk.0.attn_kv.weight", gguf::TensorType::F32, {128, 95});
  EXPECT_NE(err.find("blk.0.attn_kv.weight: expected shape (128, 96)"), std::string::npos) << err;
}

TEST(Weights, WrongTypeIsNamed) {
  const std::string err = bind_error_with("blk.0.attn_norm.weight", gguf::TensorType::Q8_0, {128});
  EXPECT_NE(err.find("blk.0.attn_norm.weight: expected F32, F16 or BF16, found Q8_0"), std::string::npos) << err;
}

TEST(Weights, OutOfRangeHashExpertIsRejected) {
  // All-zero tid2eid is valid (expert 0); write a bad id by hand.
  SyntheticSpec spec;
  spec.preset = "tiny";
  Result<gguf::Writer> w = make_synthetic_model(spec);
  ASSERT_TRUE(w.ok());
  std::vector<uint8_t> bytes = w->serialize();
  Result<gguf::File> file = gguf::File::parse(bytes, "t");
  ASSERT_TRUE(file.ok());
  const gguf::TensorInfo* t = file->tensor("blk.0.ffn_gate_tid2eid.weight");
  ASSERT_NE(t, nullptr);
  const size_t at = static_cast<size_t>(t->data - bytes.data()) + 4 * 5;
  const int32_t bad = 8;  // tiny has 8 experts
  std::memcpy(bytes.data() + at, &bad, 4);
  Result<gguf::File> edited = gguf::File::parse(bytes, "t");
  ASSERT_TRUE(edited.ok());
  Result<std::shared_ptr<const Model>> m = load_model_from_file(std::move(*edited));
  ASSERT_FALSE(m.ok());
  EXPECT_NE(m.error().message.find("ffn_gate_tid2eid"), std::string::npos) << m.error().message;
}

TEST(Weights, UnexpectedTensorsAreRejected) {
  const std::string err = bind_error_with("", std::nullopt, {}, "blk.0.attn_compressor_norm.weight");
  EXPECT_NE(err.find("blk.0.attn_compressor_norm.weight"), std::string::npos) << err;
  EXPECT_EQ(bind_error_with("", std::nullopt, {}, "mtp.0.enorm.weight"), "");
}

TEST(Weights, ExpertRowsAddressSlabs) {
  SyntheticSpec spec;
  spec.preset = "tiny";
  Result<gguf::Writer> w = make_synthetic_model(spec);
  ASSERT_TRUE(w.ok());
  std::vector<uint8_t> bytes = w->serialize();
  Result<gguf::File> file = gguf::File::parse(bytes, "t");
  ASSERT_TRUE(file.ok());
  Result<std::shared_ptr<const Model>> m = load_model_from_file(std::move(*file));
  ASSERT_TRUE(m.ok());
  const Tensor& down = (*m)->weights.layers[0].ffn_down_exps;  // (64, 128, 8) F32
  EXPECT_EQ(down.row(0, 1) - down.row(0, 0), static_cast<std::ptrdiff_t>(128 * 64 * 4));
  EXPECT_EQ(down.row(3, 0) - down.row(0, 0), static_cast<std::ptrdiff_t>(3 * 64 * 4));
}

}  // namespace
}  // namespace dsv4::model
