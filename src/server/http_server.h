// The HTTP side of `dsv4 serve` (PROTOCOL.md §4.1–4.2) on cpp-httplib: routes, API-key check,
// CORS, body limits, JSON parsing and prompt preparation on the connection's thread, then the
// request goes to the scheduler and its thread relays the response from the ResponseChannel –
// streaming SSE frames as the worker writes them, or one body. A client that goes away (a failed
// write, a closed socket) cancels its request, queued or running.
//
// SSE headers go out as soon as a streaming request is queued (PROTOCOL.md §4.6 sends them at the
// first prefill progress): the connection can then be watched while the request waits, and
// `: prefill` comments follow every 5 s while its prompt is evaluated. Errors found before queueing
// (bad JSON, fields, context length, a full queue) are still plain HTTP errors.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "chat/request.h"
#include "server/generation_job.h"
#include "server/metrics.h"
#include "server/scheduler.h"
#include "tokenizer/tokenizer.h"
#include "util/status.h"

namespace dsv4::server {

struct HttpOptions {
  std::string host = "127.0.0.1";
  int port = 8000;                       // 0: any free port (see HttpServer::port())
  std::string api_key;                   // empty: no check
  bool cors = false;
  std::string model_id = "deepseek-v4-flash";
  int64_t n_ctx = 0;                     // reported in the model object; prompts must be shorter
  size_t max_body_bytes = size_t{64} << 20;
  int read_timeout_seconds = 10;
  int write_timeout_ms = 2000;           // a stalled write fails the response (§4.1)
  size_t http_threads = 32;              // connections served at once (each waits on its request)
  chat::RequestConfig request_config;
};

class HttpServer {
 public:
  HttpServer(HttpOptions options, EngineContext& engine, Scheduler& scheduler, const tokenizer::Tokenizer& tokenizer);
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Binds the listening socket; an error when the address cannot be used.
  Status bind();
  int port() const;
  // Serves until stop() (from any thread); returns after the connection threads are done.
  void serve();
  void stop();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace dsv4::server
