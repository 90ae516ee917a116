// TMA tensor maps (sm_90) built on the host. The driver's encoder is fetched through the runtime
// (cudaGetDriverEntryPointByVersion), so nothing links libcuda.
#pragma once

#include <cuda.h>
#include <cuda_runtime_api.h>

#include <cstdint>

namespace dsv4::cuda::detail {

// A map over `slabs` matrices of `rows` rows of `row_bytes` bytes (bytes as the element type),
// rows row_bytes apart and matrices slab_bytes apart from base, whose box is box_bytes × box_rows
// (× one matrix), written to shared memory packed (row pitch box_bytes, no swizzle). Bytes outside
// the matrices read as zero. TMA's rules: base 16-aligned, row_bytes, slab_bytes and box_bytes
// multiples of 16, box_bytes and box_rows at most 256; cudaErrorInvalidValue otherwise.
cudaError_t encode_byte_rows_map(CUtensorMap* map, const void* base, uint64_t row_bytes, uint64_t rows,
                                 uint64_t slabs, uint64_t slab_bytes, uint32_t box_bytes, uint32_t box_rows);

}  // namespace dsv4::cuda::detail
