#include <cstdio>
#include <exception>

#include "cli/commands.h"

namespace dsv4::cli {
namespace {
int g_exit_code = 0;
}  // namespace
void set_exit_code(int code) { g_exit_code = code; }
}  // namespace dsv4::cli

int main(int argc, char** argv) {
  CLI::App app{"dsv4: DeepSeek V4 Flash inference engine"};
  app.require_subcommand(1);
  // One line per command (keep sorted).
  dsv4::cli::register_bench(app);
  dsv4::cli::register_chat(app);
  dsv4::cli::register_gen_model(app);
  dsv4::cli::register_inspect(app);
  dsv4::cli::register_logits(app);
  dsv4::cli::register_render(app);
  dsv4::cli::register_run(app);
  dsv4::cli::register_serve(app);
  dsv4::cli::register_tokenize(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "dsv4: %s\n", e.what());
    return 1;
  }
  return dsv4::cli::g_exit_code;
}
