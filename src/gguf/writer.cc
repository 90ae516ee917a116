// The GGUF writer. The header (metadata and tensor table) is always built in memory; tensor
// bytes are streamed one tensor at a time so a full-size synthetic model never has to fit in
// memory. Files are written exactly as the reader expects them back: tensors in insertion order,
// each on an alignment boundary, zero padding between them and after the last one (as ggml does).
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cassert>
#include <cerrno>
#include <cstring>
#include <string>

#include "gguf/gguf.h"
#include "gguf/value_codec.h"
#include "gguf/wire.h"

namespace dsv4::gguf {
namespace {

using detail::align_up;
using detail::append;

Status check_tensor(const std::string& name, TensorType type, const std::vector<uint64_t>& ne,
                    uint64_t* size) {
  if (name.empty()) return make_error("tensor name is empty");
  const std::string named = "tensor '" + name + "'";
  if (ne.empty() || ne.size() > ReadLimits{}.max_dims) {
    return make_error(named + ": " + std::to_string(ne.size()) + " dimensions, expected 1 to " +
                      std::to_string(ReadLimits{}.max_dims));
  }
  auto bytes = tensor_bytes(type, ne);
  if (!bytes.ok()) return bytes.error().with_context(named);
  *size = *bytes;
  return Status();
}

// POSIX file written in full or not at all; the destructor removes a temporary never committed.
class TempFile {
 public:
  explicit TempFile(std::string path) : path_(std::move(path)) {}
  ~TempFile() {
    if (fd_ >= 0) ::close(fd_);
    if (!committed_) ::unlink(path_.c_str());
  }
  TempFile(const TempFile&) = delete;
  TempFile& operator=(const TempFile&) = delete;

  Status create() {
    fd_ = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd_ < 0) return make_error(path_ + ": cannot create: " + std::strerror(errno));
    return Status();
  }

  Status write(const uint8_t* p, uint64_t n) {
    while (n > 0) {
      // Linux writes at most ~2 GiB per call; large expert tensors take several.
      const size_t chunk = static_cast<size_t>(std::min<uint64_t>(n, uint64_t{1} << 30));
      const ssize_t done = ::write(fd_, p, chunk);
      if (done < 0) {
        if (errno == EINTR) continue;
        return make_error(path_ + ": write failed: " + std::strerror(errno));
      }
      p += done;
      n -= static_cast<uint64_t>(done);
    }
    return Status();
  }

  Status commit(const std::string& final_path) {
    if (::fsync(fd_) != 0) return make_error(path_ + ": fsync failed: " + std::strerror(errno));
    const int fd = fd_;
    fd_ = -1;
    if (::close(fd) != 0) return make_error(path_ + ": close failed: " + std::strerror(errno));
    if (::rename(path_.c_str(), final_path.c_str()) != 0) {
      return make_error(final_path + ": rename from " + path_ + " failed: " +
                        std::strerror(errno));
    }
    committed_ = true;
    return Status();
  }

 private:
  std::string path_;
  int fd_ = -1;
  bool committed_ = false;
};

}  // namespace

void Writer::set(const std::string& key, Value value) {
  for (auto& [k, v] : kv_) {
    if (k == key) {
      v = std::move(value);
      return;
    }
  }
  kv_.emplace_back(key, std::move(value));
}

Status Writer::add_tensor(const std::string& name, TensorType type, std::vector<uint64_t> ne,
                          std::vector<uint8_t> data) {
  uint64_t size = 0;
  DSV4_TRY(check_tensor(name, type, ne, &size));
  if (data.size() != size) {
    return make_error("tensor '" + name + "': data holds " + std::to_string(data.size()) +
                      " bytes, expected " + std::to_string(size) + " for " + type_name(type));
  }
  for (const PendingTensor& t : tensors_) {
    if (t.name == name) return make_error("duplicate tensor name '" + name + "'");
  }
  tensors_.push_back({name, type, std::move(ne), size, std::move(data), nullptr});
  return Status();
}

