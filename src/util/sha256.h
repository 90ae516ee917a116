// SHA-256 (FIPS 180-4): fixture identity (a regenerated synthetic GGUF must match the one the
// reference was computed on) and snapshot/cache checksums. OpenSSL's libcrypto computes it (SHA-NI
// or vector code where the CPU has it: ≈9× a portable loop, which matters when a disk-cache hit
// hashes a few hundred MB of session state).
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <string>

struct evp_md_ctx_st;

namespace dsv4 {

class Sha256 {
 public:
  Sha256();
  ~Sha256();
  // Copies continue independently from the same prefix.
  Sha256(const Sha256& other);
  Sha256& operator=(const Sha256& other);
  void update(std::span<const uint8_t> bytes);
  // The digest of everything given so far; the object must not be used afterwards.
  std::array<uint8_t, 32> finish();

 private:
  evp_md_ctx_st* ctx_;
};

std::array<uint8_t, 32> sha256(std::span<const uint8_t> bytes);
std::string sha256_hex(std::span<const uint8_t> bytes);
std::string to_hex(std::span<const uint8_t> bytes);

}  // namespace dsv4
