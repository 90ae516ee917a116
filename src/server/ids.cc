#include "server/ids.h"

#include <mutex>

#include "engine/sampler.h"

namespace dsv4::server {

std::string random_hex(size_t bytes) {
  static std::mutex mu;
  static engine::Rng rng(engine::entropy_seed());
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(bytes * 2);
  std::lock_guard<std::mutex> lock(mu);
  for (size_t i = 0; i < bytes; ++i) {
    const auto b = static_cast<uint8_t>(rng.next());
    out += kDigits[b >> 4];
    out += kDigits[b & 15];
  }
  return out;
}

std::string response_id(Api api, uint64_t counter) {
  switch (api) {
    case Api::kChat: return "chatcmpl-" + std::to_string(counter);
    case Api::kCompletions: return "cmpl-" + std::to_string(counter);
    case Api::kResponses: return "resp_" + random_hex(12);
    case Api::kMessages: return "msg_" + random_hex(12);
  }
  return "chatcmpl-" + std::to_string(counter);
}

std::string tool_call_id(Api api) { return (api == Api::kMessages ? "toolu_" : "call_") + random_hex(16); }

}  // namespace dsv4::server
