#include "cuda/tensor_map.h"

#include <cudaTypedefs.h>

#include <mutex>

namespace dsv4::cuda::detail {

namespace {

PFN_cuTensorMapEncodeTiled_v12000 encoder() {
  static std::once_flag once;
  static PFN_cuTensorMapEncodeTiled_v12000 fn = nullptr;
  std::call_once(once, [] {
    void* p = nullptr;
    cudaDriverEntryPointQueryResult found{};
    if (cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &p, 12000, cudaEnableDefault, &found) ==
            cudaSuccess &&
        found == cudaDriverEntryPointSuccess) {
      fn = reinterpret_cast<PFN_cuTensorMapEncodeTiled_v12000>(p);
    }
  });
  return fn;
}

}  // namespace

cudaError_t encode_byte_rows_map(CUtensorMap* map, const void* base, uint64_t row_bytes, uint64_t rows,
                                 uint64_t slabs, uint64_t slab_bytes, uint32_t box_bytes, uint32_t box_rows) {
  const auto misaligned = [](uint64_t v) { return v % 16 != 0; };
  if (reinterpret_cast<uintptr_t>(base) % 16 != 0 || misaligned(row_bytes) || misaligned(slab_bytes) ||
      misaligned(box_bytes) || box_bytes == 0 || box_bytes > 256 || box_rows == 0 || box_rows > 256 || rows == 0 ||
      slabs == 0 || slab_bytes < row_bytes * rows) {
    return cudaErrorInvalidValue;
  }
  const PFN_cuTensorMapEncodeTiled_v12000 encode = encoder();
  if (!encode) return cudaErrorNotSupported;
  const cuuint64_t dims[3] = {row_bytes, rows, slabs};
  const cuuint64_t strides[2] = {row_bytes, slab_bytes};
  const cuuint32_t box[3] = {box_bytes, box_rows, 1};
  const cuuint32_t element_strides[3] = {1, 1, 1};
  const CUresult r = encode(map, CU_TENSOR_MAP_DATA_TYPE_UINT8, 3, const_cast<void*>(base), dims, strides, box,
                            element_strides, CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_NONE,
                            CU_TENSOR_MAP_L2_PROMOTION_L2_128B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
  return r == CUDA_SUCCESS ? cudaSuccess : cudaErrorInvalidValue;
}

}  // namespace dsv4::cuda::detail
