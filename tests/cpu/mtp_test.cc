// The MTP block on the CPU (cpu/mtp.h, MODEL.md §10): its combined input against a plain
// evaluation of §10.1's formula, chunking that never changes a bit, a window that starts where
// the block began, and the errors of bad arguments.
#include "cpu/mtp.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "model/synthetic.h"
#include "test_models.h"

namespace dsv4::cpu {
namespace {

using testing::test_tokens;

const model::Model& tiny_with_block() { return testing::synthetic_model_with_block("tiny"); }

// Fresh hyper-connection states of the main model's scale (its final streams are O(1)).
std::vector<float> random_hidden(int64_t n, uint64_t seed) { return testing::test_values(n, -2.0f, 2.0f, seed); }

State block_state(const model::MtpModel& mtp, int64_t n_ctx = 64) {
  return State::create(mtp.block.config, n_ctx).value();
}

// RMSNorm in double: x / sqrt(mean(x²) + eps) · w.
std::vector<double> plain_rms_norm(const float* x, const std::vector<float>& w, int64_t n, double eps) {
  double ss = 0;
  for (int64_t i = 0; i < n; ++i) ss += static_cast<double>(x[i]) * x[i];
  const double r = 1.0 / std::sqrt(ss / static_cast<double>(n) + eps);
  std::vector<double> y(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) y[static_cast<size_t>(i)] = x[i] * r * w[static_cast<size_t>(i)];
  return y;
}

// W·x in double for a 2-D F32 tensor of ne = (n, m).
std::vector<double> plain_project(const model::Tensor& w, const std::vector<double>& x) {
  const std::vector<float> wf = w.to_f32();
  const int64_t n = w.ne(0), m = w.ne(1);
  std::vector<double> y(static_cast<size_t>(m), 0.0);
  for (int64_t o = 0; o < m; ++o) {
    double& yo = y[static_cast<size_t>(o)];
    for (int64_t i = 0; i < n; ++i) yo += wf[static_cast<size_t>(o * n + i)] * x[static_cast<size_t>(i)];
  }
  return y;
}

TEST(MtpForward, InputIsTheEmbeddingAndStateCombinationOfTheSpec) {
  const model::Model& m = tiny_with_block();
  const model::MtpModel& mtp = *m.mtp;
  const model::Config& c = mtp.block.config;
  const int64_t T = 3, D = c.n_embd, HD = c.hc_dim();
  const std::vector<float> H = random_hidden(T * HD, 11);
  const std::vector<int32_t> next = test_tokens(T, c.n_vocab, 5);
  std::vector<std::vector<float>> dumped;
  const DumpFn dump = [&](std::string_view name, int64_t, std::span<const float> v) {
    if (name == "mtp_input") dumped.emplace_back(v.begin(), v.end());
  };
  State st = block_state(mtp);
  ASSERT_TRUE(mtp_forward(mtp, st, 0, H, next, SimOptions::official(), nullptr, dump).ok());
  ASSERT_EQ(dumped.size(), static_cast<size_t>(T));
  const std::vector<float> enorm = mtp.enorm.to_f32(), hnorm = mtp.hnorm.to_f32();
  const std::vector<float> embd = m.weights.token_embd.to_f32();
  for (int64_t t = 0; t < T; ++t) {
    const float* e = embd.data() + next[static_cast<size_t>(t)] * D;
    const std::vector<double> ep = plain_project(mtp.e_proj, plain_rms_norm(e, enorm, D, c.rms_eps));
    for (int64_t h = 0; h < c.n_hc; ++h) {
      const std::vector<double> hp =
          plain_project(mtp.h_proj, plain_rms_norm(H.data() + t * HD + h * D, hnorm, D, c.rms_eps));
      for (int64_t i = 0; i < D; ++i) {
        const double want = ep[static_cast<size_t>(i)] + hp[static_cast<size_t>(i)];
        const float got = dumped[static_cast<size_t>(t)][static_cast<size_t>(h * D + i)];
        ASSERT_NEAR(got, want, 2e-5 * (1.0 + std::fabs(want))) << "t " << t << " stream " << h << " i " << i;
      }
    }
  }
  EXPECT_EQ(st.n(), T);
}

TEST(MtpForward, ChunkingNeverChangesABit) {
  const model::MtpModel& mtp = *tiny_with_block().mtp;
  const model::Config& c = mtp.block.config;
  const int64_t T = 20, HD = c.hc_dim(), V = c.n_vocab;  // past the window of 16
  const std::vector<float> H = random_hidden(T * HD, 21);
  const std::vector<int32_t> next = test_tokens(T, V, 9);
  for (const SimOptions sim : {SimOptions::official(), SimOptions::plain()}) {
    State whole = block_state(mtp), parts = block_state(mtp);
    std::vector<float> all(static_cast<size_t>(T * V)), split(static_cast<size_t>(T * V));
    ASSERT_TRUE(mtp_forward(mtp, whole, 0, H, next, sim, all.data()).ok());
    for (int64_t i = 0; i < T;) {
      const int64_t n = std::min<int64_t>(1 + i % 3, T - i);
      ASSERT_TRUE(mtp_forward(mtp, parts, 0, std::span<const float>(H).subspan(i * HD, n * HD),
                              std::span<const int32_t>(next).subspan(i, n), sim, split.data() + i * V)
                      .ok());
      i += n;
    }
    EXPECT_EQ(0, std::memcmp(all.data(), split.data(), all.size() * sizeof(float)));
    EXPECT_EQ(0, std::memcmp(whole.logits().data(), parts.logits().data(), V * sizeof(float)));
  }
}

TEST(MtpForward, RowsBeforeTheWindowStartAreNotSeen) {
  const model::MtpModel& mtp = *tiny_with_block().mtp;
  const model::Config& c = mtp.block.config;
  const int64_t HD = c.hc_dim(), V = c.n_vocab, start = 5, T = 6;
  const std::vector<float> H = random_hidden(T * HD, 31), early = random_hidden(start * HD, 32);
  const std::vector<int32_t> next = test_tokens(T, V, 13), early_next = test_tokens(start, V, 14);
  // A block that began at index 5, and one that saw other pairs at 0..4 first.
  State fresh = block_state(mtp), seen = block_state(mtp);
  fresh.set_n(start);
  ASSERT_TRUE(mtp_forward(mtp, seen, 0, early, early_next, SimOptions::official(), nullptr).ok());
  std::vector<float> a(static_cast<size_t>(T * V)), b(a.size()), full(a.size());
  ASSERT_TRUE(mtp_forward(mtp, fresh, start, H, next, SimOptions::official(), a.data()).ok());
  State full_window = seen;
  ASSERT_TRUE(mtp_forward(mtp, seen, start, H, next, SimOptions::official(), b.data()).ok());
  EXPECT_EQ(0, std::memcmp(a.data(), b.data(), a.size() * sizeof(float)));
  // The same pairs with the earlier rows in the window give other logits: the start matters.
  ASSERT_TRUE(mtp_forward(mtp, full_window, 0, H, next, SimOptions::official(), full.data()).ok());
  EXPECT_NE(0, std::memcmp(a.data(), full.data(), V * sizeof(float)));
}

TEST(MtpForward, BadArgumentsAreErrorsAndChangeNothing) {
  const model::Model& m = tiny_with_block();
  const model::MtpModel& mtp = *m.mtp;
  const model::Config& c = mtp.block.config;
  const std::vector<float> H = random_hidden(2 * c.hc_dim(), 41);
  const std::vector<int32_t> next{1, 2};
  State st = block_state(mtp, 4);
  auto err = [&](State& s, int64_t start, std::span<const float> h, std::span<const int32_t> t) {
    Status r = mtp_forward(mtp, s, start, h, t, SimOptions::official(), nullptr);
    return r.ok() ? std::string() : r.message();
  };
  EXPECT_NE(err(st, 0, std::span<const float>(H).first(c.hc_dim()), next).find("hidden values for 2 pairs"),
            std::string::npos);
  const std::vector<int32_t> bad{1, static_cast<int32_t>(c.n_vocab)};
  EXPECT_NE(err(st, 0, H, bad).find("outside the vocabulary"), std::string::npos);
  EXPECT_NE(err(st, 1, H, next).find("window start 1 outside [0, 0]"), std::string::npos);
  const std::vector<float> H3 = random_hidden(5 * c.hc_dim(), 42);
  const std::vector<int32_t> five{1, 2, 3, 4, 5};
  EXPECT_NE(err(st, 0, H3, five).find("exceed the state's capacity of 4"), std::string::npos);
  State main_state = State::create(m.config, 8).value();
  EXPECT_NE(err(main_state, 0, H, next).find("not created for the MTP block"), std::string::npos);
  EXPECT_EQ(st.n(), 0);
}

}  // namespace
}  // namespace dsv4::cpu
