#include "generation/generator.h"

#include <algorithm>
#include <chrono>
#include <optional>
#include <utility>

#include "generation/draft.h"
#include "generation/stop_filter.h"
#include "tokenizer/stream_decoder.h"

namespace dsv4::generation {

const char* finish_name(Finish finish) {
  switch (finish) {
    case Finish::kStop: return "stop";
    case Finish::kLength: return "length";
    case Finish::kToolCalls: return "tool_calls";
    case Finish::kCancelled: return "cancelled";
    case Finish::kError: return "error";
  }
  return "error";
}

namespace {

// Routes the parser's events through the stop filter into the result and the caller's batch.
class EventSink {
 public:
  EventSink(const GenerateOptions& options, GenerateResult& result)
      : stops_(options.stop), result_(result) {}

  // Returns true when a stop sequence matched (nothing after it is kept).
  bool route(const std::vector<chat::StreamEvent>& events) {
    for (const chat::StreamEvent& e : events) {
      if (stops_.matched()) return true;
      switch (e.kind) {
        case chat::StreamEventKind::reasoning:
          result_.reasoning += e.text;
          batch_.push_back(e);
          break;
        case chat::StreamEventKind::content: {
          StopFilter::Output out = stops_.push(e.text);
          add_content(std::move(out.released));
          if (out.matched) {
            result_.stop_sequence = *out.matched;
            return true;
          }
          break;
        }
        default:
          // Visible text ended where tool markup begins: what was held cannot become a match.
          add_content(stops_.flush());
          result_.tool_events.push_back(e);
          batch_.push_back(e);
          break;
      }
    }
    return stops_.matched();
  }

  void flush_content() { add_content(stops_.flush()); }

  // Hands the batch to the caller; false when the caller wants to stop.
  bool deliver(const GenerateCallbacks& callbacks) {
    bool keep_going = true;
    if (!batch_.empty() && callbacks.on_events) keep_going = callbacks.on_events(batch_);
    batch_.clear();
    return keep_going;
  }

 private:
  void add_content(std::string text) {
    if (text.empty()) return;
    result_.content += text;
    if (!batch_.empty() && batch_.back().kind == chat::StreamEventKind::content) {
      batch_.back().text += text;
    } else {
      chat::StreamEvent event;
      event.kind = chat::StreamEventKind::content;
      event.text = std::move(text);
      batch_.push_back(std::move(event));
    }
  }

