#include "cli/logprob_dump.h"

#include "util/mapped_file.h"

namespace dsv4::cli {

LogprobDump::LogprobDump(const tokenizer::Tokenizer& tokenizer, const std::string& model, const std::string& mode,
                         const std::vector<int32_t>& prompt)
    : tokenizer_(tokenizer),
      doc_({{"model", model}, {"mode", mode}, {"prompt_tokens", prompt}, {"steps", nlohmann::json::array()}}) {}

nlohmann::json LogprobDump::entry(int32_t token, float logprob) const {
  return {{"token", token}, {"text", tokenizer_.piece(token)}, {"logprob", logprob}};
}

void LogprobDump::add(const engine::Sample& sample) {
  nlohmann::json step = entry(sample.token, sample.logprob);
  nlohmann::json top = nlohmann::json::array();
  for (const engine::TokenLogprob& t : sample.top_logprobs()) top.push_back(entry(t.token, t.logprob));
  step["top"] = std::move(top);
  doc_["steps"].push_back(std::move(step));
}

Status LogprobDump::write(const std::string& path) const {
  const std::string text = doc_.dump(1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
  Status s = write_file_atomic(path, std::span(reinterpret_cast<const uint8_t*>(text.data()), text.size()));
  if (!s.ok()) return s.error().with_context(path);
  return Status();
}

}  // namespace dsv4::cli
