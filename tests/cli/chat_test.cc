// dsv4 chat on a pseudo-terminal, driven as a person would: type messages, read the streamed
// answers, press Ctrl+C during a long answer and at the prompt, use every /command, save a chat
// and load it in a new process.
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <regex>
#include <string>

#include "pty_process.h"

namespace {

namespace fs = std::filesystem;
using dsv4::testing::PtyProcess;

// An empty prompt line as the editor draws it ("> " or "nothink> ", then erase-to-end).
constexpr char kPrompt[] = "> \033[K";
constexpr char kCtrlC[] = "\x03";
constexpr char kCtrlD[] = "\x04";

struct TurnStats {
  long evaluated = -1;
  long reused = -1;
  long generated = -1;
  std::string finish;
  long live = -1;
};

// The stats line the chat prints after every answer, the first one at or after `from`.
TurnStats stats_after(const std::string& out, size_t from) {
  static const std::regex re(
      R"(\[prefill (\d+) new \+ (\d+) reused tokens, [0-9.]+ tokens/s \| (\d+) tokens, [0-9.]+ tokens/s, (\w+) \| context (\d+)/(\d+)\])");
  std::smatch m;
  const std::string tail = out.substr(std::min(from, out.size()));
  TurnStats s;
  if (std::regex_search(tail, m, re)) {
    s.evaluated = std::stol(m[1]);
    s.reused = std::stol(m[2]);
    s.generated = std::stol(m[3]);
    s.finish = m[4];
    s.live = std::stol(m[5]);
  }
  return s;
}

class Chat : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = fs::temp_directory_path() / ("dsv4_chat_" + std::to_string(getpid()));
    fs::create_directories(dir_);
    const std::string small = std::string(DSV4_BINARY) + " gen-model --preset small --out " + small_model() + " > /dev/null";
    ASSERT_EQ(std::system(small.c_str()), 0);
    for (int seed : {1, 2}) {
      const std::string cmd = std::string(DSV4_BINARY) + " gen-model --preset tiny --seed " + std::to_string(seed) +
                              " --out " + model(seed) + " > /dev/null";
      ASSERT_EQ(std::system(cmd.c_str()), 0);
    }
  }
  static void TearDownTestSuite() { fs::remove_all(dir_); }
  static std::string model(int seed = 1) { return (dir_ / ("tiny" + std::to_string(seed) + ".gguf")).string(); }
  static std::string small_model() { return (dir_ / "small.gguf").string(); }
  static std::string path(const std::string& name) { return (dir_ / name).string(); }

  // A chat on the tiny model; greedy by default so that runs repeat.
  static std::vector<std::string> args(std::vector<std::string> extra = {}, int seed = 1) {
    std::vector<std::string> a = {"chat", "-m", model(seed), "--temp", "0", "-n", "24"};
    a.insert(a.end(), extra.begin(), extra.end());
    return a;
  }

  // Types a line and waits for the answer's stats line and the next prompt; the turn's stats.
  static TurnStats say(PtyProcess& chat, const std::string& text) {
    const size_t from = chat.mark();
    chat.type(text + "\r");
    const size_t stats = chat.wait_for("[prefill ", from);
    EXPECT_NE(stats, std::string::npos) << chat.output().substr(from);
    EXPECT_NE(chat.wait_for(kPrompt, stats), std::string::npos) << chat.output().substr(from);
    return stats_after(chat.output(), from);
  }

  // Types a command and returns what it printed up to the next prompt.
  static std::string command(PtyProcess& chat, const std::string& text) {
    const size_t from = chat.mark();
    chat.type(text + "\r");
    // The editor ends the line with "\r\n" (redraws while typing never do), then the output,
    // then the next prompt.
    const size_t entered = chat.wait_for("\r\n", from);
    const size_t end = chat.wait_for(kPrompt, entered == std::string::npos ? from : entered);
    EXPECT_NE(end, std::string::npos) << chat.output().substr(from);
    return chat.output().substr(from, end == std::string::npos ? std::string::npos : end - from);
  }

  static fs::path dir_;
};
fs::path Chat::dir_;

