// Device-side decoding of the weight formats (FORMATS.md §4), in two forms per format:
//
//  * Fmt::dot — the fast kernel's inner step. A warp holds one "step" of a row in shared memory
//    (kStepElems consecutive elements, kStepBytes bytes, starting on a block boundary) and each lane
//    dots its 4 or 8 elements with the activation values it holds in registers. The lane-to-element
//    maps are chosen so that (a) each lane's activations are one or two aligned float4 loads, (b) the
//    lanes of a warp touch one contiguous range of the activation vector, and (c) the shared-memory
//    reads of one instruction fall in distinct banks or are broadcasts.
//  * Fmt::elem — one element, written straight from the formulas of FORMATS.md with byte loads, for
//    the reference kernel (any alignment).
//
// Integer-to-float conversion uses the exponent trick: PRMT places a byte under the exponent of
// 2^23 (bits 0x4B0000bb = 2^23 + b exactly) and one FADD removes the offset. Both run at full rate,
// where I2F runs at a quarter. Signed bytes are first biased by XOR 0x80.
#pragma once

#include <cuda_fp16.h>

#include <cstdint>
#include <cstring>

#include "cuda/matvec_launch.h"

namespace dsv4::cuda::detail {

// The decoders are __host__ __device__ so that tests can run them on the CPU, lane by lane
// (tests/cuda/decode_emulation_test.cc); the few intrinsics they use have host equivalents here.
#define DSV4_HD __host__ __device__ __forceinline__
#ifdef __CUDA_ARCH__
#define DSV4_UNROLL _Pragma("unroll")
#else
#define DSV4_UNROLL
#endif

DSV4_HD float bits_to_f32(uint32_t u) {
#ifdef __CUDA_ARCH__
  return __uint_as_float(u);
#else
  float f;
  memcpy(&f, &u, 4);
  return f;
#endif
}

DSV4_HD float f16_to_f32(uint32_t bits16) {
  return __half2float(__ushort_as_half(static_cast<unsigned short>(bits16)));
}

// {low half, high half} of a 32-bit word as floats.
DSV4_HD float2 f16x2_to_f32(uint32_t w) {
  return make_float2(f16_to_f32(w & 0xFFFFu), f16_to_f32(w >> 16));
}

// prmt.b32 in its generic mode: byte i of the result is byte (sel nibble i & 7) of {b:a}, or, when
// bit 3 of that nibble is set, that byte's sign bit replicated (__byte_perm ignores bit 3).
DSV4_HD uint32_t prmt(uint32_t a, uint32_t b, uint32_t sel) {
#ifdef __CUDA_ARCH__
  uint32_t r;
  asm("prmt.b32 %0, %1, %2, %3;" : "=r"(r) : "r"(a), "r"(b), "r"(sel));
  return r;
#else
  const uint64_t src = (static_cast<uint64_t>(b) << 32) | a;
  uint32_t r = 0;
  for (int i = 0; i < 4; ++i) {
    const uint32_t n = (sel >> (4 * i)) & 15u;
    uint32_t byte = static_cast<uint32_t>(src >> (8 * (n & 7))) & 0xFFu;
    if (n & 8) byte = (byte & 0x80u) ? 0xFFu : 0u;
    r |= byte << (8 * i);
  }
  return r;
#endif
}

// 2^23 + (byte k of w), exactly.
template <int k>
DSV4_HD float magic_byte(uint32_t w) {
#ifdef __CUDA_ARCH__
  return __uint_as_float(__byte_perm(w, 0x4B000000u, 0x7440u | k));
#else
  return bits_to_f32(prmt(w, 0x4B000000u, 0x7440u | k));
#endif
}
constexpr float kMagic = 8388608.0f;  // 2^23

// v (< 2^23) as a float, exactly: one LOP and one FADD instead of a quarter-rate I2F.
DSV4_HD float small_to_f32(uint32_t v) { return bits_to_f32(0x4B000000u | v) - kMagic; }

// Σ_{k<4} (byte k of w − bias)·x[k], bytes in order.
DSV4_HD float dot4_bytes(uint32_t w, float bias, const float* x, float acc) {
  acc = fmaf(magic_byte<0>(w) - bias, x[0], acc);
  acc = fmaf(magic_byte<1>(w) - bias, x[1], acc);
  acc = fmaf(magic_byte<2>(w) - bias, x[2], acc);
  acc = fmaf(magic_byte<3>(w) - bias, x[3], acc);
  return acc;
}

// Byte loads for the reference decoders: valid at any alignment.
DSV4_HD uint32_t ld_u16(const uint8_t* p) { return p[0] | (uint32_t(p[1]) << 8); }
DSV4_HD uint32_t ld_u32(const uint8_t* p) { return ld_u16(p) | (ld_u16(p + 2) << 16); }

// Common shape of a format description:
//   kBlockElems, kBlockBytes   block geometry (1 / element size for the plain types)
//   kStepElems, kStepBytes     one step: what 32 lanes decode together
//   kStageSteps                steps per pipeline stage (one cp.async buffer per row)
//   kXPerLane                  activations per lane per step (4 or 8; float4 k at x_elem(lane, k))
//   kNeedsXSum                 dot uses the sum of the lane's activations (per-block minimum)
//   kTableBytes                shared-memory tables the format needs (IQ2_XXS grid)
//   kMinBlocks                 blocks per SM the register allocation must allow
// The fast kernel's ring depth follows from the stage size (matvec_fast.cuh, Ring).

// ---- F32 / F16 / BF16 (row_bytes % 16 == 0 in the fast kernel, so every step is 16-aligned) ----

struct FmtF32 {
  static constexpr int kBlockElems = 1, kBlockBytes = 4;
  static constexpr int kStepElems = 128, kStepBytes = 512, kStageSteps = 1;
  static constexpr int kXPerLane = 4, kTableBytes = 0;
  static constexpr bool kNeedsXSum = false;
  static constexpr int kMinBlocks = 4;  // per SM, for the register budget (__launch_bounds__)
  DSV4_HD static int x_elem(int lane, int) { return 4 * lane; }
  // dots<K>: the lane's weights read once, dotted with K tokens' activations x[k] into out[k].
  template <int K>
  DSV4_HD static void dots(const uint8_t* s, int lane, const float* const (&x)[K], int lim, float (&out)[K]) {
    const float4 w = 4 * lane < lim ? *reinterpret_cast<const float4*>(s + 16 * lane) : make_float4(0.f, 0.f, 0.f, 0.f);
    DSV4_UNROLL
    for (int k = 0; k < K; ++k) {
      float acc = w.x * x[k][0];
      acc = fmaf(w.y, x[k][1], acc);
      acc = fmaf(w.z, x[k][2], acc);
      out[k] = 4 * lane < lim ? fmaf(w.w, x[k][3], acc) : 0.0f;
    }
  }
  DSV4_HD static float dot(const uint8_t* s, int lane, const float* x, float, int lim,
                              const uint8_t*) {
    float out[1];
    dots<1>(s, lane, {x}, lim, out);
    return out[0];
  }
  DSV4_HD static float elem(const uint8_t* b, int, const Iq2Tables*) {
    return bits_to_f32(ld_u32(b));
  }
};

struct FmtF16 {
  static constexpr int kBlockElems = 1, kBlockBytes = 2;
  static constexpr int kStepElems = 256, kStepBytes = 512, kStageSteps = 1;
  static constexpr int kXPerLane = 8, kTableBytes = 0;
  static constexpr bool kNeedsXSum = false;
  static constexpr int kMinBlocks = 4;  // per SM, for the register budget (__launch_bounds__)
  DSV4_HD static int x_elem(int lane, int k) { return 8 * lane + 4 * k; }
  // dots<K>: the lane's weights read and converted once, dotted with K tokens' activations.
  template <int K>
  DSV4_HD static void dots(const uint8_t* s, int lane, const float* const (&x)[K], int lim, float (&out)[K]) {
    const uint4 u = 8 * lane < lim ? *reinterpret_cast<const uint4*>(s + 16 * lane) : make_uint4(0, 0, 0, 0);
    const float2 a = f16x2_to_f32(u.x), b = f16x2_to_f32(u.y);
    const float2 c = f16x2_to_f32(u.z), d = f16x2_to_f32(u.w);
    DSV4_UNROLL
    for (int k = 0; k < K; ++k) {
      float acc = a.x * x[k][0];
      acc = fmaf(a.y, x[k][1], acc);
      acc = fmaf(b.x, x[k][2], acc);
      acc = fmaf(b.y, x[k][3], acc);
      acc = fmaf(c.x, x[k][4], acc);
      acc = fmaf(c.y, x[k][5], acc);
      acc = fmaf(d.x, x[k][6], acc);
      out[k] = 8 * lane < lim ? fmaf(d.y, x[k][7], acc) : 0.0f;
    }
  }
  DSV4_HD static float dot(const uint8_t* s, int lane, const float* x, float, int lim,
                              const uint8_t*) {
    float out[1];
    dots<1>(s, lane, {x}, lim, out);
    return out[0];
  }
  DSV4_HD static float elem(const uint8_t* b, int, const Iq2Tables*) { return f16_to_f32(ld_u16(b)); }
};

struct FmtBF16 {
  static constexpr int kBlockElems = 1, kBlockBytes = 2;
  static constexpr int kStepElems = 256, kStepBytes = 512, kStageSteps = 1;
  static constexpr int kXPerLane = 8, kTableBytes = 0;
  static constexpr bool kNeedsXSum = false;
  static constexpr int kMinBlocks = 4;  // per SM, for the register budget (__launch_bounds__)
  DSV4_HD static int x_elem(int lane, int k) { return 8 * lane + 4 * k; }
  DSV4_HD static float lo(uint32_t w) { return bits_to_f32(w << 16); }
  DSV4_HD static float hi(uint32_t w) { return bits_to_f32(w & 0xFFFF0000u); }
  // dots<K>: the lane's weights read once, dotted with K tokens' activations x[k] into out[k].
  template <int K>
  DSV4_HD static void dots(const uint8_t* s, int lane, const float* const (&x)[K], int lim, float (&out)[K]) {
    const uint4 u = 8 * lane < lim ? *reinterpret_cast<const uint4*>(s + 16 * lane) : make_uint4(0, 0, 0, 0);
    DSV4_UNROLL
    for (int k = 0; k < K; ++k) {
      float acc = lo(u.x) * x[k][0];
      acc = fmaf(hi(u.x), x[k][1], acc);
      acc = fmaf(lo(u.y), x[k][2], acc);
      acc = fmaf(hi(u.y), x[k][3], acc);
      acc = fmaf(lo(u.z), x[k][4], acc);
      acc = fmaf(hi(u.z), x[k][5], acc);
      acc = fmaf(lo(u.w), x[k][6], acc);
      out[k] = 8 * lane < lim ? fmaf(hi(u.w), x[k][7], acc) : 0.0f;
    }
  }
  DSV4_HD static float dot(const uint8_t* s, int lane, const float* x, float, int lim,
                              const uint8_t*) {
    float out[1];
    dots<1>(s, lane, {x}, lim, out);
    return out[0];
  }
  DSV4_HD static float elem(const uint8_t* b, int, const Iq2Tables*) {
    return bits_to_f32(ld_u16(b) << 16);
  }
};

// ---- Q8_0: d f16 @0, qs int8[32] @2 (34-byte blocks, so only 2-byte aligned) ----
// A step is 8 blocks. Lane l reads elements 4l..4l+3 (block l/8) and 128+4l.. (block 4 + l/8): the
// warp's 16-bit loads of one instruction cover 4 consecutive blocks (136 bytes, distinct banks).
struct FmtQ8_0 {
  static constexpr int kBlockElems = 32, kBlockBytes = 34;
  static constexpr int kStepElems = 256, kStepBytes = 272, kStageSteps = 2;
  static constexpr int kXPerLane = 8, kTableBytes = 0;
  static constexpr bool kNeedsXSum = false;
  static constexpr int kMinBlocks = 4;  // per SM, for the register budget (__launch_bounds__)
  DSV4_HD static int x_elem(int lane, int k) { return 128 * k + 4 * lane; }
  DSV4_HD static float dot(const uint8_t* s, int lane, const float* x, float, int lim,
                              const uint8_t*) {
    float acc = 0.0f;
    DSV4_UNROLL
    for (int v = 0; v < 2; ++v) {
      if (128 * v + 4 * lane < lim) {
        const uint8_t* b = s + ((lane >> 3) + 4 * v) * 34;
        const uint16_t* q = reinterpret_cast<const uint16_t*>(b + 2 + 4 * (lane & 7));
        const float d = f16_to_f32(*reinterpret_cast<const uint16_t*>(b));
        const uint32_t w = (q[0] | (uint32_t(q[1]) << 16)) ^ 0x80808080u;  // q + 128 per byte
        acc = fmaf(d, dot4_bytes(w, kMagic + 128.0f, x + 4 * v, 0.0f), acc);
      }
    }
    return acc;
  }
  DSV4_HD static float elem(const uint8_t* b, int i, const Iq2Tables*) {
    return f16_to_f32(ld_u16(b)) * static_cast<float>(static_cast<int8_t>(b[2 + i]));
  }
};

// ---- Q4_K: d @0, dmin @2, scales u8[12] @4, qs u8[128] @16 (144 bytes: always 16-aligned) ----
// A step is one block. Lane l: elements 8l..8l+7 = sub-block 2p + hi (p = l/8, hi = bit 2 of l),
// 8 low or high nibbles of qs[32p + 8(l%4) ..]. w = d·sc·q − dmin·mn.
struct FmtQ4_K {
  static constexpr int kBlockElems = 256, kBlockBytes = 144;
  static constexpr int kStepElems = 256, kStepBytes = 144, kStageSteps = 2;
  static constexpr int kXPerLane = 8, kTableBytes = 0;
  static constexpr bool kNeedsXSum = true;
  static constexpr int kMinBlocks = 3;  // per SM, for the register budget (__launch_bounds__)
  DSV4_HD static int x_elem(int lane, int k) { return 8 * lane + 4 * k; }
  DSV4_HD static float dot(const uint8_t* s, int lane, const float* x, float xsum, int,
                              const uint8_t*) {
    const uint4 h = *reinterpret_cast<const uint4*>(s);  // d|dmin, scales 0-3, 4-7, 8-11
    const int p = lane >> 3, hi = (lane >> 2) & 1;
    const int sb = 2 * p + hi, sh = 8 * (sb & 3);
    const uint32_t t0 = h.y >> sh, t1 = h.z >> sh, t2 = h.w >> sh;
    const bool low = sb < 4;
    const uint32_t sc = low ? (t0 & 63u) : ((t2 & 15u) | ((t0 >> 2) & 48u));
    const uint32_t mn = low ? (t1 & 63u) : (((t2 >> 4) & 15u) | ((t1 >> 2) & 48u));
    const float2 dm = f16x2_to_f32(h.x);
    const uint2 q = *reinterpret_cast<const uint2*>(s + 16 + 32 * p + 8 * (lane & 3));
    const uint32_t n0 = (q.x >> (4 * hi)) & 0x0F0F0F0Fu, n1 = (q.y >> (4 * hi)) & 0x0F0F0F0Fu;
    const float sqx = dot4_bytes(n1, kMagic, x + 4, dot4_bytes(n0, kMagic, x, 0.0f));
    return fmaf(dm.x * small_to_f32(sc), sqx, -(dm.y * small_to_f32(mn)) * xsum);
  }
  DSV4_HD static float elem(const uint8_t* b, int i, const Iq2Tables*) {
    const int p = i / 64, l = i % 64, sb = 2 * p + l / 32;
    const uint8_t* scales = b + 4;
    int sc, mn;
    if (sb < 4) {
      sc = scales[sb] & 63;
      mn = scales[sb + 4] & 63;
    } else {
      sc = (scales[sb + 4] & 0xF) | ((scales[sb - 4] >> 6) << 4);
      mn = (scales[sb + 4] >> 4) | ((scales[sb] >> 6) << 4);
    }
    const int q = l < 32 ? (b[16 + 32 * p + l] & 0xF) : (b[16 + 32 * p + l - 32] >> 4);
    const float step = f16_to_f32(ld_u16(b)) * static_cast<float>(sc);
    const float offset = f16_to_f32(ld_u16(b + 2)) * static_cast<float>(mn);
    return step * static_cast<float>(q) - offset;
  }
};

// ---- Q2_K: scales u8[16] @0, qs u8[64] @16, d @80, dmin @82 (84 bytes: 4-aligned) ----
// A step is one block. Lane l: elements 8l..8l+7 = half h = l/16, bit plane j = (l/4)%4, bytes
// qs[32h + 8(l%4) ..], all in 16-group 8h + 2j + (l%4)/2. w = d·(sc&15)·q − dmin·(sc>>4).
struct FmtQ2_K {
  static constexpr int kBlockElems = 256, kBlockBytes = 84;
  static constexpr int kStepElems = 256, kStepBytes = 84, kStageSteps = 4;
  static constexpr int kXPerLane = 8, kTableBytes = 0;
  static constexpr bool kNeedsXSum = true;
  static constexpr int kMinBlocks = 3;  // per SM, for the register budget (__launch_bounds__)
  DSV4_HD static int x_elem(int lane, int k) { return 8 * lane + 4 * k; }
  DSV4_HD static float dot(const uint8_t* s, int lane, const float* x, float xsum, int,
                              const uint8_t*) {
    const int h = lane >> 4, j = (lane >> 2) & 3, l = 8 * (lane & 3);
    const uint32_t sc = s[8 * h + 2 * j + (l >> 4)];
    const float2 dm = f16x2_to_f32(*reinterpret_cast<const uint32_t*>(s + 80));
    const uint32_t* q = reinterpret_cast<const uint32_t*>(s + 16 + 32 * h + l);
    const uint32_t n0 = (q[0] >> (2 * j)) & 0x03030303u, n1 = (q[1] >> (2 * j)) & 0x03030303u;
    const float sqx = dot4_bytes(n1, kMagic, x + 4, dot4_bytes(n0, kMagic, x, 0.0f));
    return fmaf(dm.x * small_to_f32(sc & 15u), sqx, -(dm.y * small_to_f32(sc >> 4)) * xsum);
  }
  DSV4_HD static float elem(const uint8_t* b, int i, const Iq2Tables*) {
    const int h = i / 128, m = i % 128, j = m / 32, l = m % 32;
    const int q = (b[16 + 32 * h + l] >> (2 * j)) & 3;
    const int sc = b[8 * h + 2 * j + l / 16];
    const float step = f16_to_f32(ld_u16(b + 80)) * static_cast<float>(sc & 0xF);
    const float offset = f16_to_f32(ld_u16(b + 82)) * static_cast<float>(sc >> 4);
    return step * static_cast<float>(q) - offset;
  }
};

// ---- IQ2_XXS: d @0, qs u16[32] @2 (66 bytes: 2-aligned) ----
// A step is one block. Lane l: group g = l%4 of sub-block sb = l/4 (8 elements, one grid point).
// The signs are folded into the grid bytes before conversion: with S = 0xFF in each negated byte,
// v = m + 64 − 2·(m & S) is 64 ± m per byte (m ≤ 43, so no byte carries into the next), and
// 2^23 + v − (2^23 + 64) = ±m exactly.
struct FmtIQ2_XXS {
  static constexpr int kBlockElems = 256, kBlockBytes = 66;
  static constexpr int kStepElems = 256, kStepBytes = 66, kStageSteps = 4;
  static constexpr int kXPerLane = 8;
  static constexpr bool kNeedsXSum = false;
  static constexpr int kMinBlocks = 3;  // per SM, for the register budget (__launch_bounds__)
  static constexpr int kTableBytes = 256 * 8 + 128;  // grid as uint2, then the sign bytes
  DSV4_HD static int x_elem(int lane, int k) { return 8 * lane + 4 * k; }

#ifdef __CUDACC__
  // Copies the tables into shared memory (all threads of the block; a barrier must follow).
  __device__ static void load_tables(uint8_t* t, const void* device_tables) {
    const Iq2Tables* src = static_cast<const Iq2Tables*>(device_tables);
    uint2* grid = reinterpret_cast<uint2*>(t);
    for (int i = threadIdx.x; i < 256; i += blockDim.x) {
      const uint64_t g = src->grid[i];
      grid[i] = make_uint2(static_cast<uint32_t>(g), static_cast<uint32_t>(g >> 32));
    }
    for (int i = threadIdx.x; i < 128; i += blockDim.x) t[2048 + i] = src->signs[i];
  }
#endif
  // 0xFF in byte b of the result where bit b of the nibble n is set: n·0x10204080 puts bit b at
  // bit 8b + 7 (the four shifted copies do not overlap), PRMT replicates each byte's sign bit.
  DSV4_HD static uint32_t sign_mask4(uint32_t n) { return prmt(n * 0x10204080u, 0u, 0xBA98u); }
  DSV4_HD static uint32_t fold_signs(uint32_t m, uint32_t s) {
    return m + 0x40404040u - ((m & s) << 1);
  }

