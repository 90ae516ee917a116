// dsv4 run as a user drives it: the default model path and its message, --dump-logprobs checked
// against the engine's own sampler, and the prefill progress bar (on a terminal only).
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>

#include "engine/engine.h"
#include "engine/sampler.h"
#include "pty_process.h"

namespace {

namespace fs = std::filesystem;
using dsv4::testing::PtyProcess;

struct CommandResult {
  int exit_code;
  std::string output;  // stdout and stderr (a pipe)
};

CommandResult shell(const std::string& env_and_args) {
  const std::string cmd = env_and_args + " 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  std::string out;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  const int status = pclose(p);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
}

class Run : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = fs::temp_directory_path() / ("dsv4_run_" + std::to_string(getpid()));
    fs::create_directories(dir_);
    ASSERT_EQ(shell(bin() + " gen-model --preset tiny --out " + path("tiny.gguf")).exit_code, 0);
    ASSERT_EQ(shell(bin() + " gen-model --preset small --out " + path("small.gguf")).exit_code, 0);
    ASSERT_EQ(shell(bin() + " gen-model --preset tiny --mtp only --out " + path("tiny_mtp.gguf")).exit_code, 0);
    ASSERT_EQ(shell(bin() + " gen-model --preset tiny --mtp with --out " + path("tiny_with_mtp.gguf")).exit_code, 0);
  }
  static void TearDownTestSuite() { fs::remove_all(dir_); }
  static std::string bin() { return DSV4_BINARY; }
  static std::string path(const std::string& name) { return (dir_ / name).string(); }
  static fs::path dir_;
};
fs::path Run::dir_;

TEST_F(Run, DefaultModelPathAndTheMessageWhenMissing) {
  const std::string home = path("home");
  fs::create_directories(home);
  // Nothing at the default path: the message names it and tells how to get a model.
  CommandResult r = shell("env -u DSV4_MODEL -u XDG_DATA_HOME HOME=" + home + " " + bin() + " run -p hi -n 2");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("no model file at " + home + "/.local/share/dsv4/model.gguf (the default"),
            std::string::npos) << r.output;
  EXPECT_NE(r.output.find("antirez/deepseek-v4-gguf"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("DeepSeek-V4-Flash-IQ2XXS-w2Q2K-AProjQ8-SExpQ8-OutQ8-chat-v2-imatrix.gguf"),
            std::string::npos) << r.output;
  EXPECT_NE(r.output.find("dsv4 gen-model --preset small --out " + home + "/.local/share/dsv4/model.gguf"),
            std::string::npos) << r.output;

  // Following the advice (gen-model creates the folder) makes the same command work.
  ASSERT_EQ(shell(bin() + " gen-model --preset tiny --out " + home + "/.local/share/dsv4/model.gguf").exit_code, 0);
  r = shell("env -u DSV4_MODEL -u XDG_DATA_HOME HOME=" + home + " " + bin() + " run -p hi -n 2");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("generated"), std::string::npos) << r.output;

  // $DSV4_MODEL comes first, $XDG_DATA_HOME next; the message says where the path came from.
  r = shell("DSV4_MODEL=" + path("nothere.gguf") + " " + bin() + " run -p hi -n 2");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("no model file at " + path("nothere.gguf") + " (from $DSV4_MODEL)"), std::string::npos)
      << r.output;
  r = shell("DSV4_MODEL=" + path("tiny.gguf") + " " + bin() + " run -p hi -n 2");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  r = shell("env -u DSV4_MODEL XDG_DATA_HOME=" + path("xdg") + " " + bin() + " chat < /dev/null");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find(path("xdg") + "/dsv4/model.gguf"), std::string::npos) << r.output;
  // An explicit -m that does not exist.
  r = shell(bin() + " run -m " + path("typo.gguf") + " -p hi");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("no model file at " + path("typo.gguf") + "\n"), std::string::npos) << r.output;
  // --help names the default.
  r = shell(bin() + " run --help");
  EXPECT_NE(r.output.find("~/.local/share/dsv4/model.gguf"), std::string::npos) << r.output;
}

