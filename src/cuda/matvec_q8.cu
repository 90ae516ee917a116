// Q8_0 row-tile matvec (rows_per_warp 32 in MatvecTuning): the default for Q8_0 rows of a multiple
// of 256 elements. Layout and per-lane work: matvec_q8.cuh.
//
// Roofline. Batch-1 decode reads each weight byte once, so the floor is bytes / copy bandwidth; an
// SM must take ≈13.6 Q8_0 weights per clock at 90 % of an H200's copy bandwidth. This kernel decodes
// in integers on tensor cores (mma.m16n8k32 of the int8 codes against the activations' fixed-point
// limbs, matvec_q8.cuh), reads the weights with coalesced 16-byte cp.async (two 8.7 KB items in
// flight per warp, 8 warps per SM: ≈140 KB in flight per SM, several times what the latency needs)
// and the activations' limbs as B fragments from shared memory (each warp loads its next item's
// 1 KB of x one item ahead and converts it when that item's turn comes).
//
// Shape of the work:
//   block  = W warps (W = warps_per_row, 1–8), together computing one tile of 32 rows at a time;
//            warp k takes the superblocks k, k+W, ... of the tile's rows (for every slot when
//            summed). The grid is what fits the GPU at once; unit u (a tile of one slot, or a tile
//            over all slots when summed) goes to block u mod gridDim.x, so blocks walk their units
//            in turn and each warp's items form one stream through its ring across units.
//   lane   = 4g + c: rows g, g + 8, g + 16, g + 24 of the tile, limbs 0, 1 (c even) or 2, 3 (c
//            odd; matvec_q8.cuh): its partial sums stay in registers (each item's f32 sum times the
//            item's 2^E and the limb weight); a slot's partial is scaled and added in slot order; at
//            a unit's end lane c = 0 adds lane c = 1's sums to its own, the rows go back to one per
//            lane and the block's W partials are added in warp order.
// Every output is one fixed sequence of f32 operations: deterministic, no atomics, the same bits
// for any grid.
#include <cuda_runtime.h>

#include <cstdint>
#include <type_traits>

#include "cuda/cp_async.cuh"
#include "cuda/matvec_launch.h"
#include "cuda/once_per_device.h"
#include "cuda/matvec_q8.cuh"
#include "cuda/pdl.cuh"
#include "cuda/row_tile.cuh"
#include "cuda/swiglu.cuh"

namespace dsv4::cuda::detail {

namespace {

// D = A·B for one warp (s8·s8 → s32; C = 0). Fragment layout: matvec_q8.cuh.
__device__ __forceinline__ void q8_mma(const uint32_t (&a)[4], const uint32_t (&b)[2], int32_t (&d)[4]) {
  asm("mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%10,%10,%10,%10};\n"
      : "=r"(d[0]), "=r"(d[1]), "=r"(d[2]), "=r"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]), "r"(0));
}

// The lane's four row sums (rows g, g + 8, g + 16, g + 24; c even: limbs 0, 1, c odd: limbs 2, 3)
// of one staged item against the staged limb planes, each the 8 blocks' d·I in block order.
__device__ __forceinline__ void q8_item_dot(const uint32_t* item, const uint32_t* planes, int lane, uint32_t sel,
                                            float (&s)[2][2]) {
  uint32_t bf[8][2];
  q8_b_fragment<0>(planes, lane, bf[0]);
  q8_b_fragment<1>(planes, lane, bf[1]);
  q8_b_fragment<2>(planes, lane, bf[2]);
  q8_b_fragment<3>(planes, lane, bf[3]);
  q8_b_fragment<4>(planes, lane, bf[4]);
  q8_b_fragment<5>(planes, lane, bf[5]);
  q8_b_fragment<6>(planes, lane, bf[6]);
  q8_b_fragment<7>(planes, lane, bf[7]);
#pragma unroll
  for (int rg = 0; rg < 2; ++rg) {
    const uint32_t* r0 = item + ((lane >> 2) + 16 * rg) * kQ8RowWords;
    const uint32_t* r1 = r0 + 8 * kQ8RowWords;
    s[rg][0] = s[rg][1] = 0.0f;
    auto pair = [&](auto m_const) {
      constexpr int m = decltype(m_const)::value;
      uint32_t ae[4], ao[4];
      float de[2], dd[2];
      q8_a_fragments<m>(r0, r1, lane, sel, ae, ao, de, dd);
      int32_t ce[4], co[4];
      q8_mma(ae, bf[2 * m], ce);
      q8_mma(ao, bf[2 * m + 1], co);
      q8_fold(ce, de, s[rg]);
      q8_fold(co, dd, s[rg]);
    };
    pair(std::integral_constant<int, 0>{});
    pair(std::integral_constant<int, 1>{});
    pair(std::integral_constant<int, 2>{});
    pair(std::integral_constant<int, 3>{});
  }
}

