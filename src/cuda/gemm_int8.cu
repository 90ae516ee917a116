// The int8 GEMM (gemm.h, int8 mode; GEMM_NOTES.md, "Fifth version"): Q2_K weights as int8 codes,
// activations as three int8 limbs per element with one power-of-two scale per (row, 256-block)
// (gemm_int8_codes.cuh), mma.sync m16n8k32 s8·s8 → s32. Every product and every sum over a
// 256-block is exact in int32: each limb's MMA chain runs through the whole block with C started
// at kCBias and is read once per block as a float, so nothing truncates. Per block and output:
// the three chains are combined and scaled by d·2^E in f32 (int8_block_term), and the offsets
// dmin·Σ_g m_g·S_g come from two f16 MMAs of the rows' group sums (hi, lo) against the m codes.
//
// Tile machinery from gemm_kernel.cuh (copy helpers, swizzle, ldmatrix, the grouped tile search):
// 8-bit operands go through ldmatrix as b16 pairs, so an m16k32 s8 fragment is addressed exactly
// like an m16k16 f16 one and a 128-byte tile row holds 128 elements. Shapes:
//   CTA tile   64 rows × 128 features, 8 warps as 2 × 4, warp tile 32 × 32 (the three limb chains
//              and the f32 accumulator are 128 registers per thread).
//   k-step     128 columns: three limb tiles of 64 × 128 bytes and a decoded W tile of 128 × 128
//              bytes (swizzled as gemm_kernel.cuh's), half a Q2_K block; at each block's second step
//              also the rows' 80-byte block records. Raw stage: one Q2_K block (2 k-steps).
//   pipeline   as gemm_kernel.cuh: kSX = 3 X slots, 2 W buffers, kRR = 2 raw buffers, one barrier
//              per k-step, the decode of step t+1 interleaved with the MMAs of step t.
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "cuda/cp_async.cuh"
#include "cuda/gemm_int8_codes.cuh"
#include "cuda/gemm_kernel.cuh"
#include "cuda/gemm_launch.h"
#include "cuda/swiglu.cuh"

