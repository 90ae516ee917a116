// Each `dsv4 <command>` lives in its own file and registers itself on the CLI11 app.
// Commands talk to engine/, chat/ and tokenizer/ only; they never touch tensors directly.
#pragma once

#include <string>

#include <CLI/CLI.hpp>

namespace dsv4::cli {

// The help of every command's --prefill option (engine::parse_prefill reads the value).
inline constexpr const char* kPrefillOptionHelp =
    "exact (default; cuda: tensor cores with f32-level products, meets the whole-model bar), matvec (cuda: the "
    "f32 matvec per token, slow) or fast (cuda: tensor cores with f16 products, misses the bar)";

// Adds --draft to run, chat and serve (generation/generator.h GenerateOptions::draft_tokens).
inline void add_draft_option(CLI::App* cmd, int& draft_tokens) {
  cmd->add_option("--draft", draft_tokens,
                  "Speculative decoding: after each token, verify up to N tokens that followed the same 3 tokens "
                  "earlier in the text, in one step; several tokens a step where the answer repeats text (code "
                  "being edited, quoted input), a slower step where the guess is wrong; the same output "
                  "(default 0 = off; cuda takes runs of 2 and 4 tokens, so 1 or 3)")
      ->check(CLI::Range(0, 15));
}

// Adds --mtp to run, chat and serve (engine::EngineOptions::mtp_path).
inline void add_mtp_option(CLI::App* cmd, std::string& mtp_path) {
  cmd->add_option("--mtp", mtp_path,
                  "Speculative decoding with the model's MTP block: a GGUF file holding the mtp.0.* tensors (ds4's "
                  "MTP file, or the model file when it has them); after each token the block guesses the next, "
                  "verified in one step with it; the same output");
}

// Every register_* adds one subcommand whose callback sets the process exit code through
// set_exit_code(); errors are printed to stderr as "dsv4 <command>: <message>".
void register_bench(CLI::App& app);
void register_chat(CLI::App& app);
void register_gen_model(CLI::App& app);
void register_inspect(CLI::App& app);
void register_logits(CLI::App& app);
void register_tokenize(CLI::App& app);
void register_render(CLI::App& app);
void register_run(CLI::App& app);
void register_serve(CLI::App& app);

void set_exit_code(int code);

}  // namespace dsv4::cli
