// A full-size synthetic preset generated on the device (cuda/device_model.h), a few layers of it:
// the real geometry and published type mix end to end. Checks what can be checked without a
// reference: finite logits, determinism of the generator (same seed, same logits), and the decode
// graph agreeing with the chunked path. Named *Large*: the memory checker skips it (GBs of weights).
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "cuda/device_util.h"
#include "cuda/session.h"

namespace dsv4::cuda::testing {
namespace {

std::vector<float> run(int64_t layers, uint64_t seed, const std::vector<int32_t>& tokens, int decode) {
  auto dev = generate_synthetic_model("flash-q2", layers, seed);
  EXPECT_TRUE(dev.ok()) << dev.error().message;
  if (!dev.ok()) return {};
  std::shared_ptr<const DeviceModel> m = std::move(dev).value();
  EXPECT_EQ(m->config.n_layer, layers);
  auto s = DeviceSession::create(m, 4096, cpu::SimOptions::official());
  EXPECT_TRUE(s.ok()) << s.error().message;
  EXPECT_TRUE((*s)->forward(std::span(tokens).first(tokens.size() - decode), nullptr).ok());
  for (size_t p = tokens.size() - decode; p < tokens.size(); ++p) {
    EXPECT_TRUE((*s)->forward(std::span(tokens).subspan(p, 1), nullptr).ok());
  }
  const std::span<const float> l = (*s)->logits();
  return std::vector<float>(l.begin(), l.end());
}

TEST(CudaSyntheticLarge, FlashQ2LayersRunDeterministically) {
  std::vector<int32_t> tokens;
  for (int i = 0; i < 300; ++i) tokens.push_back((i * 7919 + 13) % 129280);
  const std::vector<float> a = run(4, 7, tokens, 20);
  const std::vector<float> b = run(4, 7, tokens, 20);
  const std::vector<float> c = run(4, 8, tokens, 20);
  const std::vector<float> prefill = run(4, 7, tokens, 0);
  ASSERT_EQ(a.size(), 129280u);
  for (float v : a) ASSERT_TRUE(std::isfinite(v));
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);
  EXPECT_LE(rel_l2(a.data(), prefill.data(), a.size()), 1e-3);
}

}  // namespace
}  // namespace dsv4::cuda::testing
