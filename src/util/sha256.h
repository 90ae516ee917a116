// SHA-256 (FIPS 180-4): fixture identity (a regenerated synthetic GGUF must match the one the
// reference was computed on) and snapshot/cache checksums.
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <string>

namespace dsv4 {

class Sha256 {
 public:
  Sha256();
  void update(std::span<const uint8_t> bytes);
  std::array<uint8_t, 32> finish();

 private:
  void block(const uint8_t* p);
  uint32_t h_[8];
  uint8_t buffer_[64];
  uint64_t length_ = 0;
  size_t buffered_ = 0;
};

std::array<uint8_t, 32> sha256(std::span<const uint8_t> bytes);
std::string sha256_hex(std::span<const uint8_t> bytes);
std::string to_hex(std::span<const uint8_t> bytes);

}  // namespace dsv4
