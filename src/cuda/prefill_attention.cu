// prefill_attention.h.
//
// Partial kernel, block (split s, token t), 128 threads, rows [64s, 64s + nr) of the token's list:
//   1. S[h][r] = q[t][h]·row_r: the head dim in slabs of 32, q and the rows loaded transposed into
//      shared memory, a 64×64 register tile (heads × rows); scaled, rows ≥ nr at -inf;
//   2. softmax statistics per head (max m, sum l of e^{S-m}) over the split, P = e^{S-m} kept
//      transposed in shared memory (P[r][h]);
//   3. O[h][d] = Σ_r P[r][h]·row_r[d], the head dim in tiles of 64 (rows as loaded, no transpose).
// Geometry: H ≤ 64 heads (fewer are padded with zero queries), hd a multiple of 32.
// Roofline (CSA layer, 2048 tokens × 640 rows, 64 heads, hd 512): 2 × 2 × 64 × 512 × 640 × 2048
// = 172 GFLOP of f32 FMA, ~3.6 ms at the H200's 48 TFLOP/s peak, ~7 ms at half; the partials
// (128 KB per split and token) cost 2 × 2.7 GB of traffic, ~1.4 ms. The decode kernel re-reads
// every row per group of 8 heads from one warp per row: 466 ms for the 43 layers of an 8K chunk.
// Combine kernel, block (head, token): o = Σ_s e^{m_s-M} o_s / (e^{sink-M} + Σ_s e^{m_s-M} l_s)
// over the token's non-empty splits, then the inverse RoPE at p (§7.10).
#include <cuda_runtime.h>

#include "cuda/attention_rows.cuh"
#include "cuda/check.h"
#include "cuda/device_math.cuh"
#include "cuda/pdl.cuh"
#include "cuda/prefill_attention.h"
#include "cuda/prefill_tile.cuh"

