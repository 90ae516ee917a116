// The 2-bit row-tile kernel's activation staging (matvec_2bit.cu, stage_x) on the CPU, lane by lane
// with the warp's reductions in the kernel's order, and its IQ2_XXS tables as the kernel keeps
// them: shared by the CPU emulation test (tests/cuda/cpu/matvec_2bit_emulation_test.cc) and the GPU
// test that checks the kernel against it bit for bit (tests/cuda/matvec_2bit_test.cc).
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <cmath>
#include <cstring>
#include <random>
#include <type_traits>
#include <vector>

#include "cuda/cuda_test_util.h"
#include "cuda/matvec_2bit.cuh"
#include "quant/iq2_xxs_tables.h"

namespace dsv4::cuda::testing {

inline detail::Iq2RowTables row_tables() {
  detail::Iq2RowTables t;
  constexpr int kCopies = detail::kIq2TableCopies;
  for (int i = 0; i < 256 * kCopies; ++i) t.grid[i] = detail::iq2_grid_entry(quant::iq2xxs_grid[i / kCopies]);
  for (int i = 0; i < 128 * kCopies; ++i) t.signs[i] = detail::iq2_sign_entry(quant::ksigns_iq2xs[i / kCopies]);
  return t;
}

inline uint32_t abs_bits(float v) {
  uint32_t b;
  std::memcpy(&b, &v, 4);
  return b & 0x7FFFFFFFu;
}

// x (n a multiple of 256) staged as the kernel's stage_x<Fmt> does: per block the warp's largest
// |x|, each lane's xblock_lane_stage, then for Q2_K and Q4_K the group sums of lanes 2g, 2g+1.
template <class Fmt>
std::vector<detail::XBlock2b> stage_blocks(const float* x, int64_t n) {
  std::vector<detail::XBlock2b> out(static_cast<size_t>(n / detail::kXBlock2b));
  for (size_t b = 0; b < out.size(); ++b) {
    const float* xb = x + b * detail::kXBlock2b;
    uint32_t mx = 0;
    for (int i = 0; i < detail::kXBlock2b; ++i) mx = std::max(mx, abs_bits(xb[i]));
    const int e = detail::xblock_exponent(mx, detail::kXTopBits2b);
    detail::XBlock2b& o = out[b];
    std::memset(&o, 0xA5, sizeof(o));  // garbage where the kernel writes nothing
    detail::XLaneStage st[32];
    for (int lane = 0; lane < 32; ++lane) {
      float v[8];
      for (int k = 0; k < 8; ++k) v[k] = xb[8 * lane + k];
      st[lane] = detail::xblock_lane_stage(v, e);
      for (int p = 0; p < detail::kXLimbs2b; ++p) {
        o.limbs[p][2 * lane] = st[lane].words[p][0];
        o.limbs[p][2 * lane + 1] = st[lane].words[p][1];
      }
    }
    if constexpr (!Fmt::kTables) {
      for (int g = 0; g < 16; ++g) o.gsum[g] = st[2 * g].sum8 + st[2 * g + 1].sum8;
    }
    o.scale = detail::xblock_scale(mx, e);
  }
  return out;
}

inline int32_t limb_of(const detail::XBlock2b& b, int p, int i) {
  return static_cast<int8_t>(b.limbs[p][i / 4] >> (8 * (i % 4)));
}

// Activation vectors of the kinds the staging must take: Gaussian, zeros, tiny (subnormal and
// near the clamp of E at −149), huge (2^E up to 2^85, dots near 1e35), mixed magnitudes within a block.
inline std::vector<float> staging_activations(int kind, int64_t n, std::mt19937_64& rng) {
  std::vector<float> x = gaussian(n, rng);
  std::uniform_real_distribution<double> u(-30.0, 30.0);
  for (auto& v : x) {
    switch (kind) {
      case 1: v = 0.0f; break;
      case 2: v = static_cast<float>(v * 1e-42); break;  // subnormal
      case 3: v = static_cast<float>(v * 1e-36); break;
      case 4: v = static_cast<float>(v * 1e32); break;
      case 5: v = static_cast<float>(v * std::pow(10.0, u(rng))); break;
      default: break;
    }
  }
  return x;
}

constexpr int kStagingKinds = 6;

// The kernel's item decoder for lane `lane`'s row words w (matvec_2bit.cu item_dot).
template <class Fmt>
float lane_item_dot(const uint32_t* w, const detail::Iq2RowTables& tables, int lane, const detail::XBlock2b* xb) {
  if constexpr (Fmt::kTables) {
    return detail::iq2_item_dot(w, tables, lane & (detail::kIq2TableCopies - 1), xb);
  } else if constexpr (std::is_same_v<Fmt, detail::Fmt4bQ4K>) {
    uint4 quads[Fmt::kItemWords / 4];  // the kernel reads the row 16 bytes at a time
    std::memcpy(quads, w, sizeof(quads));
    return detail::q4k_block_dot(quads, *xb);
  } else {
    return detail::q2k_block_dot(w, *xb);
  }
}

// One row's item as the kernel's lane decodes it (row: the row's bytes, 4-aligned), against the
// staged blocks of the row's activation vector.
template <class Fmt>
float item_dot_emulated(const uint8_t* row, int item, const std::vector<detail::XBlock2b>& xs, int lane) {
  static const detail::Iq2RowTables tables = row_tables();
  uint32_t w[Fmt::kItemWords];
  std::memcpy(w, row + static_cast<int64_t>(item) * Fmt::kItemWords * 4, sizeof(w));
  const detail::XBlock2b* xb = xs.data() + static_cast<int64_t>(item) * Fmt::kItemElems / detail::kXBlock2b;
  return lane_item_dot<Fmt>(w, tables, lane, xb);
}

}  // namespace dsv4::cuda::testing
