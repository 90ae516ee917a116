// Metadata values: typed accessors that let callers ignore the integer width a converter chose
// (one tool writes a layer count as u32, another as i64) while still catching out-of-range values.
#include <cassert>
#include <limits>

#include "gguf/gguf.h"

namespace dsv4::gguf {

const char* value_type_name(ValueType t) {
  switch (t) {
    case ValueType::U8: return "u8";
    case ValueType::I8: return "i8";
    case ValueType::U16: return "u16";
    case ValueType::I16: return "i16";
    case ValueType::U32: return "u32";
    case ValueType::I32: return "i32";
    case ValueType::F32: return "f32";
    case ValueType::BOOL: return "bool";
    case ValueType::STRING: return "string";
    case ValueType::ARRAY: return "array";
    case ValueType::U64: return "u64";
    case ValueType::I64: return "i64";
    case ValueType::F64: return "f64";
  }
  return "unknown";
}

namespace {

bool is_unsigned_type(ValueType t) {
  return t == ValueType::U8 || t == ValueType::U16 || t == ValueType::U32 || t == ValueType::U64;
}
bool is_signed_type(ValueType t) {
  return t == ValueType::I8 || t == ValueType::I16 || t == ValueType::I32 || t == ValueType::I64;
}
bool is_float_type(ValueType t) { return t == ValueType::F32 || t == ValueType::F64; }

}  // namespace

bool Value::is_integer() const { return is_unsigned_type(type) || is_signed_type(type); }

std::optional<uint64_t> Value::as_uint() const {
  if (is_unsigned_type(type)) return u;
  if (is_signed_type(type) && i >= 0) return static_cast<uint64_t>(i);
  return std::nullopt;
}

std::optional<int64_t> Value::as_int() const {
  if (is_signed_type(type)) return i;
  if (is_unsigned_type(type) && u <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
    return static_cast<int64_t>(u);
  }
  return std::nullopt;
}

std::optional<double> Value::as_float() const {
  if (is_float_type(type)) return f;
  if (is_unsigned_type(type)) return static_cast<double>(u);
  if (is_signed_type(type)) return static_cast<double>(i);
  return std::nullopt;
}

std::optional<bool> Value::as_bool() const {
  if (type == ValueType::BOOL) return u != 0;
  return std::nullopt;
}

const std::string* Value::as_string() const { return type == ValueType::STRING ? &s : nullptr; }

size_t Value::array_size() const {
  if (!is_array()) return 0;
  if (element_type == ValueType::STRING) return strings.size();
  if (is_float_type(element_type)) return floats.size();
  return ints.size();
}

Value Value::make_u32(uint32_t v) {
  Value out;
  out.type = ValueType::U32;
  out.u = v;
  return out;
}

Value Value::make_i32(int32_t v) {
  Value out;
  out.type = ValueType::I32;
  out.i = v;
  return out;
}

Value Value::make_u64(uint64_t v) {
  Value out;
  out.type = ValueType::U64;
  out.u = v;
  return out;
}

Value Value::make_f32(float v) {
  Value out;
  out.type = ValueType::F32;
  out.f = v;
  return out;
}

Value Value::make_bool(bool v) {
  Value out;
  out.type = ValueType::BOOL;
  out.u = v ? 1 : 0;
  return out;
}

Value Value::make_string(std::string v) {
  Value out;
  out.type = ValueType::STRING;
  out.s = std::move(v);
  return out;
}

Value Value::make_int_array(ValueType element_type, std::vector<int64_t> v) {
  assert(is_unsigned_type(element_type) || is_signed_type(element_type) ||
         element_type == ValueType::BOOL);
  Value out;
  out.type = ValueType::ARRAY;
  out.element_type = element_type;
  out.ints = std::move(v);
  return out;
}

Value Value::make_float_array(ValueType element_type, std::vector<double> v) {
  assert(is_float_type(element_type));
  Value out;
  out.type = ValueType::ARRAY;
  out.element_type = element_type;
  out.floats = std::move(v);
  return out;
}

Value Value::make_string_array(std::vector<std::string> v) {
  Value out;
  out.type = ValueType::ARRAY;
  out.element_type = ValueType::STRING;
  out.strings = std::move(v);
  return out;
}

}  // namespace dsv4::gguf