namespace dsv4::cuda::detail {

namespace {

using D8 = Int8Q2_K;
constexpr int kWarpsT = 2, kWarpsF = 4, kMT = 2, kNF = 4;
constexpr int kBT = kWarpsT * 16 * kMT;  // 64 rows
constexpr int kBF = kWarpsF * 8 * kNF;   // 128 features
constexpr int kK = 128;                  // columns per k-step
constexpr int kStepsPerBlock = kInt8Block / kK;
constexpr int kSX = 3, kSPR = D8::kStageElems / kK, kRR = 1 + (kSX - 1 + kSPR - 1) / kSPR;
constexpr int kSpan = (D8::kMisalign + D8::kStageBytes + 15) / 16 * 16;
constexpr int kPitch = (kSpan / 16) % 2 ? kSpan : kSpan + 16;
constexpr int kLimbBytes = kBT * 128;                                  // one limb plane of a slot
constexpr int kRecBytes = kBT * kInt8RecordBytes;                      // the rows' block records
constexpr int kSlotBytes = kInt8Limbs * kLimbBytes + kRecBytes;        // one X slot
constexpr int kWBytes = kBF * 128;
constexpr int kRawBytes = kBF * kPitch;
constexpr int kTabBytes = kBF * kInt8TableWords * 4;
constexpr int kSmem = kSX * kSlotBytes + 2 * kWBytes + kRR * kRawBytes + kTabBytes;
static_assert(kSmem <= 227 * 1024 && kSlotBytes % 128 == 0);

// c = a·b + c (s8 × s8 → s32, exact).
__device__ __forceinline__ void mma_s8(int32_t* c, const uint32_t* a, const uint32_t* b) {
  asm("mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%0, %1, %2, %3};\n"
      : "+r"(c[0]), "+r"(c[1]), "+r"(c[2]), "+r"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}
// c = a·b + kCBias: a block's first MMA.
__device__ __forceinline__ void mma_s8_first(int32_t* c, const uint32_t* a, const uint32_t* b) {
  asm("mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%10, %10, %10, %10};\n"
      : "=r"(c[0]), "=r"(c[1]), "=r"(c[2]), "=r"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]), "r"(kCBias));
}

__global__ void __launch_bounds__(kGemmThreads, 1) gemm_int8_kernel(__grid_constant__ const GemmLaunch p) {
  constexpr int kChunks = kSpan / 16, kLanes = 8, kRawPasses = kBF * kLanes / kGemmThreads;
  constexpr int kXRows = kBT / 32;
  constexpr int kCPT = kBF * 8 / kGemmThreads;  // decoded 16-byte chunks (16 elements) per thread
  static_assert(kChunks <= kLanes && kCPT == 4);
  extern __shared__ __align__(128) uint8_t smem[];
  const uint32_t xs = shared_address(smem);
  const uint32_t ws = xs + kSX * kSlotBytes;
  const uint32_t raw = ws + 2 * kWBytes;
  uint8_t* const ws_ptr = smem + kSX * kSlotBytes;
  uint8_t* const raw_ptr = ws_ptr + 2 * kWBytes;
  float* const tab = reinterpret_cast<float*>(raw_ptr + kRR * kRawBytes);
  const uint8_t* const slot_ptr = smem;

  int row0, row_end, expert;
  if (!gemm_find_tile(p, blockIdx.y, kBT, &row0, &row_end, &expert)) return;
  const int f0 = blockIdx.x * kBF;
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  const uint8_t* const wexp = p.w + expert * p.slab_bytes;
  const uint32_t row_bytes = static_cast<uint32_t>(p.row_bytes);
  const int n_steps = p.n_in / kK, n_blocks = p.n_in / kInt8Block;
  auto src_row = [&](int r) { return gemm_x_row(p, min(r, row_end - 1)); };

  // X limbs: thread tid copies chunk (tid & 7) of rows (tid >> 3) + 32·i of each plane; records:
  // chunk c of row r for the indices tid and tid + 256 of (r, c) < (64, 5).
  const int chunk = tid & 7, row_base = tid >> 3;
  const int8_t* xrow[kXRows];
#pragma unroll
  for (int i = 0; i < kXRows; ++i) xrow[i] = p.x_limbs + src_row(row0 + row_base + 32 * i) * p.x_stride + chunk * 16;
  const uint32_t x_dst = static_cast<uint32_t>(swz(row_base, chunk));
  constexpr int kRecChunks = kInt8RecordBytes / 16;
  const uint8_t* rec_src[2];
  uint32_t rec_dst[2];
#pragma unroll
  for (int i = 0; i < 2; ++i) {
    const int idx = min(tid + kGemmThreads * i, kBT * kRecChunks - 1);  // the clamped extras repeat a copy
    const int r = idx / kRecChunks, c = idx % kRecChunks;
    rec_src[i] = p.x_records + static_cast<int64_t>(src_row(row0 + r)) * n_blocks * kInt8RecordBytes + 16 * c;
    rec_dst[i] = static_cast<uint32_t>(kInt8Limbs * kLimbBytes + r * kInt8RecordBytes + 16 * c);
  }

  const int raw_c = tid % kLanes, raw_r = tid / kLanes;
  auto issue_raw = [&](int stage) {
    if (raw_c >= kChunks) return;
    const uint32_t at = (stage % kRR) * kRawBytes + raw_r * kPitch + 16 * raw_c;
    gemm_copy_raw_rows<kRawPasses, kGemmThreads / kLanes, true>(raw + at, raw_ptr + at, kPitch, wexp, row_bytes,
                                                               static_cast<uint32_t>(stage * D8::kStageBytes),
                                                               f0 + raw_r, p.n_out, raw_c, p.w_end);
  };
  auto issue_group = [&](int u) {
    if (u < n_steps) {
      const uint32_t slot = xs + (u % kSX) * kSlotBytes;
#pragma unroll
      for (int l = 0; l < kInt8Limbs; ++l) {
#pragma unroll
        for (int i = 0; i < kXRows; ++i) {
          gemm_cp_async16(slot + l * kLimbBytes + x_dst + i * 32 * 128, xrow[i] + l * p.x_plane + u * kK);
        }
      }
      if (u % kStepsPerBlock == kStepsPerBlock - 1) {  // the records, read at the block's last step
        const int64_t off = static_cast<int64_t>(u / kStepsPerBlock) * kInt8RecordBytes;
        gemm_cp_async16(slot + rec_dst[0], rec_src[0] + off);
        if (tid + kGemmThreads < kBT * kRecChunks) gemm_cp_async16(slot + rec_dst[1], rec_src[1] + off);
      }
      if (u == 0) issue_raw(0);
      if ((u + 1) % kSPR == 0 && u + 1 < n_steps) issue_raw((u + 1) / kSPR);
    }
    gemm_cp_commit();
  };

  // Decode of step t, chunk c of this thread's kCPT (16 elements each). Two threads per feature
  // row; at a block's last step the first of them also writes the row's feature record.
  const int drow = tid / (8 / kCPT), dchunk = (tid % (8 / kCPT)) * kCPT;
  const uint32_t drow_mis = static_cast<uint32_t>(reinterpret_cast<uintptr_t>(wexp)) +
                            static_cast<uint32_t>(min(f0 + drow, p.n_out - 1)) * row_bytes;
  auto decode = [&](int t, int c) {
    const int stage = t / kSPR, e = (t % kSPR) * kK + (dchunk + c) * 16;
    const int mis = static_cast<int>((drow_mis + static_cast<uint32_t>(stage * D8::kStageBytes)) & 15u);
    const uint8_t* src = raw_ptr + (stage % kRR) * kRawBytes + drow * kPitch + mis;
    const uint4 v = D8::codes16(src, e);
    *reinterpret_cast<uint4*>(ws_ptr + (t & 1) * kWBytes + swz(drow, dchunk + c)) = v;
    if (c == 0 && dchunk == 0 && t % kStepsPerBlock == kStepsPerBlock - 1) {
      D8::table(src, tab + drow * kInt8TableWords);
    }
  };

  const int tb = (warp / kWarpsF) * 16 * kMT;
  const int fb = (warp % kWarpsF) * 8 * kNF;
  const int a_row = tb + (lane & 15), a_chunk = lane >> 4;
  const int b_row = fb + (lane & 7) + ((lane >> 4) << 3), b_chunk = (lane >> 3) & 1;
  const int g = lane >> 2, cq = lane & 3;
  float acc[kMT][kNF][4];
  int32_t ch[kInt8Limbs][kMT][kNF][4];
#pragma unroll
  for (int i = 0; i < kMT; ++i)
#pragma unroll
    for (int j = 0; j < kNF; ++j)
#pragma unroll
      for (int c = 0; c < 4; ++c) acc[i][j][c] = 0.0f;

  // One 32-column slice of step t: per 16-row slab, the three limbs' A fragments against the
  // slice's B fragments, each into its limb's chain (restarted at the block's first slice).
  auto slice = [&](int t, int s, auto first) {
    const uint32_t xa = xs + (t % kSX) * kSlotBytes + a_row * 128;
    const uint32_t wb = ws + (t & 1) * kWBytes + b_row * 128;
    const uint32_t ax = static_cast<uint32_t>(((2 * s + a_chunk) ^ (lane & 7)) << 4);
    const uint32_t bx = static_cast<uint32_t>(((2 * s + b_chunk) ^ (lane & 7)) << 4);
    uint32_t b[kNF][2];
    ldmatrix_b_tiles<kNF>(b, wb + bx);
#pragma unroll
    for (int i = 0; i < kMT; ++i) {
      uint32_t a[kInt8Limbs][4];
#pragma unroll
      for (int l = 0; l < kInt8Limbs; ++l) ldmatrix_x4(a[l], xa + l * kLimbBytes + i * 16 * 128 + ax);
#pragma unroll
      for (int j = 0; j < kNF; ++j)
#pragma unroll
        for (int l = 0; l < kInt8Limbs; ++l) {
          if constexpr (decltype(first)::value) {
            mma_s8_first(ch[l][i][j], a[l], b[j]);
          } else {
            mma_s8(ch[l][i][j], a[l], b[j]);
          }
        }
    }
  };

  // The block's end (its last step t): offsets MMA per tile, then the chains into acc.
  auto block_end = [&](int t) {
    const uint8_t* rec = slot_ptr + (t % kSX) * kSlotBytes + kInt8Limbs * kLimbBytes;
    const uint32_t rec_a = xs + (t % kSX) * kSlotBytes + kInt8Limbs * kLimbBytes + a_row * kInt8RecordBytes;
#pragma unroll
    for (int i = 0; i < kMT; ++i) {
      uint32_t hi[4], lo[4];
      ldmatrix_x4(hi, rec_a + i * 16 * kInt8RecordBytes + 16 * a_chunk);
      ldmatrix_x4(lo, rec_a + i * 16 * kInt8RecordBytes + 16 * (2 + a_chunk));
      const float e2[2] = {*reinterpret_cast<const float*>(rec + (tb + 16 * i + g) * kInt8RecordBytes + 64),
                           *reinterpret_cast<const float*>(rec + (tb + 16 * i + g + 8) * kInt8RecordBytes + 64)};
#pragma unroll
      for (int j = 0; j < kNF; ++j) {
        const float* mrow = tab + (fb + 8 * j + g) * kInt8TableWords + 2;
        const uint32_t bm[2] = {__float_as_uint(mrow[cq]), __float_as_uint(mrow[4 + cq])};
        float o[4];
        mma_f16_zero(o, hi, bm);
        mma_f16(o, lo, bm);
        const float* frec = tab + (fb + 8 * j + 2 * cq) * kInt8TableWords;
        const float d[2] = {frec[0], frec[kInt8TableWords]}, dm[2] = {frec[1], frec[kInt8TableWords + 1]};
#pragma unroll
        for (int c = 0; c < 4; ++c) {
          acc[i][j][c] = int8_block_term(acc[i][j][c], ch[0][i][j][c], ch[1][i][j][c], ch[2][i][j][c], o[c],
                                         d[c & 1], dm[c & 1], e2[c >> 1]);
        }
      }
    }
  };

#pragma unroll
  for (int u = 0; u < kSX - 1; ++u) issue_group(u);
  gemm_cp_wait<kSX - 2>();
  __syncthreads();
#pragma unroll
  for (int c = 0; c < kCPT; ++c) decode(0, c);
  for (int t = 0; t < n_steps; ++t) {
    gemm_cp_wait<kSX - 2>();
    __syncthreads();
    issue_group(t + kSX - 1);
    const bool next = t + 1 < n_steps;
    if (t % kStepsPerBlock == 0) {
      slice(t, 0, std::true_type{});
    } else {
      slice(t, 0, std::false_type{});
    }
    if (next) decode(t + 1, 0);
#pragma unroll
    for (int s = 1; s < kK / 32; ++s) {
      slice(t, s, std::false_type{});
      if (next) decode(t + 1, s);
    }
    if (t % kStepsPerBlock == kStepsPerBlock - 1) block_end(t);
  }

  // Accumulator element c of tile (i, j): row g + 8·(c / 2), feature 2·(lane % 4) + c % 2.
  const int tile_end = min(row0 + kBT, row_end);
  const bool pairs = (reinterpret_cast<uintptr_t>(p.y) & 7) == 0 && (p.y_stride & 1) == 0;
#pragma unroll
  for (int i = 0; i < kMT; ++i) {
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int r = row0 + tb + 16 * i + g + 8 * h;
      if (r >= tile_end) continue;
      const int out = gemm_y_row(p, r);
      float* yrow = p.y + static_cast<int64_t>(out) * p.y_stride;
#pragma unroll
      for (int j = 0; j < kNF; ++j) {
        const int f = f0 + fb + 8 * j + 2 * cq;
        const float v0 = acc[i][j][2 * h], v1 = acc[i][j][2 * h + 1];
        if (pairs && f + 1 < p.n_out) {
          *reinterpret_cast<float2*>(yrow + f) = make_float2(v0, v1);
        } else {
          if (f < p.n_out) yrow[f] = v0;
          if (f + 1 < p.n_out) yrow[f + 1] = v1;
        }
      }
    }
  }
}

