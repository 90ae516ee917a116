// The disk KV cache file (PROTOCOL.md §5.6, docs/KV_CACHE.md), version 1. Little-endian:
//
//   off  size  field
//     0     8  magic "DSV4KVC\0"
//     8     4  version (1)
//    12     4  header size (176)
//    16    32  model fingerprint (engine::Engine::fingerprint())
//    48     4  mode flags (§5.6: bit0 official simulations, bits 8-15 KV format, bit16 MTP,
//              bit17 logits)
//    52     4  reason (StoreReason: 1 cold, 2 continued, 3 evict, 4 shutdown, 5 manual)
//    56     8  n_tokens (>= 1)
//    64     8  context size of the session that wrote it
//    72     8  created (unix seconds)
//    80     8  key length K (typed-text bytes, §5.3)
//    88     8  payload length P
//    96    32  SHA-256 of the key (its hex is the file name)
//   128     4  hits                                        (usage block: rewritten
//   132     4  reserved, 0                                  in place on a hit)
//   136     8  last used (unix seconds)
//   144    32  SHA-256 of bytes 0..143 (the header checksum)
//   176     K  key: the typed text of the stored tokens
//  176+K    P  payload: an engine snapshot (engine/snapshot.h) carrying the tokens, the logits,
//              the per-layer state and its own SHA-256
//
// The file is exactly 176 + K + P bytes. Each part has its own check, so a hit rewrites only
// the 48-byte usage block (hits, last used, header checksum) and never rereads the payload.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "util/status.h"

namespace dsv4::server {

inline constexpr std::string_view kKvFileExtension = ".dsv4kv";
inline constexpr uint32_t kKvFileVersion = 1;
inline constexpr size_t kKvHeaderSize = 176;
// The usage block rewritten on a hit: bytes [kKvUsageOffset, kKvHeaderSize) of the header.
inline constexpr size_t kKvUsageOffset = 128;

struct KvFileHeader {
  std::array<uint8_t, 32> fingerprint{};
  uint32_t mode_flags = 0;
  uint32_t reason = 0;
  uint64_t n_tokens = 0;
  uint64_t n_ctx = 0;
  int64_t created = 0;
  uint64_t key_bytes = 0;
  uint64_t payload_bytes = 0;
  std::array<uint8_t, 32> key_sha256{};
  uint32_t hits = 0;
  int64_t last_used = 0;

  uint64_t file_bytes() const { return kKvHeaderSize + key_bytes + payload_bytes; }
};

std::array<uint8_t, kKvHeaderSize> encode_kv_header(const KvFileHeader& header);

// The version of a file that starts with the magic (nullopt otherwise, or when too short):
// files of another version are left alone rather than treated as corrupt.
std::optional<uint32_t> kv_file_version(std::span<const uint8_t> bytes);

// Checks size, magic, version, header size, checksum and field ranges; errors say which.
Result<KvFileHeader> decode_kv_header(std::span<const uint8_t> bytes);

// Lowercase hex SHA-256 of the key + ".dsv4kv".
std::string kv_file_name(std::string_view key);
std::string kv_file_name(const std::array<uint8_t, 32>& key_sha256);

}  // namespace dsv4::server
