#include "engine/engine.h"

#include <string>
#include <utility>
#include <vector>

#include "engine/backend.h"
#include "engine/session.h"
#include "engine/snapshot.h"
#include "gguf/gguf.h"
#include "model/synthetic.h"
#include "model/weights.h"
#include "util/mapped_file.h"
#include "util/sha256.h"

namespace dsv4::engine {

Result<Mode> parse_mode(const std::string& name) {
  if (name == "official") return Mode::kOfficial;
  if (name == "plain") return Mode::kPlain;
  return make_error("unknown mode '" + name + "' (expected official or plain)");
}

const char* mode_name(Mode mode) { return mode == Mode::kOfficial ? "official" : "plain"; }

bool have_cuda_backend() {
#if DSV4_HAVE_CUDA
  return true;
#else
  return false;
#endif
}

Result<Backend> parse_backend(const std::string& name) {
  if (name == "cpu") return Backend::kCpu;
  if (name == "cuda") {
    if (!have_cuda_backend()) return make_error("this build has no CUDA backend (backends: cpu)");
    return Backend::kCuda;
  }
  return make_error("unknown backend '" + name + "' (this build has: cpu" +
                    (have_cuda_backend() ? ", cuda)" : ")"));
}

const char* backend_name(Backend backend) { return backend == Backend::kCpu ? "cpu" : "cuda"; }

Result<Prefill> parse_prefill(const std::string& name) {
  if (name == "exact") return Prefill::kExact;
  if (name == "matvec") return Prefill::kMatvec;
  if (name == "fast") return Prefill::kFast;
  return make_error("unknown prefill '" + name + "' (exact, matvec or fast)");
}

const char* prefill_name(Prefill prefill) {
  switch (prefill) {
    case Prefill::kExact: return "exact";
    case Prefill::kMatvec: return "matvec";
    case Prefill::kFast: return "fast";
  }
  return "?";
}

namespace {

class BackendEngine final : public Engine {
 public:
  BackendEngine(std::unique_ptr<BackendModel> backend, const Fingerprint& fingerprint, Mode mode)
      : backend_(std::move(backend)), fingerprint_(fingerprint), mode_(mode) {}

  const model::Config& config() const override { return backend_->config(); }
  Mode mode() const override { return mode_; }
  std::array<uint8_t, 32> fingerprint() const override { return fingerprint_; }

  Result<std::unique_ptr<Session>> new_session(int64_t n_ctx) override {
    if (n_ctx < 1) return make_error("context size must be at least 1, got " + std::to_string(n_ctx));
    DSV4_ASSIGN_OR_RETURN(std::unique_ptr<BackendState> state, backend_->new_state(n_ctx, mode_));
    return make_session(std::move(state), backend_->config(), fingerprint_, mode_, n_ctx);
  }
  PerfInfo perf_info() override { return backend_->perf_info(); }

