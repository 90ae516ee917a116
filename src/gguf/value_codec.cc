#include "gguf/value_codec.h"

#include <cfloat>
#include <cmath>
#include <limits>
#include <string>

namespace dsv4::gguf::detail {
namespace {

constexpr uint32_t kMaxValueType = static_cast<uint32_t>(ValueType::F64);
constexpr int64_t kInt64Max = std::numeric_limits<int64_t>::max();

// Bytes one element occupies at least; lets a count be checked before anything is allocated.
uint64_t min_encoded_size(ValueType t) {
  switch (t) {
    case ValueType::U8:
    case ValueType::I8:
    case ValueType::BOOL: return 1;
    case ValueType::U16:
    case ValueType::I16: return 2;
    case ValueType::U32:
    case ValueType::I32:
    case ValueType::F32: return 4;
    case ValueType::U64:
    case ValueType::I64:
    case ValueType::F64:
    case ValueType::STRING: return 8;  // the length prefix of an empty string
    case ValueType::ARRAY: return 12;  // element type + count
  }
  return 1;
}

// Integer and bool elements widened to int64, the storage of integer arrays.
Result<int64_t> read_int_element(Cursor& c, ValueType t) {
  switch (t) {
    case ValueType::U8: {
      DSV4_ASSIGN_OR_RETURN(uint8_t v, read_field<uint8_t>(c, "u8"));
      return int64_t{v};
    }
    case ValueType::I8: {
      DSV4_ASSIGN_OR_RETURN(int8_t v, read_field<int8_t>(c, "i8"));
      return int64_t{v};
    }
    case ValueType::U16: {
      DSV4_ASSIGN_OR_RETURN(uint16_t v, read_field<uint16_t>(c, "u16"));
      return int64_t{v};
    }
    case ValueType::I16: {
      DSV4_ASSIGN_OR_RETURN(int16_t v, read_field<int16_t>(c, "i16"));
      return int64_t{v};
    }
    case ValueType::U32: {
      DSV4_ASSIGN_OR_RETURN(uint32_t v, read_field<uint32_t>(c, "u32"));
      return int64_t{v};
    }
    case ValueType::I32: {
      DSV4_ASSIGN_OR_RETURN(int32_t v, read_field<int32_t>(c, "i32"));
      return int64_t{v};
    }
    case ValueType::U64: {
      DSV4_ASSIGN_OR_RETURN(uint64_t v, read_field<uint64_t>(c, "u64"));
      if (v > static_cast<uint64_t>(kInt64Max)) {
        return make_error("u64 value " + std::to_string(v) + " exceeds 2^63-1");
      }
      return static_cast<int64_t>(v);
    }
    case ValueType::I64: return read_field<int64_t>(c, "i64");
    case ValueType::BOOL: {
      DSV4_ASSIGN_OR_RETURN(uint8_t v, read_field<uint8_t>(c, "bool"));
      if (v > 1) return make_error("bool value " + std::to_string(v) + " is not 0 or 1");
      return int64_t{v};
    }
    default: break;
  }
  return make_error(std::string("not an integer type: ") + value_type_name(t));
}

Result<double> read_float_element(Cursor& c, ValueType t) {
  if (t == ValueType::F32) {
    DSV4_ASSIGN_OR_RETURN(float v, read_field<float>(c, "f32"));
    return double{v};
  }
  return read_field<double>(c, "f64");
}

bool is_float_type(ValueType t) { return t == ValueType::F32 || t == ValueType::F64; }

Result<Value> read_array(Cursor& c, const ReadLimits& limits) {
  DSV4_ASSIGN_OR_RETURN(uint32_t elem_id, read_field<uint32_t>(c, "array element type"));
  if (elem_id > kMaxValueType) {
    return make_error("unknown array element type " + std::to_string(elem_id));
  }
  const auto elem = static_cast<ValueType>(elem_id);
  if (elem == ValueType::ARRAY) return make_error("nested arrays are not supported");
  DSV4_ASSIGN_OR_RETURN(uint64_t count, read_field<uint64_t>(c, "array count"));
  if (count > limits.max_array_elements) {
    return make_error("array count " + std::to_string(count) + " exceeds the limit " +
                      std::to_string(limits.max_array_elements));
  }
  if (count > c.remaining() / min_encoded_size(elem)) {
    return make_error("array count " + std::to_string(count) + " of " + value_type_name(elem) +
                      " cannot fit in the remaining " + std::to_string(c.remaining()) + " bytes");
  }
  Value out;
  out.type = ValueType::ARRAY;
  out.element_type = elem;
  // Each element is backed by at least one byte of input, so these reservations are bounded
  // by the file size, not by what the count claims.
  if (elem == ValueType::STRING) {
    out.strings.reserve(count);
    for (uint64_t k = 0; k < count; ++k) {
      auto s = read_string(c, limits);
      if (!s.ok()) return s.error().with_context("element " + std::to_string(k));
      out.strings.push_back(std::move(s).value());
    }
  } else if (is_float_type(elem)) {
    out.floats.reserve(count);
    for (uint64_t k = 0; k < count; ++k) {
      auto v = read_float_element(c, elem);
      if (!v.ok()) return v.error().with_context("element " + std::to_string(k));
      out.floats.push_back(*v);
    }
  } else {
    out.ints.reserve(count);
    for (uint64_t k = 0; k < count; ++k) {
      auto v = read_int_element(c, elem);
      if (!v.ok()) return v.error().with_context("element " + std::to_string(k));
      out.ints.push_back(*v);
    }
  }
  return out;
}

// Whether an int64 array element fits the declared element type.
bool int_fits(ValueType t, int64_t v) {
  switch (t) {
    case ValueType::U8: return v >= 0 && v <= 0xff;
    case ValueType::I8: return v >= -128 && v <= 127;
    case ValueType::U16: return v >= 0 && v <= 0xffff;
    case ValueType::I16: return v >= -32768 && v <= 32767;
    case ValueType::U32: return v >= 0 && v <= 0xffffffffll;
    case ValueType::I32: return v >= INT32_MIN && v <= INT32_MAX;
    case ValueType::U64: return v >= 0;
    case ValueType::I64: return true;
    case ValueType::BOOL: return v == 0 || v == 1;
    default: return false;
  }
}

void append_int(std::vector<uint8_t>& out, ValueType t, int64_t v) {
  switch (t) {
    case ValueType::U8:
    case ValueType::BOOL: append<uint8_t>(out, static_cast<uint8_t>(v)); break;
    case ValueType::I8: append<int8_t>(out, static_cast<int8_t>(v)); break;
    case ValueType::U16: append<uint16_t>(out, static_cast<uint16_t>(v)); break;
    case ValueType::I16: append<int16_t>(out, static_cast<int16_t>(v)); break;
    case ValueType::U32: append<uint32_t>(out, static_cast<uint32_t>(v)); break;
    case ValueType::I32: append<int32_t>(out, static_cast<int32_t>(v)); break;
    case ValueType::U64: append<uint64_t>(out, static_cast<uint64_t>(v)); break;
    default: append<int64_t>(out, v); break;
  }
}

// Converting a finite double beyond the f32 range is undefined behaviour, so refuse it.
bool fits_f32(double v) { return !std::isfinite(v) || std::fabs(v) <= FLT_MAX; }

}  // namespace

Error truncated(const Cursor& c, const std::string& what) {
  return make_error(what + " at offset " + std::to_string(c.pos()) +
                    " runs past the end of the file (" + std::to_string(c.remaining()) +
                    " bytes remain)");
}

Result<std::string> read_string(Cursor& c, const ReadLimits& limits) {
  DSV4_ASSIGN_OR_RETURN(uint64_t len, read_field<uint64_t>(c, "string length"));
  if (len > limits.max_string_bytes) {
    return make_error("string length " + std::to_string(len) + " exceeds the limit " +
                      std::to_string(limits.max_string_bytes));
  }
  std::string_view bytes;
  if (!c.take(len, &bytes)) {
    return make_error("string length " + std::to_string(len) + " at offset " +
                      std::to_string(c.pos() - 8) + " exceeds the remaining " +
                      std::to_string(c.remaining()) + " bytes");
  }
  return std::string(bytes);
}

Result<Value> read_value(Cursor& c, uint32_t type_id, const ReadLimits& limits) {
  if (type_id > kMaxValueType) return make_error("unknown value type " + std::to_string(type_id));
  const auto t = static_cast<ValueType>(type_id);
  Value out;
  out.type = t;
  switch (t) {
    case ValueType::STRING: {
      DSV4_ASSIGN_OR_RETURN(out.s, read_string(c, limits));
      return out;
    }
    case ValueType::ARRAY: return read_array(c, limits);
    case ValueType::F32:
    case ValueType::F64: {
      DSV4_ASSIGN_OR_RETURN(out.f, read_float_element(c, t));
      return out;
    }
    case ValueType::U64: {
      // Scalars keep the full u64 range; only array storage is int64.
      DSV4_ASSIGN_OR_RETURN(out.u, read_field<uint64_t>(c, "u64"));
      return out;
    }
    case ValueType::U8:
    case ValueType::U16:
    case ValueType::U32:
    case ValueType::BOOL: {
      DSV4_ASSIGN_OR_RETURN(int64_t v, read_int_element(c, t));
      out.u = static_cast<uint64_t>(v);
      return out;
    }
    default: {
      DSV4_ASSIGN_OR_RETURN(out.i, read_int_element(c, t));
      return out;
    }
  }
}

Status append_value(std::vector<uint8_t>& out, const Value& v) {
  switch (v.type) {
    case ValueType::U8:
    case ValueType::U16:
    case ValueType::U32:
    case ValueType::BOOL: {
      if (v.u > static_cast<uint64_t>(kInt64Max) || !int_fits(v.type, static_cast<int64_t>(v.u))) {
        return make_error("value " + std::to_string(v.u) + " does not fit " +
                          value_type_name(v.type));
      }
      append_int(out, v.type, static_cast<int64_t>(v.u));
      return Status();
    }
    case ValueType::U64: append<uint64_t>(out, v.u); return Status();
    case ValueType::I8:
    case ValueType::I16:
    case ValueType::I32:
    case ValueType::I64: {
      if (!int_fits(v.type, v.i)) {
        return make_error("value " + std::to_string(v.i) + " does not fit " +
                          value_type_name(v.type));
      }
      append_int(out, v.type, v.i);
      return Status();
    }
    case ValueType::F32:
      if (!fits_f32(v.f)) return make_error("value " + std::to_string(v.f) + " does not fit f32");
      append<float>(out, static_cast<float>(v.f));
      return Status();
    case ValueType::F64: append<double>(out, v.f); return Status();
    case ValueType::STRING: append_string(out, v.s); return Status();
    case ValueType::ARRAY: break;
  }
  if (static_cast<uint32_t>(v.type) > kMaxValueType) {
    return make_error("unknown value type " + std::to_string(static_cast<uint32_t>(v.type)));
  }
  const ValueType elem = v.element_type;
  if (static_cast<uint32_t>(elem) > kMaxValueType) {
    return make_error("unknown array element type " +
                      std::to_string(static_cast<uint32_t>(elem)));
  }
  if (elem == ValueType::ARRAY) return make_error("nested arrays are not supported");
  append<uint32_t>(out, static_cast<uint32_t>(elem));
  append<uint64_t>(out, v.array_size());
  if (elem == ValueType::STRING) {
    for (const std::string& s : v.strings) append_string(out, s);
  } else if (is_float_type(elem)) {
    for (size_t k = 0; k < v.floats.size(); ++k) {
      if (elem == ValueType::F64) {
        append<double>(out, v.floats[k]);
      } else if (fits_f32(v.floats[k])) {
        append<float>(out, static_cast<float>(v.floats[k]));
      } else {
        return make_error("element " + std::to_string(k) + " value " +
                          std::to_string(v.floats[k]) + " does not fit f32");
      }
    }
  } else {
    for (size_t k = 0; k < v.ints.size(); ++k) {
      if (!int_fits(elem, v.ints[k])) {
        return make_error("element " + std::to_string(k) + " value " + std::to_string(v.ints[k]) +
                          " does not fit " + value_type_name(elem));
      }
      append_int(out, elem, v.ints[k]);
    }
  }
  return Status();
}

}  // namespace dsv4::gguf::detail
