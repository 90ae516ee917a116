// json.dumps emulation (PROTOCOL.md §2.8). Expected strings were produced by CPython 3.
#include "chat/json_text.h"

#include <gtest/gtest.h>

namespace dsv4::chat {
namespace {

std::string dumps(std::string_view json_text) {
  auto r = parse_json(json_text);
  EXPECT_TRUE(r.ok()) << json_text;
  return r.ok() ? to_python_json(*r) : "";
}

TEST(PythonJson, FloatsLikeRepr) {
  const std::pair<const char*, const char*> cases[] = {
      {"1e16", "1e+16"},
      {"1e15", "1000000000000000.0"},
      {"0.0001", "0.0001"},
      {"0.00001", "1e-05"},
      {"100.0", "100.0"},
      {"0.1", "0.1"},
      {"1.5", "1.5"},
      {"-0.0", "-0.0"},
      {"123456789.123", "123456789.123"},
      {"5e-324", "5e-324"},
      {"1.7976931348623157e308", "1.7976931348623157e+308"},
      {"1e22", "1e+22"},
      {"12345678901234567.0", "1.2345678901234568e+16"},
      {"0.30000000000000004", "0.30000000000000004"},
      {"2.5e-7", "2.5e-07"},
      {"-1.25e+20", "-1.25e+20"},
      {"9999999999999998.0", "9999999999999998.0"},
      {"1E5", "100000.0"},
      {"3.14159", "3.14159"},
  };
  for (const auto& [in, want] : cases) EXPECT_EQ(dumps(in), want) << in;
  EXPECT_EQ(python_float_repr(std::numeric_limits<double>::infinity()), "Infinity");
  EXPECT_EQ(python_float_repr(-std::numeric_limits<double>::infinity()), "-Infinity");
  EXPECT_EQ(python_float_repr(std::numeric_limits<double>::quiet_NaN()), "NaN");
}

TEST(PythonJson, IntegersExactAtAnySize) {
  EXPECT_EQ(dumps("[123456789012345678901234567890, -98765432109876543210, 18446744073709551615, "
                  "-9223372036854775808, -0, 7]"),
            "[123456789012345678901234567890, -98765432109876543210, 18446744073709551615, "
            "-9223372036854775808, 0, 7]");
}

TEST(PythonJson, SeparatorsAndKeyOrder) {
  EXPECT_EQ(dumps(R"({"z":1,"a":{"y":[1,2,{}],"b":[]},"m":null,"t":true,"f":false})"),
            R"({"z": 1, "a": {"y": [1, 2, {}], "b": []}, "m": null, "t": true, "f": false})");
}

TEST(PythonJson, DuplicateKeyKeepsFirstPositionLastValue) {
  EXPECT_EQ(dumps(R"({"a":1,"b":2,"a":3})"), R"({"a": 3, "b": 2})");
}

TEST(PythonJson, StringEscapes) {
  // \u007f, U+2028, '/' and non-ASCII are written raw; other controls as lowercase \u00xx.
  std::string in = "\"x\\u0001\\u001f\\u007f\\u2028/\xC3\xA9\\\"\\\\\\b\\f\\n\\r\\t\\u001B\"";
  EXPECT_EQ(dumps(in),
            "\"x\\u0001\\u001f\x7f\xE2\x80\xA8/\xC3\xA9\\\"\\\\\\b\\f\\n\\r\\t\\u001b\"");
}

TEST(PythonJson, ParseErrorsAreValues) {
  EXPECT_FALSE(parse_json("{").ok());
  EXPECT_FALSE(parse_json("[1,]").ok());
  EXPECT_FALSE(parse_json("{} x").ok());
  EXPECT_FALSE(parse_json("\"\xFF\"").ok());     // invalid UTF-8 in a string
  EXPECT_FALSE(parse_json("\"\\ud800\"").ok());  // lone surrogate
  EXPECT_FALSE(parse_json("NaN").ok());          // not JSON
  std::string deep(100000, '[');
  auto r = parse_json(deep);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("nested"), std::string::npos);
}

}  // namespace
}  // namespace dsv4::chat
