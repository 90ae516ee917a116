// GGUF v3 container: a validating reader over a memory mapping, and a writer.
// FORMATS.md §1. A hostile file never crashes the reader or makes it allocate without bound:
// every count and length is checked against the bytes that remain before it is used.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "gguf/types.h"
#include "util/mapped_file.h"
#include "util/status.h"

namespace dsv4::gguf {

inline constexpr uint32_t kMagic = 0x46554747;  // "GGUF"
inline constexpr uint32_t kVersion = 3;
inline constexpr uint32_t kDefaultAlignment = 32;

enum class ValueType : uint32_t {
  U8 = 0, I8 = 1, U16 = 2, I16 = 3, U32 = 4, I32 = 5, F32 = 6, BOOL = 7,
  STRING = 8, ARRAY = 9, U64 = 10, I64 = 11, F64 = 12,
};
const char* value_type_name(ValueType t);

// One metadata value. Scalars keep their declared type; arrays keep their element type and
// store elements in the vector matching their kind (ints for all integer and bool types,
// floats for F32/F64, strings for STRING). Nested arrays are rejected by the reader.
struct Value {
  ValueType type = ValueType::U32;
  ValueType element_type = ValueType::U32;  // arrays only
  uint64_t u = 0;       // unsigned integer scalars and BOOL
  int64_t i = 0;        // signed integer scalars
  double f = 0;         // F32/F64 scalars (F32 widened exactly)
  std::string s;        // STRING scalars
  std::vector<int64_t> ints;         // integer/bool arrays (u64 values above INT64_MAX rejected)
  std::vector<double> floats;        // float arrays
  std::vector<std::string> strings;  // string arrays

  bool is_array() const { return type == ValueType::ARRAY; }
  bool is_integer() const;  // any integer scalar type (not BOOL)
  // Integer scalar of any width as u64/i64; nullopt if not an integer or out of range.
  std::optional<uint64_t> as_uint() const;
  std::optional<int64_t> as_int() const;
  // F32/F64 or any integer scalar as double; nullopt otherwise.
  std::optional<double> as_float() const;
  std::optional<bool> as_bool() const;
  const std::string* as_string() const;  // nullptr unless STRING
  size_t array_size() const;             // 0 for scalars

  // Constructors for writers and tests.
  static Value make_u32(uint32_t v);
  static Value make_i32(int32_t v);
  static Value make_u64(uint64_t v);
  static Value make_f32(float v);
  static Value make_bool(bool v);
  static Value make_string(std::string v);
  static Value make_int_array(ValueType element_type, std::vector<int64_t> v);
  static Value make_float_array(ValueType element_type, std::vector<double> v);
  static Value make_string_array(std::vector<std::string> v);
};

struct TensorInfo {
  std::string name;
  TensorType type = TensorType::F32;
  std::vector<uint64_t> ne;   // ne[0] fastest; 1..4 dims
  uint64_t offset = 0;        // relative to the data section
  uint64_t size = 0;          // bytes, from type and shape
  const uint8_t* data = nullptr;  // into the mapping (reader) or nullptr

  uint64_t n_elements() const;
  int64_t ne_at(size_t d) const { return d < ne.size() ? static_cast<int64_t>(ne[d]) : 1; }
};

struct ReadLimits {
  uint64_t max_tensors = 1u << 20;
  uint64_t max_kv = 1u << 20;
  uint64_t max_string_bytes = 1u << 24;       // one string
  uint64_t max_array_elements = 1u << 26;     // one array
  uint32_t max_dims = 4;
};

class File {
 public:
  // Opens and fully validates a file: header, every key/value, tensor table, alignment,
  // offsets inside the file, no overlapping tensors, known types, shapes consistent with the
  // type's block size. Errors name the file, the field and the offending value.
  static Result<File> open(const std::string& path, const ReadLimits& limits = {});
  // Same over bytes the caller keeps alive (tests, fuzzing).
  static Result<File> parse(std::span<const uint8_t> bytes, const std::string& label,
                            const ReadLimits& limits = {});

  uint32_t version() const { return version_; }
  uint32_t alignment() const { return alignment_; }
  uint64_t data_offset() const { return data_offset_; }
  uint64_t file_size() const { return bytes_.size(); }
  const std::string& label() const { return label_; }

  const Value* find(const std::string& key) const;
  const std::vector<std::pair<std::string, Value>>& metadata() const { return kv_; }

  const TensorInfo* tensor(const std::string& name) const;
  const std::vector<TensorInfo>& tensors() const { return tensors_; }
  // Bytes of the header + metadata + tensor table (a cheap model fingerprint source).
  std::span<const uint8_t> header_bytes() const { return bytes_.subspan(0, data_offset_); }

 private:
  std::shared_ptr<MappedFile> mapping_;  // empty for parse()
  std::span<const uint8_t> bytes_;
  std::string label_;
  uint32_t version_ = 0;
  uint32_t alignment_ = kDefaultAlignment;
  uint64_t data_offset_ = 0;
  std::vector<std::pair<std::string, Value>> kv_;
  std::map<std::string, size_t> kv_index_;
  std::vector<TensorInfo> tensors_;
  std::map<std::string, size_t> tensor_index_;
};

// Builds a GGUF v3 file. Tensors are laid out in insertion order, each aligned to
// general.alignment (default 32). Tensor bytes are either held (add_tensor) or produced on
// demand while writing (add_generated_tensor), so full-size synthetic models stream to disk
// one tensor at a time.
class Writer {
 public:
  using Generator = std::function<void(uint8_t* dst, uint64_t size)>;

  void set(const std::string& key, Value value);  // replaces an existing key, keeps order
  // `data` must hold exactly tensor_bytes(type, ne) bytes. Duplicate names are an error.
  Status add_tensor(const std::string& name, TensorType type, std::vector<uint64_t> ne,
                    std::vector<uint8_t> data);
  Status add_generated_tensor(const std::string& name, TensorType type, std::vector<uint64_t> ne,
                              Generator generate);
  // Whole file in memory (small models, tests).
  std::vector<uint8_t> serialize() const;
  // Streams to path.tmp, then renames over path.
  Status write(const std::string& path) const;

 private:
  struct PendingTensor {
    std::string name;
    TensorType type;
    std::vector<uint64_t> ne;
    uint64_t size;
    std::vector<uint8_t> data;  // empty when generated
    Generator generate;
  };
  // Metadata and tensor table, padded to the alignment it reports.
  Result<std::vector<uint8_t>> encode_header(uint32_t* alignment) const;

  std::vector<std::pair<std::string, Value>> kv_;
  std::vector<PendingTensor> tensors_;
};

}  // namespace dsv4::gguf