 private:
  std::unique_ptr<BackendModel> backend_;
  Fingerprint fingerprint_;
  Mode mode_;
};

bool small_preset(const std::string& preset) { return preset == "tiny" || preset == "small"; }

// Weights generated on the device have no file to hash: their identity is their recipe.
Fingerprint device_synthetic_fingerprint(const EngineOptions& o) {
  const std::string recipe = "dsv4 device-generated synthetic model: preset " + o.synthetic_preset +
                             ", layers " + std::to_string(o.synthetic_layers) + ", seed " +
                             std::to_string(o.synthetic_seed);
  return sha256({reinterpret_cast<const uint8_t*>(recipe.data()), recipe.size()});
}

// The gen-model bytes of a small preset, in memory: the same model (and fingerprint) as the file
// `dsv4 gen-model` writes with these arguments.
Result<std::shared_ptr<const model::Model>> synthetic_in_memory(const EngineOptions& o) {
  if (!small_preset(o.synthetic_preset)) {
    return make_error("preset " + o.synthetic_preset + " is generated on the device only (--backend cuda); "
                      "for the cpu backend write it with `dsv4 gen-model` and load the file");
  }
  model::SyntheticSpec spec;
  spec.preset = o.synthetic_preset;
  spec.seed = o.synthetic_seed;
  if (o.synthetic_layers > 0) spec.n_layer = o.synthetic_layers;
  // The model views these bytes; they live as long as the model (kept by the deleter).
  auto generate = [&](model::MtpTensors mtp) -> Result<std::shared_ptr<std::vector<uint8_t>>> {
    spec.mtp = mtp;
    DSV4_ASSIGN_OR_RETURN(gguf::Writer writer, model::make_synthetic_model(spec));
    return std::make_shared<std::vector<uint8_t>>(writer.serialize());
  };
  DSV4_ASSIGN_OR_RETURN(std::shared_ptr<std::vector<uint8_t>> bytes, generate(model::MtpTensors::kNone));
  DSV4_ASSIGN_OR_RETURN(gguf::File file, gguf::File::parse(*bytes, "synthetic " + o.synthetic_preset));
  std::shared_ptr<const model::Model> m;
  std::shared_ptr<std::vector<uint8_t>> mtp_bytes;
  if (o.synthetic_mtp) {
    // The block apart, as ds4 ships it: the main model's bytes and fingerprint stay those without it.
    DSV4_ASSIGN_OR_RETURN(mtp_bytes, generate(model::MtpTensors::kOnly));
    DSV4_ASSIGN_OR_RETURN(gguf::File mtp_file, gguf::File::parse(*mtp_bytes, "synthetic MTP " + o.synthetic_preset));
    DSV4_ASSIGN_OR_RETURN(m, model::load_model_with_mtp(std::move(file), std::move(mtp_file)));
  } else {
    DSV4_ASSIGN_OR_RETURN(m, model::load_model_from_file(std::move(file)));
  }
  return std::shared_ptr<const model::Model>(m.get(), [m, bytes, mtp_bytes](const model::Model*) {});
}

}  // namespace

Status Session::save_snapshot_file(const std::string& path) const {
  return write_file_atomic(path, save_snapshot());
}

Status Session::restore_snapshot_file(const std::string& path) {
  DSV4_ASSIGN_OR_RETURN(MappedFile file, MappedFile::open(path));
  Status s = restore_snapshot(file.bytes());
  if (!s.ok()) return s.error().with_context(path);
  return s;
}

Result<std::shared_ptr<Engine>> Engine::load(const EngineOptions& options) {
  const bool synthetic = !options.synthetic_preset.empty();
  if (synthetic && !options.model_path.empty()) {
    return make_error("give either a model file or a synthetic preset, not both");
  }
  if (options.prefill != Prefill::kExact && options.backend != Backend::kCuda) {
    return make_error(std::string("--prefill ") + prefill_name(options.prefill) +
                      " needs the cuda backend (the cpu backend computes prefill exactly)");
  }
  if (options.synthetic_mtp && !synthetic) return make_error("a synthetic MTP block needs a synthetic preset");
  std::unique_ptr<BackendModel> backend;
  Fingerprint fingerprint{};
  if (synthetic && options.backend == Backend::kCuda && !small_preset(options.synthetic_preset)) {
    DSV4_ASSIGN_OR_RETURN(backend, make_cuda_synthetic_backend(options.synthetic_preset, options.synthetic_layers,
                                                               options.synthetic_seed, options.synthetic_mtp,
                                                               options.prefill));
    fingerprint = device_synthetic_fingerprint(options);
  } else {
    std::shared_ptr<const model::Model> model;
    if (synthetic) {
      DSV4_ASSIGN_OR_RETURN(model, synthetic_in_memory(options));
    } else if (!options.mtp_path.empty()) {
      DSV4_ASSIGN_OR_RETURN(gguf::File file, gguf::File::open(options.model_path));
      DSV4_ASSIGN_OR_RETURN(gguf::File mtp_file, gguf::File::open(options.mtp_path));
      DSV4_ASSIGN_OR_RETURN(model, model::load_model_with_mtp(std::move(file), std::move(mtp_file)));
    } else {
      DSV4_ASSIGN_OR_RETURN(model, model::load_model(options.model_path));
    }
    fingerprint = model::model_fingerprint(model->file);
    if (options.backend == Backend::kCuda) {
      DSV4_ASSIGN_OR_RETURN(backend, make_cuda_backend(std::move(model), options.prefill));
    } else {
      DSV4_ASSIGN_OR_RETURN(backend, make_cpu_backend(std::move(model)));
    }
  }
  return std::shared_ptr<Engine>(std::make_shared<BackendEngine>(std::move(backend), fingerprint, options.mode));
}

#if !DSV4_HAVE_CUDA
Result<std::unique_ptr<BackendModel>> make_cuda_backend(std::shared_ptr<const model::Model>, Prefill) {
  return make_error("this build has no CUDA backend");
}
Result<std::unique_ptr<BackendModel>> make_cuda_synthetic_backend(const std::string&, int64_t, uint64_t, bool,
                                                                  Prefill) {
  return make_error("this build has no CUDA backend");
}
#endif

}  // namespace dsv4::engine
