#include <cuda_runtime.h>

#include <algorithm>
#include <string>

#include "cuda/check.h"
#include "cuda/region_copy.h"

namespace dsv4::cuda {

namespace {

// A launch copies up to kMaxPieces pieces of at most kPieceBytes, one block each: spans are cut so
// that a 0.5 MB logits span spreads over blocks like the 2 KB ring rows. The list travels as the
// kernel's parameter (under the 4 KB limit), so a launch needs no upload of its own.
constexpr int kMaxPieces = 240;
constexpr uint64_t kPieceBytes = 32 << 10;
constexpr int kThreads = 256;

struct Piece {
  uint64_t region_offset;
  uint32_t packed_offset;  // within this launch's part of packed
  uint32_t bytes;
};

struct Pieces {
  Piece piece[kMaxPieces];
};

__global__ void copy_pieces_kernel(const uint8_t* region_src, uint8_t* region_dst, const uint8_t* packed_src,
                                   uint8_t* packed_dst, Pieces list) {
  const Piece p = list.piece[blockIdx.x];
  const uint8_t* src = region_src ? region_src + p.region_offset : packed_src + p.packed_offset;
  uint8_t* dst = region_dst ? region_dst + p.region_offset : packed_dst + p.packed_offset;
  const bool vector = ((reinterpret_cast<uintptr_t>(src) | reinterpret_cast<uintptr_t>(dst) | p.bytes) & 15) == 0;
  if (vector) {
    const int4* s = reinterpret_cast<const int4*>(src);
    int4* d = reinterpret_cast<int4*>(dst);
    for (uint32_t i = threadIdx.x; i < p.bytes / 16; i += blockDim.x) d[i] = s[i];
  } else {
    for (uint32_t i = threadIdx.x; i < p.bytes; i += blockDim.x) dst[i] = src[i];
  }
}

// Cuts the spans into pieces and launches one copy per kMaxPieces of them. Packing passes
// region_src and packed_dst, unpacking packed_src and region_dst (the others null).
Status copy_spans(const uint8_t* region_src, uint8_t* region_dst, const uint8_t* packed_src, uint8_t* packed_dst,
                  std::span<const RegionSpan> spans, cudaStream_t stream) {
  Pieces list;
  int n = 0;
  uint64_t packed = 0, launch_base = 0;
  auto flush = [&]() -> Status {
    if (n == 0) return Status();
    const uint8_t* ps = packed_src ? packed_src + launch_base : nullptr;
    uint8_t* pd = packed_dst ? packed_dst + launch_base : nullptr;
    copy_pieces_kernel<<<n, kThreads, 0, stream>>>(region_src, region_dst, ps, pd, list);
    n = 0;
    launch_base = packed;
    return cuda_status(cudaGetLastError(), "region span copy");
  };
  for (const RegionSpan& s : spans) {
    for (uint64_t done = 0; done < s.bytes; done += kPieceBytes) {
      if (n == kMaxPieces) DSV4_TRY(flush());
      const uint64_t bytes = std::min(kPieceBytes, s.bytes - done);
      list.piece[n++] = Piece{s.offset + done, static_cast<uint32_t>(packed - launch_base), static_cast<uint32_t>(bytes)};
      packed += bytes;
    }
  }
  return flush();
}

}  // namespace

uint64_t packed_bytes(std::span<const RegionSpan> spans) {
  uint64_t total = 0;
  for (const RegionSpan& s : spans) total += s.bytes;
  return total;
}

Status pack_region_spans(const uint8_t* region, std::span<const RegionSpan> spans, uint8_t* packed,
                         cudaStream_t stream) {
  return copy_spans(region, nullptr, nullptr, packed, spans, stream);
}

Status unpack_region_spans(const uint8_t* packed, std::span<const RegionSpan> spans, uint8_t* region,
                           cudaStream_t stream) {
  return copy_spans(nullptr, region, packed, nullptr, spans, stream);
}

}  // namespace dsv4::cuda