static_assert(kQ8TileRows == kRowTileRows, "the row-tile schedule (row_tile.cuh) takes tiles of 32 rows");

struct Q8Params {
  const uint8_t* w;  // 16-aligned; rows of row_bytes (a multiple of 272)
  int64_t row_bytes;
  int64_t slab_bytes;
  const int32_t* experts;  // null: slot j is slab j
  const float* x;          // 16-aligned
  int64_t x_stride;        // a multiple of 4
  const float* up;         // kSwiglu: slot j's activation is swiglu_element(x_j[i], up[j·x_stride + i],
  const float* act_weights;  // act_weights + j or null, act_limit)
  float act_limit;
  const float* norm_w;  // kRmsNorm (dense): the activation is (x[i]·r)·norm_w[i], r = q8_rms_scale(x)
  float norm_eps;
  const float* scale;      // null: 1
  float* y;
  int n_out;
  int n_slots;
  int pair_stride;  // kPair: slots j and j + pair_stride read the same slab (matvec.h)
  int n_sb;     // superblocks per row
  int n_tiles;  // ⌈n_out / 32⌉
  int n_pairs;  // token pairs: token_pairs(n_slots, pair_stride) (matvec_launch.h)
  int n_units;  // n_tiles (summed), n_slots · n_tiles, or for token pairs n_pairs · n_tiles
};


// What the kernel stages as its activations: x as it is, SwiGLU(x, up) (the op before a down
// projection) or RMSNorm(x) (the op before q_b): the fused forms save the launch of that op.
enum class Q8Input { kPlain, kSwiglu, kRmsNorm };

// RMSNorm's scale of x[0, n) as norms.cu computes it (Σx² in double, rounded once), by one warp in a
// fixed order (each lane its float4s in turn, then a fixed shuffle tree): the same value in every
// warp of every grid. n a multiple of 128.
__device__ float q8_rms_scale(const float* x, int n, float eps, int lane) {
  double ss = 0.0;
  for (int i = 4 * lane; i < n; i += 128) {
    const float4 v = __ldg(reinterpret_cast<const float4*>(x + i));
    ss += static_cast<double>(v.x) * static_cast<double>(v.x);
    ss += static_cast<double>(v.y) * static_cast<double>(v.y);
    ss += static_cast<double>(v.z) * static_cast<double>(v.z);
    ss += static_cast<double>(v.w) * static_cast<double>(v.w);
  }
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) ss += __shfl_down_sync(0xFFFFFFFFu, ss, o);
  ss = __shfl_sync(0xFFFFFFFFu, ss, 0);
  return static_cast<float>(1.0 / sqrt(ss / static_cast<double>(n) + static_cast<double>(eps)));
}

