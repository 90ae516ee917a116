#include "server/http_server.h"

#include <httplib.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <ctime>
#include <utility>

#include "chat/json_text.h"
#include "server/api_output.h"
#include "server/connection_probe.h"
#include "server/ids.h"
#include "server/prompt_request.h"
#include "server/response_channel.h"
#include "server/sse.h"
#include "util/log.h"

namespace dsv4::server {
namespace {

using chat::Json;
using namespace std::chrono_literals;

constexpr const char* kJson = "application/json";
// How often a waiting connection thread checks that its client is still there.
constexpr auto kPollInterval = 50ms;

// Errors on a path are shaped by the API it belongs to (§4.7).
Api api_of_path(const std::string& path) {
  if (path.starts_with("/v1/messages")) return Api::kMessages;
  if (path.starts_with("/v1/responses")) return Api::kResponses;
  if (path.starts_with("/v1/completions")) return Api::kCompletions;
  return Api::kChat;
}

// The metrics label of a path: one of the served routes, else "other" (bounded cardinality).
std::string route_label(const std::string& path) {
  static const std::pair<const char*, const char*> kRoutes[] = {
      {"/v1/chat/completions", "chat"},     {"/v1/completions", "completions"},
      {"/v1/responses", "responses"},       {"/v1/messages/count_tokens", "count_tokens"},
      {"/v1/messages", "messages"},         {"/v1/models", "models"},
      {"/health", "health"},                {"/metrics", "metrics"},
  };
  for (const auto& [prefix, label] : kRoutes) {
    if (path == prefix || (path.starts_with(prefix) && path[std::strlen(prefix)] == '/')) return label;
  }
  return "other";
}

void send_error(httplib::Response& res, const HttpError& e) {
  res.status = e.status;
  res.set_content(e.body, kJson);
}

// Compares without an early exit, so response times do not tell how much of a key was right.
bool same_secret(std::string_view given, std::string_view key) {
  if (given.size() != key.size()) return false;
  unsigned char diff = 0;
  for (size_t i = 0; i < key.size(); ++i) diff |= static_cast<unsigned char>(given[i] ^ key[i]);
  return diff == 0;
}

}  // namespace

struct HttpServer::Impl {
  HttpOptions options;
  EngineContext& engine;
  Scheduler& scheduler;
  const tokenizer::Tokenizer& tokenizer;
  httplib::Server http;
  std::atomic<uint64_t> counter{0};
  int bound_port = -1;

  Impl(HttpOptions o, EngineContext& e, Scheduler& s, const tokenizer::Tokenizer& t)
      : options(std::move(o)), engine(e), scheduler(s), tokenizer(t) {}

  void install();
  bool authorized(const httplib::Request& req) const;
  static bool read_body(const httplib::ContentReader& reader, std::string& body, httplib::Response& res);
  void handle_api(Api api, const httplib::Request& req, const std::string& body, httplib::Response& res);
  void handle_count_tokens(const std::string& body, httplib::Response& res);
  void handle_model(const httplib::Request& req, httplib::Response& res);
  void relay_stream(std::shared_ptr<ResponseChannel> channel, std::shared_ptr<Scheduler::Ticket> ticket,
                    httplib::Response& res);
  void relay_body(const httplib::Request& req, ResponseChannel& channel, Scheduler::Ticket& ticket,
                  httplib::Response& res);
  Json model() const {
    return model_object(options.model_id, options.n_ctx, std::min(engine.default_max_tokens, options.n_ctx));
  }
};

bool HttpServer::Impl::authorized(const httplib::Request& req) const {
  if (options.api_key.empty()) return true;
  const std::string bearer = req.get_header_value("Authorization");
  if (bearer.starts_with("Bearer ") && same_secret(bearer.substr(7), options.api_key)) return true;
  return same_secret(req.get_header_value("x-api-key"), options.api_key);
}

void HttpServer::Impl::install() {
  http.set_payload_max_length(options.max_body_bytes);
  http.set_read_timeout(options.read_timeout_seconds, 0);
  http.set_write_timeout(options.write_timeout_ms / 1000, (options.write_timeout_ms % 1000) * 1000);
  // SO_REUSEADDR only: httplib's default adds SO_REUSEPORT, which would let a second server bind
  // the same port and silently take half of the connections.
  http.set_socket_options([](socket_t sock) {
    int yes = 1;
    setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, reinterpret_cast<const char*>(&yes), sizeof yes);
  });
  const size_t threads = options.http_threads;
  http.new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
  if (options.cors) {
    http.set_default_headers({{"Access-Control-Allow-Origin", "*"},
                              {"Access-Control-Allow-Methods", "GET, POST, OPTIONS"},
                              {"Access-Control-Allow-Headers", "*"}});
  }