TEST_F(Chat, TurnsStreamAnswersAndOnlyTheNewTurnIsPrefilled) {
  PtyProcess chat(args());
  ASSERT_TRUE(chat.started());
  ASSERT_NE(chat.wait_for("/help for commands"), std::string::npos) << chat.output();
  ASSERT_NE(chat.wait_for(kPrompt), std::string::npos);

  const TurnStats first = say(chat, "Hello there");
  EXPECT_EQ(first.reused, 0);
  EXPECT_GT(first.evaluated, 5);
  EXPECT_GT(first.generated, 0);
  // Thinking mode: the next prompt drops this answer's reasoning, so the state is rolled back to
  // the checkpoint just before this prompt's final "<think>" and nothing before it is evaluated.
  const TurnStats second = say(chat, "And a second question");
  EXPECT_EQ(second.reused, first.evaluated - 1);
  const TurnStats third = say(chat, "Third");
  EXPECT_EQ(third.reused, second.reused + second.evaluated - 1);
  EXPECT_LT(third.evaluated, second.evaluated + 30);

  // Without thinking the answer stays in the re-rendered conversation. The random model's tokens
  // are rarely the canonical BPE of their text, so the state goes back at most to the checkpoint
  // before the previous prompt's last token.
  command(chat, "/nothink");
  const TurnStats fourth = say(chat, "No thinking now");
  const TurnStats fifth = say(chat, "Again");
  EXPECT_GE(fifth.reused, fourth.reused + fourth.evaluated - 1);

  chat.type(kCtrlD);
  EXPECT_EQ(chat.wait_exit(), 0);
}

TEST_F(Chat, CtrlCStopsALongAnswerAndTheChatGoesOn) {
  // The small model with this seed answers this prompt with over a thousand tokens before its
  // EOS (seconds of decoding): long enough to be interrupted in the middle.
  PtyProcess chat({"chat", "-m", small_model(), "--seed", "5", "--min-p", "0", "-n", "100000", "--ctx", "65536"});
  ASSERT_NE(chat.wait_for(kPrompt), std::string::npos) << chat.output();
  const size_t from = chat.mark();
  chat.type("Please write a very long story\r");
  // Interrupt once the answer streams (the reasoning is dimmed).
  ASSERT_NE(chat.wait_for("\033[2m", from), std::string::npos) << chat.output().substr(from);
  chat.type(kCtrlC);
  const size_t interrupted = chat.wait_for("[interrupted]", from, 60);
  ASSERT_NE(interrupted, std::string::npos) << chat.output().substr(from);
  ASSERT_NE(chat.wait_for(kPrompt, interrupted), std::string::npos);
  const TurnStats stopped = stats_after(chat.output(), from);
  EXPECT_EQ(stopped.finish, "cancelled");
  EXPECT_GT(stopped.generated, 0);
  EXPECT_LT(stopped.generated, 1000);
  EXPECT_EQ(stopped.reused, 0);

  // The next turn works and evaluates only the new turn: the partial answer stays in the
  // conversation, its reasoning is dropped by the template and undone through the checkpoint.
  const TurnStats next = say(chat, "Thanks");
  EXPECT_EQ(next.reused, stopped.evaluated - 1);
  EXPECT_LT(next.evaluated, 40);
  // Two turns, the interrupted answer included.
  EXPECT_NE(command(chat, "/save " + path("interrupted.dsv4chat")).find("saved 4 messages"), std::string::npos);
  chat.type("/quit\r");
  EXPECT_EQ(chat.wait_exit(), 0);
}

TEST_F(Chat, CtrlCAtThePromptClearsTheLineAndTwiceQuits) {
  PtyProcess chat(args());
  ASSERT_NE(chat.wait_for(kPrompt), std::string::npos) << chat.output();
  size_t from = chat.mark();
  chat.type("half a thought");
  chat.type(kCtrlC);
  ASSERT_NE(chat.wait_for("Ctrl+C again or Ctrl+D to quit", from), std::string::npos) << chat.output().substr(from);
  sleep(3);  // not "twice quickly"
  // The cleared line was not sent; the chat still works.
  EXPECT_NE(command(chat, "/help").find("/think-max"), std::string::npos);
  EXPECT_EQ(chat.output().find("[prefill"), std::string::npos);
  chat.type(kCtrlC);
  chat.type(kCtrlC);
  EXPECT_EQ(chat.wait_exit(), 0);
}

