#include "cli/model_path.h"

#include <cstdlib>
#include <filesystem>
#include <system_error>

namespace dsv4::cli {
namespace {

std::string env(const char* name) {
  const char* v = std::getenv(name);
  return v == nullptr ? std::string() : std::string(v);
}

}  // namespace

std::string default_model_path() {
  if (std::string p = env("DSV4_MODEL"); !p.empty()) return p;
  if (std::string d = env("XDG_DATA_HOME"); !d.empty()) return d + "/dsv4/model.gguf";
  if (std::string h = env("HOME"); !h.empty()) return h + "/.local/share/dsv4/model.gguf";
  return "model.gguf";
}

Result<std::string> resolve_model_path(const std::string& given) {
  const bool is_default = given.empty();
  const std::string path = is_default ? default_model_path() : given;
  std::error_code ec;
  if (std::filesystem::is_regular_file(path, ec)) return path;
  std::string why;
  if (!is_default) {
    why = "no model file at " + path;
  } else if (!env("DSV4_MODEL").empty()) {
    why = "no model file at " + path + " (from $DSV4_MODEL)";
  } else {
    why = "no model file at " + path + " (the default; pass -m FILE or set $DSV4_MODEL)";
  }
  const std::string target = is_default ? path : default_model_path();
  return make_error(
      why +
      "\nTo get a model, either\n"
      "  * download the published DeepSeek V4 Flash GGUF (about 81 GB) from Hugging Face,\n"
      "    repository antirez/deepseek-v4-gguf, file\n"
      "    DeepSeek-V4-Flash-IQ2XXS-w2Q2K-AProjQ8-SExpQ8-OutQ8-chat-v2-imatrix.gguf,\n"
      "    and save it as " + target + " (or pass its path with -m), or\n"
      "  * make a small synthetic model (random weights: it answers gibberish, but the whole\n"
      "    pipeline runs) with\n"
      "    dsv4 gen-model --preset small --out " + target);
}

CLI::Option* add_model_option(CLI::App* cmd, std::string& path) {
  return cmd->add_option("-m,--model", path,
                         "GGUF model (default: $DSV4_MODEL, else $XDG_DATA_HOME/dsv4/model.gguf, "
                         "else ~/.local/share/dsv4/model.gguf)");
}

}  // namespace dsv4::cli
