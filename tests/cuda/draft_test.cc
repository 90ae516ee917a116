// Speculative drafts on the device (cuda/session.h forward_draft / keep_draft): a run of 4 tokens
// (a sampled token and a 3-token draft) as one multi-token step, then the first k kept without
// evaluating anything again. The run's logits rows must be bit for bit those of single steps, and
// after keeping k the session must continue bit for bit as one that evaluated only those k: the
// rejected tokens' ring rows (which the kept tokens' window still reads) and, where a rejected
// token ended a ratio-4 window, the frontiers' previous-window slots come back from the checkpoint.
// The state bytes are not compared: slots of the current window past the kept tokens hold what
// the rejected tokens wrote instead of stale values, which nothing reads (MODEL.md §12.2).
//
// The small preset, official mode (sliding, ratio-4 with the indexer, ratio-128 layers; window
// 128), prompts of 121 to 125 tokens: every k at runs that put the ratio-4 window's end on
// each of the run's positions and one that crosses the ratio-128 emission at 127.
#include <gtest/gtest.h>

#include <cstring>
#include <vector>

#include "cpu/test_models.h"
#include "cuda/cuda_test_util.h"
#include "cuda/session.h"
#include "cuda/uploaded_models.h"

namespace dsv4::cuda::testing {
namespace {

using cpu::testing::test_tokens;

std::vector<float> logits_of(DeviceSession& s) { return std::vector<float>(s.logits().begin(), s.logits().end()); }

TEST(CudaDraft, KeptPrefixContinuesAsSingleSteps) {
  std::shared_ptr<const DeviceModel> m = uploaded_small_model();
  ASSERT_TRUE(m);
  const int64_t V = m->config.n_vocab, n_ctx = 160;
  const int T = DeviceSession::kStepChunkMax, after = 6;
  const std::vector<int32_t> tokens = test_tokens(n_ctx, V, 5);
  auto session = [&] { return std::move(DeviceSession::create(m, n_ctx, cpu::SimOptions::official())).value(); };
  for (const int64_t p0 : {int64_t{121}, int64_t{122}, int64_t{123}, int64_t{124}, int64_t{125}}) {
    const std::span<const int32_t> prompt = std::span(tokens).first(static_cast<size_t>(p0));
    const std::span<const int32_t> run = std::span(tokens).subspan(static_cast<size_t>(p0), T);
    // Single steps through the run and on: the reference logits after every position.
    auto stepped = session();
    ASSERT_TRUE(stepped->forward(prompt, nullptr).ok());
    for (int i = 0; i < T; ++i) {
      ASSERT_TRUE(stepped->forward(run.subspan(static_cast<size_t>(i), 1), nullptr).ok());
    }
    std::vector<float> rows(static_cast<size_t>(T * V));
    for (int k = 1; k <= T; ++k) {
      SCOPED_TRACE(::testing::Message() << "run at " << p0 << ", keep " << k);
      auto drafted = session(), reference = session();
      ASSERT_TRUE(drafted->forward(prompt, nullptr).ok());
      ASSERT_TRUE(reference->forward(prompt, nullptr).ok());
      std::vector<std::vector<float>> want_rows;
      for (int i = 0; i < T; ++i) {
        ASSERT_TRUE(reference->forward(run.subspan(static_cast<size_t>(i), 1), nullptr).ok());
        want_rows.push_back(logits_of(*reference));
      }
      ASSERT_TRUE(drafted->forward_draft(run, rows.data()).ok());
      for (int i = 0; i < T; ++i) {
        EXPECT_EQ(0, std::memcmp(rows.data() + i * V, want_rows[static_cast<size_t>(i)].data(), V * 4)) << "row " << i;
      }
      ASSERT_TRUE(drafted->keep_draft(k).ok());
      ASSERT_EQ(drafted->n(), p0 + k);
      EXPECT_EQ(0, std::memcmp(logits_of(*drafted).data(), want_rows[static_cast<size_t>(k - 1)].data(), V * 4));
      // The kept prefix alone, then the same continuation on both.
      auto kept = session();
      ASSERT_TRUE(kept->forward(prompt, nullptr).ok());
      for (int i = 0; i < k; ++i) ASSERT_TRUE(kept->forward(run.subspan(static_cast<size_t>(i), 1), nullptr).ok());
      const std::span<const int32_t> next = std::span(tokens).subspan(static_cast<size_t>(p0 + T), after);
      for (int i = 0; i < after; ++i) {
        ASSERT_TRUE(drafted->forward(next.subspan(static_cast<size_t>(i), 1), nullptr).ok());
        ASSERT_TRUE(kept->forward(next.subspan(static_cast<size_t>(i), 1), nullptr).ok());
        EXPECT_EQ(0, std::memcmp(logits_of(*drafted).data(), logits_of(*kept).data(), V * 4)) << "continuation " << i;
      }
    }
  }
}

// A second draft before the first is settled, keeping 0 or more than the run, a run of one or of
// more than kStepChunkMax tokens, and keep_draft without a draft are errors.
TEST(CudaDraft, MisuseIsAnError) {
  std::shared_ptr<const DeviceModel> m = uploaded_small_model();
  ASSERT_TRUE(m);
  const int64_t V = m->config.n_vocab;
  const std::vector<int32_t> tokens = test_tokens(40, V, 6);
  auto s = std::move(DeviceSession::create(m, 40, cpu::SimOptions::official())).value();
  ASSERT_TRUE(s->forward(std::span(tokens).first(20), nullptr).ok());
  std::vector<float> rows(static_cast<size_t>((DeviceSession::kStepChunkMax + 1) * V));
  EXPECT_FALSE(s->keep_draft(1).ok());
  EXPECT_FALSE(s->forward_draft(std::span(tokens).subspan(20, 1), rows.data()).ok());
  EXPECT_FALSE(s->forward_draft(std::span(tokens).subspan(20, DeviceSession::kStepChunkMax + 1), rows.data()).ok());
  ASSERT_TRUE(s->forward_draft(std::span(tokens).subspan(20, 3), rows.data()).ok());
  EXPECT_FALSE(s->forward_draft(std::span(tokens).subspan(23, 2), rows.data()).ok());
  EXPECT_FALSE(s->keep_draft(0).ok());
  EXPECT_FALSE(s->keep_draft(4).ok());
  EXPECT_TRUE(s->keep_draft(2).ok());
  EXPECT_EQ(s->n(), 22);
}

}  // namespace
}  // namespace dsv4::cuda::testing