TEST_F(Chat, LineEditingAndHistory) {
  PtyProcess chat(args());
  ASSERT_NE(chat.wait_for(kPrompt), std::string::npos) << chat.output();
  // "/hxlp", Left Left, Backspace, "e", End: "/help".
  std::string out = command(chat, "/hxlp\033[D\033[D\x7f" "e\033[F");
  EXPECT_NE(out.find("Commands:"), std::string::npos) << out;
  // Up recalls the last line.
  out = command(chat, "\033[A");
  EXPECT_NE(out.find("Commands:"), std::string::npos) << out;
  // Ctrl+A then typing inserts at the start; Ctrl+U kills the line.
  out = command(chat, "ctx 4096\x01/");
  EXPECT_NE(out.find("context 4096 tokens"), std::string::npos) << out;
  out = command(chat, "garbage\x15/think");
  EXPECT_NE(out.find("thinking on"), std::string::npos) << out;
  chat.type(kCtrlD);
  EXPECT_EQ(chat.wait_exit(), 0);
}

TEST_F(Chat, CommandsAndBadInput) {
  std::ofstream(path("question.txt")) << "What is in this file?";
  PtyProcess chat(args());
  ASSERT_NE(chat.wait_for(kPrompt), std::string::npos) << chat.output();

  EXPECT_NE(command(chat, "/help").find("/read FILE"), std::string::npos);
  EXPECT_NE(command(chat, "/nothink").find("thinking off"), std::string::npos);
  EXPECT_NE(chat.output().find("\rnothink> \033[K"), std::string::npos);  // the prompt says so
  EXPECT_NE(command(chat, "/think").find("thinking on"), std::string::npos);
  std::string out = command(chat, "/think-max");
  EXPECT_NE(out.find("maximum effort"), std::string::npos) << out;
  EXPECT_NE(out.find("384K"), std::string::npos) << out;
  command(chat, "/think");

  EXPECT_NE(command(chat, "/frobnicate").find("unknown command /frobnicate"), std::string::npos);
  EXPECT_NE(command(chat, "/ctx lots").find("/ctx needs a positive number"), std::string::npos);
  EXPECT_NE(command(chat, "/ctx -5").find("/ctx needs a positive number"), std::string::npos);
  EXPECT_NE(command(chat, "/ctx 1099511627776").find("is available"), std::string::npos);
  EXPECT_NE(command(chat, "/read " + path("missing.txt")).find("missing.txt: cannot open"), std::string::npos);
  EXPECT_NE(command(chat, "/read").find("/read needs a file name"), std::string::npos);
  EXPECT_NE(command(chat, "/save").find("/save needs a file name"), std::string::npos);
  EXPECT_NE(command(chat, "/load " + path("missing.chat")).find("cannot open"), std::string::npos);
  EXPECT_NE(command(chat, "/load " + path("question.txt")).find("not a dsv4 chat file"), std::string::npos);

  // After all that the chat works; /read sends the file.
  const size_t from = chat.mark();
  chat.type("/read " + path("question.txt") + "\r");
  ASSERT_NE(chat.wait_for("(21 bytes)", from), std::string::npos) << chat.output().substr(from);
  const size_t read_stats = chat.wait_for("[prefill ", from);
  ASSERT_NE(read_stats, std::string::npos) << chat.output().substr(from);
  ASSERT_NE(chat.wait_for(kPrompt, read_stats), std::string::npos);
  const TurnStats read = stats_after(chat.output(), from);
  EXPECT_GT(read.evaluated, 10);

  // /ctx keeps the conversation when it fits, and refuses a context that is too small for it.
  EXPECT_NE(command(chat, "/ctx 2048").find("context 2048 tokens"), std::string::npos);
  EXPECT_NE(command(chat, "/ctx 10").find("more than a context of 10"), std::string::npos);
  // The resized session holds the conversation up to the next turn (the answer re-rendered
  // without its reasoning, then "<｜User｜>"): that is reused.
  const TurnStats after_resize = say(chat, "Still there?");
  EXPECT_GE(after_resize.reused, read.evaluated + 2);
  EXPECT_LT(after_resize.evaluated, 20);

  // A message that does not fit the context is refused, and the chat goes on.
  {
    std::ofstream long_file(path("long.txt"));
    for (int i = 0; i < 2000; ++i) long_file << 10000 + i << ' ';  // digits group by 3: > 2048 tokens
  }
  EXPECT_NE(command(chat, "/read " + path("long.txt")).find("enlarge it with /ctx N"), std::string::npos);

  EXPECT_NE(command(chat, "/reset").find("conversation cleared"), std::string::npos);
  const TurnStats fresh = say(chat, "Hello again");
  EXPECT_LT(fresh.live, after_resize.live);

  chat.type("/quit\r");
  EXPECT_EQ(chat.wait_exit(), 0);
}

