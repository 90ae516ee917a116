// JSON as the official encoder sees it: parsed into order-preserving objects and written back
// exactly like Python's json.dumps(value, ensure_ascii=False) (PROTOCOL.md §2.8). Tool schemas,
// response formats and non-string tool arguments reach the prompt through this writer, so any
// byte it gets wrong changes the prompt the model was trained on.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "util/status.h"

namespace dsv4::chat {

// Objects keep the client's key order (nlohmann::json would sort them).
using Json = nlohmann::ordered_json;

// Integers that do not fit 64 bits: nlohmann would turn them into doubles, but Python keeps them
// exact and so must the prompt. parse_json stores their digits in a binary value with this
// subtype; to_python_json writes the digits back. Nothing else in dsv4 creates such values.
inline constexpr std::uint64_t kBigIntegerSubtype = 0x49;  // 'I'

// Parses RFC 8259 JSON (UTF-8 validated by the lexer). A duplicated key keeps its first position
// and its last value, as Python's dict does. Errors name the byte offset.
Result<Json> parse_json(std::string_view text);

// json.dumps(value, ensure_ascii=False) with default separators (", " and ": ").
std::string to_python_json(const Json& value);
void append_python_json(std::string& out, const Json& value);

// The body of a JSON string literal as Python writes it: \" \\ \n \r \t \b \f, other control
// characters as \u00xx (lowercase hex), everything else (non-ASCII included) unchanged.
void append_python_escaped(std::string& out, std::string_view utf8);

// Python's repr(float): shortest round-trip digits, ".0" for integral values, exponent form
// (1e+16, 1e-05) when the decimal exponent is below -4 or at least 16; nan/inf as NaN/Infinity.
std::string python_float_repr(double value);

bool is_big_integer(const Json& value);

// obj[key] when obj is an object holding a string there, else `fallback`. (nlohmann's value()
// throws on a type mismatch; request fields are untrusted.)
std::string string_field(const Json& obj, std::string_view key, std::string_view fallback = "");

}  // namespace dsv4::chat
