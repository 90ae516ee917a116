// hc.h for chunks of tokens: hc_post (X' = post ⊗ f + Cᵀ·X) leaving the next mixer's records
// over X', and hc_mixer_partials (the records over X), one lane per token, from
// kHcTokenLaneMinTokens tokens on (shorter chunks: hc.cu's dim-per-lane kernels).
//
// Why a token per lane: a record is M mixer sums and a Gram matrix over a column block's dims. With
// a dim per lane (session 12 and before) every token paid two warp reduce-scatters (24 floats, 16
// doubles) per 32 dims, and every thread re-read its token's 20 mixing coefficients: ≈ 570
// instructions per token and dim, 3-5× the launch's bytes at the copy rate (docs/PERF.md, session
// 13). With a token per lane the sums run down the lane's own dims with no shuffle, and the
// coefficients stay in registers for the whole column block.
//
// Shape: a CTA is one column block of kHcDimsPerBlock dims and eight warps. The block's mixer
// columns (the four streams of each row k at each dim, f32) are staged once by all of them, before
// griddepcontrol.wait, and read as broadcasts. Then up to eight warps run groups of 32 tokens
// (units), a stage of kStageDims dims at a time through a two-deep cp.async ring per warp: per
// token the four stream rows, then the n_parts rows of f and the extra row, 64 bytes each,
// token-major with a 16-byte pad so that lanes reading the same row hit distinct bank quads; with
// a warp's first stage of a unit come its tokens' 20 mixing coefficients, kept in registers. X' is
// written over X in the stage and leaves by coalesced 16-byte stores; a unit's records leave
// through shared memory, whole records per store. Long chunks give each warp whole units, one after
// another (the ring runs across them); chunks of up to 8 groups share a unit's stages among 2 or 4
// warps, which meet at a named barrier, so that more warps are busy.
//
// Sums, in an order that depends on D only: mixer sum k of a stage is an f32 FMA chain over each
// quad of 4 dims (dim, then stream), the stage's 4 quads added in f32; the Gram entries of a stage
// add exact double products in dim order from zero; a record adds its stages' partials (the f32
// sums rounded to double) in stage order from zero, whichever warp computed them. hc_post and
// hc_mixer_partials share this code, so the records of hc_post equal a separate pass over X'.
#include <cuda_runtime.h>

#include <algorithm>
#include <string>

#include "cuda/check.h"
#include "cuda/cp_async.cuh"
#include "cuda/device_math.cuh"
#include "cuda/hc.h"
#include "cuda/hc_kernel.cuh"
#include "cuda/once_per_device.h"
#include "cuda/pdl.cuh"