  http.set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
    if (req.method == "OPTIONS") {
      if (!options.cors) return httplib::Server::HandlerResponse::Unhandled;
      res.status = 204;
      res.set_header("Content-Length", "0");
      return httplib::Server::HandlerResponse::Handled;
    }
    if (req.path == "/health" || authorized(req)) return httplib::Server::HandlerResponse::Unhandled;
    send_error(res, api_error(api_of_path(req.path), 401, "invalid or missing API key", "authentication_error"));
    return httplib::Server::HandlerResponse::Handled;
  });
  // Responses httplib makes itself (no route, body too large, unparsable request) get a body in
  // the shape of the path's API.
  http.set_error_handler(httplib::Server::HandlerWithResponse([](const httplib::Request& req, httplib::Response& res) {
    if (!res.body.empty()) return httplib::Server::HandlerResponse::Unhandled;
    const Api api = api_of_path(req.path);
    if (res.status == 404) {
      send_error(res, api_error(api, 404, "unknown endpoint"));
    } else if (res.status == 413) {
      send_error(res, api_error(api, 413, "request body too large"));
    } else if (res.status == 400) {
      send_error(res, api_error(api, 400, "bad HTTP request"));
    } else {
      send_error(res, api_error(api, res.status, "request failed", res.status >= 500 ? "server_error" : "invalid_request_error"));
    }
    return httplib::Server::HandlerResponse::Handled;
  }));
  http.set_exception_handler([](const httplib::Request& req, httplib::Response& res, std::exception_ptr ep) {
    std::string what = "unknown";
    try {
      if (ep) std::rethrow_exception(ep);
    } catch (const std::exception& e) {
      what = e.what();
    } catch (...) {
    }
    log::error(req.method, " ", req.path, ": internal error: ", what);
    send_error(res, api_error(api_of_path(req.path), 500, "internal error", "server_error"));
  });
  http.set_logger([this](const httplib::Request& req, const httplib::Response& res) {
    engine.metrics.count_request(route_label(req.path), res.status);
    log::debug(req.method, " ", req.path, " -> ", res.status);
  });

  http.Get("/health", [](const httplib::Request&, httplib::Response& res) {
    res.set_content(R"({"status":"ok"})", kJson);
  });
  http.Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
    res.set_content(engine.metrics.render(scheduler.queued(), scheduler.busy()), "text/plain; version=0.0.4");
  });
  http.Get("/v1/models", [this](const httplib::Request&, httplib::Response& res) {
    res.set_content(to_wire_json(Json{{"object", "list"}, {"data", Json::array({model()})}}), kJson);
  });
  http.Get(R"(/v1/models/(.+))", [this](const httplib::Request& req, httplib::Response& res) { handle_model(req, res); });
  const std::pair<const char*, Api> apis[] = {{"/v1/chat/completions", Api::kChat},
                                              {"/v1/completions", Api::kCompletions},
                                              {"/v1/responses", Api::kResponses},
                                              {"/v1/messages", Api::kMessages}};
  for (const auto& [path, api] : apis) {
    http.Post(path, [this, api = api](const httplib::Request& req, httplib::Response& res,
                                      const httplib::ContentReader& reader) {
      std::string body;
      if (read_body(reader, body, res)) handle_api(api, req, body, res);
    });
  }
  http.Post("/v1/messages/count_tokens",
            [this](const httplib::Request&, httplib::Response& res, const httplib::ContentReader& reader) {
              std::string body;
              if (read_body(reader, body, res)) handle_count_tokens(body, res);
            });
}

// Bodies are read by the handlers themselves so that httplib applies no form-encoding rules to
// them: clients (curl -d among them) label JSON bodies in various ways, and only the bytes count.
bool HttpServer::Impl::read_body(const httplib::ContentReader& reader, std::string& body, httplib::Response& res) {
  const bool complete = reader([&](const char* data, size_t n) {
    body.append(data, n);
    return true;
  });
  // httplib has set the status (413 too large, 400 unreadable); the rest of the body is unread.
  if (!complete) res.set_header("Connection", "close");
  return complete;
}

void HttpServer::Impl::handle_model(const httplib::Request& req, httplib::Response& res) {
  const std::string id = req.matches[1];
  // The served model under its own name and the official aliases (§4.3).
  if (id != options.model_id && id != "deepseek-chat" && id != "deepseek-reasoner") {
    return send_error(res, api_error(Api::kChat, 404, "model '" + id + "' not found"));
  }
  Json m = model();
  m["id"] = id;
  res.set_content(to_wire_json(m), kJson);
}

void HttpServer::Impl::handle_count_tokens(const std::string& text, httplib::Response& res) {
  Result<Json> body = chat::parse_json(text);
  if (!body.ok()) return send_error(res, api_error(Api::kMessages, 400, "invalid JSON request: " + body.error().message));
  Result<int64_t> n = count_message_tokens(*body, tokenizer, options.request_config);
  if (!n.ok()) return send_error(res, api_error(Api::kMessages, 400, n.error().message));
  res.set_content(to_wire_json(Json{{"input_tokens", *n}}), kJson);
}

