#include "cli/chat_file.h"

#include <cstring>

namespace dsv4::cli {
namespace {

constexpr char kMagic[8] = {'D', 'S', 'V', '4', 'C', 'H', 'A', 'T'};
constexpr uint32_t kVersion = 1;
constexpr size_t kHeader = 8 + 4 + 8;

void put_le(std::vector<uint8_t>& out, uint64_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) out.push_back(static_cast<uint8_t>(v >> (8 * i)));
}

uint64_t get_le(const uint8_t* p, int bytes) {
  uint64_t v = 0;
  for (int i = 0; i < bytes; ++i) v |= static_cast<uint64_t>(p[i]) << (8 * i);
  return v;
}

}  // namespace

std::vector<uint8_t> encode_chat_file(const ChatFile& file) {
  const std::string json = file.document.dump(1);
  std::vector<uint8_t> out(kMagic, kMagic + 8);
  put_le(out, kVersion, 4);
  put_le(out, json.size(), 8);
  out.insert(out.end(), json.begin(), json.end());
  out.insert(out.end(), file.snapshot.begin(), file.snapshot.end());
  return out;
}

Result<ChatFile> decode_chat_file(std::span<const uint8_t> bytes) {
  if (bytes.size() < kHeader || std::memcmp(bytes.data(), kMagic, 8) != 0) {
    return make_error("not a dsv4 chat file (no DSV4CHAT header)");
  }
  const uint32_t version = static_cast<uint32_t>(get_le(bytes.data() + 8, 4));
  if (version != kVersion) {
    return make_error("chat file version " + std::to_string(version) + " is not supported (this dsv4 reads " +
                      std::to_string(kVersion) + ")");
  }
  const uint64_t json_len = get_le(bytes.data() + 12, 8);
  if (json_len > bytes.size() - kHeader) return make_error("chat file truncated (conversation incomplete)");
  ChatFile file;
  const char* json = reinterpret_cast<const char*>(bytes.data() + kHeader);
  file.document = nlohmann::json::parse(json, json + json_len, nullptr, /*allow_exceptions=*/false);
  if (file.document.is_discarded() || !file.document.is_object()) {
    return make_error("chat file damaged: its conversation is not a JSON object");
  }
  file.snapshot.assign(bytes.begin() + static_cast<std::ptrdiff_t>(kHeader + json_len), bytes.end());
  return file;
}

}  // namespace dsv4::cli
