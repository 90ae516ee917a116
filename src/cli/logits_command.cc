// dsv4 logits: raw next-token logits of every position, for comparison with other
// implementations (little-endian float32, [n_tokens][n_vocab]).
#include <climits>
#include <cstdio>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "engine/engine.h"
#include "util/mapped_file.h"

namespace dsv4::cli {
namespace {

struct LogitsOptions {
  std::string model;
  std::string tokens;
  std::string tokens_file;
  std::string mode = "official";
  std::string backend = "cpu";
  std::string out;
};

// Token ids separated by commas or whitespace.
Result<std::vector<int32_t>> parse_ids(const std::string& text, const std::string& where) {
  std::vector<int32_t> ids;
  std::string item;
  auto flush = [&]() -> Status {
    if (item.empty()) return Status();
    size_t used = 0;
    long long v = 0;
    try {
      v = std::stoll(item, &used);
    } catch (...) {
      used = 0;
    }
    if (used != item.size() || v < 0 || v > INT32_MAX) {
      return make_error(where + ": '" + item + "' is not a token id");
    }
    ids.push_back(static_cast<int32_t>(v));
    item.clear();
    return Status();
  };
  for (char ch : text) {
    if (ch == ',' || ch == ' ' || ch == '\n' || ch == '\t' || ch == '\r') {
      DSV4_TRY(flush());
    } else {
      item += ch;
    }
  }
  DSV4_TRY(flush());
  if (ids.empty()) return make_error(where + ": no token ids");
  return ids;
}

Status run(const LogitsOptions& o) {
  std::vector<int32_t> ids;
  if (!o.tokens_file.empty()) {
    std::ifstream in(o.tokens_file);
    if (!in) return make_error(o.tokens_file + ": cannot open");
    std::stringstream ss;
    ss << in.rdbuf();
    DSV4_ASSIGN_OR_RETURN(ids, parse_ids(ss.str(), o.tokens_file));
  } else {
    DSV4_ASSIGN_OR_RETURN(ids, parse_ids(o.tokens, "--tokens"));
  }
  engine::EngineOptions eo;
  eo.model_path = o.model;
  DSV4_ASSIGN_OR_RETURN(eo.mode, engine::parse_mode(o.mode));
  DSV4_ASSIGN_OR_RETURN(eo.backend, engine::parse_backend(o.backend));
  DSV4_ASSIGN_OR_RETURN(std::shared_ptr<engine::Engine> eng, engine::Engine::load(eo));
  const int64_t V = eng->config().n_vocab;
  for (int32_t id : ids) {
    if (id >= V) return make_error("token id " + std::to_string(id) + " is outside the vocabulary (" + std::to_string(V) + ")");
  }
  DSV4_ASSIGN_OR_RETURN(std::unique_ptr<engine::Session> session,
                        eng->new_session(static_cast<int64_t>(ids.size())));
  std::vector<float> logits(ids.size() * static_cast<size_t>(V));
  DSV4_TRY(session->eval(ids, logits.data()));
  DSV4_TRY(write_file_atomic(o.out, {reinterpret_cast<const uint8_t*>(logits.data()), logits.size() * sizeof(float)}));
  for (size_t t = 0; t < ids.size(); ++t) {
    const float* row = logits.data() + t * static_cast<size_t>(V);
    int64_t best = 0;
    for (int64_t v = 1; v < V; ++v) best = row[v] > row[best] ? v : best;
    std::printf("%zu\t%d\t%lld\t%.6f\n", t, ids[t], static_cast<long long>(best), row[best]);
  }
  return Status();
}

}  // namespace

void register_logits(CLI::App& app) {
  auto o = std::make_shared<LogitsOptions>();
  CLI::App* cmd = app.add_subcommand("logits", "Write the logits of every position as raw little-endian float32");
  cmd->add_option("--model,-m", o->model, "GGUF model")->required();
  auto* tokens = cmd->add_option("--tokens", o->tokens, "Comma-separated token ids");
  auto* file = cmd->add_option("--tokens-file", o->tokens_file, "File of token ids (comma or whitespace separated)");
  tokens->excludes(file);
  cmd->add_option("--mode", o->mode, "official (default) or plain");
  cmd->add_option("--backend", o->backend, "cpu");
  cmd->add_option("--out", o->out, "Output file: [n_tokens][n_vocab] float32")->required();
  cmd->callback([o, tokens, file] {
    if (tokens->count() == 0 && file->count() == 0) {
      std::fprintf(stderr, "dsv4 logits: give --tokens or --tokens-file\n");
      set_exit_code(2);
      return;
    }
    Status s = run(*o);
    if (!s.ok()) std::fprintf(stderr, "dsv4 logits: %s\n", s.message().c_str());
    else std::fprintf(stderr, "wrote %s\n", o->out.c_str());
    set_exit_code(s.ok() ? 0 : 1);
  });
}

}  // namespace dsv4::cli
