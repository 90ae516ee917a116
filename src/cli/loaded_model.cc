#include "cli/loaded_model.h"

#include "chat/encoder.h"
#include "chat/token_ids.h"
#include "cli/commands.h"
#include "cli/model_path.h"
#include "gguf/gguf.h"

namespace dsv4::cli {

void add_model_options(CLI::App* cmd, ModelOptions& options) {
  add_model_option(cmd, options.path);
  cmd->add_option("--mode", options.mode, "official (default) or plain");
  cmd->add_option("--backend", options.backend, "cpu (default) or cuda");
  cmd->add_option("--prefill", options.prefill, kPrefillOptionHelp);
  add_mtp_option(cmd, options.mtp_path);
}

void add_sampling_options(CLI::App* cmd, engine::SamplingParams& params) {
  cmd->add_option("--temp", params.temperature, "Temperature (0 = greedy; default 1)");
  cmd->add_option("--top-p", params.top_p, "Nucleus sampling (default 1 = off)");
  cmd->add_option("--top-k", params.top_k, "Top-k sampling (default 0 = off)");
  cmd->add_option("--min-p", params.min_p, "Min-p sampling (default 0.05)");
  cmd->add_option("--seed", params.seed, "Sampling seed");
}

Result<LoadedModel> load_model(const ModelOptions& options) {
  DSV4_ASSIGN_OR_RETURN(std::string path, resolve_model_path(options.path));
  engine::EngineOptions eo;
  eo.model_path = path;
  eo.mtp_path = options.mtp_path;
  DSV4_ASSIGN_OR_RETURN(eo.mode, engine::parse_mode(options.mode));
  DSV4_ASSIGN_OR_RETURN(eo.backend, engine::parse_backend(options.backend));
  DSV4_ASSIGN_OR_RETURN(eo.prefill, engine::parse_prefill(options.prefill));
  DSV4_ASSIGN_OR_RETURN(gguf::File file, gguf::File::open(path));
  DSV4_ASSIGN_OR_RETURN(tokenizer::Tokenizer tok, tokenizer::Tokenizer::from_gguf(file));
  DSV4_ASSIGN_OR_RETURN(tokenizer::SpecialTokens special, tokenizer::SpecialTokens::resolve(tok));
  DSV4_ASSIGN_OR_RETURN(std::shared_ptr<engine::Engine> engine, engine::Engine::load(eo));
  return LoadedModel{std::move(path), std::move(tok), special, std::move(engine)};
}

Result<std::vector<int32_t>> prompt_ids(const LoadedModel& model, const std::vector<chat::Message>& messages,
                                        const chat::EncodeOptions& options) {
  DSV4_ASSIGN_OR_RETURN(chat::RenderedPrompt rendered, chat::encode_messages(messages, options));
  return chat::prompt_token_ids(rendered, model.tokenizer);
}

}  // namespace dsv4::cli
