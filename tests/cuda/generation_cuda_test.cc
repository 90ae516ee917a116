// Speculative decoding on the CUDA backend through the engine and the generator (generator.h):
// the small synthetic model generates the same tokens with prompt-lookup drafts as without,
// greedy and sampled (with a presence penalty: the device sampler's history), from a prompt that
// repeats, so that drafts are made and mostly rejected through DeviceSession::forward_draft /
// keep_draft; a generation that continues a prompt holding its own earlier continuation takes
// drafts that are accepted.
#include <gtest/gtest.h>

#include <vector>

#include "cpu/test_models.h"
#include "engine/engine.h"
#include "generation/generator.h"
#include "generation/synthetic_tokenizer.h"
#include "cuda/synthetic_engines.h"

namespace dsv4::cuda::testing {
namespace {

TEST(CudaGeneration, DraftsGiveTheSameTokens) {
  const std::shared_ptr<engine::Engine> engine = load_synthetic_engine(engine::Backend::kCuda, "small");
  ASSERT_NE(engine, nullptr);
  const int64_t V = engine->config().n_vocab;
  const generation::testing::SyntheticTokenizer tok = generation::testing::synthetic_tokenizer(V);
  const generation::Generator generator(tok.tokenizer, tok.special);
  const std::vector<int32_t> verse = cpu::testing::test_tokens(9, V, 4);
  std::vector<int32_t> prompt{static_cast<int32_t>(tok.special.bos)};
  for (int r = 0; r < 8; ++r) prompt.insert(prompt.end(), verse.begin(), verse.end());
  auto generate = [&](const std::vector<int32_t>& context, float temperature, int draft) {
    Result<std::unique_ptr<engine::Session>> s = engine->new_session(512);
    EXPECT_TRUE(s.ok());
    EXPECT_TRUE((*s)->eval(context).ok());
    generation::GenerateOptions o;
    o.sampling.temperature = temperature;
    o.sampling.presence_penalty = temperature > 0 ? 0.5f : 0.0f;
    o.sampling.seed = 11;
    o.max_tokens = 120;
    o.draft_tokens = draft;
    Result<generation::GenerateResult> r = generator.generate(**s, o, {});
    EXPECT_TRUE(r.ok());
    EXPECT_NE(r->finish, generation::Finish::kError) << r->error;
    return *r;
  };
  int64_t drafted = 0;
  for (float temperature : {0.0f, 0.9f}) {
    SCOPED_TRACE(temperature);
    const generation::GenerateResult plain = generate(prompt, temperature, 0);
    const generation::GenerateResult drafts = generate(prompt, temperature, 3);
    EXPECT_EQ(drafts.tokens, plain.tokens);
    drafted += drafts.drafted;
  }
  EXPECT_GT(drafted, 0) << "no draft was made";
  // The prompt followed by its own greedy continuation, then the prompt again: from there the model
  // repeats what it said before (the same context suffix is not the same context, so not always),
  // and the drafts of that repetition are verified, some accepted.
  const generation::GenerateResult first = generate(prompt, 0.0f, 0);
  std::vector<int32_t> echo(prompt);
  echo.insert(echo.end(), first.tokens.begin(), first.tokens.end() - (first.finish == generation::Finish::kStop));
  echo.insert(echo.end(), prompt.begin() + 1, prompt.end());
  const generation::GenerateResult plain = generate(echo, 0.0f, 0), drafts = generate(echo, 0.0f, 3);
  EXPECT_EQ(drafts.tokens, plain.tokens);
  EXPECT_GT(drafts.drafted, 0);
  std::printf("echo: %lld drafted, %lld accepted of %zu tokens\n", static_cast<long long>(drafts.drafted),
              static_cast<long long>(drafts.draft_accepted), drafts.tokens.size());
}

}  // namespace
}  // namespace dsv4::cuda::testing
