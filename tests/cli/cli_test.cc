// Drives the dsv4 binary as a user would: exit codes, messages and output files.
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "util/sha256.h"

namespace {

namespace fs = std::filesystem;

struct CommandResult {
  int exit_code;
  std::string output;  // stdout and stderr
};

CommandResult run(const std::string& args) {
  const std::string cmd = std::string(DSV4_BINARY) + " " + args + " 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  std::string out;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  const int status = pclose(p);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
}

std::string read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

class Cli : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("dsv4_cli_" + std::to_string(getpid()));
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string path(const std::string& name) const { return (dir_ / name).string(); }
  fs::path dir_;
};

TEST_F(Cli, GenModelIsDeterministic) {
  ASSERT_EQ(run("gen-model --preset tiny --seed 3 --out " + path("a.gguf")).exit_code, 0);
  ASSERT_EQ(run("gen-model --preset tiny --seed 3 --out " + path("b.gguf")).exit_code, 0);
  ASSERT_EQ(run("gen-model --preset tiny --seed 4 --out " + path("c.gguf")).exit_code, 0);
  const std::string a = read_file(path("a.gguf")), b = read_file(path("b.gguf")), c = read_file(path("c.gguf"));
  EXPECT_GT(a.size(), 100000u);
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);
}

TEST_F(Cli, GenModelRejectsBadArguments) {
  CommandResult r = run("gen-model --preset nope --out " + path("x.gguf"));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("unknown preset 'nope'"), std::string::npos) << r.output;
  r = run("gen-model --preset tiny --types f8 --out " + path("x.gguf"));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_FALSE(fs::exists(path("x.gguf")));
}

TEST_F(Cli, InspectReportsVerdict) {
  ASSERT_EQ(run("gen-model --preset tiny --out " + path("t.gguf")).exit_code, 0);
  CommandResult r = run("inspect " + path("t.gguf") + " --ctx 4096");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("verdict     OK"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("deepseek4.attention.compress_ratios"), std::string::npos);
  EXPECT_NE(r.output.find("blk.1.indexer.attn_q_b.weight"), std::string::npos);
}

TEST_F(Cli, InspectRejectsCorruptFiles) {
  ASSERT_EQ(run("gen-model --preset tiny --out " + path("t.gguf")).exit_code, 0);
  std::string bytes = read_file(path("t.gguf"));
  {
    std::ofstream(path("truncated.gguf"), std::ios::binary) << bytes.substr(0, bytes.size() / 2);
    CommandResult r = run("inspect " + path("truncated.gguf"));
    EXPECT_EQ(r.exit_code, 1) << r.output;
    EXPECT_NE(r.output.find("truncated.gguf"), std::string::npos) << r.output;
  }
  {
    std::string bad = bytes;
    bad[0] = 'X';
    std::ofstream(path("magic.gguf"), std::ios::binary) << bad;
    CommandResult r = run("inspect " + path("magic.gguf"));
    EXPECT_EQ(r.exit_code, 1);
    EXPECT_NE(r.output.find("magic"), std::string::npos) << r.output;
  }
  CommandResult r = run("inspect " + path("missing.gguf"));
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("cannot open"), std::string::npos) << r.output;
}

TEST_F(Cli, LogitsWritesEveryPosition) {
  ASSERT_EQ(run("gen-model --preset tiny --out " + path("t.gguf")).exit_code, 0);
  CommandResult r = run("logits -m " + path("t.gguf") + " --tokens 0,10,20,30,40 --out " + path("l.bin"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(fs::file_size(path("l.bin")), 5u * 512u * 4u);
  // One line per position: index, token, argmax, logit.
  EXPECT_NE(r.output.find("4\t40\t"), std::string::npos) << r.output;
  // Plain and official modes differ once the FP8 KV simulation rounds something.
  ASSERT_EQ(run("logits -m " + path("t.gguf") + " --mode plain --tokens 0,10,20,30,40 --out " + path("p.bin")).exit_code, 0);
  EXPECT_NE(read_file(path("l.bin")), read_file(path("p.bin")));
}

TEST_F(Cli, LogitsRejectsBadInput) {
  ASSERT_EQ(run("gen-model --preset tiny --out " + path("t.gguf")).exit_code, 0);
  CommandResult r = run("logits -m " + path("t.gguf") + " --tokens 0,99999 --out " + path("l.bin"));
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("outside the vocabulary"), std::string::npos) << r.output;
  r = run("logits -m " + path("t.gguf") + " --tokens 0,x --out " + path("l.bin"));
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("'x' is not a token id"), std::string::npos) << r.output;
  r = run("logits -m " + path("t.gguf") + " --mode fancy --tokens 0 --out " + path("l.bin"));
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("unknown mode"), std::string::npos) << r.output;
  r = run("logits -m " + path("nothere.gguf") + " --tokens 0 --out " + path("l.bin"));
  EXPECT_EQ(r.exit_code, 1);
}

}  // namespace

namespace {

TEST_F(Cli, RunGeneratesAndReportsSpeeds) {
  ASSERT_EQ(run("gen-model --preset tiny --out " + path("t.gguf")).exit_code, 0);
  CommandResult r = run("run -m " + path("t.gguf") + " -p 'Hello there' -n 12 --seed 3");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("prompt 9 tokens"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("decode"), std::string::npos) << r.output;
  // Same seed, same text; greedy ignores the seed.
  EXPECT_EQ(run("run -m " + path("t.gguf") + " -p 'Hello there' -n 12 --seed 3").output.substr(0, 60),
            r.output.substr(0, 60));
  r = run("run -m " + path("t.gguf") + " -p '' -n 3");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("empty prompt"), std::string::npos) << r.output;
  r = run("run -m " + path("t.gguf") + " -p hi -n 3 --top-p 2");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("top_p"), std::string::npos) << r.output;
  r = run("run -m " + path("missing.gguf") + " -p hi");
  EXPECT_EQ(r.exit_code, 1);
}

TEST_F(Cli, TokenizeAndRenderUseTheModelVocabulary) {
  ASSERT_EQ(run("gen-model --preset tiny --out " + path("t.gguf")).exit_code, 0);
  CommandResult r = run("tokenize --model " + path("t.gguf") + " --text 'the model'");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_FALSE(r.output.empty());
  std::ofstream(path("req.json")) << R"({"messages":[{"role":"user","content":"Hi"}]})";
  r = run("render --request " + path("req.json"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("<｜User｜>Hi<｜Assistant｜>"), std::string::npos) << r.output;
  std::ofstream(path("bad.json")) << "{not json";
  EXPECT_NE(run("render --request " + path("bad.json")).exit_code, 0);
}

}  // namespace
