#include "generation/generator.h"

#include <algorithm>
#include <chrono>
#include <utility>

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
  bool done = false;
  result.finish = Finish::kLength;
  for (int64_t step = 0; step < budget && !done; ++step) {
    if (callbacks.should_cancel && callbacks.should_cancel()) {
      result.finish = Finish::kCancelled;
      break;
    }
    const bool structural = options.stream.tools_active && parser.in_tool_structure();
    Result<engine::Sample> sample = session.sample(
        sampler, structural ? engine::Sampler::Mode::kRawGreedy : engine::Sampler::Mode::kParams);
    if (!sample.ok()) {
      result.finish = Finish::kError;
      result.error = sample.status().message();
      break;
    }
    const int32_t token = sample->token;
    result.tokens.push_back(token);
    if (callbacks.on_token) callbacks.on_token(*sample);
    if (token == special_.eos) {
      result.finish = Finish::kStop;
      break;
    }
    if (options.stream.mode == chat::ThinkingMode::thinking && !parser.saw_think_end()) {
      ++result.reasoning_tokens;
    }

    Result<std::string> text = decoder.push(token);
    if (!text.ok()) {
      result.finish = Finish::kError;
      result.error = text.status().message();
      break;
    }
    events.clear();
    parser.feed(*text, events);
    if (sink.route(events)) {
      // The text is cut before the stop sequence; the token carrying it is not evaluated.
      result.finish = Finish::kStop;
      done = true;
    }
    if (!sink.deliver(callbacks)) {
      result.finish = Finish::kCancelled;
      done = true;
    }
    if (done) break;

    const int32_t next[1] = {token};
    if (Status s = session.eval(next); !s.ok()) {
      result.finish = Finish::kError;
      result.error = s.message();
      break;
    }
    if (options.stream.tools_active && parser.block_closed()) {
      result.finish = Finish::kToolCalls;
      done = true;
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