TEST_F(Run, DumpLogprobsMatchesTheSampler) {
  const std::string file = path("logprobs.json");
  CommandResult r = shell(bin() + " run -m " + path("tiny.gguf") + " --nothink -p 'Tell me' -n 10 --temp 0.7 " +
                          "--dump-logprobs " + file + " --top-logprobs 4");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  std::ifstream in(file);
  const nlohmann::json doc = nlohmann::json::parse(in);
  const std::vector<int32_t> prompt = doc["prompt_tokens"].get<std::vector<int32_t>>();
  const nlohmann::json& steps = doc["steps"];
  ASSERT_FALSE(prompt.empty());
  ASSERT_GE(steps.size(), 1u);
  EXPECT_EQ(doc["mode"], "official");

  // Replay: the same prompt in a session of our own, the greedy sampler with logprobs.
  dsv4::engine::EngineOptions eo;
  eo.model_path = path("tiny.gguf");
  auto engine = dsv4::engine::Engine::load(eo);
  ASSERT_TRUE(engine.ok()) << engine.error().message;
  auto session = (*engine)->new_session(256);
  ASSERT_TRUE(session.ok());
  ASSERT_TRUE((*session)->sync(prompt).ok());
  dsv4::engine::SamplingParams params;
  params.temperature = 0;  // --dump-logprobs is greedy whatever --temp says
  params.logprobs = true;
  params.top_logprobs = 4;
  auto sampler = dsv4::engine::Sampler::create(static_cast<int32_t>((*engine)->config().n_vocab), params);
  ASSERT_TRUE(sampler.ok());
  for (size_t i = 0; i < steps.size(); ++i) {
    SCOPED_TRACE("step " + std::to_string(i));
    auto s = sampler->sample((*session)->logits());
    ASSERT_TRUE(s.ok());
    const nlohmann::json& step = steps[i];
    EXPECT_EQ(step["token"].get<int32_t>(), s->token);
    EXPECT_EQ(step["logprob"].get<float>(), s->logprob);
    EXPECT_TRUE(step["text"].is_string());
    ASSERT_EQ(step["top"].size(), 4u);
    ASSERT_EQ(s->n_top, 4);
    for (int k = 0; k < 4; ++k) {
      EXPECT_EQ(step["top"][k]["token"].get<int32_t>(), s->top[k].token);
      EXPECT_EQ(step["top"][k]["logprob"].get<float>(), s->top[k].logprob);
    }
    EXPECT_EQ(step["top"][0]["token"], step["token"]);  // greedy: the chosen one is the top one
    const int32_t next[1] = {s->token};
    ASSERT_TRUE((*session)->eval(next).ok());
  }
  // A bad --top-logprobs is refused by the option parser.
  r = shell(bin() + " run -m " + path("tiny.gguf") + " -p x --dump-logprobs " + file + " --top-logprobs 50");
  EXPECT_NE(r.exit_code, 0);
}

TEST_F(Run, DumpTokensPrintsPromptAndGeneratedIds) {
  CommandResult r = shell(bin() + " run -m " + path("tiny.gguf") + " -p hi -n 3 --temp 0 --dump-tokens");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("prompt tokens: "), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("]"), std::string::npos) << r.output;
}

