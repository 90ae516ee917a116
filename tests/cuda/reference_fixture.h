// The committed transformers fixtures (tests/fixtures/reference/*.dsv4fix, format of
// tools/reference/fixture.py: "DSV4FIX1", u32 header length, u32 0, JSON header, zero padding to a
// multiple of 64, then int32 tokens and float32 logits at the header's offsets), read for the
// CUDA backend's tests. (tests/cpu/reference_fixture_test.cc has its own reader; the two could
// share this header.)
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

namespace dsv4::testing {

struct ReferenceFixture {
  std::string name, preset, mode;
  uint64_t seed = 0;
  std::vector<int32_t> tokens;
  std::vector<float> logits;  // [n][vocab]
  int64_t vocab = 0;
  std::string gguf_sha256;
};

inline ReferenceFixture read_reference_fixture(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  const std::string blob = ss.str();
  ReferenceFixture f;
  EXPECT_EQ(blob.substr(0, 8), "DSV4FIX1") << path;
  uint32_t header_len = 0;
  std::memcpy(&header_len, blob.data() + 8, 4);
  const nlohmann::json header = nlohmann::json::parse(blob.substr(16, header_len));
  const size_t base = (16 + header_len + 63) / 64 * 64;
  const int64_t n = header["n_tokens"];
  f.vocab = header["vocab_size"];
  f.tokens.resize(static_cast<size_t>(n));
  f.logits.resize(static_cast<size_t>(n * f.vocab));
  const size_t tok_off = base + header["tokens"]["offset"].get<size_t>();
  const size_t log_off = base + header["logits"]["offset"].get<size_t>();
  EXPECT_EQ(log_off + f.logits.size() * 4, blob.size()) << path;
  std::memcpy(f.tokens.data(), blob.data() + tok_off, f.tokens.size() * 4);
  std::memcpy(f.logits.data(), blob.data() + log_off, f.logits.size() * 4);
  f.gguf_sha256 = header["gguf"]["sha256"].get<std::string>();
  f.name = path.stem().string();
  std::smatch m;
  const std::regex pattern("([a-z0-9]+)-s([0-9]+)-(plain|official)");
  EXPECT_TRUE(std::regex_match(f.name, m, pattern)) << f.name;
  f.preset = m[1];
  f.seed = std::stoull(m[2]);
  f.mode = m[3];
  return f;
}

inline std::vector<std::filesystem::path> reference_fixture_paths() {
  std::vector<std::filesystem::path> paths;
  for (const auto& e : std::filesystem::directory_iterator(std::filesystem::path(DSV4_SOURCE_DIR) / "tests/fixtures/reference")) {
    if (e.path().extension() == ".dsv4fix") paths.push_back(e.path());
  }
  std::sort(paths.begin(), paths.end());
  return paths;
}

}  // namespace dsv4::testing