  DSV4_HD static float dot(const uint8_t* s, int lane, const float* x, float, int,
                              const uint8_t* tables) {
    const int sb = lane >> 2, g = lane & 3;
    const uint8_t* sub = s + 2 + 8 * sb;
    const float d = f16_to_f32(*reinterpret_cast<const uint16_t*>(s));
    const uint32_t a1 = *reinterpret_cast<const uint16_t*>(sub + 4) |
                        (uint32_t(*reinterpret_cast<const uint16_t*>(sub + 6)) << 16);
    const uint2 grid = reinterpret_cast<const uint2*>(tables)[sub[g]];
    const uint32_t signs = tables[2048 + ((a1 >> (7 * g)) & 127u)];
    const uint32_t v0 = fold_signs(grid.x, sign_mask4(signs & 15u));
    const uint32_t v1 = fold_signs(grid.y, sign_mask4(signs >> 4));
    // (0.5 + ls)·0.25 exactly, from 2^23 + ls in one fused step.
    const float db = d * fmaf(bits_to_f32(0x4B000000u | (a1 >> 28)), 0.25f, -2097151.875f);
    const float sum = dot4_bytes(v1, kMagic + 64.0f, x + 4, dot4_bytes(v0, kMagic + 64.0f, x, 0.0f));
    return db * sum;
  }
  DSV4_HD static float elem(const uint8_t* b, int i, const Iq2Tables* t) {
    const int sb = i / 32, g = (i / 8) % 4, e = i % 8;
    const uint32_t a0 = ld_u32(b + 2 + 8 * sb), a1 = ld_u32(b + 6 + 8 * sb);
    const float db = f16_to_f32(ld_u16(b)) * (0.5f + static_cast<float>(a1 >> 28)) * 0.25f;
    const uint64_t grid = t->grid[(a0 >> (8 * g)) & 0xFF];
    const uint32_t signs = t->signs[(a1 >> (7 * g)) & 127];
    const float mag = static_cast<float>((grid >> (8 * e)) & 0xFF);
    return db * mag * (((signs >> e) & 1u) ? -1.0f : 1.0f);
  }
};

}  // namespace dsv4::cuda::detail
