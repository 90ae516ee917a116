// Writer -> reader round trips: every value type, every tensor type, alignment.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "gguf/gguf.h"
#include "gguf_test_util.h"

namespace dsv4::gguf {
namespace {

using testing::pattern;
using testing::scalar;

// File::parse borrows the bytes, so a temporary would leave the File dangling.
File parse_ok(std::vector<uint8_t>&& bytes) = delete;
File parse_ok(const std::vector<uint8_t>& bytes) {
  auto f = File::parse(bytes, "test.gguf");
  EXPECT_TRUE(f.ok()) << f.error().message;
  return std::move(f).value();
}

void expect_same(const Value& a, const Value& b, const std::string& key) {
  SCOPED_TRACE(key);
  ASSERT_EQ(a.type, b.type);
  if (a.is_array()) {
    ASSERT_EQ(a.element_type, b.element_type);
    EXPECT_EQ(a.ints, b.ints);
    EXPECT_EQ(a.strings, b.strings);
    ASSERT_EQ(a.floats.size(), b.floats.size());
    for (size_t k = 0; k < a.floats.size(); ++k) {
      if (std::isnan(a.floats[k])) {
        EXPECT_TRUE(std::isnan(b.floats[k]));
      } else {
        EXPECT_EQ(a.floats[k], b.floats[k]);
      }
    }
    return;
  }
  EXPECT_EQ(a.u, b.u);
  EXPECT_EQ(a.i, b.i);
  EXPECT_EQ(a.s, b.s);
  if (std::isnan(a.f)) {
    EXPECT_TRUE(std::isnan(b.f));
  } else {
    EXPECT_EQ(a.f, b.f);
  }
}

std::vector<std::pair<std::string, Value>> every_value_kind() {
  std::vector<std::pair<std::string, Value>> kv;
  kv.emplace_back("s.u8", scalar(ValueType::U8, 255));
  kv.emplace_back("s.i8", scalar(ValueType::I8, 0, -128));
  kv.emplace_back("s.u16", scalar(ValueType::U16, 65535));
  kv.emplace_back("s.i16", scalar(ValueType::I16, 0, -32768));
  kv.emplace_back("s.u32", Value::make_u32(0xffffffffu));
  kv.emplace_back("s.i32", Value::make_i32(std::numeric_limits<int32_t>::min()));
  kv.emplace_back("s.f32", Value::make_f32(-1.0e-40f));  // subnormal survives
  kv.emplace_back("s.f32.inf", Value::make_f32(std::numeric_limits<float>::infinity()));
  kv.emplace_back("s.f32.nan", Value::make_f32(std::numeric_limits<float>::quiet_NaN()));
  kv.emplace_back("s.bool.f", Value::make_bool(false));
  kv.emplace_back("s.bool.t", Value::make_bool(true));
  kv.emplace_back("s.string", Value::make_string(std::string("h\xc3\xa9llo\0world", 12)));
  kv.emplace_back("s.string.empty", Value::make_string(""));
  kv.emplace_back("s.u64", Value::make_u64(std::numeric_limits<uint64_t>::max()));
  kv.emplace_back("s.i64", scalar(ValueType::I64, 0, std::numeric_limits<int64_t>::min()));
  kv.emplace_back("s.f64", scalar(ValueType::F64, 0, 0, 1e300));

  kv.emplace_back("a.u8", Value::make_int_array(ValueType::U8, {0, 1, 255}));
  kv.emplace_back("a.i8", Value::make_int_array(ValueType::I8, {-128, 0, 127}));
  kv.emplace_back("a.u16", Value::make_int_array(ValueType::U16, {0, 65535}));
  kv.emplace_back("a.i16", Value::make_int_array(ValueType::I16, {-32768, 32767}));
  kv.emplace_back("a.u32", Value::make_int_array(ValueType::U32, {0, 0xffffffffll}));
  kv.emplace_back("a.i32", Value::make_int_array(ValueType::I32, {INT32_MIN, -1, INT32_MAX}));
  kv.emplace_back("a.u64", Value::make_int_array(ValueType::U64, {0, INT64_MAX}));
  kv.emplace_back("a.i64", Value::make_int_array(ValueType::I64, {INT64_MIN, INT64_MAX}));
  kv.emplace_back("a.bool", Value::make_int_array(ValueType::BOOL, {1, 0, 1}));
  kv.emplace_back("a.f32", Value::make_float_array(ValueType::F32, {0.5, -3.25, static_cast<double>(1e30f)}));
  kv.emplace_back("a.f64", Value::make_float_array(ValueType::F64, {0.1, -1e-300}));
  kv.emplace_back("a.string", Value::make_string_array({"", "token", std::string(300, 'x')}));
  kv.emplace_back("a.empty", Value::make_int_array(ValueType::I32, {}));
  kv.emplace_back("a.empty.str", Value::make_string_array({}));
  return kv;
}

TEST(GgufRoundTrip, EveryValueType) {
  Writer w;
  const auto kv = every_value_kind();
  for (const auto& [k, v] : kv) w.set(k, v);
  const std::vector<uint8_t> bytes = w.serialize();
  const File f = parse_ok(bytes);
  ASSERT_EQ(f.metadata().size(), kv.size());
  for (size_t k = 0; k < kv.size(); ++k) {
    EXPECT_EQ(f.metadata()[k].first, kv[k].first);  // file order kept
    const Value* v = f.find(kv[k].first);
    ASSERT_NE(v, nullptr) << kv[k].first;
    expect_same(kv[k].second, *v, kv[k].first);
  }
  EXPECT_EQ(f.find("missing"), nullptr);
  EXPECT_EQ(f.find("s.u16")->as_uint(), 65535u);
  EXPECT_EQ(f.find("s.i8")->as_int(), -128);
  EXPECT_EQ(f.find("s.f32")->as_float(), static_cast<double>(-1.0e-40f));
  EXPECT_EQ(f.find("s.bool.t")->as_bool(), true);
  EXPECT_EQ(f.find("a.string")->array_size(), 3u);
  EXPECT_TRUE(f.tensors().empty());
  EXPECT_EQ(f.version(), 3u);
}

TEST(GgufRoundTrip, SetReplacesInPlace) {
  Writer w;
  w.set("a", Value::make_u32(1));
  w.set("b", Value::make_u32(2));
  w.set("a", Value::make_string("again"));
  const std::vector<uint8_t> bytes = w.serialize();
  const File f = parse_ok(bytes);
  ASSERT_EQ(f.metadata().size(), 2u);
  EXPECT_EQ(f.metadata()[0].first, "a");
  EXPECT_EQ(*f.find("a")->as_string(), "again");
  EXPECT_EQ(f.metadata()[1].first, "b");
}

struct TensorCase {
  const char* name;
  TensorType type;
  std::vector<uint64_t> ne;
};

std::vector<TensorCase> every_tensor_type() {
  return {
      {"t.f32", TensorType::F32, {7}},
      {"t.f16", TensorType::F16, {5, 3}},
      {"t.q8_0", TensorType::Q8_0, {64, 3}},
      {"t.q2_k", TensorType::Q2_K, {256, 2, 3}},
      {"t.q4_k", TensorType::Q4_K, {512, 1}},
      {"t.q8_k", TensorType::Q8_K, {256}},
      {"t.iq2_xxs", TensorType::IQ2_XXS, {256, 3, 2}},
      {"t.i32", TensorType::I32, {6, 4}},
      {"t.bf16", TensorType::BF16, {3, 2, 2, 2}},
  };
}

void check_tensors(const File& f, const std::vector<TensorCase>& cases, uint32_t alignment) {
  EXPECT_EQ(f.alignment(), alignment);
  EXPECT_EQ(f.data_offset() % alignment, 0u);
  ASSERT_EQ(f.tensors().size(), cases.size());
  uint64_t expected_offset = 0;
  for (size_t k = 0; k < cases.size(); ++k) {
    const TensorCase& c = cases[k];
    SCOPED_TRACE(c.name);
    const TensorInfo* t = f.tensor(c.name);
    ASSERT_NE(t, nullptr);
    EXPECT_EQ(t, &f.tensors()[k]);  // insertion order kept
    EXPECT_EQ(t->type, c.type);
    EXPECT_EQ(t->ne, c.ne);
    const uint64_t size = *tensor_bytes(c.type, c.ne);
    EXPECT_EQ(t->size, size);
    EXPECT_EQ(t->offset, expected_offset);
    EXPECT_EQ(t->offset % alignment, 0u);
    expected_offset = (t->offset + size + alignment - 1) / alignment * alignment;
    uint64_t elems = 1;
    for (uint64_t v : c.ne) elems *= v;
    EXPECT_EQ(t->n_elements(), elems);
    EXPECT_EQ(t->ne_at(0), static_cast<int64_t>(c.ne[0]));
    EXPECT_EQ(t->ne_at(7), 1);
    ASSERT_NE(t->data, nullptr);
    const std::vector<uint8_t> want = pattern(size, static_cast<uint32_t>(k));
    EXPECT_EQ(std::vector<uint8_t>(t->data, t->data + t->size), want);
  }
  EXPECT_EQ(f.tensor("missing"), nullptr);
}

TEST(GgufRoundTrip, TensorsOfEveryTypeDefaultAlignment) {
  Writer w;
  w.set("general.architecture", Value::make_string("deepseek4"));
  const auto cases = every_tensor_type();
  for (size_t k = 0; k < cases.size(); ++k) {
    const uint64_t size = *tensor_bytes(cases[k].type, cases[k].ne);
    ASSERT_TRUE(w.add_tensor(cases[k].name, cases[k].type, cases[k].ne,
                             pattern(size, static_cast<uint32_t>(k)))
                    .ok());
  }
  const std::vector<uint8_t> bytes = w.serialize();
  const File f = parse_ok(bytes);
  check_tensors(f, cases, 32);
  // Data pointers are data section start + offset.
  for (const TensorInfo& t : f.tensors()) EXPECT_EQ(t.data, bytes.data() + f.data_offset() + t.offset);
  EXPECT_EQ(f.file_size(), bytes.size());
  EXPECT_EQ(f.file_size() % 32, 0u);  // padded after the last tensor, like ggml
  EXPECT_EQ(f.header_bytes().size(), f.data_offset());
  EXPECT_EQ(f.header_bytes().data(), bytes.data());
}

TEST(GgufRoundTrip, CustomAlignment64) {
  Writer w;
  w.set("general.alignment", Value::make_u32(64));
  const auto cases = every_tensor_type();
  for (size_t k = 0; k < cases.size(); ++k) {
    const uint64_t size = *tensor_bytes(cases[k].type, cases[k].ne);
    ASSERT_TRUE(w.add_tensor(cases[k].name, cases[k].type, cases[k].ne,
                             pattern(size, static_cast<uint32_t>(k)))
                    .ok());
  }
  const std::vector<uint8_t> bytes = w.serialize();
  const File f = parse_ok(bytes);
  check_tensors(f, cases, 64);
  EXPECT_EQ(f.find("general.alignment")->as_uint(), 64u);
}

TEST(GgufRoundTrip, GeneratedTensorsMatchHeldOnes) {
  const auto cases = every_tensor_type();
  Writer held, generated;
  std::vector<uint64_t> sizes_seen;
  for (size_t k = 0; k < cases.size(); ++k) {
    const uint64_t size = *tensor_bytes(cases[k].type, cases[k].ne);
    ASSERT_TRUE(held.add_tensor(cases[k].name, cases[k].type, cases[k].ne,
                                pattern(size, static_cast<uint32_t>(k)))
                    .ok());
    ASSERT_TRUE(generated
                    .add_generated_tensor(cases[k].name, cases[k].type, cases[k].ne,
                                          [k, &sizes_seen](uint8_t* dst, uint64_t n) {
                                            sizes_seen.push_back(n);
                                            const auto p = pattern(n, static_cast<uint32_t>(k));
                                            std::copy(p.begin(), p.end(), dst);
                                          })
                    .ok());
  }
  const auto a = held.serialize();
  const auto b = generated.serialize();
  EXPECT_EQ(a, b);
  ASSERT_EQ(sizes_seen.size(), cases.size());
  for (size_t k = 0; k < cases.size(); ++k) {
    EXPECT_EQ(sizes_seen[k], *tensor_bytes(cases[k].type, cases[k].ne));
  }
  check_tensors(parse_ok(b), cases, 32);
}

TEST(GgufRoundTrip, AddTensorChecks) {
  Writer w;
  auto wrong_size = w.add_tensor("x", TensorType::Q8_0, {32, 2}, std::vector<uint8_t>(67));
  ASSERT_FALSE(wrong_size.ok());
  EXPECT_EQ(wrong_size.message(), "tensor 'x': data holds 67 bytes, expected 68 for Q8_0");

  ASSERT_TRUE(w.add_tensor("x", TensorType::Q8_0, {32, 2}, std::vector<uint8_t>(68)).ok());
  auto dup = w.add_tensor("x", TensorType::F32, {1}, std::vector<uint8_t>(4));
  ASSERT_FALSE(dup.ok());
  EXPECT_NE(dup.message().find("duplicate tensor name 'x'"), std::string::npos);
  auto dup_gen = w.add_generated_tensor("x", TensorType::F32, {1}, [](uint8_t*, uint64_t) {});
  EXPECT_FALSE(dup_gen.ok());

  auto block = w.add_tensor("y", TensorType::Q4_K, {100}, std::vector<uint8_t>(0));
  ASSERT_FALSE(block.ok());
  EXPECT_NE(block.message().find("ne[0] = 100"), std::string::npos) << block.message();
  EXPECT_FALSE(w.add_tensor("y", TensorType::F32, {}, {}).ok());
  EXPECT_FALSE(w.add_tensor("y", TensorType::F32, {1, 1, 1, 1, 1}, std::vector<uint8_t>(4)).ok());
  EXPECT_FALSE(w.add_tensor("y", TensorType::F32, {0}, {}).ok());
  EXPECT_FALSE(w.add_tensor("", TensorType::F32, {1}, std::vector<uint8_t>(4)).ok());
  EXPECT_FALSE(
      w.add_tensor("y", static_cast<TensorType>(99), {1}, std::vector<uint8_t>(4)).ok());
  EXPECT_FALSE(w.add_generated_tensor("y", TensorType::F32, {1}, nullptr).ok());

  // Only the one valid tensor made it in.
  const std::vector<uint8_t> bytes = w.serialize();
  const File f = parse_ok(bytes);
  ASSERT_EQ(f.tensors().size(), 1u);
  EXPECT_EQ(f.tensors()[0].name, "x");
}

TEST(GgufRoundTrip, FileStaysValidAfterMove) {
  const std::vector<uint8_t> bytes = testing::small_valid_file();
  auto parsed = File::parse(bytes, "small.gguf");
  ASSERT_TRUE(parsed.ok()) << parsed.error().message;
  File moved = std::move(parsed).value();
  const TensorInfo* t = moved.tensor("last");
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(t->data + t->size, bytes.data() + bytes.size());
  EXPECT_EQ(moved.label(), "small.gguf");
}

}  // namespace
}  // namespace dsv4::gguf