// The conversion's rows: f32 values, or the routed experts' SwiGLU of a gate and an up row
// (swiglu.cuh's element, the swiglu kernel's bits) computed as they are read.
struct PlainRows {
  const float* x;
  int64_t stride;
  __device__ __forceinline__ void load8(int64_t row, int64_t col, float (&v)[8]) const {
    const float* xr = x + row * stride + col;
#pragma unroll
    for (int i = 0; i < 8; ++i) v[i] = xr[i];
  }
};
struct SwigluRows {
  const float* gate;
  const float* up;
  int64_t stride;
  const float* weights;  // [rows] or null
  float limit;
  __device__ __forceinline__ void load8(int64_t row, int64_t col, float (&v)[8]) const {
    float g[8], u[8];
#pragma unroll
    for (int i = 0; i < 8; ++i) {
      g[i] = gate[row * stride + col + i];
      u[i] = up[row * stride + col + i];
    }
#pragma unroll
    for (int i = 0; i < 8; ++i) v[i] = swiglu_element(g[i], u[i], weights ? weights + row : nullptr, limit);
  }
};

// One warp per (row, 256-block): lane L converts elements 8L..8L+7 (x_to_limbs8); lanes 2q and
// 2q+1 hold group q, whose record entry lane 2q writes.
constexpr int kConvertWarps = 8;
template <class Rows>
__global__ void to_int8_limbs(Rows rows, int n_rows, int blocks_per_row, int8_t* limbs, int64_t limb_stride,
                              int64_t plane, uint8_t* records) {
  const int64_t w = static_cast<int64_t>(blockIdx.x) * kConvertWarps + threadIdx.x / 32;
  const int lane = threadIdx.x & 31;
  if (w >= static_cast<int64_t>(n_rows) * blocks_per_row) return;
  const int64_t row = w / blocks_per_row;
  const int b = static_cast<int>(w % blocks_per_row);
  float v[8];
  rows.load8(row, b * kInt8Block + 8 * lane, v);
  uint32_t m = 0;
#pragma unroll
  for (int i = 0; i < 8; ++i) m = max(m, __float_as_uint(v[i]) & 0x7FFFFFFFu);  // NaN patterns order above infinity
  m = __reduce_max_sync(0xFFFFFFFFu, m);
  const int e = xblock_exponent(m, kInt8TopBits);
  uint2 limb[kInt8Limbs];
  int32_t s = x_to_limbs8(v, e, limb);
  s += __shfl_xor_sync(0xFFFFFFFFu, s, 1);
#pragma unroll
  for (int l = 0; l < kInt8Limbs; ++l) {
    *reinterpret_cast<uint2*>(limbs + l * plane + row * limb_stride + b * kInt8Block + 8 * lane) = limb[l];
  }
  uint8_t* rec = records + w * kInt8RecordBytes;
  if ((lane & 1) == 0) {
    uint16_t hi, lo;
    group_sum_f16(s, &hi, &lo);
    reinterpret_cast<uint16_t*>(rec)[lane / 2] = hi;
    reinterpret_cast<uint16_t*>(rec + 32)[lane / 2] = lo;
  }
  if (lane < 4) {
    reinterpret_cast<float*>(rec + 64)[lane] = lane == 0 ? xblock_scale(m, e) : 0.0f;
  }
}

