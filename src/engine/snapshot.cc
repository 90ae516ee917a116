#include "engine/snapshot.h"

#include <cstring>
#include <string>

#include "util/sha256.h"

namespace dsv4::engine {
namespace {

constexpr char kMagic[8] = {'D', 'S', 'V', '4', 'S', 'N', 'A', 'P'};
constexpr uint32_t kVersion = 1;

void put_u32(std::vector<uint8_t>& out, uint32_t v) {
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<uint8_t>(v >> (8 * i)));
}
void put_u64(std::vector<uint8_t>& out, uint64_t v) {
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<uint8_t>(v >> (8 * i)));
}

class Cursor {
 public:
  explicit Cursor(std::span<const uint8_t> b) : b_(b) {}
  bool take(void* dst, size_t n) {
    if (b_.size() - pos_ < n) return false;
    std::memcpy(dst, b_.data() + pos_, n);
    pos_ += n;
    return true;
  }
  bool u32(uint32_t& v) {
    uint8_t b[4];
    if (!take(b, 4)) return false;
    v = 0;
    for (int i = 0; i < 4; ++i) v |= static_cast<uint32_t>(b[i]) << (8 * i);
    return true;
  }
  bool u64(uint64_t& v) {
    uint8_t b[8];
    if (!take(b, 8)) return false;
    v = 0;
    for (int i = 0; i < 8; ++i) v |= static_cast<uint64_t>(b[i]) << (8 * i);
    return true;
  }
  size_t remaining() const { return b_.size() - pos_; }

 private:
  std::span<const uint8_t> b_;
  size_t pos_ = 0;
};

Error snapshot_error(const std::string& what) { return Error{"snapshot rejected: " + what}; }

}  // namespace

std::vector<uint8_t> encode_snapshot(const SnapshotContents& c) {
  std::vector<uint8_t> out(kMagic, kMagic + 8);
  put_u32(out, kVersion);
  put_u32(out, c.mode == Mode::kOfficial ? 0 : 1);
  out.insert(out.end(), c.model.begin(), c.model.end());
  put_u64(out, c.tokens.size());
  for (int32_t t : c.tokens) put_u32(out, static_cast<uint32_t>(t));
  put_u64(out, c.state.size());
  out.insert(out.end(), c.state.begin(), c.state.end());
  const std::array<uint8_t, 32> digest = sha256(out);
  out.insert(out.end(), digest.begin(), digest.end());
  return out;
}

Result<SnapshotContents> decode_snapshot(std::span<const uint8_t> bytes) {
  if (bytes.size() < 8 + 4 + 4 + 32 + 8 + 8 + 32) return snapshot_error("too short (" + std::to_string(bytes.size()) + " bytes)");
  if (std::memcmp(bytes.data(), kMagic, 8) != 0) return snapshot_error("bad magic (not a dsv4 snapshot)");
  const std::span<const uint8_t> body = bytes.first(bytes.size() - 32);
  const std::array<uint8_t, 32> digest = sha256(body);
  if (std::memcmp(digest.data(), bytes.data() + body.size(), 32) != 0) {
    return snapshot_error("checksum mismatch (corrupted or truncated)");
  }
  Cursor r(body.subspan(8));
  uint32_t version = 0, mode = 0;
  SnapshotContents c;
  uint64_t n = 0, state_len = 0;
  if (!r.u32(version) || !r.u32(mode) || !r.take(c.model.data(), 32) || !r.u64(n)) {
    return snapshot_error("truncated header");
  }
  if (version != kVersion) return snapshot_error("unsupported version " + std::to_string(version));
  if (mode > 1) return snapshot_error("unknown mode " + std::to_string(mode));
  c.mode = mode == 0 ? Mode::kOfficial : Mode::kPlain;
  if (n > r.remaining() / 4) return snapshot_error("token count " + std::to_string(n) + " exceeds the file");
  c.tokens.resize(n);
  for (uint64_t i = 0; i < n; ++i) {
    uint32_t t = 0;
    r.u32(t);
    c.tokens[i] = static_cast<int32_t>(t);
  }
  if (!r.u64(state_len) || state_len != r.remaining()) return snapshot_error("state length does not match the file");
  c.state.resize(state_len);
  r.take(c.state.data(), state_len);
  return c;
}

}  // namespace dsv4::engine