namespace dsv4::cuda {

namespace {

using namespace detail;

constexpr int kRows = kPrefillAttnRows;
constexpr int kSlab = 32;  // head dims per score slab
static_assert(kRows == kTile, "one split is one register tile of rows");
static_assert(kTileM == 8 && kTileN == 4, "a thread stores its 8 heads and its 4 dims as float4s");

__global__ void __launch_bounds__(kTileThreads) partial_kernel(AttentionArgs a) {
  pdl_wait();  // launched with PDL: nothing before this line (pdl.cuh)
  pdl_trigger();
  __shared__ __align__(16) float slab[2 * kSlab * kTilePitch];  // q | rows slabs; later the row tile
  __shared__ __align__(16) float pt[kRows * kTilePitch];        // P transposed: [row][head]
  __shared__ const float* rows[kRows];
  __shared__ float stats[kTile][2];
  const int s = blockIdx.x, t = blockIdx.y;
  const AttnRowSet rs = attn_row_set(a, t);
  const int64_t r0 = static_cast<int64_t>(s) * kRows;
  const int64_t left = rs.total() - r0;
  if (left <= 0) return;  // the combine reads only the token's non-empty splits
  const int nr = static_cast<int>(left < kRows ? left : kRows);
  for (int i = threadIdx.x; i < kRows; i += blockDim.x) rows[i] = i < nr ? attn_row_ptr(a, rs, t, r0 + i) : nullptr;
  const float* q = a.q + static_cast<int64_t>(t) * a.H * a.hd;
  const int H = a.H, hd = a.hd;
  float* qs = slab;
  float* ks = slab + kSlab * kTilePitch;
  __syncthreads();

  TileAcc acc;
  tile_zero(acc);
  for (int d0 = 0; d0 < hd; d0 += kSlab) {
    load_slab_transposed(qs, d0, kSlab, [&](int h) { return h < H ? q + static_cast<int64_t>(h) * hd : nullptr; });
    load_slab_transposed(ks, d0, kSlab, [&](int r) { return rows[r]; });
    __syncthreads();
    tile_fma(qs, ks, kSlab, acc);
    __syncthreads();
  }
  const int ty = threadIdx.x >> 4, tx = threadIdx.x & 15;
  const float scale = static_cast<float>(1.0 / sqrt(static_cast<double>(hd)));
#pragma unroll
  for (int j = 0; j < kTileN; ++j) {
    const int r = kTileN * tx + j;
    float v[kTileM];
#pragma unroll
    for (int i = 0; i < kTileM; ++i) v[i] = r < nr ? __fmul_rn(acc.v[i][j], scale) : -INFINITY;
    float4* dst = reinterpret_cast<float4*>(pt + r * kTilePitch + kTileM * ty);
    dst[0] = make_float4(v[0], v[1], v[2], v[3]);
    dst[1] = make_float4(v[4], v[5], v[6], v[7]);
  }
  __syncthreads();

  // Softmax statistics: warp w takes heads w, w + 8, ...; lane l rows l and l + 32.
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
  for (int h = warp; h < kTile; h += warps) {
    float* p0 = pt + lane * kTilePitch + h;
    float* p1 = pt + (lane + 32) * kTilePitch + h;
    const float m = warp_max(fmaxf(*p0, *p1));
    const float e0 = lane < nr ? expf(*p0 - m) : 0.0f;
    const float e1 = lane + 32 < nr ? expf(*p1 - m) : 0.0f;
    *p0 = e0;
    *p1 = e1;
    const float l = warp_sum(e0 + e1);
    if (lane == 0) {
      stats[h][0] = m;
      stats[h][1] = l;
    }
  }
  __syncthreads();

  const int64_t part = static_cast<int64_t>(t) * H * a.splits + s;  // + h·splits
  float* vs = slab;  // [kRows][kTilePitch]: the rows' dims [d0, d0 + dw)
  for (int d0 = 0; d0 < hd; d0 += kTile) {
    const int dw = hd - d0 < kTile ? hd - d0 : kTile;  // a multiple of kSlab
    for (int f = threadIdx.x; f < kRows * (kTile / 4); f += blockDim.x) {
      const int r = f / (kTile / 4), c = f % (kTile / 4);
      const float4 v = r < nr && 4 * c < dw ? *reinterpret_cast<const float4*>(rows[r] + d0 + 4 * c)
                                            : make_float4(0.f, 0.f, 0.f, 0.f);
      *reinterpret_cast<float4*>(vs + r * kTilePitch + 4 * c) = v;
    }
    __syncthreads();
    TileAcc o;
    tile_zero(o);
    tile_fma(pt, vs, nr, o);
#pragma unroll
    for (int i = 0; i < kTileM; ++i) {
      const int h = kTileM * ty + i;
      if (h < H && kTileN * tx < dw) {
        *reinterpret_cast<float4*>(a.part_o + (part + static_cast<int64_t>(h) * a.splits) * hd + d0 + kTileN * tx) =
            make_float4(o.v[i][0], o.v[i][1], o.v[i][2], o.v[i][3]);
      }
    }
    __syncthreads();
  }
  for (int h = threadIdx.x; h < H; h += blockDim.x) {
    reinterpret_cast<float2*>(a.part_ml)[part + static_cast<int64_t>(h) * a.splits] =
        make_float2(stats[h][0], stats[h][1]);
  }
}

// Every split the combine reads holds at least one row, so l_s ≥ 1 and m_s is finite.
__global__ void combine_kernel(AttentionArgs a) {
  pdl_wait();  // launched with PDL: nothing before this line (pdl.cuh)
  pdl_trigger();
  extern __shared__ float smem[];
  float* o = smem;         // [hd]
  float* w = smem + a.hd;  // [splits]
  __shared__ float scratch[32];
  const int h = blockIdx.x, t = blockIdx.y;
  const int n_split = static_cast<int>((attn_row_set(a, t).total() + kRows - 1) / kRows);
  const int64_t base = (static_cast<int64_t>(t) * a.H + h) * a.splits;
  const float2* ml = reinterpret_cast<const float2*>(a.part_ml) + base;
  const float sink = a.sinks[h];
  float m_local = -INFINITY;
  for (int s = threadIdx.x; s < n_split; s += blockDim.x) m_local = fmaxf(m_local, ml[s].x);
  const float M = fmaxf(sink, block_max(m_local, scratch));
  float den_local = 0.0f;
  for (int s = threadIdx.x; s < n_split; s += blockDim.x) {
    const float2 v = ml[s];
    const float e = expf(v.x - M);
    w[s] = e;
    den_local += v.y * e;
  }
  const float den = expf(sink - M) + block_sum(den_local, scratch);
  for (int d = threadIdx.x; d < a.hd; d += blockDim.x) {
    float acc = 0.0f;
#pragma unroll 8
    for (int s = 0; s < n_split; ++s) acc = fmaf(a.part_o[(base + s) * a.hd + d], w[s], acc);
    o[d] = acc / den;
  }
  const int64_t pos = static_cast<int64_t>(*a.pos0) + a.t0 + t;
  rope_shared(o, a.hd, a.n_rot / 2, a.omega, pos, true);
  float* out = a.out + (static_cast<int64_t>(t) * a.H + h) * a.hd;
  for (int d = threadIdx.x; d < a.hd; d += blockDim.x) out[d] = o[d];
}

}  // namespace

int prefill_attention_splits(int64_t max_rows) { return static_cast<int>((max_rows + kRows - 1) / kRows); }

bool prefill_attention_supported(int H, int hd) { return H >= 1 && H <= kTile && hd >= kSlab && hd % kSlab == 0; }

Status prefill_attention(const AttentionArgs& a, cudaStream_t stream) {
  if (a.T <= 0) return Status();
  if (!prefill_attention_supported(a.H, a.hd)) return make_error("prefill attention: unsupported geometry");
  if (a.splits <= 0 || a.splits > 65535 || a.T > 65535) return make_error("prefill attention: bad launch shape");
  DSV4_CUDA_TRY(launch_pdl(partial_kernel, dim3(a.splits, a.T), dim3(kTileThreads), 0, stream, a));
  const size_t combine_smem = static_cast<size_t>(a.hd + a.splits) * sizeof(float);
  if (combine_smem > 48 * 1024) {
    DSV4_CUDA_TRY(cudaFuncSetAttribute(combine_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                       static_cast<int>(combine_smem)));
  }
  DSV4_CUDA_TRY(launch_pdl(combine_kernel, dim3(a.H, a.T), dim3(128), combine_smem, stream, a));
  return cuda_status(cudaGetLastError(), "prefill attention kernels");
}

}  // namespace dsv4::cuda
