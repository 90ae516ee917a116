// Backend selection and synthetic models through the engine API (no GPU needed: the CUDA backend
// itself is tested by tests/cuda on the GPU machine).
#include <gtest/gtest.h>

#include <unistd.h>

#include <algorithm>
#include <filesystem>

#include "engine/engine.h"
#include "model/synthetic.h"
#include "model/weights.h"

namespace dsv4::engine {
namespace {

TEST(EngineBackend, ParsesBackendsThisBuildHas) {
  EXPECT_EQ(*parse_backend("cpu"), Backend::kCpu);
  Result<Backend> cuda = parse_backend("cuda");
  if (have_cuda_backend()) {
    ASSERT_TRUE(cuda.ok());
    EXPECT_EQ(*cuda, Backend::kCuda);
  } else {
    ASSERT_FALSE(cuda.ok());
    EXPECT_NE(cuda.error().message.find("this build has no CUDA backend"), std::string::npos) << cuda.error().message;
  }
  Result<Backend> other = parse_backend("tpu");
  ASSERT_FALSE(other.ok());
  EXPECT_NE(other.error().message.find("unknown backend 'tpu'"), std::string::npos);
  EXPECT_STREQ(backend_name(Backend::kCuda), "cuda");
}

// A small preset made in memory is the same model as the file gen-model writes: same fingerprint
// (so their snapshots interchange), same logits.
TEST(EngineBackend, SyntheticInMemoryIsTheGenModelFile) {
  const std::filesystem::path path = std::filesystem::temp_directory_path() / ("dsv4_backend_" + std::to_string(getpid()) + ".gguf");
  model::SyntheticSpec spec;
  spec.preset = "tiny";
  spec.seed = 3;
  ASSERT_TRUE(model::make_synthetic_model(spec)->write(path.string()).ok());
  EngineOptions from_file;
  from_file.model_path = path.string();
  EngineOptions in_memory;
  in_memory.synthetic_preset = "tiny";
  in_memory.synthetic_seed = 3;
  auto a = Engine::load(from_file);
  auto b = Engine::load(in_memory);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ((*a)->fingerprint(), (*b)->fingerprint());
  auto sa = *(*a)->new_session(32);
  auto sb = *(*b)->new_session(32);
  const std::vector<int32_t> t = {1, 5, 9, 200, 17};
  ASSERT_TRUE(sa->eval(t).ok() && sb->eval(t).ok());
  EXPECT_TRUE(std::equal(sa->logits().begin(), sa->logits().end(), sb->logits().begin()));
  std::filesystem::remove(path);
}

TEST(EngineBackend, BadSyntheticRequestsAreClearErrors) {
  EngineOptions both;
  both.model_path = "x.gguf";
  both.synthetic_preset = "tiny";
  Result<std::shared_ptr<Engine>> e = Engine::load(both);
  ASSERT_FALSE(e.ok());
  EXPECT_NE(e.error().message.find("not both"), std::string::npos);
  EngineOptions full_on_cpu;
  full_on_cpu.synthetic_preset = "flash-q2";
  e = Engine::load(full_on_cpu);
  ASSERT_FALSE(e.ok());
  EXPECT_NE(e.error().message.find("--backend cuda"), std::string::npos) << e.error().message;
  EngineOptions unknown;
  unknown.synthetic_preset = "huge";
  EXPECT_FALSE(Engine::load(unknown).ok());
}

TEST(EngineBackend, FastPrefillIsACudaChoice) {
  EXPECT_EQ(*parse_prefill("exact"), Prefill::kExact);
  EXPECT_EQ(*parse_prefill("matvec"), Prefill::kMatvec);
  EXPECT_EQ(*parse_prefill("fast"), Prefill::kFast);
  EXPECT_STREQ(prefill_name(Prefill::kFast), "fast");
  EXPECT_STREQ(prefill_name(Prefill::kMatvec), "matvec");
  Result<Prefill> other = parse_prefill("quick");
  ASSERT_FALSE(other.ok());
  EXPECT_NE(other.error().message.find("exact, matvec or fast"), std::string::npos);
  EngineOptions fast_on_cpu;
  fast_on_cpu.synthetic_preset = "tiny";
  fast_on_cpu.prefill = Prefill::kFast;
  Result<std::shared_ptr<Engine>> e = Engine::load(fast_on_cpu);
  ASSERT_FALSE(e.ok());
  EXPECT_NE(e.error().message.find("needs the cuda backend"), std::string::npos) << e.error().message;
}

}  // namespace
}  // namespace dsv4::engine
