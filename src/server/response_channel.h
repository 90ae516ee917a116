// The bytes of one response, handed from the engine worker (producer) to the HTTP thread that
// owns the connection (consumer). Bounded: a client that stops reading makes the producer wait,
// and a wait longer than the stall limit fails the stream (PROTOCOL.md §4.1) instead of holding
// the engine. Either side may give up; the other side sees it at its next call.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <mutex>
#include <string>

namespace dsv4::server {

class ResponseChannel {
 public:
  explicit ResponseChannel(size_t max_buffered_bytes = size_t{1} << 20) : max_buffered_(max_buffered_bytes) {}

  // Producer. Appends `bytes` once fewer than max_buffered bytes are unread (one write may exceed
  // the bound). False when the consumer is gone or has not made room within `stall`.
  bool write(std::string_view bytes, std::chrono::milliseconds stall);
  // No more bytes; `status` is the HTTP status of a response whose headers are not out yet.
  void close(int status = 200);
  // True once the consumer gave up (the client is gone).
  bool abandoned() const;

  // Consumer. Moves everything buffered into `out` (kData), or waits up to `wait` for bytes.
  enum class Read { kData, kTimeout, kClosed };
  Read read(std::string& out, std::chrono::milliseconds wait);
  void abandon();
  int status() const;

 private:
  const size_t max_buffered_;
  mutable std::mutex mu_;
  std::condition_variable readable_;
  std::condition_variable writable_;
  std::string buffer_;
  bool closed_ = false;
  bool abandoned_ = false;
  int status_ = 200;
};

}  // namespace dsv4::server
