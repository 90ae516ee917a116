// `dsv4 run --dump-logprobs FILE`: per generated token, the chosen token (id, text, logprob)
// and the top alternatives, as JSON, for checking a model or a backend step by step:
//
//   {"model": PATH, "mode": "official", "prompt_tokens": [ids...],
//    "steps": [{"token": ID, "text": "...", "logprob": L,
//               "top": [{"token": ID, "text": "...", "logprob": L}, ...]}, ...]}
//
// Logprobs are those of the raw distribution (engine/sampler.h). "text" is the token's bytes; a
// token that ends inside a UTF-8 character shows U+FFFD for the partial bytes.
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/sampler.h"
#include "tokenizer/tokenizer.h"
#include "util/status.h"

namespace dsv4::cli {

class LogprobDump {
 public:
  LogprobDump(const tokenizer::Tokenizer& tokenizer, const std::string& model, const std::string& mode,
              const std::vector<int32_t>& prompt);
  void add(const engine::Sample& sample);
  Status write(const std::string& path) const;

 private:
  nlohmann::json entry(int32_t token, float logprob) const;

  const tokenizer::Tokenizer& tokenizer_;
  nlohmann::json doc_;
};

}  // namespace dsv4::cli
