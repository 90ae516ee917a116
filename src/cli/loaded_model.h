// What `dsv4 run` and `dsv4 chat` need of a model: its tokenizer, control tokens and engine,
// loaded from -m or the default path (model_path.h), and the prompt of a message list.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "chat/message.h"
#include "engine/engine.h"
#include "engine/sampler.h"
#include "tokenizer/special_tokens.h"
#include "tokenizer/tokenizer.h"
#include "util/status.h"

namespace dsv4::cli {

struct ModelOptions {
  std::string path;  // empty: the default model path
  std::string mode = "official";
  std::string backend = "cpu";
  std::string prefill = "exact";
  std::string mtp_path;  // empty: no MTP block
};

// Adds -m/--model, --mode, --backend, --prefill and --mtp to `cmd`.
void add_model_options(CLI::App* cmd, ModelOptions& options);
// Adds --temp, --top-p, --top-k, --min-p and --seed (PROTOCOL.md §4.4 defaults).
void add_sampling_options(CLI::App* cmd, engine::SamplingParams& params);

struct LoadedModel {
  std::string path;
  tokenizer::Tokenizer tokenizer;
  tokenizer::SpecialTokens special;
  std::shared_ptr<engine::Engine> engine;
};

Result<LoadedModel> load_model(const ModelOptions& options);

// The official prompt of `messages` (chat/encoder.h) as token ids (chat/token_ids.h).
Result<std::vector<int32_t>> prompt_ids(const LoadedModel& model, const std::vector<chat::Message>& messages,
                                        const chat::EncodeOptions& options);

}  // namespace dsv4::cli
