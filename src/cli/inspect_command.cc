// dsv4 inspect: what a GGUF file holds, whether this engine can run it, and the memory it needs.
#include <cinttypes>
#include <cstdio>
#include <map>
#include <memory>
#include <string>

#include "cli/commands.h"
#include "gguf/gguf.h"
#include "model/config.h"
#include "model/weights.h"

namespace dsv4::cli {
namespace {

struct InspectOptions {
  std::string path;
  int64_t ctx = 32768;
  bool tensors = true;
};

std::string value_summary(const gguf::Value& v) {
  using gguf::ValueType;
  constexpr size_t kShown = 8;
  if (v.is_array()) {
    std::string s = "[" + std::string(gguf::value_type_name(v.element_type)) + " x " +
                    std::to_string(v.array_size()) + "]";
    std::string items;
    for (size_t i = 0; i < v.array_size() && i < kShown; ++i) {
      std::string item;
      if (!v.strings.empty()) item = "\"" + v.strings[i] + "\"";
      else if (!v.floats.empty()) item = std::to_string(v.floats[i]);
      else if (!v.ints.empty()) item = std::to_string(v.ints[i]);
      items += (i ? ", " : "") + item;
    }
    return s + " " + items + (v.array_size() > kShown ? ", ..." : "");
  }
  if (const std::string* str = v.as_string()) return "\"" + *str + "\"";
  if (v.type == ValueType::BOOL) return v.u ? "true" : "false";
  if (v.type == ValueType::F32 || v.type == ValueType::F64) return std::to_string(v.f);
  if (auto i = v.as_int()) return std::to_string(*i);
  if (auto u = v.as_uint()) return std::to_string(*u);
  return "?";
}

std::string shape(const gguf::TensorInfo& t) {
  std::string s = "(";
  for (size_t i = 0; i < t.ne.size(); ++i) s += (i ? ", " : "") + std::to_string(t.ne[i]);
  return s + ")";
}

double gib(uint64_t bytes) { return static_cast<double>(bytes) / (1024.0 * 1024.0 * 1024.0); }

int run_inspect(const InspectOptions& o) {
  Result<gguf::File> file = gguf::File::open(o.path);
  if (!file.ok()) {
    std::fprintf(stderr, "dsv4 inspect: %s\n", file.error().message.c_str());
    return 1;
  }
  std::printf("file        %s\n", o.path.c_str());
  std::printf("size        %" PRIu64 " bytes (%.2f GiB)\n", file->file_size(), gib(file->file_size()));
  std::printf("gguf        version %u, alignment %u, %zu keys, %zu tensors, data at %" PRIu64 "\n",
              file->version(), file->alignment(), file->metadata().size(), file->tensors().size(),
              file->data_offset());
  std::printf("\nmetadata\n");
  for (const auto& [key, value] : file->metadata()) {
    std::printf("  %-52s %s\n", key.c_str(), value_summary(value).c_str());
  }
  std::map<std::string, uint64_t> by_type;
  uint64_t weight_bytes = 0;
  if (o.tensors) std::printf("\ntensors\n");
  for (const gguf::TensorInfo& t : file->tensors()) {
    by_type[gguf::type_name(t.type)] += t.size;
    weight_bytes += t.size;
    if (o.tensors) {
      std::printf("  %-44s %-8s %-26s offset %-14" PRIu64 " %" PRIu64 " bytes\n", t.name.c_str(),
                  gguf::type_name(t.type).c_str(), shape(t).c_str(), t.offset, t.size);
    }
  }
  std::printf("\nbytes by type\n");
  for (const auto& [type, bytes] : by_type) std::printf("  %-8s %16" PRIu64 "  (%.2f GiB)\n", type.c_str(), bytes, gib(bytes));

  Result<model::Config> config = model::read_config(*file);
  if (!config.ok()) {
    std::printf("\nverdict     NOT RUNNABLE: %s\n", config.error().message.c_str());
    return 1;
  }
  Result<model::Weights> weights = model::bind_weights(*file, *config);
  if (!weights.ok()) {
    std::printf("\nverdict     NOT RUNNABLE: %s\n", weights.error().message.c_str());
    return 1;
  }
  const model::Config& c = *config;
  std::printf("\nmodel       %" PRId64 " layers, width %" PRId64 ", vocab %" PRId64 ", %" PRId64
              " heads x %" PRId64 ", %" PRId64 " experts (%" PRId64 " used)\n",
              c.n_layer, c.n_embd, c.n_vocab, c.n_head, c.head_dim, c.n_expert, c.n_expert_used);
  const uint64_t state = model::session_state_bytes_f32(c, o.ctx);
  std::printf("memory      weights %.2f GiB + session state at ctx %" PRId64 " %.3f GiB (f32) = %.2f GiB\n",
              gib(weight_bytes), o.ctx, gib(state), gib(weight_bytes + state));
  std::printf("verdict     OK: every tensor bound and validated\n");
  return 0;
}

}  // namespace

void register_inspect(CLI::App& app) {
  auto options = std::make_shared<InspectOptions>();
  CLI::App* cmd = app.add_subcommand("inspect", "Show a GGUF file's metadata, tensors and validation verdict");
  cmd->add_option("file", options->path, "GGUF file")->required();
  cmd->add_option("--ctx", options->ctx, "Context size for the memory estimate")->check(CLI::PositiveNumber);
  cmd->add_flag("!--no-tensors", options->tensors, "Omit the tensor table");
  cmd->callback([options] { set_exit_code(run_inspect(*options)); });
}

}  // namespace dsv4::cli
