// Little-endian primitives of the GGUF wire format, shared by the reader and the writer.
// Internal to gguf/. The Cursor never reads past its span: every read reports failure instead,
// and the caller, which knows what it was reading, words the error.
#pragma once

#include <bit>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

namespace dsv4::gguf::detail {

// GGUF is little-endian and so are the machines dsv4 targets; fields are copied, not swapped.
static_assert(std::endian::native == std::endian::little, "GGUF I/O assumes a little-endian host");

class Cursor {
 public:
  Cursor(std::span<const uint8_t> bytes, uint64_t pos) : bytes_(bytes), pos_(pos) {}

  uint64_t pos() const { return pos_; }
  uint64_t remaining() const { return bytes_.size() - pos_; }

  template <class T>
  bool read(T* out) {
    static_assert(std::is_trivially_copyable_v<T>);
    if (remaining() < sizeof(T)) return false;
    std::memcpy(out, bytes_.data() + pos_, sizeof(T));
    pos_ += sizeof(T);
    return true;
  }

  // A view of the next n bytes; the caller has already checked n against remaining().
  bool take(uint64_t n, std::string_view* out) {
    if (remaining() < n) return false;
    *out = std::string_view(reinterpret_cast<const char*>(bytes_.data() + pos_), n);
    pos_ += n;
    return true;
  }

 private:
  std::span<const uint8_t> bytes_;
  uint64_t pos_;
};

template <class T>
void append(std::vector<uint8_t>& out, T v) {
  static_assert(std::is_trivially_copyable_v<T>);
  const size_t at = out.size();
  out.resize(at + sizeof(T));
  std::memcpy(out.data() + at, &v, sizeof(T));
}

inline void append_string(std::vector<uint8_t>& out, std::string_view s) {
  append<uint64_t>(out, s.size());
  out.insert(out.end(), s.begin(), s.end());
}

inline uint64_t align_up(uint64_t x, uint64_t alignment) {
  const uint64_t r = x % alignment;
  return r == 0 ? x : x + (alignment - r);
}

}  // namespace dsv4::gguf::detail
