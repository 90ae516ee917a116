// Scattered byte ranges of one device region copied into a packed buffer and back in one launch:
// the speculative decode step's checkpoint (session.cc) saves only what the step writes
// (DeviceState::step_write_set, ≈ 0.7 MB over ≈ 170 ranges for flash) instead of the whole
// 24 MB rollback region.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>
#include <span>

#include "util/status.h"

namespace dsv4::cuda {

// A byte range of a region, as an offset from its start.
struct RegionSpan {
  uint64_t offset = 0, bytes = 0;
};

// Bytes a packed copy of `spans` takes.
uint64_t packed_bytes(std::span<const RegionSpan> spans);

// packed = the spans of region, back to back in order (queued on stream).
Status pack_region_spans(const uint8_t* region, std::span<const RegionSpan> spans, uint8_t* packed,
                         cudaStream_t stream);
// The inverse: each span of region = its bytes in packed.
Status unpack_region_spans(const uint8_t* packed, std::span<const RegionSpan> spans, uint8_t* region,
                           cudaStream_t stream);

}  // namespace dsv4::cuda