void HttpServer::Impl::handle_api(Api api, const httplib::Request& req, const std::string& text,
                                  httplib::Response& res) {
  // Validation order (§4.4): parse, render, tokenise, context check; then queue.
  Result<Json> body = chat::parse_json(text);
  if (!body.ok()) return send_error(res, api_error(api, 400, "invalid JSON request: " + body.error().message));
  Result<PromptRequest> prepared = build_prompt_request(api, *body, tokenizer, options.request_config);
  if (!prepared.ok()) return send_error(res, api_error(api, 400, prepared.error().message));
  PromptRequest& request = *prepared;
  const int64_t n_prompt = static_cast<int64_t>(request.tokens.size());
  if (n_prompt >= options.n_ctx) {
    return send_error(res, context_length_error(api, n_prompt, options.n_ctx, request.prompt_param));
  }

  OutputContext out;
  out.api = api;
  out.model = request.fields.model.empty() ? options.model_id : request.fields.model;
  out.id = response_id(api, ++counter);
  out.created = static_cast<int64_t>(std::time(nullptr));
  out.stream = request.fields.stream;
  out.include_usage = request.fields.include_usage;
  out.thinking = request.thinking == chat::ThinkingMode::thinking;
  out.reasoning_summary = request.fields.reasoning_summary;
  out.tools_active = request.tools_active;
  out.namespaced_tools = request.namespaced_tools;
  out.tool_search = request.tool_search;
  out.new_call_id = [api] { return tool_call_id(api); };
  const bool stream = out.stream;
  log::debug(out.id, ": ", api_name(api), " request, ", n_prompt, " prompt tokens, stream ", stream);

  auto channel = std::make_shared<ResponseChannel>();
  auto job = std::make_shared<GenerationJob>(engine, std::move(request), std::move(out), channel);
  std::shared_ptr<Scheduler::Ticket> ticket = scheduler.submit(job);
  if (!ticket) {
    return send_error(res, api_error(api, 503,
                                     scheduler.stopping() ? "server shutting down" : "server busy: too many requests queued",
                                     "server_error"));
  }
  if (stream) return relay_stream(std::move(channel), std::move(ticket), res);
  relay_body(req, *channel, *ticket, res);
}

// SSE: the headers go out at once, so the connection can be watched while the request waits.
void HttpServer::Impl::relay_stream(std::shared_ptr<ResponseChannel> channel,
                                    std::shared_ptr<Scheduler::Ticket> ticket, httplib::Response& res) {
  res.status = 200;
  res.set_header("Cache-Control", "no-cache");
  res.set_chunked_content_provider(
      "text/event-stream",
      [channel, ticket](size_t, httplib::DataSink& sink) {
        std::string bytes;
        switch (channel->read(bytes, kPollInterval)) {
          case ResponseChannel::Read::kData:
            if (sink.write(bytes.data(), bytes.size())) return true;
            break;
          case ResponseChannel::Read::kTimeout:
            if (sink.is_writable()) return true;
            break;
          case ResponseChannel::Read::kClosed:
            sink.done();
            return true;
        }
        // The client is gone: stop its generation (or take it out of the queue).
        channel->abandon();
        ticket->cancel();
        return false;
      },
      [channel, ticket](bool success) {
        if (success) return;
        channel->abandon();
        ticket->cancel();
      });
}

void HttpServer::Impl::relay_body(const httplib::Request& req, ResponseChannel& channel, Scheduler::Ticket& ticket,
                                  httplib::Response& res) {
  ConnectionProbe probe(req.local_addr, req.local_port, req.remote_addr, req.remote_port);
  std::string body;
  for (;;) {
    const ResponseChannel::Read r = channel.read(body, kPollInterval);
    if (r == ResponseChannel::Read::kClosed) break;
    if (r == ResponseChannel::Read::kTimeout && probe.client_gone()) {
      channel.abandon();
      ticket.cancel();
      res.status = 499;  // nobody reads it; keeps the metrics honest
      return;
    }
  }
  res.status = channel.status();
  res.set_content(std::move(body), kJson);
}

HttpServer::HttpServer(HttpOptions options, EngineContext& engine, Scheduler& scheduler,
                       const tokenizer::Tokenizer& tokenizer)
    : impl_(std::make_unique<Impl>(std::move(options), engine, scheduler, tokenizer)) {
  impl_->install();
}

HttpServer::~HttpServer() = default;

Status HttpServer::bind() {
  if (impl_->options.port == 0) {
    impl_->bound_port = impl_->http.bind_to_any_port(impl_->options.host);
  } else if (impl_->http.bind_to_port(impl_->options.host, impl_->options.port)) {
    impl_->bound_port = impl_->options.port;
  }
  if (impl_->bound_port <= 0) {
    return make_error("cannot listen on " + impl_->options.host + ":" + std::to_string(impl_->options.port));
  }
  return {};
}

int HttpServer::port() const { return impl_->bound_port; }

void HttpServer::serve() { impl_->http.listen_after_bind(); }

void HttpServer::stop() { impl_->http.stop(); }

}  // namespace dsv4::server
