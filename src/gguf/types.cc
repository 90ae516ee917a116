// Block geometry of the ggml types dsv4 reads (FORMATS.md §4.1) and overflow-checked sizes.
// Everything here sees shapes straight from untrusted files, so every product is checked.
#include "gguf/types.h"

#include <cstdint>
#include <limits>
#include <string>

namespace dsv4::gguf {

std::optional<TypeTraits> type_traits(uint32_t type_id) {
  switch (static_cast<TensorType>(type_id)) {
    case TensorType::F32: return TypeTraits{"F32", 1, 4};
    case TensorType::F16: return TypeTraits{"F16", 1, 2};
    case TensorType::Q8_0: return TypeTraits{"Q8_0", 32, 34};
    case TensorType::Q2_K: return TypeTraits{"Q2_K", 256, 84};
    case TensorType::Q4_K: return TypeTraits{"Q4_K", 256, 144};
    case TensorType::Q8_K: return TypeTraits{"Q8_K", 256, 292};
    case TensorType::IQ2_XXS: return TypeTraits{"IQ2_XXS", 256, 66};
    case TensorType::I32: return TypeTraits{"I32", 1, 4};
    case TensorType::BF16: return TypeTraits{"BF16", 1, 2};
  }
  return std::nullopt;
}

std::string type_name(uint32_t type_id) {
  if (auto traits = type_traits(type_id)) return traits->name;
  return "type#" + std::to_string(type_id);
}

Result<uint64_t> row_bytes(TensorType t, int64_t n) {
  const auto traits = type_traits(t);
  if (!traits) return make_error("unknown tensor type " + type_name(t));
  if (n <= 0) return make_error("row of " + std::to_string(n) + " elements is not positive");
  if (n % traits->block_elems != 0) {
    return make_error("row of " + std::to_string(n) + " elements is not a multiple of the " +
                      traits->name + " block size " + std::to_string(traits->block_elems));
  }
  uint64_t bytes = 0;
  if (__builtin_mul_overflow(static_cast<uint64_t>(n / traits->block_elems),
                             static_cast<uint64_t>(traits->block_bytes), &bytes)) {
    return make_error("row of " + std::to_string(n) + " " + traits->name +
                      " elements overflows 64-bit sizes");
  }
  return bytes;
}

namespace {

std::string shape_string(std::span<const uint64_t> ne) {
  std::string s = "(";
  for (size_t d = 0; d < ne.size(); ++d) {
    if (d) s += ", ";
    s += std::to_string(ne[d]);
  }
  return s + ")";
}

}  // namespace

Result<uint64_t> tensor_bytes(TensorType t, std::span<const uint64_t> ne) {
  const auto traits = type_traits(t);
  if (!traits) return make_error("unknown tensor type " + type_name(t));
  if (ne.empty()) return make_error("tensor has no dimensions");
  // Element counts and ne values must fit int64: consumers index with signed arithmetic
  // (TensorInfo::ne_at), and a low-bit type can have far more elements than bytes.
  constexpr uint64_t kMaxElems = static_cast<uint64_t>(std::numeric_limits<int64_t>::max());
  uint64_t elems = 1;
  for (size_t d = 0; d < ne.size(); ++d) {
    if (ne[d] == 0) return make_error("ne[" + std::to_string(d) + "] is 0");
    if (__builtin_mul_overflow(elems, ne[d], &elems) || elems > kMaxElems) {
      return make_error("shape " + shape_string(ne) + " has more than 2^63-1 elements");
    }
  }
  if (ne[0] % static_cast<uint64_t>(traits->block_elems) != 0) {
    return make_error("ne[0] = " + std::to_string(ne[0]) + " is not a multiple of the " +
                      traits->name + " block size " + std::to_string(traits->block_elems));
  }
  DSV4_ASSIGN_OR_RETURN(uint64_t bytes, row_bytes(t, static_cast<int64_t>(ne[0])));
  for (size_t d = 1; d < ne.size(); ++d) {
    if (__builtin_mul_overflow(bytes, ne[d], &bytes)) {
      return make_error("shape " + shape_string(ne) + " of " + traits->name +
                        " overflows 64-bit byte sizes");
    }
  }
  return bytes;
}

}  // namespace dsv4::gguf
