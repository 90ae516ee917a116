// dsv4 chat: an interactive multi-turn conversation that keeps the live state between turns
// (chat_session.h), with line editing and history (line_editor.h), /commands, a prefill progress
// bar, and Ctrl+C to stop an answer without losing the conversation (interrupt.h).
#include <unistd.h>

#include <charconv>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>

#include "cli/chat_session.h"
#include "cli/commands.h"
#include "cli/interrupt.h"
#include "cli/line_editor.h"
#include "cli/loaded_model.h"
#include "cli/progress_bar.h"
#include "cli/stream_printer.h"

namespace dsv4::cli {
namespace {

struct ChatOptions {
  ModelOptions model;
  std::string system;
  bool nothink = false;
  std::string think;  // "", "high", "max"
  int64_t n_predict = 4096;
  int64_t ctx = 16384;
  engine::SamplingParams sampling;
  int draft_tokens = 0;
  std::string load;
};

// The model card asks for at least this much context for Think-Max (PROTOCOL.md §2.6).
constexpr int64_t kThinkMaxContext = 393216;

constexpr const char* kHelp =
    "Type a message and press Enter. Commands:\n"
    "  /help          this text\n"
    "  /think         thinking mode (the default): the model reasons before it answers\n"
    "  /think-max     thinking with maximum effort (best with a context of 384K or more)\n"
    "  /nothink       answer directly, without reasoning\n"
    "  /ctx N         set the context to N tokens (keeps the conversation if it fits)\n"
    "  /read FILE     send the contents of FILE as your message (text after the name comes first)\n"
    "  /save FILE     save the conversation and the model state\n"
    "  /load FILE     continue a saved conversation (same model file)\n"
    "  /reset         forget the conversation\n"
    "  /quit          leave (also Ctrl+D on an empty line, or Ctrl+C twice)\n"
    "Ctrl+C stops an answer; what was shown of it stays in the conversation.\n";

Result<std::string> read_text_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return make_error(path + ": cannot open");
  std::stringstream ss;
  ss << in.rdbuf();
  if (in.bad()) return make_error(path + ": read error");
  return ss.str();
}

class ChatLoop {
 public:
  ChatLoop(ChatSession& chat, LineEditor& editor) : chat_(chat), editor_(editor) {}

  void run() {
    for (;;) {
      LineEditor::Input in = editor_.read(prompt());
      if (in.outcome == LineEditor::Outcome::kEnd) return;
      if (in.outcome == LineEditor::Outcome::kInterrupted) {
        const auto now = std::chrono::steady_clock::now();
        if (now - last_interrupt_ < std::chrono::seconds(2)) return;
        last_interrupt_ = now;
        note("(Ctrl+C again or Ctrl+D to quit)");
        continue;
      }
      const std::string line = trim(in.line);
      if (line.empty()) continue;
      editor_.remember(line);
      if (line[0] == '/') {
        if (!command(line)) return;
      } else {
        send(line);
      }
    }
  }

 private:
  static std::string trim(const std::string& s) {
    const size_t b = s.find_first_not_of(" \t\r\n");
    if (b == std::string::npos) return "";
    return s.substr(b, s.find_last_not_of(" \t\r\n") - b + 1);
  }

  std::string prompt() const {
    if (!editor_.interactive()) return "";
    return chat_.settings().thinking == chat::ThinkingMode::chat ? "nothink> " : "> ";
  }

  // Messages for the user go to stderr (dimmed on a terminal) so that stdout holds the answers.
  static void note(const std::string& text) {
    const bool tty = isatty(STDERR_FILENO) != 0;
    std::fprintf(stderr, "%s%s%s\n", tty ? "\033[2m" : "", text.c_str(), tty ? "\033[0m" : "");
    std::fflush(stderr);
  }
  static void error(const std::string& text) {
    std::fprintf(stderr, "error: %s\n", text.c_str());
    std::fflush(stderr);
  }

