// The CPU forward pass against logits computed by an independent implementation (Hugging Face
// transformers' DeepseekV4ForCausalLM, full forward, float32), committed as fixtures in
// tests/fixtures/reference/ (docs/FIXTURES.md says how they are made and what they cover).
// The model of each fixture is regenerated with gen-model and must hash to the sha256 the
// reference was computed on.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <regex>
#include <sstream>

#include "cpu/forward.h"
#include "cpu/state.h"
#include "model/synthetic.h"
#include "model/weights.h"
#include "util/sha256.h"

namespace dsv4::cpu {
namespace {

namespace fs = std::filesystem;

struct Fixture {
  std::string name, preset, mode;
  uint64_t seed = 0;
  nlohmann::json header;
  std::vector<int32_t> tokens;
  std::vector<float> logits;  // [n][vocab]
  int64_t vocab = 0;
};

// Format of tools/reference/fixture.py: "DSV4FIX1", u32 header_len, u32 0, JSON header,
// zero padding to a multiple of 64, then int32 tokens and float32 logits at the header's
// offsets relative to that point.
Fixture read_fixture(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  const std::string blob = ss.str();
  Fixture f;
  EXPECT_EQ(blob.substr(0, 8), "DSV4FIX1") << path;
  uint32_t header_len = 0;
  std::memcpy(&header_len, blob.data() + 8, 4);
  f.header = nlohmann::json::parse(blob.substr(16, header_len));
  const size_t base = (16 + header_len + 63) / 64 * 64;
  const int64_t n = f.header["n_tokens"];
  f.vocab = f.header["vocab_size"];
  f.tokens.resize(static_cast<size_t>(n));
  f.logits.resize(static_cast<size_t>(n * f.vocab));
  const size_t tok_off = base + f.header["tokens"]["offset"].get<size_t>();
  const size_t log_off = base + f.header["logits"]["offset"].get<size_t>();
  EXPECT_EQ(log_off + f.logits.size() * 4, blob.size()) << path;
  std::memcpy(f.tokens.data(), blob.data() + tok_off, f.tokens.size() * 4);
  std::memcpy(f.logits.data(), blob.data() + log_off, f.logits.size() * 4);
  // Name: <preset>-s<seed>-<mode>.dsv4fix, the gen-model arguments of the model (types f32).
  f.name = path.stem().string();
  std::smatch m;
  const std::regex pattern("([a-z0-9]+)-s([0-9]+)-(plain|official)");
  EXPECT_TRUE(std::regex_match(f.name, m, pattern)) << f.name;
  f.preset = m[1];
  f.seed = std::stoull(m[2]);
  f.mode = m[3];
  EXPECT_EQ(f.header["mode"], f.mode);
  return f;
}

std::vector<fs::path> fixture_paths() {
  std::vector<fs::path> paths;
  const fs::path dir = fs::path(DSV4_SOURCE_DIR) / "tests/fixtures/reference";
  for (const auto& e : fs::directory_iterator(dir)) {
    if (e.path().extension() == ".dsv4fix") paths.push_back(e.path());
  }
  std::sort(paths.begin(), paths.end());
  return paths;
}

struct Comparison {
  std::vector<double> rel_l2;        // per position
  int64_t argmax_checked = 0;        // positions where the reference's top-2 gap > 1e-4
  int64_t argmax_mismatches = 0;
  int64_t first_above_strict = -1;   // first position with rel_l2 > 1e-4
};

Comparison run_and_compare(const Fixture& f) {
  model::SyntheticSpec spec;
  spec.preset = f.preset;
  spec.seed = f.seed;
  spec.types = model::WeightTypes::kF32;
  Result<gguf::Writer> writer = model::make_synthetic_model(spec);
  EXPECT_TRUE(writer.ok());
  std::vector<uint8_t> bytes = writer->serialize();
  EXPECT_EQ(sha256_hex(bytes), f.header["gguf"]["sha256"].get<std::string>())
      << f.name << ": gen-model output changed since the fixture was made; regenerate the "
      << "fixtures (docs/FIXTURES.md)";
  Result<gguf::File> file = gguf::File::parse(bytes, f.name);
  EXPECT_TRUE(file.ok());
  Result<std::shared_ptr<const model::Model>> m = model::load_model_from_file(std::move(*file));
  EXPECT_TRUE(m.ok()) << m.error().message;
  const int64_t n = static_cast<int64_t>(f.tokens.size());
  Result<State> state = State::create((*m)->config, n);
  EXPECT_TRUE(state.ok());
  std::vector<float> logits(f.logits.size());
  const SimOptions sim = f.mode == "official" ? SimOptions::official() : SimOptions::plain();
  // Chunks of 64 (prefill is proven equal to any chunking elsewhere).
  for (int64_t b = 0; b < n; b += 64) {
    const int64_t len = std::min<int64_t>(64, n - b);
    Status s = forward(**m, *state, std::span<const int32_t>(f.tokens).subspan(b, len), sim,
                       logits.data() + b * f.vocab);
    EXPECT_TRUE(s.ok()) << s.message();
  }
  Comparison c;
  for (int64_t p = 0; p < n; ++p) {
    const float* ref = f.logits.data() + p * f.vocab;
    const float* got = logits.data() + p * f.vocab;
    double diff = 0, norm = 0;
    int64_t best = 0, second = -1;
    for (int64_t v = 0; v < f.vocab; ++v) {
      diff += (double(got[v]) - ref[v]) * (double(got[v]) - ref[v]);
      norm += double(ref[v]) * ref[v];
      if (ref[v] > ref[best]) {
        second = best;
        best = v;
      } else if (v != best && (second < 0 || ref[v] > ref[second])) {
        second = v;
      }
    }
    c.rel_l2.push_back(std::sqrt(diff / norm));
    if (c.rel_l2.back() > 1e-4 && c.first_above_strict < 0) c.first_above_strict = p;
    if (ref[best] - ref[second] > 1e-4) {
      ++c.argmax_checked;
      const int64_t got_best = std::max_element(got, got + f.vocab) - got;
      c.argmax_mismatches += got_best != best;
    }
  }
  return c;
}

double median(std::vector<double> v) {
  std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(v.size() / 2), v.end());
  return v[v.size() / 2];
}

TEST(ReferenceFixtures, AllPresent) {
  EXPECT_GE(fixture_paths().size(), 4u);
}

// The bar: relative L2 <= 1e-4 at every position and the same argmax wherever the
// reference's top-2 gap exceeds 1e-4. Plain mode meets it everywhere; so does official mode on
// fixtures whose geometry makes FP8 rounding-boundary flips rare (tiny: 64 simulated dims per
// row, window 16).
TEST(ReferenceFixtures, MatchTransformersWithinBar) {
  for (const fs::path& path : fixture_paths()) {
    const Fixture f = read_fixture(path);
    if (f.mode == "official" && f.preset != "tiny") continue;  // see the next test
    const Comparison c = run_and_compare(f);
    const double worst = *std::max_element(c.rel_l2.begin(), c.rel_l2.end());
    EXPECT_LE(worst, 1e-4) << f.name << ": worst relative L2 at position " << c.first_above_strict;
    EXPECT_EQ(c.argmax_mismatches, 0) << f.name << " (" << c.argmax_checked << " positions checked)";
    EXPECT_GT(c.argmax_checked, static_cast<int64_t>(f.tokens.size()) * 9 / 10) << f.name;
    std::printf("%-20s worst rel L2 %.2e, median %.2e, argmax checked %lld, mismatches %lld\n",
                f.name.c_str(), worst, median(c.rel_l2), static_cast<long long>(c.argmax_checked),
                static_cast<long long>(c.argmax_mismatches));
  }
}

// Official mode with real head geometry (448 FP8-simulated dims per row, window 128): an f32
// difference of ~1e-6 between two correct implementations moves a value across an e4m3
// rounding midpoint every few positions, and the flipped element stays in the window for 128
// tokens, so the two diverge at the 1e-3 level (measured: median 1.6e-3). The check: strict
// agreement until the first flip, then statistical agreement and the argmax wherever the
// reference is decisive. A systematic error in the simulation (wrong block, scale or
// rounding) is far larger and shows from the first positions.
TEST(ReferenceFixtures, OfficialModeWithRealGeometryAgreesStatistically) {
  for (const fs::path& path : fixture_paths()) {
    const Fixture f = read_fixture(path);
    if (f.mode != "official" || f.preset == "tiny") continue;
    const Comparison c = run_and_compare(f);
    EXPECT_GE(c.first_above_strict, 4) << f.name;
    EXPECT_LE(median(c.rel_l2), 5e-3) << f.name;
    EXPECT_LE(static_cast<double>(c.argmax_mismatches), 0.01 * static_cast<double>(c.argmax_checked)) << f.name;
    std::printf("%-20s first position above 1e-4: %lld, median rel L2 %.2e, argmax mismatches %lld of %lld\n",
                f.name.c_str(), static_cast<long long>(c.first_above_strict), median(c.rel_l2),
                static_cast<long long>(c.argmax_mismatches), static_cast<long long>(c.argmax_checked));
  }
}

}  // namespace
}  // namespace dsv4::cpu
