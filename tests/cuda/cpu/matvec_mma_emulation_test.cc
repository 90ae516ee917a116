// The tensor-core matvec kernel's per-lane code (cuda/matvec_mma.cuh) run on the CPU: every block,
// warp and lane of a launch in turn, mma.m16n8k32 emulated from the PTX fragment layout, cp.async
// replaced by memcpy into buffers of random garbage. Checks the activation limbs, the A/B fragment
// maps, the per-format decoders and the work split against quant::dot_row without a GPU (the GPU
// suite checks the real kernel). Also: the fixed-point activations are exact where promised.
#include <cuda_runtime.h>  // __host__ / __device__ and the vector types, for host compilation
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <sstream>
#include <vector>

#include "cuda/cuda_test_util.h"
#include "cuda/matvec_mma.cuh"
#include "quant/iq2_xxs_tables.h"

namespace dsv4::cuda::testing {
namespace {

using detail::kChunk;
using detail::kMmaRows;
using detail::kMmaWarps;
using detail::kXBlock;
using detail::kXLimbs;
using detail::MmaGeometry;
using detail::MmaParams;
using detail::MmaWarp;
using detail::XLayout;

float as_float(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
uint32_t as_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

// D = C + A·B for one warp, from the fragments of its 32 lanes (s8 · s8 → s32, wrapping).
void emulate_mma(const uint32_t (&a)[32][4], const uint2 (&b)[32], int32_t (&c)[32][4]) {
  auto a_at = [&](int r, int k) {
    const int lane = 4 * (r & 7) + ((k & 15) >> 2), reg = (k < 16 ? 0 : 2) + (r >= 8 ? 1 : 0);
    return static_cast<int8_t>(a[lane][reg] >> (8 * (k & 3)));
  };
  auto b_at = [&](int k, int n) {
    const int lane = 4 * n + ((k & 15) >> 2);
    return static_cast<int8_t>((k < 16 ? b[lane].x : b[lane].y) >> (8 * (k & 3)));
  };
  int32_t d[32][4];
  for (int lane = 0; lane < 32; ++lane) {
    for (int reg = 0; reg < 4; ++reg) {
      const int r = (lane >> 2) + (reg >= 2 ? 8 : 0), n = 2 * (lane & 3) + (reg & 1);
      int64_t s = c[lane][reg];
      for (int k = 0; k < 32; ++k) s += static_cast<int64_t>(a_at(r, k)) * b_at(k, n);
      d[lane][reg] = static_cast<int32_t>(static_cast<uint32_t>(s));
    }
  }
  std::memcpy(c, d, sizeof d);
}

const std::vector<uint8_t>& smem_tables() {
  static const std::vector<uint8_t> t = [] {
    std::vector<uint8_t> v(2048 + 128 + 16, 0);
    for (int i = 0; i < 256; ++i) {
      const uint64_t g = quant::iq2xxs_grid[i];
      std::memcpy(v.data() + 8 * i, &g, 8);  // little-endian: the uint2 of load_tables
    }
    for (int i = 0; i < 128; ++i) v[static_cast<size_t>(2048 + i)] = quant::ksigns_iq2xs[i];
    return v;
  }();
  return t;
}

// The host version of the kernel's convert_x: same functions, same layout.
struct XBuffers {
  std::vector<uint8_t> limbs;
  std::vector<float> scales, sums;
};
XBuffers convert_x(const MmaParams& p, const XLayout& xl) {
  XBuffers xb;
  xb.limbs.assign(static_cast<size_t>(xl.limb_bytes()) + 16, 0);
  xb.scales.assign(static_cast<size_t>(xl.scale_bytes() / 4), 0.0f);
  xb.sums.assign(static_cast<size_t>(xl.sums ? xl.n_xvec * (p.n_in / 16) : 0) + 16, 0.0f);
  for (int v = 0; v < xl.n_xvec; ++v) {
    for (int b = 0; b < xl.xblocks; ++b) {
      const float* x = p.x + v * p.x_stride + b * kXBlock;
      const int n = std::min(kXBlock, p.n_in - b * kXBlock);
      uint32_t mx = 0;
      for (int i = 0; i < n; ++i) mx = std::max(mx, as_bits(x[i]) & 0x7FFFFFFFu);
      const int e = detail::xblock_exponent(mx);
      for (int i = 0; i < n; ++i) {
        const int32_t X = detail::x_to_fixed(x[i], e);
        const int elem = b * kXBlock + i;
        for (int q = 0; q < kXLimbs; ++q) {
          xb.limbs[static_cast<size_t>(((v * xl.chunks + elem / kChunk) * kXLimbs + q) * kChunk + elem % kChunk)] =
              static_cast<uint8_t>(detail::x_limb(X, q));
        }
      }
      for (int q = 0; q < 8; ++q) {
        xb.scales[static_cast<size_t>((v * xl.xblocks + b) * 8 + q)] =
            q >= kXLimbs ? 0.0f : (mx < 0x7F800000u ? detail::pow2f(e + 8 * q) : std::nanf(""));
      }
      if (xl.sums) {
        for (int g = 0; g < n / 16; ++g) {
          float s8a = x[16 * g], s8b = x[16 * g + 8];
          for (int k = 1; k < 8; ++k) s8a += x[16 * g + k], s8b += x[16 * g + 8 + k];
          xb.sums[static_cast<size_t>(v * (p.n_in / 16) + b * 16 + g)] = s8a + s8b;
        }
      }
    }
  }
  return xb;
}

// One launch of matvec_mma_kernel<M, kSum>, emulated. Returns y (NaN where nothing was written).
template <class M, bool kSum>
std::vector<float> emulate(const MmaParams& p, size_t y_size, std::mt19937_64& rng) {
  using G = MmaGeometry<M>;
  std::vector<float> y(y_size, std::numeric_limits<float>::quiet_NaN());
  std::vector<char> written(y_size, 0);
  const XLayout xl = detail::make_xlayout(p.n_in, p.n_xvec, M::kSums);
  const XBuffers xb = convert_x(p, xl);
  std::vector<uint4> storage(G::kBufBytes / 16 + 1);
  uint8_t* buf = reinterpret_cast<uint8_t*>(storage.data());
  const int groups_per_block = kMmaWarps / p.wpr;
  bool bad_read = false;
  auto copy = [&](uint8_t* dst, const uint8_t* src, int bytes) {
    if (src < p.w || src + bytes > p.w_end || bytes < 1 || bytes > 16 || dst < buf || dst + 16 > buf + G::kBufBytes ||
        (reinterpret_cast<uintptr_t>(dst) & 15) || (reinterpret_cast<uintptr_t>(src) & 15)) {
      bad_read = true;
      return;
    }
    std::memcpy(dst, src, static_cast<size_t>(bytes));
    std::memset(dst + bytes, 0, static_cast<size_t>(16 - bytes));
  };
  for (int bx = 0; bx < p.n_groups / groups_per_block; ++bx) {
    std::vector<std::vector<std::vector<float>>> red(kMmaWarps);  // [warp][unit][row]
    for (int warp = 0; warp < kMmaWarps; ++warp) {
      const MmaWarp<M, kSum> wk(p, bx, warp);
      for (int k = 0; k < wk.my_units; ++k) {
        const detail::FastUnit un = wk.unit(k);
        float acc[32][2] = {}, part[32][2] = {};
        for (int i = 0; i < wk.per_unit; ++i) {
          for (int b = 0; b < G::kBufBytes; ++b) buf[b] = static_cast<uint8_t>(rng());  // stale data
          for (int lane = 0; lane < 32; ++lane) wk.issue(un, i, lane, buf, copy);
          const int v = wk.xvec_of(un, i), st = wk.stage_of(i), nblk = wk.stage_blocks(st);
          for (int blk = 0; blk < nblk; ++blk) {
            const int elem0 = st * G::kStageElems + blk * M::Fmt::kBlockElems, xblk = elem0 / kXBlock;
            typename M::State s[32];
            detail::RowPair rows[32];
            float2 xs[32];
            for (int lane = 0; lane < 32; ++lane) {
              rows[lane] = wk.rows(un, i, lane, buf);
              xs[lane] = *reinterpret_cast<const float2*>(xb.scales.data() + (v * xl.xblocks + xblk) * 8 + 2 * (lane & 3));
              if constexpr (M::Fmt::kTableBytes > 0) s[lane].tables = smem_tables().data();
              M::begin(s[lane], rows[lane], blk, lane);
            }
            for (int m = 0; m < M::kMmas; ++m) {
              uint32_t a[32][4];
              uint2 bf[32];
              int32_t c[32][4];
              for (int lane = 0; lane < 32; ++lane) {
                M::build(s[lane], rows[lane], blk, m, lane, a[lane], c[lane]);
                bf[lane] = detail::b_fragment(xb.limbs.data(), xl, v, elem0 / kChunk + m, lane);
              }
              emulate_mma(a, bf, c);
              for (int lane = 0; lane < 32; ++lane) M::after(s[lane], rows[lane], blk, m, lane, c[lane], xs[lane], part[lane]);
            }
            const float* xsum = xb.sums.data() + (xl.sums ? v * (p.n_in / 16) + xblk * 16 : 0);
            for (int lane = 0; lane < 32; ++lane) M::end(s[lane], rows[lane], blk, lane, xs[lane], xsum, part[lane]);
          }
          if (wk.last_of_slot(i)) {
            const float sc = wk.slot_scale(un, i);
            for (int lane = 0; lane < 32; ++lane) {
              for (int h = 0; h < 2; ++h) {
                acc[lane][h] = fmaf(sc, part[lane][h], acc[lane][h]);
                part[lane][h] = 0.0f;
              }
            }
          }
        }
        std::vector<float> rowsum(kMmaRows);
        for (int g = 0; g < 8; ++g) {
          for (int h = 0; h < 2; ++h) {
            const float* l = &acc[4 * g][h];
            rowsum[static_cast<size_t>(g + 8 * h)] = (l[0] + l[2]) + (l[4] + l[6]);  // lanes 4g..4g+3
          }
        }
        red[static_cast<size_t>(warp)].push_back(rowsum);
      }
    }
    for (int grp = 0; grp < groups_per_block; ++grp) {
      const MmaWarp<M, kSum> wk(p, bx, grp * p.wpr);
      for (int k = 0; k < wk.my_units; ++k) {
        const detail::FastUnit un = wk.unit(k);
        for (int r = 0; r < un.rows; ++r) {
          float s = red[static_cast<size_t>(grp * p.wpr)][static_cast<size_t>(k)][static_cast<size_t>(r)];
          for (int j = 1; j < p.wpr; ++j) s += red[static_cast<size_t>(grp * p.wpr + j)][static_cast<size_t>(k)][static_cast<size_t>(r)];
          const int64_t index = wk.output_index(un, r);
          if (index < 0 || static_cast<size_t>(index) >= y_size || written[static_cast<size_t>(index)]) {
            ADD_FAILURE() << "write outside y or twice: " << index;
            return y;
          }
          written[static_cast<size_t>(index)] = 1;
          y[static_cast<size_t>(index)] = s;
        }
      }
    }
  }
  EXPECT_FALSE(bad_read) << "a chunk copy outside the tensor, unaligned or outside the buffer";
  return y;
}

template <class M>
std::vector<float> emulate_sum(const MmaParams& p, bool sum, size_t y_size, std::mt19937_64& rng) {
  return sum ? emulate<M, true>(p, y_size, rng) : emulate<M, false>(p, y_size, rng);
}

struct Case {
  TensorType type;
  int64_t n_in, n_out, n_expert = 1;
  std::vector<int32_t> experts = {};  // empty: dense
  bool x_per_slot = false, scaled = false, sum = false;
  int warps = 1;
  int blocks = 0;  // 0: one unit per group
  int x_kind = 0;  // 0: Gaussian; 1: wide dynamic range and exact zeros
};

std::vector<float> activations(int64_t n, int kind, std::mt19937_64& rng) {
  std::vector<float> x = gaussian(n, rng);
  if (kind == 1) {
    for (int64_t i = 0; i < n; ++i) {
      const uint64_t r = rng();
      if (r % 7 == 0) x[static_cast<size_t>(i)] = 0.0f;
      x[static_cast<size_t>(i)] = std::ldexp(x[static_cast<size_t>(i)], static_cast<int>((r >> 8) % 40) - 20);
    }
  }
  return x;
}

void run(const Case& c) {
  const Format& f = format_of(c.type);
  const uint64_t seed = fresh_seed();
  const bool dense = c.experts.empty();
  const int k = dense ? 1 : static_cast<int>(c.experts.size());
  std::ostringstream what;
  what << f.name << " " << c.n_in << " -> " << c.n_out << " x" << c.n_expert << ", "
       << (dense ? std::string("dense") : std::to_string(k) + " slots") << (c.sum ? " summed" : "")
       << (c.x_per_slot ? ", x per slot" : "") << ", W " << c.warps << ", blocks " << c.blocks << ", x kind "
       << c.x_kind << ", seed " << seed;
  SCOPED_TRACE(what.str());
  std::mt19937_64 rng(seed);
  const std::vector<uint8_t> w_host = random_rows(f, c.n_in, c.n_out * c.n_expert, rng);
  std::vector<uint4> w_storage((w_host.size() + 15) / 16 + 1);
  uint8_t* w = reinterpret_cast<uint8_t*>(w_storage.data());
  std::memcpy(w, w_host.data(), w_host.size());
  const std::vector<float> xg = activations((c.x_per_slot ? k : 1) * c.n_in, c.x_kind, rng);
  std::vector<uint4> x_storage(xg.size() / 4 + 2);
  float* x = reinterpret_cast<float*>(x_storage.data());
  std::memcpy(x, xg.data(), xg.size() * 4);
  std::vector<float> scale = gaussian(k, rng);
  if (!c.scaled) scale.assign(static_cast<size_t>(k), 1.0f);

  MmaParams p{};
  p.w = w;
  p.w_end = w + w_host.size();
  p.row_bytes = row_bytes(f, c.n_in);
  p.slab_bytes = p.row_bytes * c.n_out;
  p.experts = dense ? nullptr : c.experts.data();
  p.x = x;
  p.x_stride = c.x_per_slot ? c.n_in : 0;
  p.scale = c.scaled ? scale.data() : nullptr;
  p.tables = nullptr;
  p.n_in = static_cast<int>(c.n_in);
  p.n_out = static_cast<int>(c.n_out);
  p.n_slots = k;
  p.n_xvec = c.x_per_slot ? k : 1;
  p.wpr = c.warps;
  p.n_row_groups = static_cast<int>((c.n_out + kMmaRows - 1) / kMmaRows);
  p.n_units = c.sum ? p.n_row_groups : k * p.n_row_groups;
  const int groups_per_block = kMmaWarps / c.warps;
  const int blocks = c.blocks ? c.blocks : (p.n_units + groups_per_block - 1) / groups_per_block;
  p.n_groups = blocks * groups_per_block;
  const size_t y_size = static_cast<size_t>(c.sum ? c.n_out : k * c.n_out);
  std::vector<float> y;
  switch (c.type) {
    case TensorType::Q8_0: y = emulate_sum<detail::MmaQ8_0>(p, c.sum, y_size, rng); break;
    case TensorType::Q2_K: y = emulate_sum<detail::MmaQ2_K>(p, c.sum, y_size, rng); break;
    case TensorType::Q4_K: y = emulate_sum<detail::MmaQ4_K>(p, c.sum, y_size, rng); break;
    default: y = emulate_sum<detail::MmaIQ2_XXS>(p, c.sum, y_size, rng); break;
  }
  int bad = 0;
  for (size_t i = 0; i < y_size; ++i) {
    const int64_t o = static_cast<int64_t>(i) % c.n_out;
    double cpu = 0, exact = 0, tol_scale = 0;
    for (int j = 0; j < k; ++j) {
      if (!c.sum && j != static_cast<int>(i / static_cast<size_t>(c.n_out))) continue;
      const int64_t e = dense ? 0 : c.experts[static_cast<size_t>(j)];
      const RowRef r = row_reference(f, w + (e * c.n_out + o) * p.row_bytes, x + j * p.x_stride, c.n_in);
      cpu += scale[static_cast<size_t>(j)] * r.cpu;
      exact += scale[static_cast<size_t>(j)] * r.exact;
      tol_scale += std::fabs(scale[static_cast<size_t>(j)]) * r.scale;
    }
    const double got = y[i], tol = 1e-5 * tol_scale + 1e-30;
    if (!std::isfinite(got) || std::fabs(got - cpu) > tol || std::fabs(got - exact) > tol) {
      if (++bad <= 5) ADD_FAILURE() << "output " << i << ": got " << got << ", cpu " << cpu << ", exact " << exact;
    }
  }
  EXPECT_EQ(bad, 0) << "of " << y_size;
}

const TensorType kTypes[] = {TensorType::Q8_0, TensorType::Q4_K, TensorType::Q2_K, TensorType::IQ2_XXS};

int64_t stage_elems(TensorType t) {
  switch (t) {
    case TensorType::Q8_0: return MmaGeometry<detail::MmaQ8_0>::kStageElems;
    case TensorType::Q2_K: return MmaGeometry<detail::MmaQ2_K>::kStageElems;
    case TensorType::Q4_K: return MmaGeometry<detail::MmaQ4_K>::kStageElems;
    default: return MmaGeometry<detail::MmaIQ2_XXS>::kStageElems;
  }
}

TEST(MatvecMmaEmulation, DenseShapesAndSplits) {
  for (TensorType t : kTypes) {
    const int64_t blk = format_of(t).block_elems;
    // One block; several stages with a short last one; rows not a multiple of 16.
    for (int64_t n_in : {blk, 3 * stage_elems(t) - blk, 4 * stage_elems(t)}) {
      for (int64_t n_out : {1, 16, 37}) {
        run({t, n_in, n_out});
        if (HasFailure()) return;
      }
    }
    for (int warps : {2, 4, 16}) {
      Case c{t, 5 * stage_elems(t) - blk, 40};
      c.warps = warps;
      run(c);
      c.blocks = 1;  // persistent: each group walks several units
      run(c);
      if (HasFailure()) return;
    }
  }
}

TEST(MatvecMmaEmulation, Experts) {
  for (TensorType t : kTypes) {
    const int64_t n_in = 2 * stage_elems(t) + format_of(t).block_elems;
    for (bool sum : {false, true}) {
      Case c{t, n_in, 21, 5, {4, 0, 2, 4}, sum, sum, sum, 2};
      run(c);
      c.x_per_slot = !sum;
      c.scaled = !sum;
      c.blocks = 1;
      run(c);
      if (HasFailure()) return;
    }
  }
}

TEST(MatvecMmaEmulation, WideDynamicRangeAndZeros) {
  for (TensorType t : kTypes) {
    Case c{t, 2 * kXBlock, 19};
    c.x_kind = 1;
    run(c);
    if (HasFailure()) return;
  }
}

// X·2^E reproduces x exactly within 2^6 of the block's largest magnitude, and to 2^(E−1) below.
TEST(MatvecMmaEmulation, FixedPointActivations) {
  std::mt19937_64 rng(std::random_device{}());
  for (int trial = 0; trial < 2000; ++trial) {
    const int top = static_cast<int>(rng() % 250) - 140;  // block maxima from 2^-140 to 2^110
    const float mx = std::ldexp(1.0f + static_cast<float>(rng() % 1000) / 1000.0f, top);
    const int e = detail::xblock_exponent(as_bits(mx));
    for (int i = 0; i < 64; ++i) {
      float x = std::ldexp(static_cast<float>(static_cast<int64_t>(rng() % 2000001) - 1000000) / 1e6f, top - static_cast<int>(rng() % 30));
      if (std::fabs(x) > mx) x = mx;
      const int32_t X = detail::x_to_fixed(x, e);
      int64_t back = 0;
      for (int q = kXLimbs - 1; q >= 0; --q) {
        const int32_t limb = detail::x_limb(X, q);
        ASSERT_GE(limb, -128);
        ASSERT_LE(limb, 127);
        back = back * 256 + limb;
      }
      ASSERT_EQ(back, X);
      const double rebuilt = std::ldexp(static_cast<double>(X), e);
      if (x != 0.0f && std::fabs(x) >= std::ldexp(std::fabs(static_cast<double>(mx)), -6)) {
        ASSERT_EQ(rebuilt, static_cast<double>(x)) << "x " << x << " max " << mx;
      } else {
        ASSERT_LE(std::fabs(rebuilt - x), std::ldexp(1.0, e - 1) * 1.0000001) << "x " << x << " max " << mx;
      }
    }
    for (int q = 0; q < kXLimbs; ++q) ASSERT_EQ(detail::pow2f(e + 8 * q), std::ldexp(1.0f, e + 8 * q));
  }
  ASSERT_EQ(as_float(as_bits(detail::pow2f(-149))), std::ldexp(1.0f, -149));
}

}  // namespace
}  // namespace dsv4::cuda::testing
