// The validating GGUF reader (FORMATS.md §1). Parsing walks the file once with a bounded
// Cursor; every count is checked against what the remaining bytes could hold before anything is
// reserved, so hostile input costs at most a few times its own size in memory. Once parsed,
// every tensor is known to lie inside the file, aligned, and apart from every other tensor, so
// the layers above may use TensorInfo::data without further checks.
#include <algorithm>
#include <numeric>
#include <string>
#include <utility>

#include "gguf/gguf.h"
#include "gguf/value_codec.h"
#include "gguf/wire.h"

namespace dsv4::gguf {
namespace {

using detail::Cursor;
using detail::read_field;

constexpr uint64_t kHeaderBytes = 24;
// Smallest encodings: empty key + type + 1-byte value; empty name + n_dims + one ne + type +
// offset. They turn a claimed count into a bound the remaining bytes must satisfy.
constexpr uint64_t kMinKvBytes = 8 + 4 + 1;
constexpr uint64_t kMinTensorInfoBytes = 8 + 4 + 8 + 4 + 8;
constexpr size_t kMaxShownName = 80;

// Names in messages come from the file: keep them short and free of control bytes.
std::string shown(std::string_view s) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out = "'";
  for (size_t k = 0; k < s.size() && k < kMaxShownName; ++k) {
    const auto ch = static_cast<unsigned char>(s[k]);
    if (ch >= 0x20 && ch < 0x7f) {
      out += static_cast<char>(ch);
    } else {
      out += "\\x";
      out += kHex[ch >> 4];
      out += kHex[ch & 15];
    }
  }
  if (s.size() > kMaxShownName) out += "...";
  return out + "'";
}

struct Header {
  uint32_t version = 0;
  uint64_t n_tensors = 0;
  uint64_t n_kv = 0;
};

Result<Header> read_header(Cursor& c, const ReadLimits& limits) {
  if (c.remaining() < kHeaderBytes) {
    return make_error("file of " + std::to_string(c.remaining()) +
                      " bytes is too small for a GGUF header (24 bytes)");
  }
  uint32_t magic = 0;
  Header h;
  (void)c.read(&magic);
  (void)c.read(&h.version);
  (void)c.read(&h.n_tensors);
  (void)c.read(&h.n_kv);
  if (magic != kMagic) {
    static constexpr char kHex[] = "0123456789abcdef";
    std::string hex = "0x";
    for (int shift = 28; shift >= 0; shift -= 4) hex += kHex[(magic >> shift) & 15];
    return make_error("bad magic " + hex + " (expected 0x46554747, \"GGUF\")");
  }
  if (h.version != kVersion) {
    return make_error("version " + std::to_string(h.version) + " is not supported (expected " +
                      std::to_string(kVersion) + ")");
  }
  if (h.n_kv > limits.max_kv) {
    return make_error("n_kv " + std::to_string(h.n_kv) + " exceeds the limit " +
                      std::to_string(limits.max_kv));
  }
  if (h.n_tensors > limits.max_tensors) {
    return make_error("n_tensors " + std::to_string(h.n_tensors) + " exceeds the limit " +
                      std::to_string(limits.max_tensors));
  }
  const uint64_t left = c.remaining();
  if (h.n_kv > left / kMinKvBytes) {
    return make_error("n_kv " + std::to_string(h.n_kv) + " cannot fit in the " +
                      std::to_string(left) + " bytes after the header");
  }
  if (h.n_tensors > (left - h.n_kv * kMinKvBytes) / kMinTensorInfoBytes) {
    return make_error("n_tensors " + std::to_string(h.n_tensors) + " cannot fit in the " +
                      std::to_string(left) + " bytes after the header");
  }
  return h;
}

Status read_metadata(Cursor& c, uint64_t n_kv, const ReadLimits& limits,
                     std::vector<std::pair<std::string, Value>>* kv,
                     std::map<std::string, size_t>* index) {
  kv->reserve(n_kv);
  for (uint64_t k = 0; k < n_kv; ++k) {
    const std::string where = "key #" + std::to_string(k);
    auto key = detail::read_string(c, limits);
    if (!key.ok()) return key.error().with_context(where);
    if (key->empty()) return make_error(where + ": key is empty");
    const std::string named = "key " + shown(*key);
    DSV4_ASSIGN_OR_RETURN(uint32_t type_id, read_field<uint32_t>(c, named + ": value type"));
    auto value = detail::read_value(c, type_id, limits);
    if (!value.ok()) return value.error().with_context(named);
    if (!index->emplace(*key, kv->size()).second) return make_error("duplicate " + named);
    kv->emplace_back(std::move(key).value(), std::move(value).value());
  }
  return Status();
}

Result<uint32_t> alignment_of(const std::map<std::string, size_t>& index,
                              const std::vector<std::pair<std::string, Value>>& kv) {
  const auto it = index.find("general.alignment");
  if (it == index.end()) return kDefaultAlignment;
  const Value& v = kv[it->second].second;
  if (v.type != ValueType::U32) {
    return make_error(std::string("general.alignment has type ") + value_type_name(v.type) +
                      ", expected u32");
  }
  if (v.u == 0 || (v.u & (v.u - 1)) != 0) {
    return make_error("general.alignment " + std::to_string(v.u) + " is not a power of two");
  }
  return static_cast<uint32_t>(v.u);
}

Result<TensorInfo> read_tensor_info(Cursor& c, uint64_t k, const ReadLimits& limits) {
  const std::string where = "tensor #" + std::to_string(k);
  TensorInfo t;
  auto name = detail::read_string(c, limits);
  if (!name.ok()) return name.error().with_context(where + ": name");
  if (name->empty()) return make_error(where + ": name is empty");
  t.name = std::move(name).value();
  const std::string named = "tensor " + shown(t.name);

  DSV4_ASSIGN_OR_RETURN(uint32_t n_dims, read_field<uint32_t>(c, named + ": n_dims"));
  if (n_dims == 0 || n_dims > limits.max_dims) {
    return make_error(named + ": n_dims " + std::to_string(n_dims) + " is out of range [1, " +
                      std::to_string(limits.max_dims) + "]");
  }
  for (uint32_t d = 0; d < n_dims; ++d) {
    DSV4_ASSIGN_OR_RETURN(uint64_t ne,
                          read_field<uint64_t>(c, named + ": ne[" + std::to_string(d) + "]"));
    t.ne.push_back(ne);
  }
  DSV4_ASSIGN_OR_RETURN(uint32_t type_id, read_field<uint32_t>(c, named + ": type"));
  if (!type_traits(type_id)) {
    return make_error(named + ": unknown tensor type " + type_name(type_id));
  }
  t.type = static_cast<TensorType>(type_id);
  DSV4_ASSIGN_OR_RETURN(t.offset, read_field<uint64_t>(c, named + ": offset"));
  auto size = tensor_bytes(t.type, t.ne);
  if (!size.ok()) return size.error().with_context(named);
  t.size = *size;
  return t;
}

// Checks every tensor against the data section and the others, then points it into the bytes.
Status place_tensors(std::span<const uint8_t> bytes, uint64_t data_offset, uint32_t alignment,
                     std::vector<TensorInfo>* tensors) {
  const uint64_t data_size = bytes.size() - data_offset;
  for (const TensorInfo& t : *tensors) {
    const std::string named = "tensor " + shown(t.name);
    if (t.offset % alignment != 0) {
      return make_error(named + ": offset " + std::to_string(t.offset) +
                        " is not a multiple of alignment " + std::to_string(alignment));
    }
    if (t.offset > data_size || t.size > data_size - t.offset) {
      return make_error(named + ": offset " + std::to_string(t.offset) + " + size " +
                        std::to_string(t.size) + " runs past the end of the file (the data " +
                        "section at " + std::to_string(data_offset) + " holds " +
                        std::to_string(data_size) + " bytes)");
    }
  }
  std::vector<size_t> order(tensors->size());
  std::iota(order.begin(), order.end(), size_t{0});
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    return (*tensors)[a].offset < (*tensors)[b].offset;
  });
  for (size_t k = 1; k < order.size(); ++k) {
    const TensorInfo& a = (*tensors)[order[k - 1]];
    const TensorInfo& b = (*tensors)[order[k]];
    if (a.offset + a.size > b.offset) {  // both lie in the file, so no overflow
      return make_error("tensor " + shown(a.name) + " (offset " + std::to_string(a.offset) +
                        ", size " + std::to_string(a.size) + ") overlaps tensor " +
                        shown(b.name) + " (offset " + std::to_string(b.offset) + ")");
    }
  }
  for (TensorInfo& t : *tensors) t.data = bytes.data() + data_offset + t.offset;
  return Status();
}

}  // namespace