  // Returns false to quit.
  bool command(const std::string& line) {
    const size_t space = line.find(' ');
    const std::string name = line.substr(0, space);
    const std::string arg = space == std::string::npos ? "" : trim(line.substr(space + 1));
    ChatSettings& s = chat_.settings();
    if (name == "/quit" || name == "/exit") return false;
    if (name == "/help") {
      std::fputs(kHelp, stderr);
    } else if (name == "/think") {
      s.thinking = chat::ThinkingMode::thinking;
      s.effort = chat::Effort::none;
      note("thinking on");
    } else if (name == "/think-max") {
      s.thinking = chat::ThinkingMode::thinking;
      s.effort = chat::Effort::max;
      note("thinking on, maximum effort");
      if (chat_.n_ctx() < kThinkMaxContext) {
        note("note: the model card asks for a context of at least 384K tokens for maximum effort (now " +
             std::to_string(chat_.n_ctx()) + ")");
      }
    } else if (name == "/nothink") {
      s.thinking = chat::ThinkingMode::chat;
      s.effort = chat::Effort::none;
      note("thinking off");
    } else if (name == "/ctx") {
      int64_t n = 0;
      const auto [end, ec] = std::from_chars(arg.data(), arg.data() + arg.size(), n);
      if (arg.empty() || ec != std::errc() || end != arg.data() + arg.size() || n < 1) {
        error("/ctx needs a positive number of tokens, e.g. /ctx 32768 (got '" + arg + "')");
      } else if (Status st = chat_.resize(n); !st.ok()) {
        error(st.message());
      } else {
        note("context " + std::to_string(chat_.n_ctx()) + " tokens");
      }
    } else if (name == "/read") {
      const size_t split = arg.find(' ');
      const std::string path = arg.substr(0, split);
      if (path.empty()) {
        error("/read needs a file name");
        return true;
      }
      Result<std::string> text = read_text_file(path);
      if (!text.ok()) {
        error(text.error().message);
        return true;
      }
      const std::string before = split == std::string::npos ? "" : trim(arg.substr(split + 1));
      note("read " + path + " (" + std::to_string(text->size()) + " bytes)");
      send(before.empty() ? *text : before + "\n\n" + *text);
    } else if (name == "/save" || name == "/load") {
      if (arg.empty()) {
        error(name + " needs a file name");
      } else if (Status st = name == "/save" ? chat_.save(arg) : chat_.load(arg); !st.ok()) {
        error(st.message());
      } else if (name == "/save") {
        note("saved " + std::to_string(chat_.messages().size()) + " messages and " +
             std::to_string(chat_.live_tokens()) + " tokens of state to " + arg);
      } else {
        note("loaded " + std::to_string(chat_.messages().size()) + " messages and " +
             std::to_string(chat_.live_tokens()) + " tokens of state from " + arg);
      }
    } else if (name == "/reset") {
      chat_.reset();
      note("conversation cleared");
    } else {
      error("unknown command " + name + " (/help lists them)");
    }
    return true;
  }

