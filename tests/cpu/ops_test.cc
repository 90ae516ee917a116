// Small ops of the CPU reference: norms, RoPE/YaRN, mHC, softplus, top-k, dot.
#include "cpu/ops.h"

#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "cpu/hc.h"
#include "cpu/rope.h"

namespace dsv4::cpu {
namespace {

TEST(RmsNorm, WeightedAndUnweighted) {
  const std::vector<float> x = {1, 2, 3, 4}, w = {1, 1, 2, 0.5f};
  std::vector<float> y(4);
  rms_norm(x.data(), w.data(), 4, 1e-6f, y.data());
  const double r = 1.0 / std::sqrt(7.5 + 1e-6);
  for (int i = 0; i < 4; ++i)
    EXPECT_NEAR(y[static_cast<size_t>(i)],
                x[static_cast<size_t>(i)] * r * w[static_cast<size_t>(i)], 1e-6);
  rms_norm(x.data(), nullptr, 4, 1e-6f, y.data());
  for (int i = 0; i < 4; ++i)
    EXPECT_NEAR(y[static_cast<size_t>(i)], x[static_cast<size_t>(i)] * r, 1e-6);
  // In place, and eps matters for tiny inputs.
  std::vector<float> z = {1e-4f, 0, 0, 0};
  rms_norm(z.data(), nullptr, 4, 1e-6f, z.data());
  EXPECT_NEAR(z[0], 1e-4 / std::sqrt(2.5e-9 + 1e-6), 1e-6);
}

// MODEL.md §7.4 frequency table (7 significant digits).
const double kOmegaMain[32] = {1.000000e+00, 7.498942e-01, 5.623413e-01, 4.216965e-01, 3.162278e-01,
                               2.371374e-01, 1.778279e-01, 1.333521e-01, 1.000000e-01, 7.498942e-02,
                               5.623413e-02, 4.216965e-02, 3.162278e-02, 2.371374e-02, 1.778279e-02,
                               1.333521e-02, 1.000000e-02, 7.498942e-03, 5.623413e-03, 4.216965e-03,
                               3.162278e-03, 2.371374e-03, 1.778279e-03, 1.333521e-03, 1.000000e-03,
                               7.498942e-04, 5.623413e-04, 4.216965e-04, 3.162278e-04, 2.371374e-04,
                               1.778279e-04, 1.333522e-04};
const double kOmegaYarn[32] = {1.000000e+00, 6.876560e-01, 4.728708e-01, 3.251725e-01, 2.236068e-01,
                               1.537646e-01, 1.057371e-01, 7.271077e-02, 5.000000e-02, 3.438280e-02,
                               2.364354e-02, 1.625862e-02, 1.118034e-02, 7.688228e-03, 5.286857e-03,
                               3.635539e-03, 2.265625e-03, 1.396801e-03, 8.496897e-04, 5.080820e-04,
                               2.969778e-04, 1.681800e-04, 9.086784e-05, 4.544423e-05, 1.953125e-05,
                               5.372312e-06, 3.694303e-06, 2.540410e-06, 1.746928e-06, 1.201286e-06,
                               8.260713e-07, 5.680529e-07};

TEST(Rope, FrequencyTablesOfMODEL) {
  const std::vector<float> main = rope_frequencies(64, 10000.0f, nullptr);
  const YarnParams yarn{16.0f, 65536, 32.0f, 1.0f};
  const std::vector<float> comp = rope_frequencies(64, 160000.0f, &yarn);
  ASSERT_EQ(main.size(), 32u);
  ASSERT_EQ(comp.size(), 32u);
  for (int j = 0; j < 32; ++j) {
    EXPECT_NEAR(main[static_cast<size_t>(j)] / kOmegaMain[j], 1.0, 1e-6) << j;
    EXPECT_NEAR(comp[static_cast<size_t>(j)] / kOmegaYarn[j], 1.0, 1e-6) << j;
  }
}

TEST(Rope, YarnRampOverPairs15To25) {
  const YarnParams yarn{16.0f, 65536, 32.0f, 1.0f};
  const std::vector<float> ramp = yarn_ramp(64, 160000.0f, yarn);
  for (int j = 0; j <= 15; ++j) EXPECT_EQ(ramp[static_cast<size_t>(j)], 0.0f);
  for (int j = 16; j <= 24; ++j) EXPECT_NEAR(ramp[static_cast<size_t>(j)], 0.1 * (j - 15), 1e-6);
  for (int j = 25; j < 32; ++j) EXPECT_EQ(ramp[static_cast<size_t>(j)], 1.0f);
}

TEST(Rope, LayerRegimeFollowsRatio) {
  model::Config c;
  c.n_rot = 64;
  c.rope_theta = 10000.0f;
  c.compress_rope_theta = 160000.0f;
  c.rope_scaling_factor = 16.0f;
  c.rope_orig_ctx = 65536;
  c.yarn_beta_fast = 32.0f;
  c.yarn_beta_slow = 1.0f;
  c.compress_ratio = {0, 4, 128, 16};
  EXPECT_NEAR(layer_rope_frequencies(c, 0)[31] / kOmegaMain[31], 1.0, 1e-6);
  for (int l = 1; l < 4; ++l)
    EXPECT_NEAR(layer_rope_frequencies(c, l)[31] / kOmegaYarn[31], 1.0, 1e-6);
}

TEST(Rope, InterleavedPairsOnTheLastDimsAndInverse) {
  const std::vector<float> omega = {1.0f, 0.5f};
  const RopeAngles a = rope_angles(omega, 3);
  EXPECT_FLOAT_EQ(a.cos[0], static_cast<float>(std::cos(3.0)));
  EXPECT_FLOAT_EQ(a.sin[1], static_cast<float>(std::sin(1.5)));
  // Width 6: dims 0, 1 untouched; pairs (2, 3) and (4, 5) rotated.
  std::vector<float> h = {7, 8, 1, 0, 0, 1};
  rope_rotate(h.data(), 6, a);
  EXPECT_EQ(h[0], 7.0f);
  EXPECT_EQ(h[1], 8.0f);
  EXPECT_FLOAT_EQ(h[2], static_cast<float>(std::cos(3.0)));
  EXPECT_FLOAT_EQ(h[3], static_cast<float>(std::sin(3.0)));
  EXPECT_FLOAT_EQ(h[4], -static_cast<float>(std::sin(1.5)));
  EXPECT_FLOAT_EQ(h[5], static_cast<float>(std::cos(1.5)));
  rope_rotate_inverse(h.data(), 6, a);
  const std::vector<float> want = {7, 8, 1, 0, 0, 1};
  for (size_t i = 0; i < 6; ++i) EXPECT_NEAR(h[i], want[i], 1e-6f);
}

TEST(Rope, LongPositionAngleIsF32ProductWithAccurateSinCos) {
  const std::vector<float> omega = {1.0f, 6.876560e-01f};
  const int64_t p = 1000003;
  const RopeAngles a = rope_angles(omega, p);
  const float phi1 = static_cast<float>(p) * omega[1];  // fl32(p·ω)
  EXPECT_FLOAT_EQ(a.cos[0], static_cast<float>(std::cos(1000003.0)));
  EXPECT_FLOAT_EQ(a.sin[1], static_cast<float>(std::sin(static_cast<double>(phi1))));
}

TEST(Softplus, PassthroughAndStableRange) {
  EXPECT_EQ(softplus(25.0f), 25.0f);
  EXPECT_EQ(softplus(20.5f), 20.5f);
  EXPECT_EQ(softplus(-25.0f), std::exp(-25.0f));
  EXPECT_NEAR(softplus(0.0f), std::log(2.0f), 1e-7f);
  EXPECT_NEAR(softplus(3.0f), std::log1p(std::exp(3.0)), 1e-6);
  EXPECT_NEAR(softplus(20.0f), 20.0f, 1e-6f);
}

TEST(TopK, DescendingWithTiesToLowerIndex) {
  const std::vector<float> s = {1, 3, 3, 2, 3};
  EXPECT_EQ(top_k_desc(s, 2), (std::vector<int32_t>{1, 2}));
  EXPECT_EQ(top_k_desc(s, 3), (std::vector<int32_t>{1, 2, 4}));
  EXPECT_EQ(top_k_desc(s, 10), (std::vector<int32_t>{1, 2, 4, 3, 0}));
  EXPECT_EQ(top_k_desc(std::vector<float>{0, NAN, 1}, 2), (std::vector<int32_t>{2, 0}));
}

TEST(Dot, MatchesDoubleAndOddLengths) {
  for (int n : {1, 7, 8, 9, 31, 512}) {
    std::vector<float> a(static_cast<size_t>(n)), b(static_cast<size_t>(n));
    double want = 0.0;
    for (int i = 0; i < n; ++i) {
      a[static_cast<size_t>(i)] = std::sin(0.1f * static_cast<float>(i) + 1.0f);
      b[static_cast<size_t>(i)] = std::cos(0.3f * static_cast<float>(i));
      want += static_cast<double>(a[static_cast<size_t>(i)]) * b[static_cast<size_t>(i)];
    }
    EXPECT_NEAR(dot(a.data(), b.data(), n), want, 1e-5) << n;
  }
}

// Straightforward double-precision transcription of the §5.3 schedule.
std::vector<double> sinkhorn_ref(const std::vector<double>& z, int n, double eps, int iters) {
  std::vector<double> c(z);
  for (int j = 0; j < n; ++j) {
    double m = -INFINITY, s = 0;
    for (int k = 0; k < n; ++k) m = std::max(m, c[static_cast<size_t>(j * n + k)]);
    for (int k = 0; k < n; ++k) s += std::exp(c[static_cast<size_t>(j * n + k)] - m);
    for (int k = 0; k < n; ++k)
      c[static_cast<size_t>(j * n + k)] = std::exp(c[static_cast<size_t>(j * n + k)] - m) / s + eps;
  }
  auto cols = [&] {
    for (int k = 0; k < n; ++k) {
      double s = 0;
      for (int j = 0; j < n; ++j) s += c[static_cast<size_t>(j * n + k)];
      for (int j = 0; j < n; ++j) c[static_cast<size_t>(j * n + k)] /= s + eps;
    }
  };
  auto rows = [&] {
    for (int j = 0; j < n; ++j) {
      double s = 0;
      for (int k = 0; k < n; ++k) s += c[static_cast<size_t>(j * n + k)];
      for (int k = 0; k < n; ++k) c[static_cast<size_t>(j * n + k)] /= s + eps;
    }
  };
  cols();
  for (int i = 1; i < iters; ++i) {
    rows();
    cols();
  }
  return c;
}

TEST(Sinkhorn, ColumnsSumToOneAndScheduleMatches) {
  const int n = 4;
  std::vector<float> z(16);
  std::vector<double> zd(16);
  for (int i = 0; i < 16; ++i) {
    z[static_cast<size_t>(i)] = 2.0f * std::sin(1.7f * static_cast<float>(i) + 0.3f);
    zd[static_cast<size_t>(i)] = z[static_cast<size_t>(i)];
  }
  std::vector<float> c = z;
  sinkhorn(c.data(), n, 1e-6f, 20);
  const std::vector<double> want = sinkhorn_ref(zd, n, 1e-6, 20);
  for (int i = 0; i < 16; ++i)
    EXPECT_NEAR(c[static_cast<size_t>(i)], want[static_cast<size_t>(i)], 1e-6);
  for (int k = 0; k < n; ++k) {
    double s = 0;
    for (int j = 0; j < n; ++j) s += c[static_cast<size_t>(j * n + k)];
    EXPECT_NEAR(s, 1.0, 1e-5);
  }
  // One iteration = softmax + a single column normalisation.
  std::vector<float> c1 = z;
  sinkhorn(c1.data(), n, 1e-6f, 1);
  const std::vector<double> want1 = sinkhorn_ref(zd, n, 1e-6, 1);
  for (int i = 0; i < 16; ++i)
    EXPECT_NEAR(c1[static_cast<size_t>(i)], want1[static_cast<size_t>(i)], 1e-6);
}

TEST(HyperConnections, MixGatesAndTransposedComb) {
  const int n = 2, d = 3;
  // m = 0 logits with base b: pre = σ(b) + eps, post = 2σ(b).
  std::vector<float> m(static_cast<size_t>((2 + n) * n), 0.0f);
  const std::vector<float> s = {1, 1, 1};
  std::vector<float> b = {0.0f, 1.0f, -1.0f, 2.0f, 0, 0, 0, 0};
  std::vector<float> mix(static_cast<size_t>(hc_mix_size(n)));
  hc_mix(m.data(), s.data(), b.data(), n, 1e-6f, 20, mix.data());
  EXPECT_NEAR(mix[0], 0.5 + 1e-6, 1e-7);
  EXPECT_NEAR(mix[1], 1.0 / (1.0 + std::exp(-1.0)) + 1e-6, 1e-7);
  EXPECT_NEAR(mix[2], 2.0 / (1.0 + std::exp(1.0)), 1e-6);
  EXPECT_NEAR(mix[3], 2.0 / (1.0 + std::exp(-2.0)), 1e-6);
  // hc_post with a non-symmetric comb: out[k] = post_k·f + Σ_j C[j][k]·X[j].
  std::vector<float> mixp = {0, 0, /*post*/ 0.5f, 2.0f, /*comb*/ 0.9f, 0.1f, 0.3f, 0.7f};
  const std::vector<float> x = {1, 2, 3, 10, 20, 30}, f = {1, 1, 1};
  std::vector<float> out(6);
  hc_post(x.data(), f.data(), mixp.data(), n, d, out.data());
  for (int i = 0; i < d; ++i) {
    EXPECT_FLOAT_EQ(out[static_cast<size_t>(i)],
                    0.5f + 0.9f * x[static_cast<size_t>(i)] + 0.3f * x[static_cast<size_t>(3 + i)]);
    EXPECT_FLOAT_EQ(out[static_cast<size_t>(3 + i)],
                    2.0f + 0.1f * x[static_cast<size_t>(i)] + 0.7f * x[static_cast<size_t>(3 + i)]);
  }
  // Weighted sum of the unnormalised streams, and the flat RMS over all values jointly.
  std::vector<float> u(3);
  const std::vector<float> w = {2.0f, 0.5f};
  hc_weighted_sum(x.data(), w.data(), n, d, u.data());
  EXPECT_FLOAT_EQ(u[1], 2.0f * 2 + 0.5f * 20);
  EXPECT_NEAR(hc_flat_rms_scale(x.data(), 6, 1e-6f),
              1.0 / std::sqrt((1 + 4 + 9 + 100 + 400 + 900) / 6.0 + 1e-6), 1e-8);
}

}  // namespace
}  // namespace dsv4::cpu