Status Writer::add_generated_tensor(const std::string& name, TensorType type,
                                    std::vector<uint64_t> ne, Generator generate) {
  uint64_t size = 0;
  DSV4_TRY(check_tensor(name, type, ne, &size));
  if (!generate) return make_error("tensor '" + name + "': no generator");
  for (const PendingTensor& t : tensors_) {
    if (t.name == name) return make_error("duplicate tensor name '" + name + "'");
  }
  tensors_.push_back({name, type, std::move(ne), size, {}, std::move(generate)});
  return Status();
}

Result<std::vector<uint8_t>> Writer::encode_header(uint32_t* alignment) const {
  *alignment = kDefaultAlignment;
  for (const auto& [key, value] : kv_) {
    if (key != "general.alignment") continue;
    if (value.type != ValueType::U32 || value.u == 0 || value.u > UINT32_MAX ||
        (value.u & (value.u - 1)) != 0) {
      return make_error(std::string("general.alignment must be a u32 power of two, found ") +
                        value_type_name(value.type) + " " + std::to_string(value.u));
    }
    *alignment = static_cast<uint32_t>(value.u);
  }
  std::vector<uint8_t> out;
  append<uint32_t>(out, kMagic);
  append<uint32_t>(out, kVersion);
  append<uint64_t>(out, tensors_.size());
  append<uint64_t>(out, kv_.size());
  for (const auto& [key, value] : kv_) {
    if (key.empty()) return make_error("metadata key is empty");
    detail::append_string(out, key);
    append<uint32_t>(out, static_cast<uint32_t>(value.type));
    Status st = detail::append_value(out, value);
    if (!st.ok()) return st.error().with_context("key '" + key + "'");
  }
  uint64_t offset = 0;
  for (const PendingTensor& t : tensors_) {
    detail::append_string(out, t.name);
    append<uint32_t>(out, static_cast<uint32_t>(t.ne.size()));
    for (uint64_t v : t.ne) append<uint64_t>(out, v);
    append<uint32_t>(out, static_cast<uint32_t>(t.type));
    append<uint64_t>(out, offset);
    offset = align_up(offset + t.size, *alignment);
  }
  out.resize(align_up(out.size(), *alignment), 0);
  return out;
}

std::vector<uint8_t> Writer::serialize() const {
  uint32_t alignment = 0;
  auto header = encode_header(&alignment);
  assert(header.ok() && "Writer::serialize: invalid metadata; write() reports it as an error");
  if (!header.ok()) return {};
  std::vector<uint8_t> out = std::move(header).value();
  for (const PendingTensor& t : tensors_) {
    const size_t at = out.size();
    out.resize(at + t.size, 0);
    if (t.generate) {
      t.generate(out.data() + at, t.size);
    } else {
      std::copy(t.data.begin(), t.data.end(), out.begin() + static_cast<ptrdiff_t>(at));
    }
    out.resize(align_up(out.size(), alignment), 0);
  }
  return out;
}

Status Writer::write(const std::string& path) const {
  uint32_t alignment = 0;
  auto header = encode_header(&alignment);
  if (!header.ok()) return header.error().with_context(path);
  TempFile file(path + ".tmp");
  DSV4_TRY(file.create());
  DSV4_TRY(file.write(header->data(), header->size()));
  uint64_t pos = header->size();
  const std::vector<uint8_t> zeros(alignment, 0);
  std::vector<uint8_t> buffer;  // reused by every generated tensor
  for (const PendingTensor& t : tensors_) {
    const uint8_t* src = t.data.data();
    if (t.generate) {
      // Zeroed first so a generator that skips bytes still gives a deterministic file.
      buffer.assign(t.size, 0);
      t.generate(buffer.data(), t.size);
      src = buffer.data();
    }
    DSV4_TRY(file.write(src, t.size));
    pos += t.size;
    const uint64_t padded = align_up(pos, alignment);
    DSV4_TRY(file.write(zeros.data(), padded - pos));
    pos = padded;
  }
  return file.commit(path);
}

}  // namespace dsv4::gguf