  void send(const std::string& text) {
    InterruptScope interrupt;
    ProgressBar bar(stderr);
    const bool color = isatty(STDOUT_FILENO) != 0;
    StreamPrinter printer(stdout, color);
    TurnHooks hooks;
    hooks.progress = [&](int64_t done, int64_t total) {
      bar.update(done, total);
      return !interrupt.requested();
    };
    hooks.generate.on_events = [&](std::span<const chat::StreamEvent> events) {
      bar.clear();
      printer.print(events);
      return true;
    };
    hooks.generate.should_cancel = [&] { return interrupt.requested(); };
    Result<TurnReport> r = chat_.turn(text, hooks);
    bar.clear();
    printer.end();
    if (!r.ok()) {
      error(r.error().message);
      return;
    }
    if (r->prefill_stopped) {
      note("[interrupted during the prefill; the message was not sent]");
      return;
    }
    const generation::GenerateResult& g = r->generation;
    if (g.finish == generation::Finish::kCancelled) note("[interrupted]");
    if (g.finish == generation::Finish::kError) error(g.error);
    if (g.finish == generation::Finish::kLength && chat_.live_tokens() >= chat_.n_ctx()) {
      note("[the context is full: /ctx N to enlarge it, /reset to start over]");
    }
    const double prefill_rate = static_cast<double>(r->evaluated) / std::max(r->prefill_seconds, 1e-9);
    const double decode_rate = static_cast<double>(g.tokens.size()) / std::max(g.decode_seconds, 1e-9);
    char stats[256];
    std::snprintf(stats, sizeof stats,
                  "[prefill %lld new + %lld reused tokens, %.1f tokens/s | %zu tokens, %.1f tokens/s, %s | "
                  "context %lld/%lld]",
                  static_cast<long long>(r->evaluated), static_cast<long long>(r->reused), prefill_rate,
                  g.tokens.size(), decode_rate, generation::finish_name(g.finish),
                  static_cast<long long>(chat_.live_tokens()), static_cast<long long>(chat_.n_ctx()));
    note(stats);
  }

  ChatSession& chat_;
  LineEditor& editor_;
  std::chrono::steady_clock::time_point last_interrupt_{};
};

Status run_chat(ChatOptions o) {
  ChatSettings settings;
  settings.system = o.system;
  settings.max_tokens = o.n_predict;
  settings.draft_tokens = o.draft_tokens;
  if (o.nothink) settings.thinking = chat::ThinkingMode::chat;
  if (o.think == "max") settings.effort = chat::Effort::max;
  else if (!o.think.empty() && o.think != "high") return make_error("--think must be high or max");
  settings.sampling = o.sampling;
  DSV4_TRY(engine::validate(settings.sampling));

  DSV4_ASSIGN_OR_RETURN(LoadedModel model, load_model(o.model));
  ChatSession chat(model, settings);
  DSV4_TRY(chat.open(o.ctx));
  if (!o.load.empty()) DSV4_TRY(chat.load(o.load));

  LineEditor editor(STDIN_FILENO, STDOUT_FILENO);
  if (editor.interactive()) {
    std::fprintf(stderr, "dsv4 chat: %s (%s), context %lld tokens, %s. /help for commands, Ctrl+D to quit.\n",
                 model.path.c_str(), model.engine->config().name.c_str(), static_cast<long long>(chat.n_ctx()),
                 chat.settings().thinking == chat::ThinkingMode::thinking ? "thinking" : "no thinking");
  }
  ChatLoop(chat, editor).run();
  return Status();
}

}  // namespace

void register_chat(CLI::App& app) {
  auto o = std::make_shared<ChatOptions>();
  CLI::App* cmd = app.add_subcommand("chat", "Interactive multi-turn chat (the state is kept between turns)");
  add_model_options(cmd, o->model);
  add_draft_option(cmd, o->draft_tokens);
  cmd->add_option("--system", o->system, "System message");
  cmd->add_flag("--nothink", o->nothink, "Answer without reasoning (/think and /nothink switch)");
  cmd->add_option("--think", o->think, "Reasoning effort: high or max");
  cmd->add_option("-n,--n-predict", o->n_predict, "Maximum tokens of one answer (default 4096)")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--ctx", o->ctx, "Context size in tokens (default 16384)")->check(CLI::PositiveNumber);
  add_sampling_options(cmd, o->sampling);
  cmd->add_option("--load", o->load, "Start from a conversation saved with /save");
  cmd->callback([o, cmd] {
    // Without --seed each run samples differently; each turn gets the next seed.
    if (cmd->count("--seed") == 0) o->sampling.seed = engine::entropy_seed();
    Status s = run_chat(*o);
    if (!s.ok()) std::fprintf(stderr, "dsv4 chat: %s\n", s.message().c_str());
    set_exit_code(s.ok() ? 0 : 1);
  });
}

}  // namespace dsv4::cli
