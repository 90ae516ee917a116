// The file of `/save FILE` in dsv4 chat: the conversation as JSON plus the engine snapshot of
// the live session, so that a loaded chat continues without prefilling it again. Little-endian:
//
//   u8[8]  magic "DSV4CHAT"
//   u32    version (1)
//   u64    byte length of the JSON document that follows
//   ...    JSON (UTF-8): {"format": "dsv4-chat", "model": {"name", "fingerprint" (hex)},
//          "settings": {"thinking": "thinking"|"chat", "effort": "none"|"max", "system"},
//          "messages": [{"role", "content", "reasoning_content"?}, ...]}
//   ...    the engine snapshot (engine/snapshot.h: its own checksum, model fingerprint, mode)
//
// The JSON part can be read with `tail -c +21 FILE | head -c N`; the snapshot is what makes the
// file specific to one model file and mode.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "util/status.h"

namespace dsv4::cli {

struct ChatFile {
  nlohmann::json document;
  std::vector<uint8_t> snapshot;
};

std::vector<uint8_t> encode_chat_file(const ChatFile& file);
// Checks magic, version and lengths and parses the JSON; errors say what is wrong.
Result<ChatFile> decode_chat_file(std::span<const uint8_t> bytes);

}  // namespace dsv4::cli
