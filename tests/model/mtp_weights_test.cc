// Loading the MTP block (FORMATS.md §3.4): from ds4's separate file or from a file that holds the
// model and the block, its one-layer configuration, the tensors it shares with the main model, and
// the errors for a file without the block, a block of another shape and a non-zero MTP ratio.
#include <gtest/gtest.h>

#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "model/synthetic.h"
#include "model/weights.h"

namespace dsv4::model {
namespace {

// A synthetic model's GGUF bytes (kept alive by the caller: files view them).
std::vector<uint8_t> synthetic_bytes(const std::string& preset, MtpTensors mtp) {
  SyntheticSpec spec;
  spec.preset = preset;
  spec.mtp = mtp;
  Result<gguf::Writer> w = make_synthetic_model(spec);
  EXPECT_TRUE(w.ok()) << w.error().message;
  return w->serialize();
}

gguf::File parse(const std::vector<uint8_t>& bytes, const std::string& label) {
  Result<gguf::File> f = gguf::File::parse(bytes, label);
  EXPECT_TRUE(f.ok()) << f.error().message;
  return std::move(*f);
}

TEST(MtpWeights, SeparateFileGivesAOneLayerBlockSharingTheEmbeddingAndHead) {
  const std::vector<uint8_t> main = synthetic_bytes("tiny", MtpTensors::kNone);
  const std::vector<uint8_t> block = synthetic_bytes("tiny", MtpTensors::kOnly);
  Result<std::shared_ptr<const Model>> m = load_model_with_mtp(parse(main, "main"), parse(block, "mtp"));
  ASSERT_TRUE(m.ok()) << m.error().message;
  ASSERT_NE((*m)->mtp, nullptr);
  const MtpModel& mtp = *(*m)->mtp;
  const Config& c = mtp.block.config;
  EXPECT_EQ(c.n_layer, 1);
  EXPECT_EQ(c.ratio(0), 0);
  EXPECT_FALSE(c.is_hash_layer(0));
  EXPECT_EQ(c.swiglu_clamp.size(), 1u);
  EXPECT_EQ(c.swiglu_clamp[0], (*m)->config.mtp_swiglu_clamp);
  EXPECT_EQ(c.n_embd, (*m)->config.n_embd);
  EXPECT_EQ(c.n_vocab, (*m)->config.n_vocab);
  // §10.1: the main embedding and LM head, the block's own norm and collapse.
  EXPECT_EQ(mtp.block.weights.token_embd.info, (*m)->weights.token_embd.info);
  EXPECT_EQ(mtp.block.weights.output.info, (*m)->weights.output.info);
  EXPECT_EQ(mtp.block.weights.output_norm.info->name, "mtp.0.norm.weight");
  EXPECT_EQ(mtp.block.weights.output_hc_fn.info->name, "mtp.0.hc_head_fn.weight");
  ASSERT_EQ(mtp.block.weights.layers.size(), 1u);
  const LayerWeights& lw = mtp.block.weights.layers[0];
  EXPECT_EQ(lw.attn_kv.info->name, "mtp.0.attn_kv.weight");
  EXPECT_TRUE(lw.exp_probs_b.present());
  EXPECT_FALSE(lw.ffn_gate_tid2eid.present());
  EXPECT_FALSE(lw.attn_compressor_kv.present());
  EXPECT_EQ(mtp.e_proj.info->name, "mtp.0.e_proj.weight");
  EXPECT_EQ(mtp.h_proj.ne(0), c.n_embd);
  EXPECT_EQ(mtp.hnorm.ne(0), c.n_embd);
}

TEST(MtpWeights, CombinedFileLoadsTheSameBlockBytes) {
  const std::vector<uint8_t> with = synthetic_bytes("tiny", MtpTensors::kWith);
  const std::vector<uint8_t> only = synthetic_bytes("tiny", MtpTensors::kOnly);
  // The combined file is a valid model on its own (the block's tensors are not the main model's).
  ASSERT_TRUE(load_model_from_file(parse(with, "with")).ok());
  Result<std::shared_ptr<const Model>> a = load_model_with_mtp(parse(with, "with"), parse(with, "with"));
  Result<std::shared_ptr<const Model>> b = load_model_with_mtp(parse(with, "with"), parse(only, "only"));
  ASSERT_TRUE(a.ok()) << a.error().message;
  ASSERT_TRUE(b.ok()) << b.error().message;
  const Tensor& x = (*a)->mtp->block.weights.layers[0].ffn_down_exps;
  const Tensor& y = (*b)->mtp->block.weights.layers[0].ffn_down_exps;
  ASSERT_EQ(x.info->size, y.info->size);
  EXPECT_EQ(0, std::memcmp(x.data(), y.data(), x.info->size));
}

TEST(MtpWeights, FileWithoutTheBlockOrOfAnotherShapeIsRefused) {
  const std::vector<uint8_t> tiny = synthetic_bytes("tiny", MtpTensors::kNone);
  Result<std::shared_ptr<const Model>> none = load_model_with_mtp(parse(tiny, "main"), parse(tiny, "plain.gguf"));
  ASSERT_FALSE(none.ok());
  EXPECT_NE(none.error().message.find("plain.gguf"), std::string::npos) << none.error().message;
  EXPECT_NE(none.error().message.find("no MTP block: tensor mtp.0.e_proj.weight missing"), std::string::npos)
      << none.error().message;
  const std::vector<uint8_t> small_block = synthetic_bytes("small", MtpTensors::kOnly);
  Result<std::shared_ptr<const Model>> other =
      load_model_with_mtp(parse(tiny, "main"), parse(small_block, "small_mtp.gguf"));
  ASSERT_FALSE(other.ok());
  EXPECT_NE(other.error().message.find("mtp.0.e_proj.weight: expected shape (128, 128)"), std::string::npos)
      << other.error().message;
}

TEST(MtpWeights, ACompressedMtpEntryIsRefused) {
  const std::vector<uint8_t> with = synthetic_bytes("tiny", MtpTensors::kWith);
  gguf::File file = parse(with, "with");
  gguf::Writer w;
  for (const auto& [key, value] : file.metadata()) w.set(key, value);
  // compress_ratios' entry n_layer (the block's) set to 4.
  Result<std::shared_ptr<const Model>> plain = load_model_from_file(parse(with, "with"));
  ASSERT_TRUE(plain.ok());
  std::vector<int64_t> ratios = (*plain)->config.compress_ratio;
  ratios.push_back(4);
  w.set("deepseek4.attention.compress_ratios", gguf::Value::make_int_array(gguf::ValueType::U32, ratios));
  for (const gguf::TensorInfo& t : file.tensors()) {
    ASSERT_TRUE(w.add_tensor(t.name, t.type, t.ne, std::vector<uint8_t>(t.data, t.data + t.size)).ok());
  }
  const std::vector<uint8_t> edited = w.serialize();
  Result<std::shared_ptr<const Model>> m = load_model_with_mtp(parse(edited, "main"), parse(edited, "mtp"));
  ASSERT_FALSE(m.ok());
  EXPECT_NE(m.error().message.find("the MTP block's entry is 4"), std::string::npos) << m.error().message;
}

}  // namespace
}  // namespace dsv4::model
