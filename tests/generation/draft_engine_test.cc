// Speculative decoding on the CPU backend end to end: the tiny synthetic model generates the same
// tokens with prompt-lookup drafts, with the MTP block's drafts and with both as without, greedy
// and sampled, from a prompt that repeats (so drafts are made and rejected through the real
// eval_draft / keep_draft and mtp_draft).
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "engine/engine.h"
#include "generation/generator.h"
#include "generation/synthetic_tokenizer.h"

namespace dsv4::generation {
namespace {

TEST(DraftsOnTheCpuBackend, SameTokensAsWithout) {
  engine::EngineOptions eo;
  eo.synthetic_preset = "tiny";
  eo.synthetic_mtp = true;
  Result<std::shared_ptr<engine::Engine>> engine = engine::Engine::load(eo);
  ASSERT_TRUE(engine.ok()) << engine.error().message;
  const testing::SyntheticTokenizer tok = testing::synthetic_tokenizer((*engine)->config().n_vocab);
  const Generator generator(tok.tokenizer, tok.special);
  std::vector<int32_t> prompt{static_cast<int32_t>(tok.special.bos)};
  for (int r = 0; r < 6; ++r) {
    for (int32_t t : {300, 301, 302, 303, 304, 305, 306}) prompt.push_back(t);
  }
  int64_t drafted = 0, mtp_drafted = 0, all_drafted = 0, accepted = 0;
  struct Drafting {
    int lookup;
    bool mtp;
  };
  for (float temperature : {0.0f, 0.9f}) {
    SCOPED_TRACE(temperature);
    std::vector<std::vector<int32_t>> runs;
    for (const Drafting d : {Drafting{0, false}, Drafting{3, false}, Drafting{0, true}, Drafting{3, true}}) {
      SCOPED_TRACE(std::to_string(d.lookup) + (d.mtp ? " + mtp" : ""));
      Result<std::unique_ptr<engine::Session>> s = (*engine)->new_session(320);
      ASSERT_TRUE(s.ok());
      ASSERT_TRUE((*s)->eval(prompt).ok());
      GenerateOptions o;
      o.sampling.temperature = temperature;
      o.sampling.seed = 7;
      o.max_tokens = 200;
      o.draft_tokens = d.lookup;
      o.mtp_drafts = d.mtp;
      Result<GenerateResult> r = generator.generate(**s, o, {});
      ASSERT_TRUE(r.ok());
      EXPECT_NE(r->finish, Finish::kError) << r->error;
      runs.push_back(r->tokens);
      if (d.lookup == 0 && !d.mtp) {
        EXPECT_EQ(r->drafted, 0);
      }
      if (d.lookup > 0 && !d.mtp) drafted += r->drafted;
      if (d.lookup == 0 && d.mtp) mtp_drafted += r->drafted;
      all_drafted += r->drafted;
      accepted += r->draft_accepted;
      // The session holds the prompt and every evaluated token (all but a final EOS).
      std::vector<int32_t> held(prompt);
      held.insert(held.end(), r->tokens.begin(), r->tokens.end());
      if (r->finish == Finish::kStop) held.pop_back();
      EXPECT_EQ((*s)->tokens(), held);
    }
    for (size_t i = 1; i < runs.size(); ++i) EXPECT_EQ(runs[i], runs[0]) << "run " << i;
  }
  // The tiny model's own text does not repeat: its drafts are rejected (acceptance is covered by
  // the scripted sessions of generator_test.cc and keep_draft of every k by the engine's tests).
  EXPECT_GT(drafted, 0) << "no lookup draft was made";
  EXPECT_GT(mtp_drafted, 0) << "no MTP draft was made";
  // The synthetic block's random weights do not predict the model: its guesses are rejected too.
  EXPECT_LE(accepted, all_drafted);
}

}  // namespace
}  // namespace dsv4::generation
