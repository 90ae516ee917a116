// Hostile input: every rejection the reader makes, each error naming the field and value;
// truncation at every byte; seeded random corruption. Nothing here may crash (run it under
// -DDSV4_SANITIZE=ON too).
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "gguf/gguf.h"
#include "gguf_test_util.h"

namespace dsv4::gguf {
namespace {

using testing::Raw;

constexpr uint32_t kU32 = static_cast<uint32_t>(ValueType::U32);
constexpr uint32_t kString = static_cast<uint32_t>(ValueType::STRING);
constexpr uint32_t kArray = static_cast<uint32_t>(ValueType::ARRAY);
constexpr uint32_t kBool = static_cast<uint32_t>(ValueType::BOOL);
constexpr uint32_t kU64 = static_cast<uint32_t>(ValueType::U64);
constexpr uint32_t kF32Type = static_cast<uint32_t>(TensorType::F32);
constexpr uint32_t kQ8_0Type = static_cast<uint32_t>(TensorType::Q8_0);

std::string parse_error(const std::vector<uint8_t>& bytes, const ReadLimits& limits = {}) {
  // An exactly sized heap copy lets AddressSanitizer catch any read past the end.
  const std::vector<uint8_t> copy(bytes.begin(), bytes.end());
  auto f = File::parse(copy, "model.gguf", limits);
  if (f.ok()) return "<parsed successfully>";
  return f.error().message;
}

#define EXPECT_ERROR(bytes, expected) EXPECT_EQ(parse_error(bytes), expected)
#define EXPECT_ERROR_CONTAINS(bytes, part)                          \
  do {                                                              \
    const std::string msg_ = parse_error(bytes);                    \
    EXPECT_NE(msg_.find(part), std::string::npos) << msg_;          \
    EXPECT_EQ(msg_.rfind("model.gguf: ", 0), 0u) << msg_;           \
  } while (0)

// A file with one key "k" of the given type whose value bytes the caller appends.
Raw one_key(uint32_t type) {
  Raw r;
  r.header(0, 1).str("k").u32(type);
  return r;
}

// A file with one 4x? F32-family tensor whose info fields the caller chooses, then padding and
// `data` bytes of tensor data.
std::vector<uint8_t> one_tensor(const std::string& name, std::vector<uint64_t> ne, uint32_t type,
                                uint64_t offset, uint64_t data) {
  Raw r;
  r.header(1, 0).tensor(name, std::move(ne), type, offset).pad_to(32).zeros(data);
  return r.b;
}

// --- header ---

TEST(GgufHostile, TooSmall) {
  EXPECT_ERROR(std::vector<uint8_t>{}, "model.gguf: file of 0 bytes is too small for a GGUF header (24 bytes)");
  EXPECT_ERROR(std::vector<uint8_t>(23, 0), "model.gguf: file of 23 bytes is too small for a GGUF header (24 bytes)");
}

TEST(GgufHostile, BadMagic) {
  EXPECT_ERROR(Raw().header(0, 0, 0x12345678).b,
               "model.gguf: bad magic 0x12345678 (expected 0x46554747, \"GGUF\")");
}

TEST(GgufHostile, WrongVersion) {
  EXPECT_ERROR(Raw().header(0, 0, kMagic, 2).b,
               "model.gguf: version 2 is not supported (expected 3)");
  EXPECT_ERROR(Raw().header(0, 0, kMagic, 4).b,
               "model.gguf: version 4 is not supported (expected 3)");
}

TEST(GgufHostile, CountsBeyondLimits) {
  EXPECT_ERROR(Raw().header(1ull << 21, 0).zeros(64).b,
               "model.gguf: n_tensors 2097152 exceeds the limit 1048576");
  EXPECT_ERROR(Raw().header(0, 1ull << 21).zeros(64).b,
               "model.gguf: n_kv 2097152 exceeds the limit 1048576");
  EXPECT_ERROR(Raw().header(UINT64_MAX, UINT64_MAX).b,
               "model.gguf: n_kv 18446744073709551615 exceeds the limit 1048576");
  ReadLimits limits;
  limits.max_tensors = 2;
  EXPECT_EQ(parse_error(Raw().header(3, 0).zeros(200).b, limits),
            "model.gguf: n_tensors 3 exceeds the limit 2");
}

TEST(GgufHostile, CountsBeyondRemainingBytes) {
  EXPECT_ERROR(Raw().header(0, 1000).zeros(100).b,
               "model.gguf: n_kv 1000 cannot fit in the 100 bytes after the header");
  EXPECT_ERROR(Raw().header(10, 0).zeros(100).b,
               "model.gguf: n_tensors 10 cannot fit in the 100 bytes after the header");
  // Keys use up the bytes that tensors would need.
  EXPECT_ERROR(Raw().header(1, 6).zeros(100).b,
               "model.gguf: n_tensors 1 cannot fit in the 100 bytes after the header");
}

// --- keys and values ---

TEST(GgufHostile, KeyLengthBeyondRemainingBytes) {
  EXPECT_ERROR(Raw().header(0, 1).u64(1000).str("abcdefg").b,
               "model.gguf: key #0: string length 1000 at offset 24 exceeds the remaining 15 bytes");
}

TEST(GgufHostile, KeyLengthBeyondLimit) {
  ReadLimits limits;
  limits.max_string_bytes = 4;
  EXPECT_EQ(parse_error(Raw().header(0, 1).kv_u32("abcdefgh", 1).b, limits),
            "model.gguf: key #0: string length 8 exceeds the limit 4");
}

TEST(GgufHostile, EmptyKey) {
  EXPECT_ERROR(Raw().header(0, 1).kv_u32("", 1).b, "model.gguf: key #0: key is empty");
}

TEST(GgufHostile, StringValueLengths) {
  EXPECT_ERROR(one_key(kString).u64(1000).b,
               "model.gguf: key 'k': string length 1000 at offset 37 exceeds the remaining 0 "
               "bytes");
  EXPECT_ERROR(one_key(kString).u64(1ull << 40).b,
               "model.gguf: key 'k': string length 1099511627776 exceeds the limit 16777216");
  ReadLimits limits;
  limits.max_string_bytes = 4;
  EXPECT_EQ(parse_error(one_key(kString).str("hello!").b, limits),
            "model.gguf: key 'k': string length 6 exceeds the limit 4");
}

TEST(GgufHostile, UnknownValueType) {
  EXPECT_ERROR(one_key(13).u32(0).b, "model.gguf: key 'k': unknown value type 13");
  EXPECT_ERROR(one_key(0xffffffff).u32(0).b,
               "model.gguf: key 'k': unknown value type 4294967295");
  EXPECT_ERROR(one_key(kArray).u32(13).u64(0).b,
               "model.gguf: key 'k': unknown array element type 13");
}

TEST(GgufHostile, NestedArray) {
  EXPECT_ERROR(one_key(kArray).u32(kArray).u64(1).u32(kU32).u64(1).u32(5).b,
               "model.gguf: key 'k': nested arrays are not supported");
}

TEST(GgufHostile, ArrayCounts) {
  ReadLimits limits;
  limits.max_array_elements = 10;
  Raw r = one_key(kArray);
  r.u32(kU32).u64(11);
  for (int k = 0; k < 11; ++k) r.u32(k);
  r.pad_to(32);
  EXPECT_EQ(parse_error(r.b, limits), "model.gguf: key 'k': array count 11 exceeds the limit 10");
  EXPECT_EQ(parse_error(r.b), "<parsed successfully>");  // within the default limits

  EXPECT_ERROR(one_key(kArray).u32(kU32).u64(1ull << 40).u32(1).b,
               "model.gguf: key 'k': array count 1099511627776 exceeds the limit 67108864");
  EXPECT_ERROR(one_key(kArray).u32(kU32).u64(1000).u32(1).b,
               "model.gguf: key 'k': array count 1000 of u32 cannot fit in the remaining 4 "
               "bytes");
  EXPECT_ERROR(one_key(kArray).u32(kU32).u64(3).u32(1).u32(2).b,
               "model.gguf: key 'k': array count 3 of u32 cannot fit in the remaining 8 bytes");
  // Strings need at least their 8-byte length each.
  EXPECT_ERROR(one_key(kArray).u32(kString).u64(3).zeros(16).b,
               "model.gguf: key 'k': array count 3 of string cannot fit in the remaining 16 bytes");
}

TEST(GgufHostile, ArrayElements) {
  EXPECT_ERROR(one_key(kArray).u32(kString).u64(2).str("ok").u64(99).zeros(8).b,
               "model.gguf: key 'k': element 1: string length 99 at offset 59 exceeds the "
               "remaining 8 bytes");
  EXPECT_ERROR(one_key(kArray).u32(kU64).u64(2).u64(5).u64(1ull << 63).b,
               "model.gguf: key 'k': element 1: u64 value 9223372036854775808 exceeds 2^63-1");
  EXPECT_ERROR(one_key(kArray).u32(kBool).u64(2).u8(1).u8(7).b,
               "model.gguf: key 'k': element 1: bool value 7 is not 0 or 1");
}

TEST(GgufHostile, BoolValue) {
  EXPECT_ERROR(one_key(kBool).u8(2).b, "model.gguf: key 'k': bool value 2 is not 0 or 1");
}

TEST(GgufHostile, DuplicateKey) {
  EXPECT_ERROR(Raw().header(0, 2).kv_u32("general.name", 1).kv_u32("general.name", 2).b,
               "model.gguf: duplicate key 'general.name'");
}

TEST(GgufHostile, Alignment) {
  auto with_alignment = [](uint32_t v) { return Raw().header(0, 1).kv_u32("general.alignment", v).pad_to(32).b; };
  EXPECT_ERROR(with_alignment(0), "model.gguf: general.alignment 0 is not a power of two");
  EXPECT_ERROR(with_alignment(48), "model.gguf: general.alignment 48 is not a power of two");
  EXPECT_ERROR(with_alignment(0xffffffff),
               "model.gguf: general.alignment 4294967295 is not a power of two");
  EXPECT_ERROR(Raw().header(0, 1).str("general.alignment").u32(kString).str("32").pad_to(32).b,
               "model.gguf: general.alignment has type string, expected u32");
  EXPECT_ERROR(Raw().header(0, 1).str("general.alignment").u32(kU64).u64(32).pad_to(32).b,
               "model.gguf: general.alignment has type u64, expected u32");
  EXPECT_EQ(parse_error(with_alignment(16)), "<parsed successfully>");
  // A huge but valid alignment puts the data section far past the end.
  EXPECT_ERROR(with_alignment(1u << 31),
               "model.gguf: data section at offset 2147483648 (tensor infos end at 57, "
               "alignment 2147483648) lies past the end of the file (64 bytes)");
}

// --- tensor infos ---

TEST(GgufHostile, TensorNames) {
  EXPECT_ERROR(one_tensor("", {4}, kF32Type, 0, 32), "model.gguf: tensor #0: name is empty");
  EXPECT_ERROR(Raw().header(1, 0).u64(500).zeros(40).b,
               "model.gguf: tensor #0: name: string length 500 at offset 24 exceeds the "
               "remaining 40 bytes");
  Raw dup;
  dup.header(2, 0).tensor("w", {8}, kF32Type, 0).tensor("w", {8}, kF32Type, 32).pad_to(32).zeros(64);
  EXPECT_ERROR(dup.b, "model.gguf: tensor #1: duplicate tensor name 'w'");
}

TEST(GgufHostile, HostileNamesAreEscapedAndShortened) {
  const std::string name = "\x01\n" + std::string(200, 'a');
  const std::string msg = parse_error(one_tensor(name, {4}, 99, 0, 32));
  EXPECT_EQ(msg, "model.gguf: tensor '\\x01\\x0a" + std::string(78, 'a') +
                     "...': unknown tensor type type#99");
}

TEST(GgufHostile, NDims) {
  EXPECT_ERROR(one_tensor("w", {}, kF32Type, 0, 32),
               "model.gguf: tensor 'w': n_dims 0 is out of range [1, 4]");
  EXPECT_ERROR(one_tensor("w", {1, 1, 1, 1, 1}, kF32Type, 0, 32),
               "model.gguf: tensor 'w': n_dims 5 is out of range [1, 4]");
  Raw huge;
  huge.header(1, 0).str("w").u32(0xffffffff).zeros(64);
  EXPECT_ERROR(huge.b, "model.gguf: tensor 'w': n_dims 4294967295 is out of range [1, 4]");
  EXPECT_EQ(parse_error(one_tensor("w", {1, 1, 1, 4}, kF32Type, 0, 32)), "<parsed successfully>");
}

TEST(GgufHostile, ZeroDimension) {
  EXPECT_ERROR(one_tensor("w", {4, 0}, kF32Type, 0, 32), "model.gguf: tensor 'w': ne[1] is 0");
  EXPECT_ERROR(one_tensor("w", {0}, kF32Type, 0, 32), "model.gguf: tensor 'w': ne[0] is 0");
}

TEST(GgufHostile, ShapeOverflow) {
  EXPECT_ERROR(one_tensor("w", {1ull << 31, 1ull << 31}, kF32Type, 0, 32),
               "model.gguf: tensor 'w': shape (2147483648, 2147483648) of F32 overflows 64-bit "
               "byte sizes");
  EXPECT_ERROR(one_tensor("w", {1ull << 32, 1ull << 32}, kF32Type, 0, 32),
               "model.gguf: tensor 'w': shape (4294967296, 4294967296) has more than 2^63-1 "
               "elements");
  EXPECT_ERROR(one_tensor("w", {UINT64_MAX}, kF32Type, 0, 32),
               "model.gguf: tensor 'w': shape (18446744073709551615) has more than 2^63-1 "
               "elements");
}

TEST(GgufHostile, BlockMultiple) {
  EXPECT_ERROR(one_tensor("w", {33, 2}, kQ8_0Type, 0, 96),
               "model.gguf: tensor 'w': ne[0] = 33 is not a multiple of the Q8_0 block size 32");
  EXPECT_ERROR(one_tensor("w", {128}, static_cast<uint32_t>(TensorType::Q2_K), 0, 96),
               "model.gguf: tensor 'w': ne[0] = 128 is not a multiple of the Q2_K block size 256");
}

TEST(GgufHostile, UnknownTensorType) {
  EXPECT_ERROR(one_tensor("w", {4}, 99, 0, 32),
               "model.gguf: tensor 'w': unknown tensor type type#99");
  EXPECT_ERROR(one_tensor("w", {4}, 2, 0, 32),  // Q4_0: real ggml type, not supported here
               "model.gguf: tensor 'w': unknown tensor type type#2");
}

TEST(GgufHostile, UnalignedOffset) {
  EXPECT_ERROR(one_tensor("blk.0.attn_kv.weight", {4}, kF32Type, 123, 256),
               "model.gguf: tensor 'blk.0.attn_kv.weight': offset 123 is not a multiple of "
               "alignment 32");
  Raw custom;
  custom.header(1, 1).kv_u32("general.alignment", 64).tensor("w", {4}, kF32Type, 32).pad_to(64).zeros(128);
  EXPECT_ERROR(custom.b, "model.gguf: tensor 'w': offset 32 is not a multiple of alignment 64");
}

TEST(GgufHostile, TensorBeyondEndOfFile) {
  EXPECT_ERROR(one_tensor("w", {16}, kF32Type, 0, 63),
               "model.gguf: tensor 'w': offset 0 + size 64 runs past the end of the file (the "
               "data section at 64 holds 63 bytes)");
  EXPECT_ERROR(one_tensor("w", {16}, kF32Type, 1ull << 63, 64),
               "model.gguf: tensor 'w': offset 9223372036854775808 + size 64 runs past the end "
               "of the file (the data section at 64 holds 64 bytes)");
  // offset + size would wrap around 2^64.
  const uint64_t wrap = UINT64_MAX - 31;
  EXPECT_ERROR(one_tensor("w", {16}, kF32Type, wrap, 64),
               "model.gguf: tensor 'w': offset " + std::to_string(wrap) +
                   " + size 64 runs past the end of the file (the data section at 64 holds 64 "
                   "bytes)");
  EXPECT_EQ(parse_error(one_tensor("w", {16}, kF32Type, 0, 64)), "<parsed successfully>");
}

TEST(GgufHostile, DataSectionBeyondEndOfFile) {
  Raw r;
  r.header(1, 0).tensor("w", {1}, kF32Type, 0);  // 57 bytes, no padding, no data
  EXPECT_ERROR(r.b,
               "model.gguf: data section at offset 64 (tensor infos end at 57, alignment 32) "
               "lies past the end of the file (57 bytes)");
}

TEST(GgufHostile, OverlappingTensors) {
  Raw r;
  r.header(2, 0)
      .tensor("a", {16}, kF32Type, 0)     // [0, 64)
      .tensor("b", {8}, kF32Type, 32)     // [32, 64)
      .pad_to(32)
      .zeros(64);
  EXPECT_ERROR(r.b, "model.gguf: tensor 'a' (offset 0, size 64) overlaps tensor 'b' (offset 32)");

  // Listed out of order, and the same offset twice.
  Raw same;
  same.header(3, 0)
      .tensor("c", {8}, kF32Type, 64)
      .tensor("d", {8}, kF32Type, 0)
      .tensor("e", {8}, kF32Type, 64)
      .pad_to(32)
      .zeros(96);
  EXPECT_ERROR_CONTAINS(same.b, "overlaps tensor");

  // Out of order but disjoint is fine.
  Raw apart;
  apart.header(2, 0).tensor("x", {8}, kF32Type, 32).tensor("y", {8}, kF32Type, 0).pad_to(32).zeros(64);
  EXPECT_EQ(parse_error(apart.b), "<parsed successfully>");
}

// --- truncation and corruption ---

TEST(GgufHostile, TruncationAtEveryByteIsAnError) {
  const std::vector<uint8_t> file = testing::small_valid_file();
  auto whole = File::parse(file, "small.gguf");
  ASSERT_TRUE(whole.ok()) << whole.error().message;
  const TensorInfo* last = whole->tensor("last");
  ASSERT_NE(last, nullptr);
  ASSERT_EQ(last->data + last->size, file.data() + file.size()) << "no trailing padding expected";
  for (size_t n = 0; n < file.size(); ++n) {
    const std::vector<uint8_t> prefix(file.begin(), file.begin() + static_cast<ptrdiff_t>(n));
    auto f = File::parse(prefix, "small.gguf");
    ASSERT_FALSE(f.ok()) << "prefix of " << n << " bytes parsed";
    ASSERT_EQ(f.error().message.rfind("small.gguf: ", 0), 0u) << f.error().message;
  }
}

// Parsing succeeded: every guarantee the layers above rely on must hold.
void check_invariants(const File& f, const std::vector<uint8_t>& bytes) {
  ASSERT_LE(f.data_offset(), bytes.size());
  ASSERT_EQ(f.data_offset() % f.alignment(), 0u);
  std::vector<std::pair<uint64_t, uint64_t>> spans;
  for (const TensorInfo& t : f.tensors()) {
    ASSERT_EQ(f.tensor(t.name), &t);
    ASSERT_GE(t.ne.size(), 1u);
    ASSERT_LE(t.ne.size(), 4u);
    ASSERT_EQ(*tensor_bytes(t.type, t.ne), t.size);
    ASSERT_EQ(t.offset % f.alignment(), 0u);
    ASSERT_EQ(t.data, bytes.data() + f.data_offset() + t.offset);
    ASSERT_LE(f.data_offset() + t.offset + t.size, bytes.size());
    spans.emplace_back(t.offset, t.offset + t.size);
    uint32_t sum = 0;  // touch every byte: ASan reports any stray pointer
    for (uint64_t k = 0; k < t.size; ++k) sum += t.data[k];
    (void)sum;
  }
  std::sort(spans.begin(), spans.end());
  for (size_t k = 1; k < spans.size(); ++k) ASSERT_LE(spans[k - 1].second, spans[k].first);
  for (const auto& [key, value] : f.metadata()) {
    ASSERT_EQ(f.find(key), &value);
    (void)value.as_uint();
    (void)value.as_float();
    (void)value.array_size();
  }
}

TEST(GgufHostile, RandomCorruptionNeverCrashes) {
  const std::vector<uint8_t> file = testing::small_valid_file();
  const uint64_t header_end = File::parse(file, "x")->data_offset();
  std::mt19937_64 rng(20240531);
  const uint64_t interesting[] = {0,          1,          2,           3,         4,
                                  5,          8,          9,          12,         13,
                                  31,         32,         64,          0x7f,      0xff,
                                  0xffff,     0x7fffffff, 0xffffffff,  1ull << 32, 1ull << 40,
                                  1ull << 62, 1ull << 63, UINT64_MAX,  file.size()};
  int parsed = 0, rejected = 0;
  for (int iter = 0; iter < 5000; ++iter) {
    std::vector<uint8_t> bytes = file;
    const int mutations = 1 + static_cast<int>(rng() % 4);
    for (int m = 0; m < mutations && !bytes.empty(); ++m) {
      // Most structure lives in the header, so aim there three times out of four.
      const uint64_t span = (rng() % 4 != 0) ? std::min<uint64_t>(header_end, bytes.size())
                                             : bytes.size();
      const size_t pos = static_cast<size_t>(rng() % span);
      switch (rng() % 5) {
        case 0: bytes[pos] = static_cast<uint8_t>(rng()); break;
        case 1: bytes[pos] ^= static_cast<uint8_t>(1u << (rng() % 8)); break;
        case 2: {
          const uint64_t v = interesting[rng() % std::size(interesting)];
          const size_t width = (rng() % 2) ? 8 : 4;
          for (size_t k = 0; k < width && pos + k < bytes.size(); ++k) {
            bytes[pos + k] = static_cast<uint8_t>(v >> (8 * k));
          }
          break;
        }
        case 3: bytes.resize(pos); break;
        default: {
          const size_t n = 1 + rng() % 16;
          std::vector<uint8_t> extra(n);
          for (auto& b : extra) b = static_cast<uint8_t>(rng());
          bytes.insert(bytes.begin() + static_cast<ptrdiff_t>(pos), extra.begin(), extra.end());
          break;
        }
      }
    }
    const std::vector<uint8_t> exact(bytes.begin(), bytes.end());  // no slack past the end
    auto f = File::parse(exact, "fuzz.gguf");
    if (f.ok()) {
      ++parsed;
      check_invariants(*f, exact);
      if (::testing::Test::HasFatalFailure()) FAIL() << "iteration " << iter;
    } else {
      ++rejected;
      ASSERT_EQ(f.error().message.rfind("fuzz.gguf: ", 0), 0u) << f.error().message;
      ASSERT_LT(f.error().message.size(), 1000u) << f.error().message;
    }
  }
  EXPECT_GT(rejected, 0);
  EXPECT_GT(parsed, 0);
  std::printf("corruption: %d parsed, %d rejected\n", parsed, rejected);
}

TEST(GgufHostile, SmallLimitsBoundAValidFile) {
  const std::vector<uint8_t> file = testing::small_valid_file();
  ReadLimits limits;
  limits.max_kv = 3;
  EXPECT_EQ(parse_error(file, limits), "model.gguf: n_kv 11 exceeds the limit 3");
  limits = {};
  limits.max_dims = 2;
  EXPECT_EQ(parse_error(file, limits), "model.gguf: tensor 'iq2': n_dims 3 is out of range [1, 2]");
}

}  // namespace
}  // namespace dsv4::gguf
