#include "engine/sampler.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <numeric>
#include <set>
#include <string>
#include <vector>

namespace dsv4::engine {
namespace {

constexpr int32_t kFlashVocab = 129280;
constexpr float kInf = std::numeric_limits<float>::infinity();
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

SamplingParams params_of(float temperature, int32_t top_k, float top_p, float min_p,
                         uint64_t seed = 1) {
  SamplingParams p;
  p.temperature = temperature;
  p.top_k = top_k;
  p.top_p = top_p;
  p.min_p = min_p;
  p.seed = seed;
  return p;
}

Sampler make(int32_t vocab, const SamplingParams& p) {
  auto s = Sampler::create(vocab, p);
  EXPECT_TRUE(s.ok()) << s.error().message;
  return std::move(s).value();
}

// Deterministic pseudo-normal logits (sum of uniforms), independent of the sampler's PRNG.
std::vector<float> random_logits(int32_t n, uint64_t seed, float scale) {
  std::vector<float> out(static_cast<size_t>(n));
  for (float& v : out) {
    double acc = 0.0;
    for (int i = 0; i < 4; ++i) {
      seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
      acc += static_cast<double>(seed >> 11) * 0x1.0p-53;
    }
    v = static_cast<float>((acc - 2.0) * scale);
  }
  return out;
}

// The expected distribution, written independently of the sampler from the documented
// definitions: full sort, exact comparisons, double precision.
std::vector<double> reference(const std::vector<float>& logits, float temperature, int32_t top_k,
                              float top_p, float min_p) {
  std::vector<int32_t> order;
  for (int32_t i = 0; i < static_cast<int32_t>(logits.size()); ++i) {
    if (std::isfinite(logits[i])) order.push_back(i);
  }
  std::sort(order.begin(), order.end(), [&](int32_t a, int32_t b) {
    return logits[a] > logits[b] || (logits[a] == logits[b] && a < b);
  });
  if (top_k > 0) order.resize(std::min<size_t>(order.size(), std::min(top_k, 1024)));
  const double max_logit = logits[order[0]];
  std::vector<double> w;
  double total = 0.0;
  for (int32_t id : order) {
    w.push_back(std::exp((logits[id] - max_logit) / temperature));
    total += w.back();
  }
  size_t kept = 1;
  double cum = w[0];
  while (kept < order.size() && cum / total < top_p && w[kept] >= min_p) cum += w[kept++];
  std::vector<double> probs(logits.size(), 0.0);
  for (size_t j = 0; j < kept; ++j) probs[order[j]] = w[j] / cum;
  return probs;
}

std::vector<int64_t> draw_counts(Sampler& s, const std::vector<float>& logits, int draws) {
  std::vector<int64_t> counts(logits.size(), 0);
  for (int i = 0; i < draws; ++i) {
    auto r = s.sample(logits);
    EXPECT_TRUE(r.ok());
    ++counts[static_cast<size_t>(r->token)];
  }
  return counts;
}

struct ChiSquare {
  double statistic = 0.0;
  int dof = 0;
  int64_t excluded_hits = 0;  // draws of tokens whose expected probability is 0
};

ChiSquare chi_square(const std::vector<int64_t>& counts, const std::vector<double>& probs,
                     int64_t draws) {
  ChiSquare out;
  int cells = 0;
  for (size_t i = 0; i < counts.size(); ++i) {
    if (probs[i] == 0.0) {
      out.excluded_hits += counts[i];
      continue;
    }
    const double expected = probs[i] * static_cast<double>(draws);
    const double d = static_cast<double>(counts[i]) - expected;
    out.statistic += d * d / expected;
    ++cells;
  }
  out.dof = std::max(cells - 1, 1);
  return out;
}

// True when the draws are inconsistent with `probs`: a draw of an excluded token, or a chi-square
// statistic above critical().
bool rejects(const std::vector<int64_t>& counts, const std::vector<double>& probs, int64_t draws);

// About the 1e-7 upper tail of chi-square(dof): a correct sampler passes with a wide margin for
// any seed, while the wrong distributions checked below score in the hundreds or more.
double critical(int dof) { return dof + 9.0 * std::sqrt(2.0 * dof) + 10.0; }

bool rejects(const std::vector<int64_t>& counts, const std::vector<double>& probs, int64_t draws) {
  const ChiSquare chi = chi_square(counts, probs, draws);
  return chi.excluded_hits > 0 || chi.statistic > critical(chi.dof);
}

// Shuffled ids so that "sorted by logit" and "sorted by id" differ.
const std::vector<float> kTen = {0.3f, 2.0f, -1.0f, 1.2f, -3.0f, 1.5f, 0.0f, -0.5f, 1.0f, -2.0f};

TEST(Rng, PinnedXoshiro256StarStarOutputs) {
  // Reference values of xoshiro256** seeded with splitmix64 (independently computed), so the
  // token sequence of a seed is the same on every platform and standard library.
  Rng zero(0);
  EXPECT_EQ(zero.next(), 0x99ec5f36cb75f2b4ULL);
  EXPECT_EQ(zero.next(), 0xbf6e1f784956452aULL);
  Rng r(42);
  EXPECT_EQ(r.next(), 0x15780b2e0c2ec716ULL);
  EXPECT_EQ(r.next(), 0x6104d9866d113a7eULL);
  EXPECT_EQ(r.next(), 0xae17533239e499a1ULL);
  EXPECT_EQ(r.next(), 0xecb8ad4703b360a1ULL);
  r.reseed(42);
  EXPECT_EQ(r.next(), 0x15780b2e0c2ec716ULL);
  for (int i = 0; i < 10000; ++i) {
    const double u = r.uniform();
    ASSERT_GE(u, 0.0);
    ASSERT_LT(u, 1.0);
  }
}

TEST(Sampler, DefaultsFollowTheSpec) {
  const SamplingParams p;
  EXPECT_EQ(p.temperature, 1.0f);
  EXPECT_EQ(p.top_p, 1.0f);
  EXPECT_EQ(p.min_p, 0.05f);
  EXPECT_EQ(p.top_k, 0);
  EXPECT_TRUE(validate(p).ok());
}

TEST(Sampler, GreedyPicksArgmaxWithLowestIdOnTies) {
  Sampler s = make(6, params_of(0.0f, 0, 1.0f, 0.0f));
  EXPECT_EQ(s.sample(std::vector<float>{0.f, 3.f, 1.f, 2.f, -1.f, 2.9f})->token, 1);
  EXPECT_EQ(s.sample(std::vector<float>{0.f, 3.f, 1.f, 3.f, -1.f, 3.f})->token, 1);
  EXPECT_EQ(s.sample(std::vector<float>{5.f, 5.f, 5.f, 5.f, 5.f, 5.f})->token, 0);
  // Non-finite logits are never picked.
  EXPECT_EQ(s.sample(std::vector<float>{kNaN, -kInf, 1.f, kInf, 0.f, kNaN})->token, 2);
  // top-k 1 with any temperature is the same argmax.
  Sampler k1 = make(6, params_of(1.5f, 1, 1.0f, 0.0f));
  for (int i = 0; i < 50; ++i) {
    EXPECT_EQ(k1.sample(std::vector<float>{0.f, 3.f, 1.f, 3.f, -1.f, 3.f})->token, 1);
  }
}

TEST(Sampler, GreedyDrawsNoRandomNumber) {
  SamplingParams p = params_of(1.0f, 0, 1.0f, 0.0f, 99);
  Sampler a = make(10, p);
  Sampler b = make(10, p);
  std::vector<int32_t> ta, tb;
  for (int i = 0; i < 200; ++i) {
    ta.push_back(a.sample(kTen)->token);
    EXPECT_EQ(a.sample(kTen, Sampler::Mode::kRawGreedy)->token, 1);
    tb.push_back(b.sample(kTen)->token);
  }
  EXPECT_EQ(ta, tb);
}

TEST(Sampler, FixedSeedReproducesTheSequence) {
  const std::vector<float> logits = random_logits(5000, 7, 3.0f);
  SamplingParams p = params_of(0.9f, 50, 0.95f, 0.01f, 1234);
  p.frequency_penalty = 0.4f;  // the history feeds back, so it must replay too
  p.presence_penalty = 0.2f;
  auto run = [&](Sampler& s) {
    std::vector<int32_t> out;
    for (int i = 0; i < 500; ++i) out.push_back(s.sample(logits)->token);
    return out;
  };
  Sampler a = make(5000, p);
  Sampler b = make(5000, p);
  const std::vector<int32_t> first = run(a);
  EXPECT_EQ(first, run(b));
  ASSERT_TRUE(a.reset(p).ok());  // reseeds and clears the history
  EXPECT_EQ(first, run(a));
  p.seed = 1235;
  Sampler c = make(5000, p);
  EXPECT_NE(first, run(c));
  EXPECT_GT(std::set<int32_t>(first.begin(), first.end()).size(), 10u);
}

TEST(Sampler, PinnedSequenceForSeed) {
  // Regression golden: changing the PRNG, the draw or the candidate order changes these.
  Sampler s = make(10, params_of(1.0f, 0, 1.0f, 0.0f, 2024));
  std::vector<int32_t> got;
  for (int i = 0; i < 16; ++i) got.push_back(s.sample(kTen)->token);
  const std::vector<int32_t> expected = {0, 5, 1, 1, 5, 1, 1, 1, 3, 0, 5, 8, 8, 1, 5, 1};
  EXPECT_EQ(got, expected);
}

struct Case {
  float temperature;
  int32_t top_k;
  float top_p;
  float min_p;
};

TEST(Sampler, DrawsMatchExpectedDistributions) {
  const Case cases[] = {
      {1.0f, 0, 1.0f, 0.0f},  {0.7f, 0, 1.0f, 0.0f},   {1.8f, 0, 1.0f, 0.0f},
      {1.0f, 4, 1.0f, 0.0f},  {1.0f, 0, 0.8f, 0.0f},   {1.0f, 0, 1.0f, 0.1f},
      {0.8f, 6, 0.9f, 0.05f}, {1.0f, 0, 1.0f, 0.05f},  {1.3f, 0, 0.95f, 0.02f},
      {2.0f, 7, 0.97f, 0.0f},
  };
  constexpr int kDraws = 200000;
  uint64_t seed = 11;
  for (const Case& c : cases) {
    SCOPED_TRACE("T=" + std::to_string(c.temperature) + " k=" + std::to_string(c.top_k) +
                 " p=" + std::to_string(c.top_p) + " min_p=" + std::to_string(c.min_p));
    Sampler s = make(10, params_of(c.temperature, c.top_k, c.top_p, c.min_p, seed++));
    const std::vector<double> expected = reference(kTen, c.temperature, c.top_k, c.top_p, c.min_p);

    std::vector<float> probs(10);
    ASSERT_TRUE(s.distribution(kTen, probs).ok());
    for (size_t i = 0; i < 10; ++i) {
      EXPECT_NEAR(probs[i], expected[i], 1e-6) << "token " << i;
      EXPECT_EQ(probs[i] == 0.0f, expected[i] == 0.0) << "token " << i;
    }

    const std::vector<int64_t> counts = draw_counts(s, kTen, kDraws);
    const ChiSquare chi = chi_square(counts, expected, kDraws);
    EXPECT_EQ(chi.excluded_hits, 0);
    EXPECT_LT(chi.statistic, critical(chi.dof)) << "dof " << chi.dof;
    std::printf("T=%g k=%d p=%g min_p=%g: chi2 %.1f, dof %d, critical %.1f\n", c.temperature,
                c.top_k, c.top_p, c.min_p, chi.statistic, chi.dof, critical(chi.dof));

    // The test has the power to reject a plausible wrong sampler: the same draws scored against
    // the distribution with a 10% different temperature, or without the truncations, fail.
    EXPECT_TRUE(rejects(
        counts, reference(kTen, c.temperature * 1.1f, c.top_k, c.top_p, c.min_p), kDraws));
    if (c.top_k > 0 || c.top_p < 1.0f || c.min_p > 0.0f) {
      EXPECT_TRUE(rejects(counts, reference(kTen, c.temperature, 0, 1.0f, 0.0f), kDraws));
    }
  }
}

std::vector<int32_t> support(Sampler& s, const std::vector<float>& logits) {
  std::vector<float> probs(logits.size());
  EXPECT_TRUE(s.distribution(logits, probs).ok());
  std::vector<int32_t> ids;
  for (size_t i = 0; i < probs.size(); ++i) {
    if (probs[i] > 0.0f) ids.push_back(static_cast<int32_t>(i));
  }
  return ids;
}

std::vector<int32_t> drawn(Sampler& s, const std::vector<float>& logits, int draws) {
  const std::vector<int64_t> counts = draw_counts(s, logits, draws);
  std::vector<int32_t> ids;
  for (size_t i = 0; i < counts.size(); ++i) {
    if (counts[i] > 0) ids.push_back(static_cast<int32_t>(i));
  }
  return ids;
}

using Ids = std::vector<int32_t>;

TEST(Sampler, TopKKeepsExactlyTheKLargestWithLowIdsWinningTies) {
  const std::vector<float> logits = {0.f, 1.f, 1.f, 0.f, 1.f, 0.5f};
  Sampler s = make(6, params_of(1.0f, 2, 1.0f, 0.0f));
  EXPECT_EQ(support(s, logits), (Ids{1, 2}));
  EXPECT_EQ(drawn(s, logits, 20000), (Ids{1, 2}));
  ASSERT_TRUE(s.reset(params_of(1.0f, 4, 1.0f, 0.0f)).ok());
  EXPECT_EQ(drawn(s, logits, 20000), (Ids{1, 2, 4, 5}));
}

TEST(Sampler, TopKIsCappedAt1024) {
  std::vector<float> logits(3000);
  for (size_t i = 0; i < logits.size(); ++i) logits[i] = static_cast<float>(i % 1500) * 1e-3f;
  Sampler s = make(3000, params_of(100.0f, 5000, 1.0f, 0.0f));
  const Ids ids = support(s, logits);
  ASSERT_EQ(ids.size(), 1024u);
  // The 1024 largest: logits (i % 1500) >= 988 occur twice each (i and i + 1500).
  for (int32_t id : ids) EXPECT_GE(id % 1500, 988) << id;
}

TEST(Sampler, TopPBoundaryKeepsTheTokenThatReachesTheMass) {
  const std::vector<float> logits = {std::log(0.5f), std::log(0.3f), std::log(0.2f)};
  const std::pair<float, Ids> cases[] = {
      {0.5f, {0}}, {0.51f, {0, 1}}, {0.79f, {0, 1}}, {0.8f, {0, 1}}, {0.81f, {0, 1, 2}},
      {1e-6f, {0}},
  };
  for (const auto& [top_p, ids] : cases) {
    Sampler s = make(3, params_of(1.0f, 0, top_p, 0.0f));
    EXPECT_EQ(support(s, logits), ids) << "top_p " << top_p;
    EXPECT_EQ(drawn(s, logits, 20000), ids) << "top_p " << top_p;
    // Same cut through the top-k path.
    Sampler k = make(3, params_of(1.0f, 3, top_p, 0.0f));
    EXPECT_EQ(support(k, logits), ids) << "top_k path, top_p " << top_p;
  }
  Sampler s = make(3, params_of(1.0f, 0, 0.8f, 0.0f));
  std::vector<float> probs(3);
  ASSERT_TRUE(s.distribution(logits, probs).ok());
  EXPECT_NEAR(probs[0], 0.625f, 1e-6f);
  EXPECT_NEAR(probs[1], 0.375f, 1e-6f);

  // Equal logits: every cumulative boundary is exact; ties go to the lower ids.
  const std::vector<float> flat = {0.f, 0.f, 0.f, 0.f};
  const std::pair<float, Ids> flat_cases[] = {
      {0.25f, {0}}, {0.26f, {0, 1}}, {0.5f, {0, 1}}, {0.75f, {0, 1, 2}}, {0.76f, {0, 1, 2, 3}},
  };
  for (const auto& [top_p, ids] : flat_cases) {
    Sampler f = make(4, params_of(1.0f, 0, top_p, 0.0f));
    EXPECT_EQ(drawn(f, flat, 20000), ids) << "top_p " << top_p;
  }
}

TEST(Sampler, MinPKeepsWeightsAtOrAboveTheThreshold) {
  // Relative weights 0.4 : 0.2 : 0.1 : 0.04 : 0.26; min_p 0.25 -> threshold 0.1 (exactly token 2).
  const std::vector<float> logits = {std::log(0.4f), std::log(0.2f), std::log(0.1f),
                                     std::log(0.04f), std::log(0.26f)};
  Sampler s = make(5, params_of(1.0f, 0, 1.0f, 0.25f));
  EXPECT_EQ(support(s, logits), (Ids{0, 1, 2, 4}));
  EXPECT_EQ(drawn(s, logits, 20000), (Ids{0, 1, 2, 4}));
  Sampler k = make(5, params_of(1.0f, 5, 1.0f, 0.25f));
  EXPECT_EQ(support(k, logits), (Ids{0, 1, 2, 4}));
  // Spec default min_p 0.05: token 3's relative weight is 0.1 at T = 1 (kept) and 0.1^2 = 0.01
  // at T = 0.5 (dropped; token 2 keeps 0.25^2 = 0.0625).
  Sampler d1 = make(5, SamplingParams{.seed = 5});
  EXPECT_EQ(support(d1, logits), (Ids{0, 1, 2, 3, 4}));
  Sampler d = make(5, SamplingParams{.temperature = 0.5f, .seed = 5});
  EXPECT_EQ(support(d, logits), (Ids{0, 1, 2, 4}));
  // min_p 1 keeps only the tokens tied with the maximum.
  Sampler one = make(4, params_of(1.0f, 0, 1.0f, 1.0f));
  EXPECT_EQ(drawn(one, std::vector<float>{1.f, 3.f, 3.f, 2.f}, 20000), (Ids{1, 2}));
}

TEST(Sampler, NonFiniteLogitsAreNeverDrawn) {
  const std::vector<float> logits = {kNaN, 0.f, -kInf, 0.5f, kInf, 0.2f};
  Sampler s = make(6, params_of(1.0f, 0, 1.0f, 0.0f));
  EXPECT_EQ(drawn(s, logits, 20000), (Ids{1, 3, 5}));
  Sampler k = make(6, params_of(1.0f, 6, 0.99f, 0.0f));
  EXPECT_EQ(drawn(k, logits, 20000), (Ids{1, 3, 5}));
  Sampler bad = make(3, params_of(1.0f, 0, 1.0f, 0.0f));
  EXPECT_FALSE(bad.sample(std::vector<float>{kNaN, -kInf, kNaN}).ok());
  Sampler bad_greedy = make(3, params_of(0.0f, 0, 1.0f, 0.0f));
  EXPECT_FALSE(bad_greedy.sample(std::vector<float>{kNaN, -kInf, kNaN}).ok());
}

TEST(Sampler, PenaltiesShiftLogitsByTheGeneratedCounts) {
  const std::vector<float> logits = {1.f, 2.f, 3.f, 0.5f, 0.f};
  SamplingParams p = params_of(1.0f, 0, 1.0f, 0.0f);
  p.presence_penalty = 0.5f;
  p.frequency_penalty = 0.3f;
  Sampler s = make(5, p);
  for (int32_t t : {2, 2, 2, 0}) s.accept(t);
  EXPECT_EQ(s.count(2), 3u);
  EXPECT_EQ(s.count(0), 1u);
  EXPECT_EQ(s.count(1), 0u);
  // token 2: 3 - 0.5 - 3 * 0.3 = 1.6; token 0: 1 - 0.5 - 0.3 = 0.2; the rest unchanged.
  const std::vector<float> shifted = {0.2f, 2.f, 1.6f, 0.5f, 0.f};
  const std::vector<double> expected = reference(shifted, 1.0f, 0, 1.0f, 0.0f);
  std::vector<float> probs(5);
  ASSERT_TRUE(s.distribution(logits, probs).ok());
  for (size_t i = 0; i < 5; ++i) EXPECT_NEAR(probs[i], expected[i], 1e-6) << i;

  // Greedy with penalties: token 1 (2.0) now beats token 2 (1.6); raw greedy ignores them.
  p.temperature = 0.0f;
  ASSERT_TRUE(s.reset(p).ok());
  EXPECT_EQ(s.count(2), 0u);  // reset clears the history
  EXPECT_EQ(s.sample(logits)->token, 2);  // empty history: plain argmax, and recorded
  EXPECT_EQ(s.count(2), 1u);
  for (int32_t t : {2, 2}) s.accept(t);
  EXPECT_EQ(s.sample(logits)->token, 1);  // 3 - 0.5 - 0.9 = 1.6 < 2
  EXPECT_EQ(s.sample(logits, Sampler::Mode::kRawGreedy)->token, 2);
  EXPECT_EQ(s.count(1), 1u);
  EXPECT_EQ(s.count(2), 4u);

  // Negative penalties encourage repetition: token 1 becomes 2 + 2 = 4 > 3.
  p.presence_penalty = -2.0f;
  p.frequency_penalty = 0.0f;
  ASSERT_TRUE(s.reset(p).ok());
  s.accept(1);
  EXPECT_EQ(s.sample(logits)->token, 1);
  ASSERT_TRUE(s.distribution(logits, probs).ok());
  EXPECT_EQ(probs[1], 1.0f);  // temperature 0: one-hot
}

TEST(Sampler, LogprobsAreTheRawModelDistribution) {
  const std::vector<float> logits = {0.3f, 2.0f, -1.0f, 1.2f, -3.0f, 1.5f,
                                     0.0f, -0.5f, 1.0f, -2.0f, 1.2f, -kInf};
  SamplingParams p = params_of(2.0f, 3, 0.9f, 0.1f, 77);
  p.presence_penalty = 1.0f;  // neither the penalty nor T nor truncation changes logprobs
  p.logprobs = true;
  p.top_logprobs = 12;
  Sampler s = make(12, p);
  s.accept(1);
  double log_z = 0.0;
  for (float v : logits) log_z += std::isfinite(v) ? std::exp(static_cast<double>(v)) : 0.0;
  log_z = std::log(log_z);
  for (int i = 0; i < 50; ++i) {
    const Sample r = *s.sample(logits);
    EXPECT_NEAR(r.logprob, logits[r.token] - log_z, 1e-5);
    ASSERT_EQ(r.n_top, 11);  // the -inf logit is not a candidate
    double mass = 0.0;
    bool found = false;
    for (int32_t j = 0; j < r.n_top; ++j) {
      const TokenLogprob& t = r.top[j];
      mass += std::exp(static_cast<double>(t.logprob));
      EXPECT_NEAR(t.logprob, logits[t.token] - log_z, 1e-5);
      if (j > 0) {
        EXPECT_GE(r.top[j - 1].logprob, t.logprob);
      }
      found |= t.token == r.token;
    }
    EXPECT_NEAR(mass, 1.0, 1e-5);
    EXPECT_TRUE(found);
    EXPECT_EQ(r.top[0].token, 1);
    EXPECT_EQ(r.top[2].token, 3);  // tie 1.2 at ids 3 and 10: lower id first
    EXPECT_EQ(r.top[3].token, 10);
  }
  p.logprobs = false;
  p.top_logprobs = 0;
  ASSERT_TRUE(s.reset(p).ok());
  EXPECT_EQ(s.sample(logits)->n_top, 0);
}

TEST(Sampler, InvalidParametersNameTheField) {
  const auto expect_rejected = [](SamplingParams p, const std::string& field) {
    const Status st = validate(p);
    ASSERT_FALSE(st.ok()) << field;
    EXPECT_EQ(st.message().rfind(field, 0), 0u) << st.message();
    EXPECT_FALSE(Sampler::create(10, p).ok()) << field;
    Sampler s = make(10, SamplingParams{});
    EXPECT_FALSE(s.reset(p).ok()) << field;
    EXPECT_EQ(s.params().min_p, 0.05f);  // a rejected reset keeps the old parameters
  };
  expect_rejected(SamplingParams{.temperature = -0.1f}, "temperature");
  expect_rejected(SamplingParams{.temperature = kNaN}, "temperature");
  expect_rejected(SamplingParams{.temperature = kInf}, "temperature");
  expect_rejected(SamplingParams{.top_p = 0.0f}, "top_p");
  expect_rejected(SamplingParams{.top_p = 1.5f}, "top_p");
  expect_rejected(SamplingParams{.top_p = kNaN}, "top_p");
  expect_rejected(SamplingParams{.min_p = -0.01f}, "min_p");
  expect_rejected(SamplingParams{.min_p = 1.01f}, "min_p");
  expect_rejected(SamplingParams{.top_k = -1}, "top_k");
  expect_rejected(SamplingParams{.presence_penalty = 2.5f}, "presence_penalty");
  expect_rejected(SamplingParams{.frequency_penalty = -2.5f}, "frequency_penalty");
  expect_rejected(SamplingParams{.logprobs = true, .top_logprobs = 21}, "top_logprobs");
  expect_rejected(SamplingParams{.top_logprobs = 3}, "top_logprobs");

  // Edges that are valid.
  EXPECT_TRUE(validate(SamplingParams{.temperature = 0.0f, .top_p = 1.0f, .min_p = 0.0f}).ok());
  EXPECT_TRUE(validate(SamplingParams{.min_p = 1.0f, .top_k = 100000}).ok());
  EXPECT_TRUE(validate(SamplingParams{.presence_penalty = -2.0f, .frequency_penalty = 2.0f}).ok());

  EXPECT_FALSE(Sampler::create(0, SamplingParams{}).ok());
  Sampler s = make(10, SamplingParams{});
  EXPECT_FALSE(s.sample(std::vector<float>(9, 0.0f)).ok());
  std::vector<float> probs(9);
  EXPECT_FALSE(s.distribution(std::vector<float>(10, 0.0f), probs).ok());
}

TEST(Sampler, FlashVocabularyMatchesReference) {
  const std::vector<float> logits = random_logits(kFlashVocab, 3, 2.5f);
  const Case cases[] = {
      {1.0f, 0, 1.0f, 0.05f},  // spec defaults
      {0.9f, 40, 1.0f, 0.0f},
      {1.0f, 0, 0.9f, 0.0f},   // large nucleus: exercises the chunked ordering
      {0.6f, 0, 0.95f, 0.02f},
  };
  for (const Case& c : cases) {
    Sampler s = make(kFlashVocab, params_of(c.temperature, c.top_k, c.top_p, c.min_p, 9));
    const std::vector<double> expected = reference(logits, c.temperature, c.top_k, c.top_p,
                                                   c.min_p);
    std::vector<float> probs(logits.size());
    ASSERT_TRUE(s.distribution(logits, probs).ok());
    size_t kept = 0;
    for (size_t i = 0; i < probs.size(); ++i) {
      ASSERT_EQ(probs[i] == 0.0f, expected[i] == 0.0) << "token " << i;
      ASSERT_NEAR(probs[i], expected[i], 1e-6 + 1e-4 * expected[i]) << "token " << i;
      kept += probs[i] > 0.0f;
    }
    for (int i = 0; i < 300; ++i) {
      const int32_t t = s.sample(logits)->token;
      ASSERT_GT(expected[static_cast<size_t>(t)], 0.0) << t;
    }
    const auto t0 = std::chrono::steady_clock::now();
    constexpr int kTimed = 50;
    for (int i = 0; i < kTimed; ++i) (void)s.sample(logits);
    const double us = std::chrono::duration<double, std::micro>(
                          std::chrono::steady_clock::now() - t0).count() / kTimed;
    std::printf("V=%d T=%g top_k=%d top_p=%g min_p=%g: %zu kept, %.0f us/sample\n",
                kFlashVocab, c.temperature, c.top_k, c.top_p, c.min_p, kept, us);
  }
  // top-20 logprobs against a brute-force log-softmax.
  SamplingParams p = params_of(1.0f, 0, 1.0f, 0.05f);
  p.logprobs = true;
  p.top_logprobs = 20;
  Sampler s = make(kFlashVocab, p);
  const Sample r = *s.sample(logits);
  std::vector<int32_t> order(logits.size());
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [&](int32_t a, int32_t b) {
    return logits[a] > logits[b] || (logits[a] == logits[b] && a < b);
  });
  double z = 0.0;
  for (float v : logits) z += std::exp(static_cast<double>(v) - logits[order[0]]);
  const double log_z = logits[order[0]] + std::log(z);
  ASSERT_EQ(r.n_top, 20);
  for (int j = 0; j < 20; ++j) {
    EXPECT_EQ(r.top[j].token, order[j]);
    EXPECT_NEAR(r.top[j].logprob, logits[order[j]] - log_z, 1e-5);
  }
}

}  // namespace
}  // namespace dsv4::engine