// kPair (per-slot launches, plain or with the RMSNorm): a unit is a tile of a token pair, slots s
// and s + pair_stride of the same slab (pair v of the schedule: s = pair_first(v)); each weight item
// is staged and decoded once for both, the second token's limbs in the MMAs' columns 4–7
// (matvec_q8.cuh). An odd count's last token has no second slot (s + pair_stride ≥ n_slots): its
// columns 4–7 take zeros and nothing is stored for them. With the RMSNorm (a dense pair, two
// tokens' q_b) each token has its own scale.
template <bool kSum, Q8Input kIn, bool kPair = false>
__global__ void __launch_bounds__(kQ8MaxWarps * 32) matvec_q8_kernel(__grid_constant__ const Q8Params p) {
  static_assert(!kPair || (!kSum && kIn != Q8Input::kSwiglu), "token pairs: per-slot launches without SwiGLU");
  extern __shared__ __align__(16) uint8_t smem[];
  const int W = blockDim.x >> 5;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  uint8_t* ring = smem + warp * (kQ8Ring * kQ8ItemBytes);
  constexpr int kXbufWords = q8_xbuf_words(kPair);  // the item's limb planes (a pair's: both tokens')
  uint32_t* xbuf = reinterpret_cast<uint32_t*>(smem + W * (kQ8Ring * kQ8ItemBytes)) + warp * kXbufWords;
  float* red = reinterpret_cast<float*>(smem + W * (kQ8Ring * kQ8ItemBytes + kXbufWords * 4));  // [2][W][32]

  // Row items are superblocks (row_tile.cuh); the schedule's slots are token pairs for kPair.
  constexpr int kTokens = kPair ? 2 : 1;
  const RowTileSchedule<kSum> sched(p.n_sb, kPair ? p.n_pairs : p.n_slots, p.n_units, p.n_tiles, W, warp);
  const int per_unit = sched.per_unit, my_units = sched.my_units;
  // The (first) slot of the schedule's slot v.
  auto pair_first = [&](int v) {
    if constexpr (!kPair) return v;
    const int ps = p.pair_stride;
    return ps == 1 ? 2 * v : v / ps * 2 * ps + v % ps;
  };
  // Whether the pair whose first slot is s has a second one.
  auto has_second = [&](int s) { return kPair && s + p.pair_stride < p.n_slots; };

  // This lane's 17 chunk offsets within an item of a full tile (a partial last tile recomputes).
  int32_t off[kQ8SbChunks];
#pragma unroll
  for (int j = 0; j < kQ8SbChunks; ++j) off[j] = static_cast<int32_t>(q8_chunk_offset(lane, j, p.row_bytes, 31));

  int issue_k = 0, issue_i = 0;
  auto issue_next = [&](uint8_t* dst) {
    if (issue_k >= my_units || per_unit == 0) return;
    const int slot = pair_first(sched.item_slot(issue_k, issue_i)), tile = sched.unit_tile(issue_k);
    const int e = p.experts ? __ldg(p.experts + slot) : slot;
    const uint8_t* base = p.w + e * p.slab_bytes + static_cast<int64_t>(tile) * kQ8TileRows * p.row_bytes +
                          static_cast<int64_t>(sched.item_index(issue_i)) * kQ8SbBytes;
    const int last_row = p.n_out - 1 - tile * kQ8TileRows;
    if (last_row >= kQ8TileRows - 1) {
#pragma unroll
      for (int j = 0; j < kQ8SbChunks; ++j) cp_async16(dst + 16 * (lane + 32 * j), base + off[j]);
    } else {
#pragma unroll
      for (int j = 0; j < kQ8SbChunks; ++j) {
        cp_async16(dst + 16 * (lane + 32 * j), base + q8_chunk_offset(lane, j, p.row_bytes, last_row));
      }
    }
    if (++issue_i == per_unit) {
      issue_i = 0;
      ++issue_k;
    }
  };

  // The activations of the warp's next item (unit k, item i), in flight in registers while the
  // current item is decoded; staged into xbuf when that item's turn comes.
  // Fused forms: u_next holds the up values (kSwiglu) or the norm weights (kRmsNorm) until staged.
  constexpr bool kSwiglu = kIn == Q8Input::kSwiglu, kRmsNorm = kIn == Q8Input::kRmsNorm;
  float4 x_next[kQ8XChunks], u_next[kQ8XChunks], x2_next[kPair ? kQ8XChunks : 1];
  auto load_x = [&](int k, int i) {
    if (k >= my_units || per_unit == 0) return;
    const int slot = pair_first(sched.item_slot(k, i));
    const int64_t at = slot * p.x_stride + static_cast<int64_t>(sched.item_index(i)) * kQ8SbElems;
#pragma unroll
    for (int j = 0; j < kQ8XChunks; ++j) {
      x_next[j] = __ldg(reinterpret_cast<const float4*>(p.x + at + q8_x_index(lane, j)));
      if constexpr (kPair) {
        x2_next[j] = has_second(slot) ? __ldg(reinterpret_cast<const float4*>(p.x + at + p.pair_stride * p.x_stride +
                                                                             q8_x_index(lane, j)))
                                      : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
      }
      if constexpr (kSwiglu) u_next[j] = __ldg(reinterpret_cast<const float4*>(p.up + at + q8_x_index(lane, j)));
      if constexpr (kRmsNorm) u_next[j] = __ldg(reinterpret_cast<const float4*>(p.norm_w + at + q8_x_index(lane, j)));
    }
  };

  // PDL: the weights of a dense launch are fetched while the kernel before it finishes (nothing
  // writes weights); the expert ids, activations and outputs only after it. pdl.cuh.
  if (p.experts) pdl_wait();
#pragma unroll
  for (int b = 0; b < kQ8Ring - 1; ++b) {
    issue_next(ring + b * kQ8ItemBytes);
    cp_async_commit();
  }
  if (!p.experts) pdl_wait();
  load_x(0, 0);
  pdl_trigger();
  float norm_r = 1.0f, norm_r2 = 1.0f;
  if constexpr (kRmsNorm) norm_r = q8_rms_scale(p.x, p.n_sb * kQ8SbElems, p.norm_eps, lane);
  if constexpr (kRmsNorm && kPair) {
    norm_r2 = q8_rms_scale(p.x + p.pair_stride * p.x_stride, p.n_sb * kQ8SbElems, p.norm_eps, lane);
  }

  const uint32_t sel = q8_even_sel(lane);
  const float limb_weight = q8_limb_weight(lane);
  int buf = 0;
  for (int k = 0; k < my_units; ++k) {
    float acc[4] = {0.0f, 0.0f, 0.0f, 0.0f}, part[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    for (int i = 0; i < per_unit; ++i) {
      issue_next(ring + (buf == 0 ? kQ8Ring - 1 : buf - 1) * kQ8ItemBytes);
      cp_async_commit();
      cp_async_wait<kQ8Ring - 1>();  // this lane's chunks of item i have landed
      __syncwarp();                  // ... and every other lane's; every lane is past the previous
                                     // item's decode: xbuf is free
      const int slot = pair_first(sched.item_slot(k, i));
      float4 v[kQ8XChunks];
#pragma unroll
      for (int j = 0; j < kQ8XChunks; ++j) {
        v[j] = x_next[j];
        if constexpr (kSwiglu) {
          const float* aw = p.act_weights ? p.act_weights + slot : nullptr;
          v[j] = make_float4(swiglu_element(v[j].x, u_next[j].x, aw, p.act_limit),
                             swiglu_element(v[j].y, u_next[j].y, aw, p.act_limit),
                             swiglu_element(v[j].z, u_next[j].z, aw, p.act_limit),
                             swiglu_element(v[j].w, u_next[j].w, aw, p.act_limit));
        }
        if constexpr (kRmsNorm) {  // as norms.cu: (x·r)·w, each product rounded
          auto norm = [&](float4 x, float r) {
            const float4 nw = u_next[j];
            return make_float4(__fmul_rn(__fmul_rn(x.x, r), nw.x), __fmul_rn(__fmul_rn(x.y, r), nw.y),
                               __fmul_rn(__fmul_rn(x.z, r), nw.z), __fmul_rn(__fmul_rn(x.w, r), nw.w));
          };
          v[j] = norm(v[j], norm_r);
          if constexpr (kPair) x2_next[j] = norm(x2_next[j], norm_r2);
        }
      }
      // The item's exponent from the warp's largest |x| (an exact maximum: any order), then its limbs.
      auto stage = [&](const float4(&xs)[kQ8XChunks], uint32_t* planes) {
        uint32_t max_abs = q8_lane_max_abs(xs);
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) max_abs = max(max_abs, __shfl_xor_sync(0xFFFFFFFFu, max_abs, o));
        uint32_t words[kQ8XChunks][kQ8XLimbs];
        q8_stage_lane(xs, q8_x_exponent(max_abs), words);
#pragma unroll
        for (int j = 0; j < kQ8XChunks; ++j) {
#pragma unroll
          for (int q = 0; q < kQ8XLimbs; ++q) planes[q * kQ8XPlaneWords + lane + 32 * j] = words[j][q];
        }
        return q8_x_scale(max_abs);
      };
      float item_scale = stage(v, xbuf);
      // A pair's lanes c = 2, 3 hold the second token's sums (its slot, its item scale; none, and
      // nothing stored, for an odd count's last token).
      int lane_slot = slot;
      if constexpr (kPair) {
        const float second_scale = stage(x2_next, xbuf + kQ8PairWords);
        if (lane & 2) {
          item_scale = second_scale;
          lane_slot += p.pair_stride;
        }
      }
      if (i + 1 < per_unit) {
        load_x(k, i + 1);
      } else {
        load_x(k + 1, 0);
      }
      __syncwarp();  // xbuf is complete
      float sb[2][2];
      q8_item_dot(reinterpret_cast<const uint32_t*>(ring + buf * kQ8ItemBytes),
                  kPair && lane >= 16 ? xbuf + kQ8PairWords : xbuf, lane, sel, sb);
      __syncwarp();  // every lane is past its reads of the weight buffer, which a later issue refills
      const float lane_scale = item_scale * limb_weight;  // a power of two (or NaN): exact
#pragma unroll
      for (int h = 0; h < 4; ++h) part[h] = fmaf(sb[h >> 1][h & 1], lane_scale, part[h]);
      // Scaled and added: per item in the per-slot form, at each slot's last item (slot order) when summed.
      if (sched.closes_slot(i)) {
        const float s = p.scale && lane_slot < p.n_slots ? __ldg(p.scale + lane_slot) : 1.0f;
#pragma unroll
        for (int h = 0; h < 4; ++h) {
          acc[h] = fmaf(s, part[h], acc[h]);
          part[h] = 0.0f;
        }
      }
      buf = buf + 1 == kQ8Ring ? 0 : buf + 1;
    }
    // Lane 4g gets rows g + 8h (h = 0..3) as its limbs 0, 1 plus lane 4g + 1's limbs 2, 3; lane r then
    // takes row r from lane 4(r & 7), register r >> 3. A pair's second token: lanes 4g + 2 and 4g + 3.
    const int hr = lane >> 3;
    const int row = sched.unit_tile(k) * kQ8TileRows + lane;
    auto store_token = [&](int tau, int store_k, int64_t out, int n_out) {
      float rows[4];
#pragma unroll
      for (int h = 0; h < 4; ++h) {
        const float total = acc[h] + __shfl_down_sync(0xFFFFFFFFu, acc[h], 1);
        rows[h] = __shfl_sync(0xFFFFFFFFu, total, 4 * (lane & 7) + 2 * tau);
      }
      const float mine = hr == 0 ? rows[0] : hr == 1 ? rows[1] : hr == 2 ? rows[2] : rows[3];
      store_row_tile(mine, red, store_k, W, warp, lane, row, n_out, out, p.y);
    };
    if constexpr (kPair) {
      // Two stores a unit: the reduction buffers' parity is that of 2k and 2k + 1 (store_row_tile).
      const int s = pair_first(sched.unit_slot(k));
      const int64_t first = static_cast<int64_t>(s) * p.n_out + row;
      store_token(0, 2 * k, first, p.n_out);
      // An odd count's last token: the barriers of the store, no outputs (no row is below 0).
      store_token(1, 2 * k + 1, first + static_cast<int64_t>(p.pair_stride) * p.n_out, has_second(s) ? p.n_out : 0);
    } else {
      store_token(0, k, sched.out_index(k, row, p.n_out), p.n_out);
    }
  }
  cp_async_wait<0>();
}

