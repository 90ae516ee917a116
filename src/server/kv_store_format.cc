#include "server/kv_store_format.h"

#include <cstring>
#include <type_traits>

#include "util/sha256.h"

namespace dsv4::server {
namespace {

constexpr char kMagic[8] = {'D', 'S', 'V', '4', 'K', 'V', 'C', '\0'};
// Keeps K + P far from overflowing a u64 with the header added; no real file comes near.
constexpr uint64_t kMaxPartBytes = uint64_t{1} << 56;

template <class T>
void put(uint8_t* p, T v) {
  const auto u = static_cast<std::make_unsigned_t<T>>(v);
  for (size_t i = 0; i < sizeof(T); ++i) p[i] = static_cast<uint8_t>(u >> (8 * i));
}

template <class T>
T get(const uint8_t* p) {
  std::make_unsigned_t<T> u = 0;
  for (size_t i = 0; i < sizeof(T); ++i) u |= static_cast<std::make_unsigned_t<T>>(p[i]) << (8 * i);
  return static_cast<T>(u);
}

Error header_error(const std::string& what) { return Error{"KV cache header: " + what}; }

}  // namespace

std::array<uint8_t, kKvHeaderSize> encode_kv_header(const KvFileHeader& h) {
  std::array<uint8_t, kKvHeaderSize> out{};
  uint8_t* p = out.data();
  std::memcpy(p, kMagic, 8);
  put<uint32_t>(p + 8, kKvFileVersion);
  put<uint32_t>(p + 12, kKvHeaderSize);
  std::memcpy(p + 16, h.fingerprint.data(), 32);
  put<uint32_t>(p + 48, h.mode_flags);
  put<uint32_t>(p + 52, h.reason);
  put<uint64_t>(p + 56, h.n_tokens);
  put<uint64_t>(p + 64, h.n_ctx);
  put<int64_t>(p + 72, h.created);
  put<uint64_t>(p + 80, h.key_bytes);
  put<uint64_t>(p + 88, h.payload_bytes);
  std::memcpy(p + 96, h.key_sha256.data(), 32);
  put<uint32_t>(p + 128, h.hits);
  put<int64_t>(p + 136, h.last_used);
  const std::array<uint8_t, 32> digest = sha256(std::span<const uint8_t>(p, 144));
  std::memcpy(p + 144, digest.data(), 32);
  return out;
}

std::optional<uint32_t> kv_file_version(std::span<const uint8_t> bytes) {
  if (bytes.size() < 12 || std::memcmp(bytes.data(), kMagic, 8) != 0) return std::nullopt;
  return get<uint32_t>(bytes.data() + 8);
}

Result<KvFileHeader> decode_kv_header(std::span<const uint8_t> bytes) {
  if (bytes.size() < kKvHeaderSize) {
    return header_error("truncated (" + std::to_string(bytes.size()) + " of " +
                        std::to_string(kKvHeaderSize) + " bytes)");
  }
  const uint8_t* p = bytes.data();
  if (std::memcmp(p, kMagic, 8) != 0) return header_error("bad magic (not a dsv4 KV cache file)");
  const uint32_t version = get<uint32_t>(p + 8);
  if (version != kKvFileVersion) return header_error("unsupported version " + std::to_string(version));
  const uint32_t header_size = get<uint32_t>(p + 12);
  if (header_size != kKvHeaderSize) return header_error("header size " + std::to_string(header_size) + ", expected 176");
  const std::array<uint8_t, 32> digest = sha256(std::span<const uint8_t>(p, 144));
  if (std::memcmp(digest.data(), p + 144, 32) != 0) return header_error("checksum mismatch (corrupted)");

  KvFileHeader h;
  std::memcpy(h.fingerprint.data(), p + 16, 32);
  h.mode_flags = get<uint32_t>(p + 48);
  h.reason = get<uint32_t>(p + 52);
  h.n_tokens = get<uint64_t>(p + 56);
  h.n_ctx = get<uint64_t>(p + 64);
  h.created = get<int64_t>(p + 72);
  h.key_bytes = get<uint64_t>(p + 80);
  h.payload_bytes = get<uint64_t>(p + 88);
  std::memcpy(h.key_sha256.data(), p + 96, 32);
  h.hits = get<uint32_t>(p + 128);
  h.last_used = get<int64_t>(p + 136);
  if (h.n_tokens == 0) return header_error("zero tokens");
  if (h.key_bytes > kMaxPartBytes || h.payload_bytes > kMaxPartBytes) {
    return header_error("implausible key/payload length " + std::to_string(h.key_bytes) + "/" +
                        std::to_string(h.payload_bytes));
  }
  return h;
}

std::string kv_file_name(std::string_view key) {
  return kv_file_name(sha256(std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(key.data()), key.size())));
}

std::string kv_file_name(const std::array<uint8_t, 32>& key_sha256) {
  return to_hex(key_sha256) + std::string(kKvFileExtension);
}

}  // namespace dsv4::server
