#include "server/response_channel.h"

namespace dsv4::server {

bool ResponseChannel::write(std::string_view bytes, std::chrono::milliseconds stall) {
  std::unique_lock<std::mutex> lock(mu_);
  if (!writable_.wait_for(lock, stall, [&] { return abandoned_ || buffer_.size() < max_buffered_; })) {
    return false;
  }
  if (abandoned_ || closed_) return false;
  buffer_.append(bytes);
  readable_.notify_all();
  return true;
}

void ResponseChannel::close(int status) {
  std::lock_guard<std::mutex> lock(mu_);
  if (closed_) return;
  closed_ = true;
  status_ = status;
  readable_.notify_all();
}

bool ResponseChannel::abandoned() const {
  std::lock_guard<std::mutex> lock(mu_);
  return abandoned_;
}

ResponseChannel::Read ResponseChannel::read(std::string& out, std::chrono::milliseconds wait) {
  std::unique_lock<std::mutex> lock(mu_);
  readable_.wait_for(lock, wait, [&] { return closed_ || !buffer_.empty(); });
  if (!buffer_.empty()) {
    out.append(buffer_);
    buffer_.clear();
    writable_.notify_all();
    return Read::kData;
  }
  return closed_ ? Read::kClosed : Read::kTimeout;
}

void ResponseChannel::abandon() {
  std::lock_guard<std::mutex> lock(mu_);
  abandoned_ = true;
  writable_.notify_all();
}

int ResponseChannel::status() const {
  std::lock_guard<std::mutex> lock(mu_);
  return status_;
}

}  // namespace dsv4::server
