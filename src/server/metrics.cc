#include "server/metrics.h"

#include <cstdio>

namespace dsv4::server {
namespace {

void header(std::string& out, const char* name, const char* type, const char* help) {
  out += "# HELP ";
  out += name;
  out += ' ';
  out += help;
  out += "\n# TYPE ";
  out += name;
  out += ' ';
  out += type;
  out += '\n';
}

std::string number(double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.17g", v);
  return buf;
}

void sample(std::string& out, const std::string& name, double value) {
  out += name;
  out += ' ';
  out += number(value);
  out += '\n';
}

// Label values here are our own route and rung names: no escaping needed.
void metric(std::string& out, const char* name, const char* type, const char* help, double value) {
  header(out, name, type, help);
  sample(out, name, value);
}

}  // namespace

const char* api_name(Api api) {
  switch (api) {
    case Api::kChat: return "chat";
    case Api::kCompletions: return "completions";
    case Api::kResponses: return "responses";
    case Api::kMessages: return "messages";
  }
  return "chat";
}

void Metrics::count_request(const std::string& route, int status) {
  std::lock_guard<std::mutex> lock(mu_);
  ++requests_[{route, status}];
}

void Metrics::count_generation(const Generation& g) {
  std::lock_guard<std::mutex> lock(mu_);
  ++generations_[static_cast<size_t>(g.api)];
  ++rungs_[static_cast<size_t>(g.rung)];
  prompt_tokens_ += static_cast<uint64_t>(g.prompt_tokens);
  cached_tokens_ += static_cast<uint64_t>(g.cached_tokens);
  evaluated_tokens_ += static_cast<uint64_t>(g.evaluated_tokens);
  generated_tokens_ += static_cast<uint64_t>(g.generated_tokens);
  prefill_seconds_ += g.prefill_seconds;
  decode_seconds_ += g.decode_seconds;
  disk_stores_ += static_cast<uint64_t>(g.disk_stores);
  drafted_ += static_cast<uint64_t>(g.drafted_tokens);
  draft_accepted_ += static_cast<uint64_t>(g.draft_accepted);
  if (g.evaluated_tokens > 0 && g.prefill_seconds > 0) last_prefill_tps_ = g.evaluated_tokens / g.prefill_seconds;
  if (g.generated_tokens > 0 && g.decode_seconds > 0) last_decode_tps_ = g.generated_tokens / g.decode_seconds;
}

void Metrics::count_cancelled() {
  std::lock_guard<std::mutex> lock(mu_);
  ++cancelled_;
}

std::string Metrics::render(size_t queue_depth, bool busy) const {
  std::lock_guard<std::mutex> lock(mu_);
  std::string out;
  header(out, "dsv4_http_requests_total", "counter", "HTTP requests answered, by route and status.");
  for (const auto& [key, n] : requests_) {
    sample(out, "dsv4_http_requests_total{route=\"" + key.first + "\",status=\"" + std::to_string(key.second) + "\"}",
           static_cast<double>(n));
  }
  header(out, "dsv4_generations_total", "counter", "Generations run, by API.");
  for (Api api : {Api::kChat, Api::kCompletions, Api::kResponses, Api::kMessages}) {
    sample(out, std::string("dsv4_generations_total{api=\"") + api_name(api) + "\"}",
           static_cast<double>(generations_[static_cast<size_t>(api)]));
  }
  header(out, "dsv4_cache_hits_total", "counter",
         "Prompts by the reuse-ladder rung that served them (PROTOCOL.md 5.3); cold is a miss.");
  for (Rung r : {Rung::kLiveTokens, Rung::kLiveText, Rung::kCheckpoint, Rung::kDisk, Rung::kCold}) {
    sample(out, std::string("dsv4_cache_hits_total{rung=\"") + rung_name(r) + "\"}",
           static_cast<double>(rungs_[static_cast<size_t>(r)]));
  }
  metric(out, "dsv4_prompt_tokens_total", "counter", "Effective prompt tokens.", static_cast<double>(prompt_tokens_));
  metric(out, "dsv4_prompt_cached_tokens_total", "counter", "Prompt tokens reused instead of evaluated.",
         static_cast<double>(cached_tokens_));
  metric(out, "dsv4_prefill_tokens_total", "counter", "Prompt tokens evaluated.", static_cast<double>(evaluated_tokens_));
  metric(out, "dsv4_prefill_seconds_total", "counter", "Time spent preparing prompts.", prefill_seconds_);
  metric(out, "dsv4_decode_tokens_total", "counter", "Tokens generated.", static_cast<double>(generated_tokens_));
  metric(out, "dsv4_decode_seconds_total", "counter", "Time spent generating.", decode_seconds_);
  metric(out, "dsv4_prefill_tokens_per_second", "gauge", "Prefill speed of the last request that evaluated tokens.",
         last_prefill_tps_);
  metric(out, "dsv4_decode_tokens_per_second", "gauge", "Decode speed of the last request that generated tokens.",
         last_decode_tps_);
  metric(out, "dsv4_kv_disk_stores_total", "counter", "Files written to the disk KV cache.",
         static_cast<double>(disk_stores_));
  metric(out, "dsv4_draft_tokens_total", "counter", "Speculative draft tokens verified (--draft, --mtp).",
         static_cast<double>(drafted_));
  metric(out, "dsv4_draft_accepted_tokens_total", "counter", "Draft tokens the sampler drew as drafted.",
         static_cast<double>(draft_accepted_));
  metric(out, "dsv4_requests_cancelled_total", "counter", "Generations stopped because the client went away.",
         static_cast<double>(cancelled_));
  metric(out, "dsv4_queue_depth", "gauge", "Requests waiting for the engine.", static_cast<double>(queue_depth));
  metric(out, "dsv4_requests_running", "gauge", "Requests on the engine (0 or 1).", busy ? 1.0 : 0.0);
  return out;
}

}  // namespace dsv4::server