TEST_F(Chat, SaveThenLoadInANewProcessContinuesWithoutPrefill) {
  const std::string file = path("conversation.dsv4chat");
  long saved_tokens = 0;
  std::string first_answer_stats;
  {
    PtyProcess chat(args({"--system", "You are terse."}));
    ASSERT_NE(chat.wait_for(kPrompt), std::string::npos) << chat.output();
    say(chat, "Remember the number 42");
    const std::string out = command(chat, "/save " + file);
    std::smatch m;
    ASSERT_TRUE(std::regex_search(out, m, std::regex(R"(saved 2 messages and (\d+) tokens of state)"))) << out;
    saved_tokens = std::stol(m[1]);
    // The same process continues from the saved point without evaluating it again.
    const TurnStats next = say(chat, "What was it?");
    EXPECT_EQ(next.reused, saved_tokens);
    chat.type("/quit\r");
    EXPECT_EQ(chat.wait_exit(), 0);
  }
  ASSERT_TRUE(fs::exists(file));
  {
    PtyProcess chat(args());
    ASSERT_NE(chat.wait_for(kPrompt), std::string::npos) << chat.output();
    const std::string out = command(chat, "/load " + file);
    EXPECT_NE(out.find("loaded 2 messages and " + std::to_string(saved_tokens) + " tokens of state"), std::string::npos)
        << out;
    const TurnStats next = say(chat, "What was it?");
    EXPECT_EQ(next.reused, saved_tokens);  // nothing of the loaded conversation is evaluated again
    EXPECT_LT(next.evaluated, 20);
    chat.type("/quit\r");
    EXPECT_EQ(chat.wait_exit(), 0);
  }
  {
    // --load at start does the same.
    PtyProcess chat(args({"--load", file}));
    ASSERT_NE(chat.wait_for(kPrompt), std::string::npos) << chat.output();
    EXPECT_EQ(say(chat, "What was it?").reused, saved_tokens);
    chat.type(kCtrlD);
    EXPECT_EQ(chat.wait_exit(), 0);
  }
  {
    // Another model (another seed: same shapes, other weights) refuses the file and goes on.
    PtyProcess chat(args({}, 2));
    ASSERT_NE(chat.wait_for(kPrompt), std::string::npos) << chat.output();
    const std::string out = command(chat, "/load " + file);
    EXPECT_NE(out.find("saved with another model"), std::string::npos) << out;
    EXPECT_EQ(say(chat, "Hi").reused, 0);
    chat.type(kCtrlD);
    EXPECT_EQ(chat.wait_exit(), 0);
  }
  {
    // A damaged file is refused.
    std::string bytes;
    {
      std::ifstream in(file, std::ios::binary);
      bytes.assign(std::istreambuf_iterator<char>(in), {});
    }
    bytes[bytes.size() - 40] ^= 0x55;
    std::ofstream(path("damaged.dsv4chat"), std::ios::binary) << bytes;
    PtyProcess chat(args());
    ASSERT_NE(chat.wait_for(kPrompt), std::string::npos) << chat.output();
    const std::string out = command(chat, "/load " + path("damaged.dsv4chat"));
    EXPECT_NE(out.find("error: "), std::string::npos) << out;
    EXPECT_NE(out.find("damaged.dsv4chat"), std::string::npos) << out;
    chat.type(kCtrlD);
    EXPECT_EQ(chat.wait_exit(), 0);
  }
}

TEST_F(Chat, ReadsLinesFromAPipe) {
  const std::string cmd = "printf 'Hi\\n/nothink\\nBye\\n' | " + std::string(DSV4_BINARY) + " chat -m " + model() +
                          " --temp 0 -n 8 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  std::string out;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  EXPECT_EQ(pclose(p), 0) << out;
  EXPECT_EQ(stats_after(out, 0).reused, 0) << out;
  EXPECT_NE(out.find("thinking off"), std::string::npos) << out;
  EXPECT_EQ(out.find("\033["), std::string::npos) << out;  // no terminal control on a pipe
}

}  // namespace