Result<File> File::open(const std::string& path, const ReadLimits& limits) {
  auto mapped = MappedFile::open(path);
  if (!mapped.ok()) return mapped.error();
  auto mapping = std::make_shared<MappedFile>(std::move(mapped).value());
  DSV4_ASSIGN_OR_RETURN(File file, parse(mapping->bytes(), path, limits));
  file.mapping_ = std::move(mapping);
  return file;
}

Result<File> File::parse(std::span<const uint8_t> bytes, const std::string& label,
                         const ReadLimits& limits) {
  File f;
  f.bytes_ = bytes;
  f.label_ = label;
  Cursor c(bytes, 0);

  auto header = read_header(c, limits);
  if (!header.ok()) return header.error().with_context(label);
  f.version_ = header->version;

  Status st = read_metadata(c, header->n_kv, limits, &f.kv_, &f.kv_index_);
  if (!st.ok()) return st.error().with_context(label);
  auto alignment = alignment_of(f.kv_index_, f.kv_);
  if (!alignment.ok()) return alignment.error().with_context(label);
  f.alignment_ = *alignment;

  f.tensors_.reserve(header->n_tensors);
  for (uint64_t k = 0; k < header->n_tensors; ++k) {
    auto info = read_tensor_info(c, k, limits);
    if (!info.ok()) return info.error().with_context(label);
    if (!f.tensor_index_.emplace(info->name, f.tensors_.size()).second) {
      return make_error(label + ": tensor #" + std::to_string(k) + ": duplicate tensor name " +
                        shown(info->name));
    }
    f.tensors_.push_back(std::move(info).value());
  }

  f.data_offset_ = detail::align_up(c.pos(), f.alignment_);
  if (f.data_offset_ > bytes.size()) {
    return make_error(label + ": data section at offset " + std::to_string(f.data_offset_) +
                      " (tensor infos end at " + std::to_string(c.pos()) + ", alignment " +
                      std::to_string(f.alignment_) + ") lies past the end of the file (" +
                      std::to_string(bytes.size()) + " bytes)");
  }
  st = place_tensors(bytes, f.data_offset_, f.alignment_, &f.tensors_);
  if (!st.ok()) return st.error().with_context(label);
  return f;
}

const Value* File::find(const std::string& key) const {
  const auto it = kv_index_.find(key);
  return it == kv_index_.end() ? nullptr : &kv_[it->second].second;
}

const TensorInfo* File::tensor(const std::string& name) const {
  const auto it = tensor_index_.find(name);
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

uint64_t TensorInfo::n_elements() const {
  uint64_t n = 1;
  for (uint64_t v : ne) n *= v;  // the reader and writer bound this product by 2^63-1
  return n;
}

}  // namespace dsv4::gguf