using Q8Kernel = void (*)(Q8Params);
constexpr Q8Kernel kQ8Kernels[] = {matvec_q8_kernel<false, Q8Input::kPlain>, matvec_q8_kernel<true, Q8Input::kPlain>,
                                   matvec_q8_kernel<false, Q8Input::kSwiglu>, matvec_q8_kernel<true, Q8Input::kSwiglu>,
                                   matvec_q8_kernel<false, Q8Input::kRmsNorm>,
                                   matvec_q8_kernel<false, Q8Input::kPlain, true>,
                                   matvec_q8_kernel<false, Q8Input::kRmsNorm, true>};
// The instantiation of a launch (RMSNorm: dense launches or a dense pair; pairs: per-slot launches
// without SwiGLU; both checked by the caller).
Q8Kernel q8_kernel(bool sum, Q8Input in, bool pair) {
  if (pair) return kQ8Kernels[in == Q8Input::kRmsNorm ? 6 : 5];
  return in == Q8Input::kRmsNorm ? kQ8Kernels[4] : kQ8Kernels[(in == Q8Input::kSwiglu ? 2 : 0) + (sum ? 1 : 0)];
}

// Lets every instantiation use the largest shared memory a launch asks for, once per device.
cudaError_t allow_smem(int device) {
  return once_per_device(device, [] {
    constexpr int bytes = q8_smem_bytes(kQ8MaxWarps, /*pair=*/true);
    cudaError_t e = cudaSuccess;
    for (Q8Kernel k : kQ8Kernels) {
      if (e == cudaSuccess) e = cudaFuncSetAttribute(k, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes);
    }
    return e;
  });
}

}  // namespace

