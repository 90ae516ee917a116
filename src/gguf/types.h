// ggml tensor type ids and their block geometry: container-level knowledge needed to size and
// validate tensors. Dequantisation lives in quant/.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>

#include "util/status.h"

namespace dsv4::gguf {

enum class TensorType : uint32_t {
  F32 = 0,
  F16 = 1,
  Q8_0 = 8,
  Q2_K = 10,
  Q4_K = 12,
  Q8_K = 15,
  IQ2_XXS = 16,
  I32 = 26,
  BF16 = 30,
};

struct TypeTraits {
  const char* name;
  int64_t block_elems;  // elements per block along ne[0]
  int64_t block_bytes;  // bytes per block
};

// Traits of a supported type id; nullopt for ids this engine does not know.
std::optional<TypeTraits> type_traits(uint32_t type_id);
inline std::optional<TypeTraits> type_traits(TensorType t) {
  return type_traits(static_cast<uint32_t>(t));
}
std::string type_name(uint32_t type_id);  // "Q8_0", or "type#42" for unknown ids
inline std::string type_name(TensorType t) { return type_name(static_cast<uint32_t>(t)); }

// Bytes of one row of n elements; error if n is not a multiple of the block size.
Result<uint64_t> row_bytes(TensorType t, int64_t n);
// Bytes of a whole tensor, overflow-checked; error names the problem (block multiple, overflow).
Result<uint64_t> tensor_bytes(TensorType t, std::span<const uint64_t> ne);

}  // namespace dsv4::gguf
