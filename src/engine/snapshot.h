// Session snapshot envelope (memory and files), version 1. Little-endian:
//
//   u8[8]   magic "DSV4SNAP"
//   u32     envelope version (1)
//   u32     mode: 0 official, 1 plain (state of one mode is never reused in the other)
//   u8[32]  model fingerprint (model::model_fingerprint: metadata, tensor table, data samples)
//   u64     n, the number of evaluated tokens
//   i32[n]  the evaluated token ids
//   u64     byte length of the backend-independent state that follows
//   ...     the state (cpu/state.h, "DSV4CPUS" format: raw windows, compressed and indexer
//           rows, compressor frontiers, counters, last logits)
//   u8[32]  sha256 of every preceding byte
//
// A snapshot of another model, another mode or a corrupted/truncated one is rejected with an
// error saying which; nothing is restored.
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <vector>

#include "engine/engine.h"
#include "util/status.h"

namespace dsv4::engine {

using Fingerprint = std::array<uint8_t, 32>;

struct SnapshotContents {
  Mode mode = Mode::kOfficial;
  Fingerprint model{};
  std::vector<int32_t> tokens;
  std::vector<uint8_t> state;
};

std::vector<uint8_t> encode_snapshot(const SnapshotContents& contents);
// Checks magic, version, checksum and structure; the caller checks model and mode.
Result<SnapshotContents> decode_snapshot(std::span<const uint8_t> bytes);

}  // namespace dsv4::engine