// --draft (speculative decoding with prompt-lookup drafts) and --mtp (the MTP block's drafts, from
// ds4's separate file or from a model file that holds the block) print the same answer and token
// ids as without, greedy and sampled; --draft out of range and an --mtp file without the block are
// refused. (Whether lookup drafts are made depends on the tiny model's text; the MTP block drafts
// from the first token. generator_test.cc and the engine tests hold the drafting itself.)
TEST_F(Run, DraftGivesTheSameAnswer) {
  const std::string prompt = " -p 'one two three four one two three four one two three four one two three' -n 48 ";
  const std::string mtp = " --mtp " + path("tiny_mtp.gguf");
  for (const std::string sampling : {"--temp 0", "--temp 0.9 --seed 5"}) {
    SCOPED_TRACE(sampling);
    const std::string base = bin() + " run -m " + path("tiny.gguf") + prompt + sampling + " --dump-tokens";
    CommandResult plain = shell(base);
    ASSERT_EQ(plain.exit_code, 0) << plain.output;
    // The timing and draft lines differ; everything else must not.
    auto without_timing = [](const std::string& out) {
      std::string kept, line;
      std::istringstream in(out);
      while (std::getline(in, line)) {
        if (line.find("tokens/s") == std::string::npos && line.rfind("drafts: ", 0) != 0) kept += line + "\n";
      }
      return kept;
    };
    const std::string with_block =
        bin() + " run -m " + path("tiny_with_mtp.gguf") + " --mtp " + path("tiny_with_mtp.gguf");
    for (const std::string& drafting : {base + " --draft 3", base + mtp, base + " --draft 3" + mtp,
                                        with_block + prompt + sampling + " --dump-tokens"}) {
      SCOPED_TRACE(drafting);
      CommandResult drafted = shell(drafting);
      ASSERT_EQ(drafted.exit_code, 0) << drafted.output;
      EXPECT_EQ(without_timing(drafted.output), without_timing(plain.output));
      if (drafting.find("--mtp") != std::string::npos) {
        EXPECT_NE(drafted.output.find("drafts: "), std::string::npos) << drafted.output;
      }
    }
  }
  CommandResult bad = shell(bin() + " run -m " + path("tiny.gguf") + " -p hi -n 2 --draft 99");
  EXPECT_NE(bad.exit_code, 0);
  EXPECT_NE(bad.output.find("--draft"), std::string::npos) << bad.output;
  CommandResult no_block = shell(bin() + " run -m " + path("tiny.gguf") + " -p hi -n 2 --mtp " + path("small.gguf"));
  EXPECT_NE(no_block.exit_code, 0);
  EXPECT_NE(no_block.output.find("no MTP block: tensor mtp.0.e_proj.weight missing"), std::string::npos)
      << no_block.output;
}

// A prompt long enough that its prefill on the small model outlasts the bar's delay (0.3 s) on
// any machine: about a second and a half at 500 tokens/s.
std::string long_prompt_file(const std::string& path) {
  std::ofstream out(path);
  for (int i = 0; i < 200; ++i) out << 100 + i << ' ';  // ~800 tokens: digits group by 3
  return path;
}

TEST_F(Run, ProgressBarOnATerminalOnly) {
  const std::string prompt = long_prompt_file(path("long.txt"));
  PtyProcess tty({"run", "-m", path("small.gguf"), "--prompt-file", prompt, "-n", "1", "--ctx", "16384"});
  ASSERT_TRUE(tty.started());
  EXPECT_EQ(tty.wait_exit(120), 0) << tty.output();
  EXPECT_NE(tty.output().find("prefill ["), std::string::npos) << tty.output();
  EXPECT_NE(tty.output().find(" tokens/s, ETA "), std::string::npos) << tty.output();
  EXPECT_NE(tty.output().find("\r\033[K"), std::string::npos);  // erased when done

  CommandResult piped = shell(bin() + " run -m " + path("small.gguf") + " --prompt-file " + prompt + " -n 1 --ctx 16384");
  EXPECT_EQ(piped.exit_code, 0) << piped.output;
  EXPECT_EQ(piped.output.find("prefill ["), std::string::npos) << piped.output;
  EXPECT_NE(piped.output.find("prompt "), std::string::npos) << piped.output;
}

TEST_F(Run, CtrlCStopsTheAnswer) {
  // The small model with this seed answers with over a thousand tokens (seconds of decoding).
  PtyProcess tty({"run", "-m", path("small.gguf"), "-p", "Please write a very long story", "-n", "60000",
                  "--ctx", "65536", "--seed", "5", "--min-p", "0"});
  ASSERT_NE(tty.wait_for("\033[2m"), std::string::npos) << tty.output();  // reasoning streams, dimmed
  tty.type("\x03");
  EXPECT_EQ(tty.wait_exit(30), 130) << tty.output();
  EXPECT_NE(tty.output().find("[interrupted]"), std::string::npos) << tty.output();
  EXPECT_NE(tty.output().find("(cancelled)"), std::string::npos) << tty.output();
}

}  // namespace
