#include <gtest/gtest.h>

#include <cstdint>
#include <limits>

#include "gguf/gguf.h"
#include "gguf_test_util.h"

namespace dsv4::gguf {
namespace {

using testing::scalar;

TEST(GgufValue, IntegerAccessorsAcceptAnyWidthWithinRange) {
  for (ValueType t : {ValueType::U8, ValueType::U16, ValueType::U32, ValueType::U64}) {
    const Value v = scalar(t, 200);
    EXPECT_TRUE(v.is_integer());
    EXPECT_EQ(v.as_uint(), 200u);
    EXPECT_EQ(v.as_int(), 200);
    EXPECT_EQ(v.as_float(), 200.0);
  }
  for (ValueType t : {ValueType::I8, ValueType::I16, ValueType::I32, ValueType::I64}) {
    const Value pos = scalar(t, 0, 100);
    EXPECT_TRUE(pos.is_integer());
    EXPECT_EQ(pos.as_uint(), 100u);
    EXPECT_EQ(pos.as_int(), 100);
    const Value neg = scalar(t, 0, -5);
    EXPECT_FALSE(neg.as_uint().has_value());
    EXPECT_EQ(neg.as_int(), -5);
    EXPECT_EQ(neg.as_float(), -5.0);
  }
  const Value big = Value::make_u64(std::numeric_limits<uint64_t>::max());
  EXPECT_EQ(big.as_uint(), std::numeric_limits<uint64_t>::max());
  EXPECT_FALSE(big.as_int().has_value());
  const Value edge = Value::make_u64(static_cast<uint64_t>(INT64_MAX));
  EXPECT_EQ(edge.as_int(), INT64_MAX);
}

TEST(GgufValue, NonIntegers) {
  const Value f = Value::make_f32(1.5f);
  EXPECT_FALSE(f.is_integer());
  EXPECT_FALSE(f.as_uint().has_value());
  EXPECT_FALSE(f.as_int().has_value());
  EXPECT_EQ(f.as_float(), 1.5);
  EXPECT_EQ(scalar(ValueType::F64, 0, 0, 0.1).as_float(), 0.1);

  const Value b = Value::make_bool(true);
  EXPECT_FALSE(b.is_integer());
  EXPECT_EQ(b.as_bool(), true);
  EXPECT_EQ(Value::make_bool(false).as_bool(), false);
  EXPECT_FALSE(b.as_uint().has_value());
  EXPECT_FALSE(b.as_float().has_value());
  EXPECT_FALSE(Value::make_u32(1).as_bool().has_value());

  const Value s = Value::make_string("hi");
  ASSERT_NE(s.as_string(), nullptr);
  EXPECT_EQ(*s.as_string(), "hi");
  EXPECT_EQ(Value::make_u32(1).as_string(), nullptr);
  EXPECT_FALSE(s.as_float().has_value());
  EXPECT_EQ(s.array_size(), 0u);
}

TEST(GgufValue, Arrays) {
  const Value ints = Value::make_int_array(ValueType::I16, {1, 2, 3});
  EXPECT_TRUE(ints.is_array());
  EXPECT_FALSE(ints.is_integer());
  EXPECT_EQ(ints.array_size(), 3u);
  EXPECT_FALSE(ints.as_uint().has_value());
  EXPECT_EQ(Value::make_float_array(ValueType::F64, {1, 2}).array_size(), 2u);
  EXPECT_EQ(Value::make_string_array({"a"}).array_size(), 1u);
  EXPECT_EQ(Value::make_string_array({}).array_size(), 0u);
  EXPECT_EQ(Value::make_string_array({}).element_type, ValueType::STRING);
}

TEST(GgufValue, TypeNames) {
  EXPECT_STREQ(value_type_name(ValueType::U8), "u8");
  EXPECT_STREQ(value_type_name(ValueType::F64), "f64");
  EXPECT_STREQ(value_type_name(ValueType::ARRAY), "array");
  EXPECT_STREQ(value_type_name(static_cast<ValueType>(77)), "unknown");
}

}  // namespace
}  // namespace dsv4::gguf
