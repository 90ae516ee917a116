// An in-process `dsv4 serve` on a free loopback port with the tiny model, wired as
// serve_command.cc wires it, plus small HTTP helpers: SSE frames, a raw socket for disconnect
// tests, and metric reading.
#pragma once

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "chat/json_text.h"
#include "generation/generator.h"
#include "server/generation_job.h"
#include "server/http_server.h"
#include "server/kv_store.h"
#include "server/metrics.h"
#include "server/prefix_cache.h"
#include "server/scheduler.h"
#include "server/sse_frames.h"
#include "tiny_model.h"

namespace dsv4::server::testing {

struct TestServerOptions {
  std::string api_key;
  bool cors = false;
  int64_t n_ctx = 8192;
  size_t max_body_bytes = size_t{1} << 20;
  size_t max_queue = 4;
  std::string kv_dir;  // empty: no disk cache
  StoreTriggerOptions triggers;
  int64_t default_max_tokens = 64;
  std::chrono::milliseconds prefill_comment_interval{5000};
  int draft_tokens = 0;  // --draft
};

class TestServer {
 public:
  explicit TestServer(TestServerOptions o = {}) : model_(tiny_model()) {
    if (!o.kv_dir.empty()) {
      KvStoreOptions so;
      so.dir = o.kv_dir;
      so.min_tokens = o.triggers.min_tokens;
      so.cold_max_tokens = o.triggers.cold_max_tokens;
      store_ = KvStore::open(so, model_.engine->fingerprint(), kv_mode_flags(model_.engine->mode())).value();
    }
    cache_ = std::make_unique<PrefixCache>(model_.engine->new_session(o.n_ctx).value(), *model_.tokenizer,
                                           model_.special, store_.get(), o.triggers);
    generator_ = std::make_unique<generation::Generator>(*model_.tokenizer, model_.special);
    context_ = std::make_unique<EngineContext>(EngineContext{*cache_, *generator_, *model_.tokenizer, metrics_});
    context_->default_max_tokens = o.default_max_tokens;
    context_->prefill_comment_interval = o.prefill_comment_interval;
    context_->draft_tokens = o.draft_tokens;
    scheduler_ = std::make_unique<Scheduler>(o.max_queue);
    HttpOptions h;
    h.port = 0;
    h.api_key = o.api_key;
    h.cors = o.cors;
    h.n_ctx = o.n_ctx;
    h.max_body_bytes = o.max_body_bytes;
    h.http_threads = o.max_queue + 8;
    http_ = std::make_unique<HttpServer>(h, *context_, *scheduler_, *model_.tokenizer);
    Status bound = http_->bind();
    EXPECT_TRUE(bound.ok());
    thread_ = std::thread([this] { http_->serve(); });
  }
  ~TestServer() { stop(); }

  // As at exit: queued requests dropped, the running one cancelled, the live session stored.
  void stop() {
    if (!thread_.joinable()) return;
    scheduler_->shutdown();
    http_->stop();
    thread_.join();
    cache_->store_at_shutdown();
  }

  int port() const { return http_->port(); }
  httplib::Client client() const {
    httplib::Client c("127.0.0.1", port());
    c.set_read_timeout(300, 0);
    return c;
  }
  Metrics& metrics() { return metrics_; }
  Scheduler& scheduler() { return *scheduler_; }
  PrefixCache& cache() { return *cache_; }
  KvStore* store() { return store_.get(); }

 private:
  const TinyModel& model_;
  std::unique_ptr<KvStore> store_;
  std::unique_ptr<PrefixCache> cache_;
  std::unique_ptr<generation::Generator> generator_;
  Metrics metrics_;
  std::unique_ptr<EngineContext> context_;
  std::unique_ptr<Scheduler> scheduler_;
  std::unique_ptr<HttpServer> http_;
  std::thread thread_;
};

// The frames of an SSE body, read strictly (server/sse_frames.h); broken framing fails the test.
using api_testing::SseFrame;
inline std::vector<SseFrame> sse_frames_of(const std::string& body) {
  Result<std::vector<SseFrame>> frames = api_testing::parse_sse(body);
  EXPECT_TRUE(frames.ok()) << (frames.ok() ? "" : frames.error().message) << "\n" << body;
  return frames.ok() ? *frames : std::vector<SseFrame>();
}

inline chat::Json json_of(const std::string& text) {
  Result<chat::Json> j = chat::parse_json(text);
  EXPECT_TRUE(j.ok()) << text;
  return j.ok() ? *j : chat::Json();
}

// A value of the exposition text, e.g. metric(text, "dsv4_queue_depth"); -1 when absent.
inline double metric(const std::string& text, const std::string& name) {
  const std::string key = "\n" + name + " ";
  const size_t at = ("\n" + text).find(key);
  if (at == std::string::npos) return -1;
  return std::stod(text.substr(at + key.size() - 1));
}

// Waits for a condition the server reaches on its own (a cancellation seen, a queue drained),
// checking every few milliseconds; fails the test after `limit`.
template <class F>
bool eventually(F condition, std::chrono::milliseconds limit = std::chrono::milliseconds(30000)) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < deadline) {
    if (condition()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return condition();
}

// A connection driven by hand: send a request, read until some bytes arrive, hang up.
class RawConnection {
 public:
  explicit RawConnection(int port) {
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<uint16_t>(port));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  }
  ~RawConnection() { close(); }
  void send_all(const std::string& bytes) {
    size_t off = 0;
    while (off < bytes.size()) {
      ssize_t n = ::send(fd_, bytes.data() + off, bytes.size() - off, MSG_NOSIGNAL);
      if (n <= 0) return;
      off += static_cast<size_t>(n);
    }
  }
  void post(const std::string& path, const std::string& body) {
    send_all("POST " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: " +
             std::to_string(body.size()) + "\r\n\r\n" + body);
  }
  // Reads until `needle` has been received (true) or the peer closes (false).
  bool read_until(const std::string& needle) {
    char buf[4096];
    while (received_.find(needle) == std::string::npos) {
      ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
      if (n <= 0) return false;
      received_.append(buf, static_cast<size_t>(n));
    }
    return true;
  }
  // Reads until the peer closes.
  void read_all() { read_until(std::string(1, '\0') + "never"); }
  const std::string& received() const { return received_; }
  void close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

 private:
  int fd_ = -1;
  std::string received_;
};

}  // namespace dsv4::server::testing
