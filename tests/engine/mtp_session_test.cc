// The MTP block's drafts through the engine (Session::mtp_draft on the CPU backend): every draft
// is the block's arg-max for the last position's pair after the block has seen every earlier pair
// (MODEL.md §10.2), computed here independently with cpu::forward and cpu::mtp_forward over the
// whole sequence, after prefills in chunks, evaluated drafts and other tokens, rollbacks and a
// snapshot's restore (the block starts again there); the main model's logits stay those of an
// engine without the block.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <optional>
#include <vector>

#include "cpu/forward.h"
#include "cpu/mtp.h"
#include "cpu/test_models.h"
#include "engine/engine.h"
#include "model/weights.h"

namespace dsv4::engine {
namespace {

// The model the engine builds for synthetic_mtp (engine.cc).
const model::Model& tiny_and_block() { return cpu::testing::synthetic_model_with_block("tiny"); }

std::unique_ptr<Session> new_session(bool mtp, int64_t n_ctx = 256) {
  EngineOptions o;
  o.synthetic_preset = "tiny";
  o.synthetic_mtp = mtp;
  std::shared_ptr<Engine> e = Engine::load(o).value();
  return e->new_session(n_ctx).value();
}

// The block's guess after `seq` and then `next`, from scratch: the pairs (H_i, seq[i+1]) from
// index `start`, then (H_last, next).
int32_t reference_draft(const std::vector<int32_t>& seq, int32_t next, int64_t start = 0) {
  const model::Model& m = tiny_and_block();
  const int64_t n = static_cast<int64_t>(seq.size()), HD = m.config.hc_dim();
  cpu::State main = cpu::State::create(m.config, n).value();
  std::vector<float> hidden(static_cast<size_t>(n * HD));
  EXPECT_TRUE(cpu::forward(m, main, seq, cpu::SimOptions::official(), nullptr, nullptr, hidden.data()).ok());
  std::vector<int32_t> next_tokens(seq.begin() + start + 1, seq.end());
  next_tokens.push_back(next);
  cpu::State block = cpu::State::create(m.mtp->block.config, n).value();
  block.set_n(start);
  const std::span<const float> pairs(hidden.data() + start * HD, static_cast<size_t>((n - start) * HD));
  EXPECT_TRUE(cpu::mtp_forward(*m.mtp, block, start, pairs, next_tokens, cpu::SimOptions::official(), nullptr).ok());
  const std::span<const float> l = block.logits();
  return static_cast<int32_t>(std::max_element(l.begin(), l.end()) - l.begin());
}

std::vector<int32_t> tokens(int n, int salt) {
  std::vector<int32_t> t;
  for (int i = 0; i < n; ++i) t.push_back((i * 37 + salt * 11 + 5) % 512);
  return t;
}

int32_t draft(Session& s, int32_t next) {
  Result<std::optional<int32_t>> d = s.mtp_draft(next);
  EXPECT_TRUE(d.ok()) << d.error().message;
  EXPECT_TRUE(d.ok() && d->has_value());
  return d.ok() && *d ? **d : -1;
}

TEST(MtpSession, DraftsAreTheBlocksGuessAfterEveryEarlierPair) {
  std::unique_ptr<Session> s = new_session(true);
  ASSERT_TRUE(s->has_mtp());
  std::vector<int32_t> seq = tokens(23, 1);
  // A prefill in reported chunks (32 first, so one call here, then single tokens and a draft run).
  ASSERT_TRUE(s->sync(seq, [](int64_t, int64_t) { return true; }).ok());
  EXPECT_EQ(draft(*s, 7), reference_draft(seq, 7));
  // Asked again with another token: that pair replaces the first.
  EXPECT_EQ(draft(*s, 9), reference_draft(seq, 9));
  // The drafted token evaluated (its pair reused), then one the block did not pair.
  ASSERT_TRUE(s->eval(std::vector<int32_t>{9}).ok());
  seq.push_back(9);
  EXPECT_EQ(draft(*s, 100), reference_draft(seq, 100));
  ASSERT_TRUE(s->eval(std::vector<int32_t>{101, 102, 103}).ok());
  seq.insert(seq.end(), {101, 102, 103});
  EXPECT_EQ(draft(*s, 4), reference_draft(seq, 4));
  // A draft run: two kept of three.
  std::vector<float> logits(3 * 512);
  ASSERT_TRUE(s->eval_draft(std::vector<int32_t>{4, 50, 60}, logits.data()).ok());
  ASSERT_TRUE(s->keep_draft(2).ok());
  seq.insert(seq.end(), {4, 50});
  EXPECT_EQ(draft(*s, 61), reference_draft(seq, 61));
}

TEST(MtpSession, RollbacksAndChunkingLeaveTheSameBlockState) {
  std::unique_ptr<Session> s = new_session(true);
  const std::vector<int32_t> a = tokens(40, 2);
  ASSERT_TRUE(s->sync(a).ok());
  (void)draft(*s, 3);
  // Another timeline sharing a's first 30 tokens: back to a checkpoint, then the rest.
  std::vector<int32_t> b(a.begin(), a.begin() + 30);
  const std::vector<int32_t> tail = tokens(9, 3);
  b.insert(b.end(), tail.begin(), tail.end());
  ASSERT_TRUE(s->sync(b).ok());
  EXPECT_EQ(draft(*s, 12), reference_draft(b, 12));
  // Back inside the prompt, then one token at a time.
  std::vector<int32_t> c(b.begin(), b.begin() + 35);
  ASSERT_TRUE(s->sync(c).ok());
  for (int32_t t : {5, 6, 7}) {
    (void)draft(*s, t + 1);  // a guess for another token than the one evaluated
    ASSERT_TRUE(s->eval(std::vector<int32_t>{t}).ok());
    c.push_back(t);
  }
  EXPECT_EQ(draft(*s, 8), reference_draft(c, 8));
}

TEST(MtpSession, ARestoredSnapshotStartsTheBlockAtItsEnd) {
  std::unique_ptr<Session> s = new_session(true);
  std::vector<int32_t> seq = tokens(30, 4);
  ASSERT_TRUE(s->sync(seq).ok());
  const std::vector<uint8_t> snap = s->save_snapshot();
  std::unique_ptr<Session> r = new_session(true);
  ASSERT_TRUE(r->restore_snapshot(snap).ok());
  // No state of the last position: no guess, and no error.
  Result<std::optional<int32_t>> none = r->mtp_draft(5);
  ASSERT_TRUE(none.ok()) << none.error().message;
  EXPECT_FALSE(none->has_value());
  ASSERT_TRUE(r->eval(std::vector<int32_t>{5, 6}).ok());
  seq.insert(seq.end(), {5, 6});
  EXPECT_EQ(draft(*r, 7), reference_draft(seq, 7, 30));
  // The snapshot of a session with the block restores into one without, and the reverse.
  std::unique_ptr<Session> plain = new_session(false);
  EXPECT_TRUE(plain->restore_snapshot(snap).ok());
  EXPECT_FALSE(plain->has_mtp());
  EXPECT_FALSE(plain->mtp_draft(5).ok());
}

TEST(MtpSession, TheMainLogitsAreThoseWithoutTheBlock) {
  std::unique_ptr<Session> with = new_session(true), without = new_session(false);
  const std::vector<int32_t> seq = tokens(20, 5);
  ASSERT_TRUE(with->sync(seq).ok());
  ASSERT_TRUE(without->sync(seq).ok());
  (void)draft(*with, 9);
  ASSERT_TRUE(with->eval(std::vector<int32_t>{9, 10}).ok());
  ASSERT_TRUE(without->eval(std::vector<int32_t>{9, 10}).ok());
  ASSERT_EQ(with->logits().size(), without->logits().size());
  EXPECT_EQ(0, std::memcmp(with->logits().data(), without->logits().data(), with->logits().size() * sizeof(float)));
}

TEST(MtpSession, MisuseIsAnError) {
  std::unique_ptr<Session> s = new_session(true);
  EXPECT_FALSE(s->mtp_draft(1).ok());  // nothing evaluated
  ASSERT_TRUE(s->eval(tokens(4, 6)).ok());
  EXPECT_FALSE(s->mtp_draft(512).ok());  // outside the vocabulary
  EXPECT_FALSE(s->mtp_draft(-1).ok());
  std::vector<float> logits(2 * 512);
  ASSERT_TRUE(s->eval_draft(std::vector<int32_t>{1, 2}, logits.data()).ok());
  EXPECT_FALSE(s->mtp_draft(3).ok());  // a draft waits for keep_draft
  ASSERT_TRUE(s->keep_draft(1).ok());
}

}  // namespace
}  // namespace dsv4::engine
