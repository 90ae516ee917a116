#include "util/sha256.h"

#include <openssl/evp.h>

#include <cstdlib>
#include <cstdio>

namespace dsv4 {
namespace {

// libcrypto fails these only when out of memory or misconfigured: our bug or a dead process,
// not bad input, so it is not an error value.
void require(int ok, const char* what) {
  if (ok == 1) return;
  std::fprintf(stderr, "dsv4: OpenSSL %s failed\n", what);
  std::abort();
}

evp_md_ctx_st* new_context() {
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  require(ctx != nullptr, "EVP_MD_CTX_new");
  return ctx;
}

}  // namespace

Sha256::Sha256() : ctx_(new_context()) { require(EVP_DigestInit_ex(ctx_, EVP_sha256(), nullptr), "SHA-256 init"); }

Sha256::~Sha256() { EVP_MD_CTX_free(ctx_); }

Sha256::Sha256(const Sha256& other) : ctx_(new_context()) { require(EVP_MD_CTX_copy_ex(ctx_, other.ctx_), "SHA-256 copy"); }

Sha256& Sha256::operator=(const Sha256& other) {
  if (this != &other) require(EVP_MD_CTX_copy_ex(ctx_, other.ctx_), "SHA-256 copy");
  return *this;
}

void Sha256::update(std::span<const uint8_t> bytes) {
  if (!bytes.empty()) require(EVP_DigestUpdate(ctx_, bytes.data(), bytes.size()), "SHA-256 update");
}

std::array<uint8_t, 32> Sha256::finish() {
  std::array<uint8_t, 32> out;
  unsigned int n = 0;
  require(EVP_DigestFinal_ex(ctx_, out.data(), &n), "SHA-256 final");
  require(n == out.size(), "SHA-256 length");
  return out;
}

std::array<uint8_t, 32> sha256(std::span<const uint8_t> bytes) {
  Sha256 s;
  s.update(bytes);
  return s.finish();
}

std::string to_hex(std::span<const uint8_t> bytes) {
  static const char* digits = "0123456789abcdef";
  std::string s;
  for (uint8_t b : bytes) {
    s += digits[b >> 4];
    s += digits[b & 15];
  }
  return s;
}

std::string sha256_hex(std::span<const uint8_t> bytes) {
  const std::array<uint8_t, 32> d = sha256(bytes);
  return to_hex(d);
}

}  // namespace dsv4