template <class Rows>
cudaError_t launch_to_int8(const Rows& rows, int64_t n_rows, int64_t cols, int8_t* limbs, int64_t limb_stride,
                           uint8_t* records, cudaStream_t stream) {
  const int blocks_per_row = static_cast<int>(cols / kInt8Block);
  const int64_t warps = n_rows * blocks_per_row;
  const int64_t grid = (warps + kConvertWarps - 1) / kConvertWarps;
  if (grid > 0x7FFFFFFF) return cudaErrorInvalidConfiguration;
  to_int8_limbs<<<static_cast<unsigned>(grid), kConvertWarps * 32, 0, stream>>>(
      rows, static_cast<int>(n_rows), blocks_per_row, limbs, limb_stride, n_rows * limb_stride, records);
  return cudaGetLastError();
}

}  // namespace

cudaError_t launch_gemm_int8(const GemmLaunch& l, cudaStream_t stream) {
  int device = 0;
  cudaError_t e = cudaGetDevice(&device);
  if (e == cudaSuccess) {
    e = once_per_device(device, [] {
      return cudaFuncSetAttribute(gemm_int8_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, kSmem);
    });
  }
  if (e != cudaSuccess) return e;
  const int64_t slots = l.offsets ? (l.n_rows + kBT - 1) / kBT + l.n_groups : (l.n_rows + kBT - 1) / kBT;
  if (slots > 65535) return cudaErrorInvalidConfiguration;
  const dim3 grid((l.n_out + kBF - 1) / kBF, static_cast<unsigned>(slots));
  gemm_int8_kernel<<<grid, kGemmThreads, kSmem, stream>>>(l);
  return cudaGetLastError();
}

int gemm_int8_tile_rows() { return kBT; }

cudaError_t launch_convert_f32_to_int8(const float* x, int64_t x_stride, int64_t n_rows, int64_t cols, int8_t* limbs,
                                       int64_t limb_stride, uint8_t* records, cudaStream_t stream) {
  return launch_to_int8(PlainRows{x, x_stride}, n_rows, cols, limbs, limb_stride, records, stream);
}

cudaError_t launch_convert_swiglu_to_int8(const float* gate, const float* up, int64_t stride, const float* weights,
                                          float limit, int64_t n_rows, int64_t cols, int8_t* limbs,
                                          int64_t limb_stride, uint8_t* records, cudaStream_t stream) {
  return launch_to_int8(SwigluRows{gate, up, stride, weights, limit}, n_rows, cols, limbs, limb_stride, records,
                        stream);
}

}  // namespace dsv4::cuda::detail
