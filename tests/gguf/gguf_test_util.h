// Helpers shared by the gguf tests: a raw byte builder for files the Writer would refuse to
// produce, and a small valid model used by the truncation and corruption tests.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "gguf/gguf.h"

namespace dsv4::gguf::testing {

// Byte-level GGUF builder: no checks at all, so tests can write any malformed field.
struct Raw {
  std::vector<uint8_t> b;

  template <class T>
  Raw& put(T v) {
    const size_t at = b.size();
    b.resize(at + sizeof(T));
    std::memcpy(b.data() + at, &v, sizeof(T));
    return *this;
  }
  Raw& u8(uint8_t v) { return put(v); }
  Raw& u32(uint32_t v) { return put(v); }
  Raw& u64(uint64_t v) { return put(v); }
  Raw& str(std::string_view s) {
    u64(s.size());
    b.insert(b.end(), s.begin(), s.end());
    return *this;
  }
  Raw& header(uint64_t n_tensors, uint64_t n_kv, uint32_t magic = kMagic, uint32_t version = 3) {
    return u32(magic).u32(version).u64(n_tensors).u64(n_kv);
  }
  Raw& kv_u32(std::string_view key, uint32_t v) {
    return str(key).u32(static_cast<uint32_t>(ValueType::U32)).u32(v);
  }
  Raw& tensor(std::string_view name, std::vector<uint64_t> ne, uint32_t type, uint64_t offset) {
    str(name).u32(static_cast<uint32_t>(ne.size()));
    for (uint64_t v : ne) u64(v);
    return u32(type).u64(offset);
  }
  Raw& pad_to(uint64_t alignment) {
    while (b.size() % alignment != 0) b.push_back(0);
    return *this;
  }
  Raw& zeros(uint64_t n) {
    b.resize(b.size() + n, 0);
    return *this;
  }
};

// Deterministic bytes for tensor data.
inline std::vector<uint8_t> pattern(uint64_t n, uint32_t seed) {
  std::vector<uint8_t> out(n);
  uint32_t x = seed * 2654435761u + 1;
  for (uint64_t k = 0; k < n; ++k) {
    x = x * 1664525u + 1013904223u;
    out[k] = static_cast<uint8_t>(x >> 24);
  }
  return out;
}

inline Value scalar(ValueType t, uint64_t u, int64_t i = 0, double f = 0) {
  Value v;
  v.type = t;
  v.u = u;
  v.i = i;
  v.f = f;
  return v;
}

// A small file exercising every value kind and several tensor types. Its last tensor ends on
// an alignment boundary, so the file has no trailing padding and every strict prefix of it is
// invalid.
inline std::vector<uint8_t> small_valid_file() {
  Writer w;
  w.set("general.architecture", Value::make_string("deepseek4"));
  w.set("a.u8", scalar(ValueType::U8, 7));
  w.set("a.i16", scalar(ValueType::I16, 0, -300));
  w.set("a.u32", Value::make_u32(43));
  w.set("a.f32", Value::make_f32(0.5f));
  w.set("a.bool", Value::make_bool(true));
  w.set("a.u64", Value::make_u64(1ull << 40));
  w.set("a.f64", scalar(ValueType::F64, 0, 0, 2.25));
  w.set("a.ints", Value::make_int_array(ValueType::I32, {1, -2, 3}));
  w.set("a.floats", Value::make_float_array(ValueType::F32, {1.5, -2.0}));
  w.set("a.strings", Value::make_string_array({"x", "", "yz"}));
  auto add = [&](const char* name, TensorType type, std::vector<uint64_t> ne, uint32_t seed) {
    const uint64_t size = *tensor_bytes(type, ne);
    (void)w.add_tensor(name, type, std::move(ne), pattern(size, seed));
  };
  add("q8", TensorType::Q8_0, {64, 2}, 1);            // 136 bytes
  add("iq2", TensorType::IQ2_XXS, {256, 1, 2}, 2);    // 132 bytes
  add("f16", TensorType::F16, {3}, 3);                // 6 bytes
  add("last", TensorType::F32, {8}, 4);               // 32 bytes: ends on the boundary
  return w.serialize();
}

}  // namespace dsv4::gguf::testing
