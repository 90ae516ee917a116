// Hostile input never crashes the chat layer: mutated model output through the stream parser
// (still chunk-invariant and valid UTF-8), and requests with fields of the wrong type through
// the API mappings and the encoder (errors as values, no exceptions).
#include <gtest/gtest.h>

#include <cstdlib>
#include <random>

#include "chat/completion.h"
#include "chat/dsml_stream.h"
#include "chat/encoder.h"
#include "chat/request.h"
#include "chat/utf8.h"
#include "test_util.h"

namespace dsv4::chat {
namespace {

const std::string kSample =
    "why</think>Sure \xF0\x9F\xA6\x80\n\n<｜DSML｜tool_calls>\n<｜DSML｜invoke name=\"edit\">\n"
    "<｜DSML｜parameter name=\"path\" string=\"true\">a.c</｜DSML｜parameter>\n"
    "<｜DSML｜parameter name=\"n\" string=\"false\">[1, {\"k\": \"v\"}]</｜DSML｜parameter>\n"
    "<｜DSML｜parameter name=\"o\">\n<｜DSML｜parameter name=\"x\" "
    "string=\"true\">1</｜DSML｜parameter>\n"
    "</｜DSML｜parameter>\n</｜DSML｜invoke>\n<｜DSML｜invoke name=\"z\">\n\n</｜DSML｜invoke>\n"
    "</｜DSML｜tool_calls>";

// Pieces that exercise the parser's decisions when spliced in at random places.
const char* const kFragments[] = {"<",
                                  "</",
                                  "<｜DSML｜",
                                  "｜",
                                  "\xE2",
                                  "\xFF",
                                  "\"",
                                  ">",
                                  "\n",
                                  " ",
                                  "</think>",
                                  "<think>",
                                  "<｜DSML｜parameter",
                                  "</｜DSML｜invoke>",
                                  "<tool_calls>",
                                  "<DSML｜invoke name=\"q\">",
                                  "string=\"maybe\""};

// DSV4_FUZZ_ITERS scales the runs up for a longer local search.
int iterations(int base) {
  const char* env = std::getenv("DSV4_FUZZ_ITERS");
  return env ? std::max(1, std::atoi(env)) : base;
}

std::string mutate(std::string s, std::mt19937& rng) {
  int edits = 1 + rng() % 4;
  for (int e = 0; e < edits; ++e) {
    size_t at = s.empty() ? 0 : rng() % (s.size() + 1);
    switch (rng() % 3) {
      case 0:
        s.insert(at, kFragments[rng() % std::size(kFragments)]);
        break;
      case 1:
        s.erase(at, 1 + rng() % 8);
        break;
      default:
        s = s.substr(0, at);
        break;
    }
  }
  return s;
}

TEST(Robustness, MutatedOutputThroughTheStreamParser) {
  std::mt19937 rng(1234);
  for (int iter = 0; iter < iterations(1500); ++iter) {
    std::string text = mutate(kSample, rng);
    for (StreamOptions o :
         {StreamOptions{ThinkingMode::thinking, true}, StreamOptions{ThinkingMode::chat, true}}) {
      std::vector<StreamEvent> whole = coalesce_events(parse_stream(text, o));
      for (int seed = 0; seed < 4; ++seed) {
        DsmlStreamParser p(o);
        std::vector<StreamEvent> out;
        size_t pos = 0;
        while (pos < text.size()) {
          size_t n = std::min<size_t>(1 + rng() % 9, text.size() - pos);
          p.feed(std::string_view(text).substr(pos, n), out);
          pos += n;
        }
        p.finish(out);
        for (const auto& e : out)
          ASSERT_TRUE(is_valid_utf8(e.text) && is_valid_utf8(e.name)) << text;
        ASSERT_EQ(coalesce_events(out), whole) << text;
      }
      // The completion parser never fails either; its arguments are JSON.
      ParsedCompletion c = parse_completion(text, o.mode, true);
      for (const auto& call : c.message.tool_calls)
        EXPECT_TRUE(Json::accept(call.arguments)) << text;
    }
  }
}

// Replaces a random node of `j` with a value of another type.
void corrupt(Json& j, std::mt19937& rng) {
  Json* node = &j;
  for (int depth = 0; depth < 6; ++depth) {
    if (node->is_object() && !node->empty() && rng() % 3) {
      auto it = node->begin();
      std::advance(it, rng() % node->size());
      node = &it.value();
    } else if (node->is_array() && !node->empty() && rng() % 3) {
      node = &(*node)[rng() % node->size()];
    } else {
      break;
    }
  }
  const Json replacements[] = {
      Json(nullptr),    Json(42),      Json(-1.5),     Json(true),
      Json("s"),        Json::array(), Json::object(), Json::array({1, "x"}),
      Json{{"type", 7}}};
  *node = replacements[rng() % std::size(replacements)];
}

TEST(Robustness, CorruptedRequestsAreErrorsNotCrashes) {
  std::vector<std::pair<std::string, Json>> bodies;
  for (const char* f : {"claude-tool/003.json", "codex-tool/002.json", "opencode-tool/003.json",
                        "pi-tool/002.json"}) {
    Json rec =
        testing::read_json(testing::shared_path(std::string("testdata/agent-requests/") + f));
    bodies.emplace_back(rec.at("url").get<std::string>(), rec.at("body"));
  }
  std::mt19937 rng(99);
  int ok = 0, errors = 0;
  for (int iter = 0; iter < iterations(600); ++iter) {
    auto [url, body] = bodies[iter % bodies.size()];
    for (int k = 0; k < 1 + static_cast<int>(rng() % 3); ++k) corrupt(body, rng);
    Result<ChatRequest> req = url.starts_with("/v1/messages")    ? map_anthropic_request(body)
                              : url.starts_with("/v1/responses") ? map_responses_request(body)
                                                                 : map_openai_chat_request(body);
    if (!req.ok()) {
      EXPECT_FALSE(req.error().message.empty());
      ++errors;
      continue;
    }
    auto p = encode_messages(req->messages, req->options);
    if (p.ok()) {
      ++ok;
    } else {
      ++errors;
    }
  }
  EXPECT_GT(ok, 0);
  EXPECT_GT(errors, 0);
}

}  // namespace
}  // namespace dsv4::chat