  StopFilter stops_;
  GenerateResult& result_;
  std::vector<chat::StreamEvent> batch_;
};

}  // namespace

Generator::Generator(const tokenizer::Tokenizer& tokenizer, const tokenizer::SpecialTokens& special)
    : tokenizer_(tokenizer), special_(special) {}

Result<GenerateResult> Generator::generate(engine::Session& session, const GenerateOptions& options,
                                           const GenerateCallbacks& callbacks) const {
  if (session.tokens().empty()) return make_error("generate: the session holds no prompt");
  DSV4_ASSIGN_OR_RETURN(engine::Sampler sampler,
                        engine::Sampler::create(static_cast<int32_t>(session.logits().size()),
                                                options.sampling));
  const auto start = std::chrono::steady_clock::now();
  GenerateResult result;
  EventSink sink(options, result);
  tokenizer::StreamDecoder decoder(tokenizer_);
  chat::DsmlStreamParser parser(options.stream);
  std::vector<chat::StreamEvent> events;

  const int64_t free_ctx = session.n_ctx() - static_cast<int64_t>(session.tokens().size());
  const int64_t budget = std::min(std::max<int64_t>(options.max_tokens, 0), free_ctx);
  result.finish = Finish::kLength;

  auto fail = [&](const Status& s) {
    result.finish = Finish::kError;
    result.error = s.message();
  };
  // One sampled token through the output rules; true when the generation ends with it (then it is
  // not evaluated).
  auto take = [&](const engine::Sample& sample) {
    const int32_t token = sample.token;
    result.tokens.push_back(token);
    if (callbacks.on_token) callbacks.on_token(sample);
    if (token == special_.eos) {
      result.finish = Finish::kStop;
      return true;
    }
    if (options.stream.mode == chat::ThinkingMode::thinking && !parser.saw_think_end()) {
      ++result.reasoning_tokens;
    }
    Result<std::string> text = decoder.push(token);
    if (!text.ok()) {
      fail(text.status());
      return true;
    }
    events.clear();
    parser.feed(*text, events);
    bool done = false;
    if (sink.route(events)) {
      // The text is cut before the stop sequence; the token carrying it is not evaluated.
      result.finish = Finish::kStop;
      done = true;
    }
    if (!sink.deliver(callbacks)) {
      result.finish = Finish::kCancelled;
      done = true;
    }
    return done;
  };
  // After a token was evaluated: whether the generation ends there (a tool-call block closed).
  auto closes_tool_call = [&]() {
    if (!options.stream.tools_active || !parser.block_closed()) return false;
    result.finish = Finish::kToolCalls;
    return true;
  };
  auto sample_mode = [&]() {
    const bool structural = options.stream.tools_active && parser.in_tool_structure();
    return structural ? engine::Sampler::Mode::kRawGreedy : engine::Sampler::Mode::kParams;
  };

  const bool lookup = options.draft_tokens > 0;
  const bool mtp = options.mtp_drafts && session.has_mtp();
  const bool drafting = lookup || mtp;
  const int most_drafted = std::max(options.draft_tokens, 1);
  std::optional<NgramDrafter> drafter;
  if (lookup) drafter.emplace(session.tokens());
  DraftLength draft_length;
  int64_t step = 0;                 // tokens sampled
  std::optional<int32_t> unevaluated;  // sampled, taken, not yet evaluated
  // The next token, drawn where the session keeps the logits: from row `row` of a draft run's, else
  // from the last token's (step_ahead: the session may start evaluating it). Nothing when the
  // generation ends before it (cancelled, an error) or with it (take).
  auto draw = [&](std::optional<size_t> row, bool step_ahead) -> std::optional<int32_t> {
    if (callbacks.should_cancel && callbacks.should_cancel()) {
      result.finish = Finish::kCancelled;
      return std::nullopt;
    }
    Result<engine::Sample> sample = row ? session.sample_draft_row(sampler, sample_mode(), *row)
                                        : session.sample(sampler, sample_mode(), step_ahead);
    if (!sample.ok()) {
      fail(sample.status());
      return std::nullopt;
    }
    ++step;
    if (take(*sample)) return std::nullopt;
    return sample->token;
  };
  bool done = false;
  while (!done) {
    // The longest draft the next run may carry (0 while the policy pauses drafting).
    const int allowed = drafting ? draft_length.next(most_drafted) : 0;
    if (!unevaluated) {
      if (step >= budget) break;
      // Where a draft is likely to follow (the context's last n-gram occurred before, or the MTP
      // block guesses), no step ahead: a backend that samples on its device would queue the sampled
      // token's step at once, which the draft's run would then have to undo.
      const bool draft_likely = allowed > 0 && (mtp || !drafter->propose(1).empty());
      unevaluated = draw(std::nullopt, !draft_likely);
      if (!unevaluated) break;
    }
    const int32_t token = *unevaluated;
    unevaluated.reset();
    std::vector<int32_t> run{token};
    // The run: the token, then as much of the draft as the policy allows and the session takes in
    // one run: the lookup's where the text repeats, else the MTP block's guess.
    const int64_t most = 1 + std::min<int64_t>(allowed, budget - step);
    if (lookup) {
      drafter->push(token);
      std::vector<int32_t> draft = drafter->propose(static_cast<int>(session.draft_run_length(most) - 1));
      draft.resize(static_cast<size_t>(session.draft_run_length(1 + static_cast<int64_t>(draft.size())) - 1));
      run.insert(run.end(), draft.begin(), draft.end());
    }
    if (mtp && run.size() == 1 && most > 1 && session.draft_run_length(2) == 2) {
      Result<std::optional<int32_t>> guess = session.mtp_draft(token);
      if (!guess.ok()) {
        fail(guess.status());
        break;
      }
      if (*guess) run.push_back(**guess);
    }
    if (run.size() == 1) {
      if (Status s = session.eval(run); !s.ok()) {
        fail(s);
        break;
      }
      done = closes_tool_call();
      continue;
    }

    // The draft: run[0] and run[1..] evaluated at once; the sampler takes the logits that follow
    // run[i] where the session keeps them while it draws run[i + 1] (accepted: already evaluated).
    if (Status s = session.eval_draft(run, nullptr); !s.ok()) {
      fail(s);
      break;
    }
    result.drafted += static_cast<int64_t>(run.size() - 1);
    size_t kept = 1;  // run[0, kept) stand evaluated
    for (size_t i = 0; i < run.size(); ++i) {
      if (closes_tool_call() || step >= budget) {
        done = true;
        break;
      }
      const std::optional<int32_t> token = draw(i, false);
      if (!token) {
        done = true;
        break;
      }
      if (i + 1 < run.size() && *token == run[i + 1]) {
        kept = i + 2;
        ++result.draft_accepted;
        if (lookup) drafter->push(*token);
        continue;
      }
      unevaluated = *token;
      break;
    }
    draft_length.record(static_cast<int>(run.size() - 1), static_cast<int>(kept - 1));
    if (Status s = session.keep_draft(kept); !s.ok()) {
      fail(s);
      break;
    }
  }

  if (result.finish != Finish::kStop || result.stop_sequence.empty()) {
    events.clear();
    parser.feed(decoder.flush(), events);
    parser.finish(events);
    const bool unterminated = std::any_of(events.begin(), events.end(), [](const chat::StreamEvent& e) {
      return e.kind == chat::StreamEventKind::error && e.error == chat::StreamErrorKind::unterminated;
    });
    if (sink.route(events) && result.finish != Finish::kCancelled) result.finish = Finish::kStop;
    if (result.stop_sequence.empty()) sink.flush_content();
    if (unterminated && result.finish == Finish::kStop) {
      result.finish = Finish::kError;
      result.error = "unterminated tool call";
    }
    sink.deliver(callbacks);
  }
  result.decode_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return result;
}

}  // namespace dsv4::generation
