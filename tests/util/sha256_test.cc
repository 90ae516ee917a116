#include "util/sha256.h"

#include <gtest/gtest.h>

#include <string>

namespace dsv4 {
namespace {

std::string hex_of(const std::string& s) {
  return sha256_hex({reinterpret_cast<const uint8_t*>(s.data()), s.size()});
}

TEST(Sha256, KnownVectors) {
  EXPECT_EQ(hex_of(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(hex_of("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(hex_of("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  EXPECT_EQ(hex_of(std::string(1000000, 'a')),
            "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

TEST(Sha256, IncrementalEqualsOneShot) {
  std::string data;
  for (int i = 0; i < 1000; ++i) data += static_cast<char>(i * 7 + 3);
  for (size_t step : {1u, 3u, 63u, 64u, 65u, 200u}) {
    Sha256 s;
    for (size_t i = 0; i < data.size(); i += step) {
      const size_t n = std::min(step, data.size() - i);
      s.update({reinterpret_cast<const uint8_t*>(data.data()) + i, n});
    }
    const auto d = s.finish();
    EXPECT_EQ(to_hex(d), hex_of(data)) << step;
  }
}

TEST(Sha256, CopiesContinueIndependently) {
  const std::string a = "a prefix shared by two continuations, ", b = "then one", c = "then the other";
  auto bytes = [](const std::string& t) { return std::span(reinterpret_cast<const uint8_t*>(t.data()), t.size()); };
  Sha256 first;
  first.update(bytes(a));
  Sha256 second = first;
  first.update(bytes(b));
  second.update(bytes(c));
  Sha256 third;
  third = second;
  EXPECT_EQ(to_hex(first.finish()), hex_of(a + b));
  EXPECT_EQ(to_hex(second.finish()), hex_of(a + c));
  EXPECT_EQ(to_hex(third.finish()), hex_of(a + c));
}

}  // namespace
}  // namespace dsv4