namespace dsv4::cuda {

namespace {

using namespace detail;

constexpr int kStageDims = 16;  // a stage's row segments are 64 bytes
constexpr int kStages = kHcDimsPerBlock / kStageDims;
constexpr int kQuads = kStageDims / 4;
constexpr int kWarps = 8;  // per CTA: all stage the mixer; as many as the shared memory holds run tokens
constexpr int kUnitsPerSlot = 4;  // token groups a warp runs in a long chunk (its ring runs across them)
constexpr int kLongChunkGroups = 64;
constexpr int kGramPairs = kHcStreams * (kHcStreams + 1) / 2;
static_assert(kHcDimsPerBlock % kStageDims == 0, "whole stages");
static_assert(kHcDimsPerBlock % 32 == 0, "a warp's pair of dims per lane in the mixer staging");

struct ChunkParams {
  PostParams post;  // without kPost: post.x alone
  int T;
  int64_t D;
  MixerParams next;  // M > 0
  double* partial;   // M > 0: [T][column blocks][M + 16]
  int rows;          // row segments (64 bytes) per token in a stage: 4 + n_parts (+ 1), or 4
  int ring_warps;    // warps that run tokens
  int split;         // warps that share a group's stages (short chunks: 2 or 4), a divisor of ring_warps
};

// 16-byte units of a token's slice of a stage: odd, so the lanes of any quarter warp reading the
// same row and quad touch eight different bank quads.
__host__ __device__ constexpr int token_units(int rows) { return 4 * rows + 1; }
__host__ __device__ constexpr int stage_units(int rows) { return 32 * token_units(rows); }

// 16-byte units per dim of the staged mixer columns: odd, so the lanes' stores (a dim each) hit
// distinct bank quads.
__host__ __device__ constexpr int wcol_stride(int M) { return M + 1; }

// 16-byte units of a token's mixing coefficients (post | comb, 20 floats): odd.
constexpr int kCoefUnits = (kHcMixSize - kHcStreams) / 4;
static_assert(kCoefUnits % 2 == 1 && kCoefUnits * 4 == kHcStreams + kHcGram, "post | comb, odd pitch");

// Shared memory, in 16-byte units: the mixer columns, then per warp two stages and (hc_post) the
// coefficients of 32 tokens.
__host__ __device__ constexpr int mixer_units(int M) { return M > 0 ? kHcDimsPerBlock * wcol_stride(M) : 0; }
__host__ __device__ constexpr int warp_units(bool post, int rows) {
  return 2 * stage_units(rows) + (post ? 32 * kCoefUnits : 0);
}
// Split groups (split > 1): per group slot and unit parity, each stage's M sums and Gram entries
// (doubles, lane-fastest).
__host__ __device__ constexpr int stage_partials(int M) { return M + kGramPairs; }
__host__ __device__ constexpr int split_units(int M, int slots) {
  return slots * 2 * kStages * stage_partials(M) * 32 / 2;
}
size_t chunk_smem_bytes(int M, bool post, int rows, int ring_warps, int split) {
  const int split_area = split > 1 && M > 0 ? split_units(M, ring_warps / split) : 0;
  return (static_cast<size_t>(mixer_units(M)) + static_cast<size_t>(ring_warps) * warp_units(post, rows) + split_area) *
         sizeof(float4);
}

// wcol[d·wcol_stride(M) + k] = the four streams' mixer weights of row k at dim dim0 + d (zeros
// past D). Warp w takes rows w, w + kWarps, ..., a lane two dims; every load of the thread is in
// flight together (the type is a template parameter: no switch between them).
template <gguf::TensorType kType, int M>
__device__ __forceinline__ void stage_mixer_as(float4* wcol, const MixerParams& w, int64_t D, int64_t dim0) {
  constexpr int kRowsPerWarp = (M + kWarps - 1) / kWarps, kDimsPerLane = kHcDimsPerBlock / 32;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  float v[kRowsPerWarp][kDimsPerLane][kHcStreams];
#pragma unroll
  for (int j = 0; j < kRowsPerWarp; ++j) {
    const int k = warp + kWarps * j;
#pragma unroll
    for (int e = 0; e < kDimsPerLane; ++e) {
      const int64_t d = dim0 + lane + 32 * e;
#pragma unroll
      for (int h = 0; h < kHcStreams; ++h) {
        v[j][e][h] = k < M && d < D ? weight_elem(kType, w.w + k * w.row_bytes, h * D + d) : 0.0f;
      }
    }
  }
#pragma unroll
  for (int j = 0; j < kRowsPerWarp; ++j) {
    const int k = warp + kWarps * j;
    if (k >= M) continue;
#pragma unroll
    for (int e = 0; e < kDimsPerLane; ++e) {
      wcol[(lane + 32 * e) * wcol_stride(M) + k] = make_float4(v[j][e][0], v[j][e][1], v[j][e][2], v[j][e][3]);
    }
  }
}

template <int M>
__device__ __forceinline__ void stage_mixer(float4* wcol, const MixerParams& w, int64_t D, int64_t dim0) {
  switch (w.type) {
    case gguf::TensorType::F32: stage_mixer_as<gguf::TensorType::F32, M>(wcol, w, D, dim0); break;
    case gguf::TensorType::F16: stage_mixer_as<gguf::TensorType::F16, M>(wcol, w, D, dim0); break;
    case gguf::TensorType::BF16: stage_mixer_as<gguf::TensorType::BF16, M>(wcol, w, D, dim0); break;
    default: stage_mixer_as<gguf::TensorType::Q8_0, M>(wcol, w, D, dim0); break;  // hc_check_mixer allows no other
  }
}

__device__ __forceinline__ float4 add4(float4 a, float4 b) {
  return make_float4(__fadd_rn(a.x, b.x), __fadd_rn(a.y, b.y), __fadd_rn(a.z, b.z), __fadd_rn(a.w, b.w));
}
__device__ __forceinline__ float lane_of(const float4& v, int c) {
  return c == 0 ? v.x : c == 1 ? v.y : c == 2 ? v.z : v.w;
}

// The stage of step `step` of this warp (group, dims [dim0 + kStageDims·s, +kStageDims)) into buf:
// copy g of a lane moves token 8g + lane/4's row segment quad lane%4, one row at a time.
template <bool kPost>
__device__ __forceinline__ void issue_stage(const ChunkParams& p, float4* buf, int group, int s, int64_t dim0) {
  const int lane = threadIdx.x & 31;
  const int64_t D = p.D;
  const int64_t d = dim0 + s * kStageDims + 4 * (lane & 3);
  const int tu = token_units(p.rows);
#pragma unroll 1
  for (int g = 0; g < 4; ++g) {
    const int tau = 8 * g + (lane >> 2);
    const int t = group * 32 + tau;
    const bool live = d < D && t < p.T;
    const int64_t tc = live ? t : 0, dc = live ? d : 0;  // an address even when nothing is read
    float4* dst = buf + tau * tu + (lane & 3);
    const float* xr = p.post.x + tc * kHcStreams * D + dc;
#pragma unroll
    for (int h = 0; h < kHcStreams; ++h) cp_async16_or_zero(dst + 4 * h, xr + h * D, live);
    if constexpr (kPost) {
      const float* fr = p.post.f + tc * p.post.n_parts * D + dc;
      for (int i = 0; i < p.post.n_parts; ++i) cp_async16_or_zero(dst + 4 * (kHcStreams + i), fr + i * D, live);
      if (p.post.f_extra) {
        cp_async16_or_zero(dst + 4 * (kHcStreams + p.post.n_parts), p.post.f_extra + tc * D + dc, live);
      }
    }
  }
}

// The 20 mixing coefficients (post | comb) of the 32 tokens of `group`, 80 bytes each at 80-byte
// pitch (an odd count of 16-byte units: a lane's LDS.128 of its own token hit distinct bank quads).
__device__ __forceinline__ void issue_coefficients(const ChunkParams& p, float4* coef, int group) {
  const int lane = threadIdx.x & 31;
#pragma unroll
  for (int i = 0; i < kCoefUnits; ++i) {
    const int c = lane + 32 * i, tau = c / kCoefUnits, part = c % kCoefUnits;
    const int t = group * 32 + tau;
    const bool live = t < p.T;
    cp_async16_or_zero(coef + c, p.post.mix + static_cast<int64_t>(live ? t : 0) * kHcMixSize + kHcStreams + 4 * part,
                       live);
  }
}

// Quad q (4 dims) of the lane's token in the stage: X, or X' = hc_post_value written back over X.
template <bool kPost>
__device__ __forceinline__ void quad_state(const ChunkParams& p, float4* mine, int q, const float (&post)[kHcStreams],
                                           const float (&comb)[kHcGram], float (&xn)[4][kHcStreams]) {
  float4 xv[kHcStreams];
#pragma unroll
  for (int h = 0; h < kHcStreams; ++h) xv[h] = mine[4 * h + q];
  if constexpr (kPost) {
    float4 fv = mine[4 * kHcStreams + q];
    for (int i = 1; i < p.post.n_parts; ++i) fv = add4(fv, mine[4 * (kHcStreams + i) + q]);
    if (p.post.f_extra) fv = add4(fv, mine[4 * (kHcStreams + p.post.n_parts) + q]);
#pragma unroll
    for (int c = 0; c < 4; ++c) {
      float xin[kHcStreams];
#pragma unroll
      for (int h = 0; h < kHcStreams; ++h) xin[h] = lane_of(xv[h], c);
      hc_post_value(post, comb, lane_of(fv, c), xin, xn[c]);
    }
#pragma unroll
    for (int h = 0; h < kHcStreams; ++h) mine[4 * h + q] = make_float4(xn[0][h], xn[1][h], xn[2][h], xn[3][h]);
  } else {
#pragma unroll
    for (int c = 0; c < 4; ++c) {
#pragma unroll
      for (int h = 0; h < kHcStreams; ++h) xn[c][h] = lane_of(xv[h], c);
    }
  }
}

// The quad's mixer sums (an f32 FMA chain over its dims, then streams) added to the stage's (the
// first quad's taken as they are), and its Gram products. Row by row, so that one chain is live.
template <int M>
__device__ __forceinline__ void quad_sums(const float4* w, const float (&xn)[4][kHcStreams], bool first_quad,
                                          float (&stage_sums)[M], double (&gram)[kGramPairs]) {
#pragma unroll
  for (int k = 0; k < M; ++k) {
    float acc = 0.0f;
#pragma unroll
    for (int c = 0; c < 4; ++c) {
      const float4 wk = w[c * wcol_stride(M) + k];
      acc = fmaf(wk.x, xn[c][0], acc);
      acc = fmaf(wk.y, xn[c][1], acc);
      acc = fmaf(wk.z, xn[c][2], acc);
      acc = fmaf(wk.w, xn[c][3], acc);
    }
    stage_sums[k] = first_quad ? acc : __fadd_rn(stage_sums[k], acc);
  }
#pragma unroll
  for (int c = 0; c < 4; ++c) {
    double xd[kHcStreams];
#pragma unroll
    for (int h = 0; h < kHcStreams; ++h) xd[h] = static_cast<double>(xn[c][h]);
    int e = 0;
#pragma unroll
    for (int h = 0; h < kHcStreams; ++h) {
#pragma unroll
      for (int j = h; j < kHcStreams; ++j, ++e) gram[e] = fma(xd[h], xd[j], gram[e]);  // exact products
    }
  }
}

// The records of the warp's 32 tokens (M sums, then the 16 Gram entries) through `stage` (free
// shared memory), 16 tokens at a time, so that each store instruction writes whole records.
template <int M>
__device__ __forceinline__ void store_records(const ChunkParams& p, float4* stage, int group, const double (&sums)[M],
                                              const double (&gram)[kGramPairs]) {
  constexpr int kUnits = hc_record_size(M) / 2, kPitch = kUnits + 1;  // 16-byte units per record; odd pitch
  const int lane = threadIdx.x & 31;
  double2* staged = reinterpret_cast<double2*>(stage);
#pragma unroll 1
  for (int half = 0; half < 2; ++half) {
    if ((lane >> 4) == half) {
      double2* mine = staged + (lane & 15) * kPitch;
#pragma unroll
      for (int k = 0; k < M; k += 2) mine[k / 2] = make_double2(sums[k], sums[k + 1]);
      double g16[kHcGram];
      int e = 0;
#pragma unroll
      for (int h = 0; h < kHcStreams; ++h) {
#pragma unroll
        for (int j = h; j < kHcStreams; ++j, ++e) g16[h * kHcStreams + j] = g16[j * kHcStreams + h] = gram[e];
      }
#pragma unroll
      for (int k = 0; k < kHcGram; k += 2) mine[(M + k) / 2] = make_double2(g16[k], g16[k + 1]);
    }
    __syncwarp();
#pragma unroll
    for (int c = lane; c < 16 * kUnits; c += 32) {
      const int tau = c / kUnits, part = c % kUnits;
      const int t = group * 32 + 16 * half + tau;
      if (t < p.T) {
        double* rec = p.partial + (static_cast<int64_t>(t) * gridDim.y + blockIdx.y) * hc_record_size(M);
        reinterpret_cast<double2*>(rec)[part] = staged[tau * kPitch + part];
      }
    }
    __syncwarp();
  }
}

// A CTA runs `ring_warps / split` group slots; the `split` warps of a slot share each of its units
// (a group of 32 tokens over the column block): warp part j takes stages j, j + split, .... Every
// stage ends in double partials (the stage's M sums, rounded from f32, and its Gram entries, summed
// from zero), added in stage order from zero, so the records are the same bits whatever the split.
template <int M, bool kPost>
__global__ void __launch_bounds__(kWarps * 32) hc_chunk_kernel(ChunkParams p) {
  extern __shared__ float4 smem[];
  float4* wcol = smem;  // [kHcDimsPerBlock][wcol_stride(M)] when M > 0
  const int64_t D = p.D;
  const int64_t dim0 = static_cast<int64_t>(blockIdx.y) * kHcDimsPerBlock;
  if constexpr (M > 0) stage_mixer<M>(wcol, p.next, D, dim0);  // weights: before the wait (pdl.cuh)
  pdl_wait();
  pdl_trigger();
  __syncthreads();
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int split = p.split, part = warp % split, slot = warp / split, slots = p.ring_warps / split;
  const int groups = (p.T + 31) / 32;
  const int first = blockIdx.x * slots + slot, stride = gridDim.x * slots;
  if (warp >= p.ring_warps || first >= groups) return;  // the whole slot: its barrier stays consistent
  const int per_unit = kStages / split;
  const int steps = (groups - first + stride - 1) / stride * per_unit;
  const int tu = token_units(p.rows), su = stage_units(p.rows);
  float4* ring = smem + mixer_units(M) + warp * warp_units(kPost, p.rows);
  float4* coef = ring + 2 * su;  // kPost: the coefficients of the unit whose first stage was issued last
  double* partials = reinterpret_cast<double*>(smem + mixer_units(M) + p.ring_warps * warp_units(kPost, p.rows)) +
                     slot * 2 * kStages * stage_partials(M) * 32;  // split > 1: [parity][stage][entry][lane]
  auto group_of = [&](int step) { return first + step / per_unit * stride; };
  auto stage_of = [&](int step) { return part + split * (step % per_unit); };
  auto issue = [&](int step) {
    if (step < steps) {
      issue_stage<kPost>(p, ring + (step & 1) * su, group_of(step), stage_of(step), dim0);
      // The previous unit's coefficients were read at its first step.
      if (kPost && step % per_unit == 0) issue_coefficients(p, coef, group_of(step));
    }
    cp_async_commit();  // empty past the end: the wait below counts groups
  };
  issue(0);
  issue(1);
  float post[kHcStreams] = {}, comb[kHcGram] = {};
  double sums[M > 0 ? M : 1] = {}, gram[kGramPairs] = {};
  for (int step = 0; step < steps; ++step) {
    cp_async_wait<1>();
    __syncwarp();
    const int group = group_of(step), s = stage_of(step), unit = step / per_unit;
    float4* buf = ring + (step & 1) * su;
    float4* mine = buf + lane * tu;
    if (step % per_unit == 0) {
      if constexpr (kPost) {
        const float* c = reinterpret_cast<const float*>(coef + lane * kCoefUnits);
#pragma unroll
        for (int k = 0; k < kHcStreams; ++k) post[k] = c[k];
#pragma unroll
        for (int k = 0; k < kHcGram; ++k) comb[k] = c[kHcStreams + k];
      }
#pragma unroll
      for (int k = 0; k < (M > 0 ? M : 1); ++k) sums[k] = 0.0;
#pragma unroll
      for (int k = 0; k < kGramPairs; ++k) gram[k] = 0.0;
    }
    float stage_sums[M > 0 ? M : 1];
    double stage_gram[kGramPairs] = {};
#pragma unroll 1
    for (int q = 0; q < kQuads; ++q) {
      float xn[4][kHcStreams];  // [dim of the quad][stream]: X' (hc_post) or X
      quad_state<kPost>(p, mine, q, post, comb, xn);
      if constexpr (M > 0) {
        quad_sums<M>(wcol + (s * kStageDims + 4 * q) * wcol_stride(M), xn, q == 0, stage_sums, stage_gram);
      }
    }
    if constexpr (M > 0) {
      if (split == 1) {
#pragma unroll
        for (int k = 0; k < M; ++k) sums[k] += static_cast<double>(stage_sums[k]);
#pragma unroll
        for (int k = 0; k < kGramPairs; ++k) gram[k] += stage_gram[k];
      } else {
        double* out = partials + ((unit & 1) * kStages + s) * stage_partials(M) * 32 + lane;
#pragma unroll
        for (int k = 0; k < M; ++k) out[32 * k] = static_cast<double>(stage_sums[k]);
#pragma unroll
        for (int k = 0; k < kGramPairs; ++k) out[32 * (M + k)] = stage_gram[k];
      }
    }
    __syncwarp();  // every lane's X' is in buf
    if constexpr (kPost) {
      const int64_t d = dim0 + s * kStageDims + 4 * (lane & 3);
#pragma unroll 4
      for (int u = 0; u < 32 / 2; ++u) {  // a copy moves two tokens' four row segments
        const int tau = 2 * u + (lane >> 4), h = (lane >> 2) & 3;
        const int tt = group * 32 + tau;
        if (tt < p.T && d < D) {
          *reinterpret_cast<float4*>(p.post.out + (static_cast<int64_t>(tt) * kHcStreams + h) * D + d) =
              buf[tau * tu + 4 * h + (lane & 3)];
        }
      }
      __syncwarp();  // buf is read: store_records may reuse it
    }
    if constexpr (M > 0) {
      if (step % per_unit == per_unit - 1) {
        if (split > 1) {
          group_barrier(slot, split);  // every stage of the unit is in partials
          if (part == 0) {
            const double* in = partials + (unit & 1) * kStages * stage_partials(M) * 32 + lane;
            for (int st = 0; st < kStages; ++st, in += stage_partials(M) * 32) {
#pragma unroll
              for (int k = 0; k < M; ++k) sums[k] += in[32 * k];
#pragma unroll
              for (int k = 0; k < kGramPairs; ++k) gram[k] += in[32 * (M + k)];
            }
          }
        }
        if (part == 0) store_records<M>(p, buf, group, sums, gram);
      }
    }
    __syncwarp();  // buf is read: the copies of step + 2 may overwrite it
    issue(step + 2);
  }
  cp_async_wait<0>();
}

bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

template <int M, bool kPost>
Status launch_chunk(ChunkParams p, cudaStream_t stream) {
  if (p.D % 4 != 0) return make_error("hc: the device's chunk kernels need a width that is a multiple of 4");
  if (!aligned16(p.post.x) || (kPost && (!aligned16(p.post.f) || !aligned16(p.post.f_extra) || !aligned16(p.post.out) ||
                                         !aligned16(p.post.mix)))) {
    return make_error("hc: the device's chunk kernels need 16-byte aligned rows");
  }
  int device = 0, optin = 0;
  DSV4_CUDA_TRY(cudaGetDevice(&device));
  DSV4_CUDA_TRY(once_per_device(
      device, [device] { return allow_optin_smem(device, reinterpret_cast<const void*>(hc_chunk_kernel<M, kPost>)); }));
  DSV4_CUDA_TRY(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
  // Short chunks share each group's stages among 2 or 4 warps (shorter chains per warp, more
  // warps busy); then as many warps as the shared memory holds, a multiple of the split.
  const int groups = (p.T + 31) / 32;
  p.split = M > 0 && groups <= 2 ? 4 : M > 0 && groups <= 8 ? 2 : 1;
  p.ring_warps = kWarps;
  const auto fits = [&] {
    return chunk_smem_bytes(M, kPost, p.rows, p.ring_warps, p.split) <= static_cast<size_t>(optin);
  };
  while (p.ring_warps > p.split && (p.ring_warps / 2 >= groups * p.split || !fits())) p.ring_warps /= 2;
  while (p.split > 1 && !fits()) {
    p.split /= 2;
    p.ring_warps = p.split;
  }
  if (!fits()) {
    return make_error("hc_post: " + std::to_string(p.post.n_parts) + " parts per token exceed the shared memory");
  }
  const int per_cta = p.ring_warps / p.split * (groups >= kLongChunkGroups ? kUnitsPerSlot : 1);
  const dim3 grid(static_cast<unsigned>((groups + per_cta - 1) / per_cta),
                  static_cast<unsigned>(hc_column_blocks(p.D)));
  const size_t smem = chunk_smem_bytes(M, kPost, p.rows, p.ring_warps, p.split);
  DSV4_CUDA_TRY(launch_pdl(hc_chunk_kernel<M, kPost>, grid, dim3(kWarps * 32), smem, stream, p));
  return cuda_status(cudaGetLastError(), "hc chunk kernel");
}

template <bool kPost>
Status launch_for_rows(int M, const ChunkParams& p, cudaStream_t stream) {
  return with_mixer_rows<kPost>(M, [&](auto rows) { return launch_chunk<decltype(rows)::value, kPost>(p, stream); });
}

}  // namespace

namespace detail {

Status hc_check_mixer(const DeviceTensor& fn, int64_t M, int64_t HD) {
  if (!fn.present() || fn.ne1 != M || fn.ne0 != HD) return make_error("hc: mixer weight shape mismatch");
  switch (fn.type) {
    case gguf::TensorType::F32:
    case gguf::TensorType::F16:
    case gguf::TensorType::BF16:
    case gguf::TensorType::Q8_0: return Status();
    default: return make_error("hc: mixer weight type " + gguf::type_name(fn.type) + " unsupported on the device");
  }
}

}  // namespace detail

int64_t hc_partial_doubles(int64_t T, int64_t D, int M) { return T * hc_column_blocks(D) * hc_record_size(M); }

Status hc_mixer_partials(const float* x, const DeviceTensor& fn, int M, int T, int64_t D, double* partial,
                         cudaStream_t stream) {
  DSV4_TRY(hc_check_mixer(fn, M, kHcStreams * D));
  if (T <= 0) return Status();
  if (T < kHcTokenLaneMinTokens) return hc_short_partials(x, fn, M, T, D, partial, stream);
  ChunkParams p{};
  p.post.x = x;
  p.T = T;
  p.D = D;
  p.next = MixerParams{fn.type, fn.data, fn.row_bytes};
  p.partial = partial;
  p.rows = kHcStreams;
  return launch_for_rows<false>(M, p, stream);
}

Status hc_post(const HcPostArgs& a, cudaStream_t stream) {
  if (a.T <= 0) return Status();
  if (a.n_parts < 1) return make_error("hc_post: no parts to add");
  const int M = a.next_fn ? a.next_M : 0;
  if (M > 0) DSV4_TRY(hc_check_mixer(*a.next_fn, M, kHcStreams * a.D));
  if (a.T < kHcTokenLaneMinTokens) return hc_short_post(a, M, stream);
  ChunkParams p{};
  p.post = PostParams{a.x, a.f, a.n_parts, a.f_extra, a.mix, a.out};
  p.T = a.T;
  p.D = a.D;
  if (M > 0) p.next = MixerParams{a.next_fn->type, a.next_fn->data, a.next_fn->row_bytes};
  p.partial = a.partial;
  p.rows = kHcStreams + a.n_parts + (a.f_extra ? 1 : 0);
  return launch_for_rows<true>(M, p, stream);
}

}  // namespace dsv4::cuda