int q8_warps_per_row(int64_t n_in, int64_t n_out) {
  return row_tile_warps_per_row(n_in / kQ8SbElems, n_out, kQ8MaxWarps);
}

cudaError_t prepare_matvec_q8() {
  int device = 0;
  const cudaError_t e = cudaGetDevice(&device);
  return e == cudaSuccess ? allow_smem(device) : e;
}

int q8_blocks_per_sm(int warps, bool pair) {
  int n = 0;
  if (prepare_matvec_q8() != cudaSuccess ||
      cudaOccupancyMaxActiveBlocksPerMultiprocessor(&n, q8_kernel(false, Q8Input::kPlain, pair), warps * 32,
                                                    q8_smem_bytes(warps, pair)) != cudaSuccess) {
    return 0;
  }
  return n;
}

cudaError_t launch_matvec_q8(const MatvecLaunch& l, cudaStream_t stream) {
  const int W = l.warps_per_row;
  if ((W != 1 && W != 2 && W != 4 && W != 8) || l.blocks < 1 || l.n_in % kQ8SbElems != 0 ||
      l.row_bytes * kQ8TileRows > INT32_MAX || W > l.n_in / kQ8SbElems ||
      (l.norm_w && (l.up || l.experts || l.sum || l.n_slots != (l.pair_stride ? 2 : 1))) ||
      (l.pair_stride != 0 && (l.pair_stride < 0 || l.up || l.sum || l.n_slots % l.pair_stride != 0))) {
    return cudaErrorInvalidValue;
  }
  cudaError_t e = prepare_matvec_q8();
  if (e != cudaSuccess) return e;
  Q8Params p;
  p.w = l.w;
  p.row_bytes = l.row_bytes;
  p.slab_bytes = l.slab_bytes;
  p.experts = l.experts;
  p.x = l.x;
  p.x_stride = l.x_stride;
  p.up = l.up;
  p.act_weights = l.act_weights;
  p.act_limit = l.act_limit;
  p.norm_w = l.norm_w;
  p.norm_eps = l.norm_eps;
  p.scale = l.scale;
  p.y = l.y;
  p.n_out = l.n_out;
  p.n_slots = l.n_slots;
  p.pair_stride = l.pair_stride;
  p.n_sb = l.n_in / kQ8SbElems;
  p.n_tiles = (l.n_out + kQ8TileRows - 1) / kQ8TileRows;
  const bool pair = l.pair_stride != 0;
  p.n_pairs = pair ? token_pairs(l.n_slots, l.pair_stride) : 0;
  p.n_units = l.sum ? p.n_tiles : (pair ? p.n_pairs : l.n_slots) * p.n_tiles;
  const Q8Input in = l.norm_w ? Q8Input::kRmsNorm : l.up ? Q8Input::kSwiglu : Q8Input::kPlain;
  return launch_pdl(q8_kernel(l.sum, in, pair), dim3(l.blocks), dim3(W * 32), q8_smem_bytes(W, pair), stream, p);
}

}  // namespace dsv4::cuda::detail
