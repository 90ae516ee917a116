// The Q8_0 row-tile kernel's per-lane code (cuda/matvec_q8.cuh) run on the CPU: one item of a tile
// copied chunk by chunk the way the warp's cp.async do it (into a buffer full of garbage), the
// item's activations staged lane by lane as fixed-point limbs (into a buffer full of garbage), each
// lane's A and B fragments read from those buffers by the kernel's own functions, the warp's
// mma.m16n8k32 emulated from the PTX fragment layout and each lane's sums folded as the kernel
// folds them, against quant::dot_row and the exact dot. Partial last tiles (rows past the matrix re-read
// its last row) and rows of one to many superblocks; the limb conversion against x_fixed.cuh's
// plain definition (zeros, ties, tiny, huge, subnormal, mixed magnitudes) and the written error
// bound; non-finite activations. The GPU suite (tests/cuda/matvec_test.cc) checks the kernel itself.
#include <cuda_runtime.h>  // __host__ / __device__ and the vector types, for host compilation
#include <gtest/gtest.h>

#include <array>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <set>
#include <vector>

#include "cuda/cuda_test_util.h"
#include "cuda/matvec_q8.cuh"

namespace dsv4::cuda::testing {
namespace {

using detail::kQ8ItemBytes;
using detail::kQ8SbBytes;
using detail::kQ8SbChunks;
using detail::kQ8SbElems;
using detail::kQ8TileRows;
using detail::kQ8RowWords;
using detail::kQ8XLimbs;
using detail::kQ8XPlaneWords;

TEST(CudaMatvecQ8Emulation, ChunksCoverTheTileOnceAndLandWhereLanesRead) {
  std::set<int> seen;
  for (int lane = 0; lane < 32; ++lane) {
    for (int j = 0; j < kQ8SbChunks; ++j) {
      const int c = lane + 32 * j;
      EXPECT_TRUE(seen.insert(c).second) << "chunk " << c << " copied twice";
      // Destination byte 16c must be where row c/17's lane reads chunk c%17.
      const int row = detail::q8_chunk_row(lane, j);
      EXPECT_EQ(16 * c, row * kQ8SbBytes + 16 * (c % kQ8SbChunks));
      EXPECT_EQ(detail::q8_chunk_offset(lane, j, 1000 * 16, 31), row * 16000 + 16 * (c % kQ8SbChunks));
    }
  }
  EXPECT_EQ(seen.size(), static_cast<size_t>(kQ8TileRows * kQ8SbChunks));
  EXPECT_EQ(*seen.rbegin(), kQ8TileRows * kQ8SbChunks - 1);
}

// The warp's staging of one item's 256 activations xs: each lane's two float4s, the warp's largest
// |x| (a maximum: the order of the kernel's shuffle tree does not matter), each lane's limb words
// stored where the kernel stores them. Returns the item's scale.
float stage_item(const float* xs, uint32_t* planes) {
  float4 v[32][detail::kQ8XChunks];
  uint32_t max_abs = 0;
  for (int lane = 0; lane < 32; ++lane) {
    for (int j = 0; j < detail::kQ8XChunks; ++j) {
      const float* e = xs + detail::q8_x_index(lane, j);
      v[lane][j] = make_float4(e[0], e[1], e[2], e[3]);
    }
    max_abs = std::max(max_abs, detail::q8_lane_max_abs(v[lane]));
  }
  for (int lane = 0; lane < 32; ++lane) {
    uint32_t words[detail::kQ8XChunks][kQ8XLimbs];
    detail::q8_stage_lane(v[lane], detail::q8_x_exponent(max_abs), words);
    for (int j = 0; j < detail::kQ8XChunks; ++j) {
      for (int p = 0; p < kQ8XLimbs; ++p) planes[p * kQ8XPlaneWords + lane + 32 * j] = words[j][p];
    }
  }
  return detail::q8_x_scale(max_abs);
}

// D = A·B for one warp from the fragments of its 32 lanes (s8·s8 → s32, wrapping; C = 0), by the PTX
// layout of mma.m16n8k32: a0 = A[g][4c..], a1 = A[g+8][4c..], a2 = A[g][16+4c..], a3 = A[g+8][16+4c..];
// b0 = B[4c..][g], b1 = B[16+4c..][g]; d0, d1 = D[g][2c, 2c+1], d2, d3 = D[g+8][2c, 2c+1].
void emulate_mma(const uint32_t (&a)[32][4], const uint32_t (&b)[32][2], int32_t (&d)[32][4]) {
  auto a_at = [&](int r, int k) {
    const int lane = 4 * (r & 7) + ((k & 15) >> 2), reg = (k < 16 ? 0 : 2) + (r >= 8 ? 1 : 0);
    return static_cast<int8_t>(a[lane][reg] >> (8 * (k & 3)));
  };
  auto b_at = [&](int k, int n) {
    const int lane = 4 * n + ((k & 15) >> 2);
    return static_cast<int8_t>(b[lane][k < 16 ? 0 : 1] >> (8 * (k & 3)));
  };
  for (int lane = 0; lane < 32; ++lane) {
    for (int reg = 0; reg < 4; ++reg) {
      const int r = (lane >> 2) + (reg >= 2 ? 8 : 0), n = 2 * (lane & 3) + (reg & 1);
      int64_t s = 0;
      for (int k = 0; k < 32; ++k) s += static_cast<int64_t>(a_at(r, k)) * b_at(k, n);
      d[lane][reg] = static_cast<int32_t>(static_cast<uint32_t>(s));
    }
  }
}

// The warp's decode of one staged item (the kernel's q8_item_dot with the mma emulated): per lane its
// sums of rows g + 8h, h < 4, each the 8 blocks' folds in block order.
using LaneSums = std::array<std::array<float, 4>, 32>;
template <int m>
void decode_pair(const uint32_t* words, const uint32_t (&bf)[32][8][2], int rg, LaneSums& s) {
  uint32_t ae[32][4], ao[32][4], be[32][2], bo[32][2];
  float de[32][2], dd[32][2];
  for (int lane = 0; lane < 32; ++lane) {
    const uint32_t* r0 = words + ((lane >> 2) + 16 * rg) * kQ8RowWords;
    detail::q8_a_fragments<m>(r0, r0 + 8 * kQ8RowWords, lane, detail::q8_even_sel(lane), ae[lane], ao[lane], de[lane],
                              dd[lane]);
    for (int i = 0; i < 2; ++i) be[lane][i] = bf[lane][2 * m][i], bo[lane][i] = bf[lane][2 * m + 1][i];
  }
  int32_t ce[32][4], co[32][4];
  emulate_mma(ae, be, ce);
  emulate_mma(ao, bo, co);
  for (int lane = 0; lane < 32; ++lane) {
    float t[2] = {s[lane][2 * rg], s[lane][2 * rg + 1]};
    detail::q8_fold(ce[lane], de[lane], t);
    detail::q8_fold(co[lane], dd[lane], t);
    s[lane][2 * rg] = t[0], s[lane][2 * rg + 1] = t[1];
  }
}
LaneSums decode_item(const uint8_t* item, const uint32_t* planes) {
  std::vector<uint32_t> words(kQ8TileRows * kQ8RowWords);
  std::memcpy(words.data(), item, kQ8ItemBytes);
  uint32_t bf[32][8][2];
  for (int lane = 0; lane < 32; ++lane) {
    detail::q8_b_fragment<0>(planes, lane, bf[lane][0]);
    detail::q8_b_fragment<1>(planes, lane, bf[lane][1]);
    detail::q8_b_fragment<2>(planes, lane, bf[lane][2]);
    detail::q8_b_fragment<3>(planes, lane, bf[lane][3]);
    detail::q8_b_fragment<4>(planes, lane, bf[lane][4]);
    detail::q8_b_fragment<5>(planes, lane, bf[lane][5]);
    detail::q8_b_fragment<6>(planes, lane, bf[lane][6]);
    detail::q8_b_fragment<7>(planes, lane, bf[lane][7]);
  }
  LaneSums s{};
  for (int rg = 0; rg < 2; ++rg) {
    decode_pair<0>(words.data(), bf, rg, s);
    decode_pair<1>(words.data(), bf, rg, s);
    decode_pair<2>(words.data(), bf, rg, s);
    decode_pair<3>(words.data(), bf, rg, s);
  }
  return s;
}
// Row r of the tile from the lane sums, as the kernel combines them for one item of scale `scale`:
// lane 4(r & 7) (limbs 0, 1) plus lane 4(r & 7) + 1 (limbs 2, 3, weight 2^16), sum h = r >> 3.
float row_value(const LaneSums& s, int r, float scale) {
  const int g = r & 7, h = r >> 3;
  return s[4 * g][h] * (scale * detail::q8_limb_weight(4 * g)) +
         s[4 * g + 1][h] * (scale * detail::q8_limb_weight(4 * g + 1));
}

// Every element of every block sits in exactly one k-slot of one lane, the same for A and B.
TEST(CudaMatvecQ8Emulation, KSlotsCoverEveryBlockOnce) {
  for (int b = 0; b < 8; ++b) {
    std::set<int> seen;
    for (int c = 0; c < 4; ++c) {
      for (int half = 0; half < 2; ++half) {
        for (int i = 0; i < 4; ++i) EXPECT_TRUE(seen.insert(detail::q8_k_element(b, c, half, i)).second) << b;
      }
    }
    EXPECT_EQ(seen.size(), 32u);
    EXPECT_EQ(*seen.rbegin(), 31);
  }
}

// One tile's superblock `sb` (rows row0.. of a matrix of n_rows), as the kernel stages and decodes
// it; returns each valid lane's Σ over that superblock.
std::vector<float> emulate_item(const std::vector<uint8_t>& w, int64_t row_bytes, int64_t n_rows, int64_t row0,
                                int sb, const float* x, std::mt19937_64& rng) {
  std::vector<uint8_t> buf(kQ8ItemBytes);
  for (auto& b : buf) b = static_cast<uint8_t>(rng());
  const int last_row = static_cast<int>(n_rows - 1 - row0);
  const uint8_t* base = w.data() + row0 * row_bytes + static_cast<int64_t>(sb) * kQ8SbBytes;
  for (int lane = 0; lane < 32; ++lane) {
    for (int j = 0; j < kQ8SbChunks; ++j) {
      const int64_t off = detail::q8_chunk_offset(lane, j, row_bytes, last_row < 31 ? last_row : 31);
      const uint8_t* src = base + off;
      EXPECT_TRUE(src >= w.data() && src + 16 <= w.data() + w.size()) << "read outside the tensor";
      if (src < w.data() || src + 16 > w.data() + w.size()) return {};
      std::memcpy(buf.data() + 16 * (lane + 32 * j), src, 16);
    }
  }
  const float* xs = x + static_cast<int64_t>(sb) * kQ8SbElems;
  std::vector<uint32_t> planes(kQ8XLimbs * kQ8XPlaneWords);
  for (auto& v : planes) v = static_cast<uint32_t>(rng());
  const float scale = stage_item(xs, planes.data());
  const LaneSums s = decode_item(buf.data(), planes.data());
  std::vector<float> out;
  for (int r = 0; r < 32 && r <= last_row; ++r) out.push_back(row_value(s, r, scale));
  return out;
}

TEST(CudaMatvecQ8Emulation, ActivationChunksCoverAnItemOnce) {
  std::set<int> seen;
  for (int lane = 0; lane < 32; ++lane) {
    for (int j = 0; j < detail::kQ8XChunks; ++j) {
      const int e = detail::q8_x_index(lane, j);
      EXPECT_EQ(e % 4, 0);
      EXPECT_TRUE(seen.insert(e).second) << "element " << e << " staged twice";
    }
  }
  EXPECT_EQ(seen.size(), static_cast<size_t>(kQ8SbElems / 4));
  EXPECT_EQ(*seen.rbegin(), kQ8SbElems - 4);
}

// Σ over a matrix's rows as the kernel computes them (items of every tile, added in item order).
std::vector<double> emulate_rows(const std::vector<uint8_t>& w, int64_t n_in, int64_t n_rows, const float* x,
                                 std::mt19937_64& rng) {
  const int64_t rb = row_bytes(format_of(TensorType::Q8_0), n_in);
  std::vector<double> got(static_cast<size_t>(n_rows), 0.0);
  for (int64_t row0 = 0; row0 < n_rows; row0 += kQ8TileRows) {
    for (int sb = 0; sb < n_in / kQ8SbElems; ++sb) {
      const std::vector<float> part = emulate_item(w, rb, n_rows, row0, sb, x, rng);
      EXPECT_EQ(static_cast<int64_t>(part.size()), std::min<int64_t>(kQ8TileRows, n_rows - row0));
      if (::testing::Test::HasFailure()) return {};
      for (size_t r = 0; r < part.size(); ++r) got[static_cast<size_t>(row0) + r] += part[r];
    }
  }
  return got;
}

// The written bound of the fixed-point activations (matvec_q8.cuh): 2^-30·max|x| of each item times
// Σ|w_i| over it, summed over the row's items.
double limb_bound(const Format& f, const uint8_t* row, const float* x, int64_t n_in) {
  std::vector<float> w(static_cast<size_t>(n_in));
  quant::dequantize_row(f.type, row, w.data(), n_in);
  double bound = 0;
  for (int64_t s = 0; s < n_in; s += kQ8SbElems) {
    double mx = 0, sw = 0;
    for (int64_t i = s; i < s + kQ8SbElems; ++i) {
      mx = std::max(mx, static_cast<double>(std::fabs(x[i])));
      sw += std::fabs(w[static_cast<size_t>(i)]);
    }
    bound += std::ldexp(mx, -detail::kQ8XTopBits) * sw;
  }
  return bound;
}

// Gaussian activations and ones spread over 2^-20..2^20 with exact zeros (the GPU suite's two
// kinds): within the matvec bar, 1e-5·Σ|w·x|, of the CPU and of the exact dot.
TEST(CudaMatvecQ8Emulation, SuperblockDotsMatchTheCpu) {
  const uint64_t seed = fresh_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937_64 rng(seed);
  const Format& f = format_of(TensorType::Q8_0);
  for (bool wide : {false, true}) {
    for (int64_t n_in : {256, 768, 4096}) {
      for (int64_t n_rows : {1, 31, 32, 45, 96}) {
        const std::vector<uint8_t> w = random_rows(f, n_in, n_rows, rng);
        std::vector<float> x = gaussian(n_in, rng);
        if (wide) {
          for (auto& v : x) {
            const uint64_t r = rng();
            v = r % 7 == 0 ? 0.0f : std::ldexp(v, static_cast<int>((r >> 8) % 41) - 20);
          }
        }
        const int64_t rb = row_bytes(f, n_in);
        ASSERT_EQ(rb % 16, 0);
        const std::vector<double> got = emulate_rows(w, n_in, n_rows, x.data(), rng);
        if (HasFailure()) return;
        for (int64_t o = 0; o < n_rows; ++o) {
          const RowRef ref = row_reference(f, w.data() + o * rb, x.data(), n_in);
          const double tol = 1e-5 * ref.scale + 1e-30;
          EXPECT_NEAR(got[static_cast<size_t>(o)], ref.cpu, tol) << n_in << " x " << n_rows << ", row " << o;
          EXPECT_NEAR(got[static_cast<size_t>(o)], ref.exact, tol) << n_in << " x " << n_rows << ", row " << o;
        }
      }
    }
  }
}

// Mixed magnitudes: in every item one element 2^30 above the rest (so the rest lose bits) or a
// few huge ones among tiny ones: within the written bound (plus f32 rounding of the sums) of the
// exact dot. All-zero and all-tiny items (below 2^-98: E is clamped at -127) included.
TEST(CudaMatvecQ8Emulation, MixedMagnitudesWithinTheWrittenBound) {
  const uint64_t seed = fresh_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937_64 rng(seed);
  const Format& f = format_of(TensorType::Q8_0);
  const int64_t n_in = 8 * kQ8SbElems, n_rows = 45;
  for (int kind = 0; kind < 5; ++kind) {
    std::vector<float> x = gaussian(n_in, rng);
    for (int64_t s = 0; s < n_in; s += kQ8SbElems) {
      for (int64_t i = s; i < s + kQ8SbElems; ++i) {
        float& v = x[static_cast<size_t>(i)];
        switch (kind) {
          case 0: v = (i - s == static_cast<int64_t>(rng() % kQ8SbElems)) ? std::ldexp(v, 30) : v; break;
          case 1: v = std::ldexp(v, rng() % 16 == 0 ? 100 : -100); break;
          case 2: v = (s / kQ8SbElems) % 2 ? 0.0f : std::ldexp(v, -120); break;  // zero and tiny items
          case 3: v = std::ldexp(v, -140); break;                                   // subnormals
          default: v = std::ldexp(v, 100); break;                                   // huge, finite results
        }
      }
    }
    const std::vector<uint8_t> w = random_rows(f, n_in, n_rows, rng);
    const int64_t rb = row_bytes(f, n_in);
    const std::vector<double> got = emulate_rows(w, n_in, n_rows, x.data(), rng);
    if (HasFailure()) return;
    for (int64_t o = 0; o < n_rows; ++o) {
      const RowRef ref = row_reference(f, w.data() + o * rb, x.data(), n_in);
      // The item's elements are rounded to 2^E ≥ 2^-127 (the clamp), hence the absolute term.
      const double tol = limb_bound(f, w.data() + o * rb, x.data(), n_in) + 4e-6 * ref.scale +
                         std::ldexp(static_cast<double>(n_in), -128) * 127 * 65504;
      ASSERT_TRUE(std::isfinite(got[static_cast<size_t>(o)])) << "kind " << kind << ", row " << o;
      EXPECT_NEAR(got[static_cast<size_t>(o)], ref.exact, tol) << "kind " << kind << ", row " << o;
    }
  }
}

// ±inf or NaN anywhere in an item makes every row it touches NaN (the CPU's dot is ±inf or NaN).
TEST(CudaMatvecQ8Emulation, NonFiniteActivationsGiveNaN) {
  std::mt19937_64 rng(7);
  const Format& f = format_of(TensorType::Q8_0);
  const int64_t n_in = 3 * kQ8SbElems, n_rows = 33;
  const std::vector<uint8_t> w = random_rows(f, n_in, n_rows, rng);
  for (float bad : {std::numeric_limits<float>::infinity(), -std::numeric_limits<float>::infinity(),
                    std::numeric_limits<float>::quiet_NaN()}) {
    for (int64_t at : {int64_t{0}, int64_t{300}, n_in - 1}) {
      std::vector<float> x = gaussian(n_in, rng);
      x[static_cast<size_t>(at)] = bad;
      const std::vector<double> got = emulate_rows(w, n_in, n_rows, x.data(), rng);
      if (HasFailure()) return;
      for (int64_t o = 0; o < n_rows; ++o) {
        EXPECT_TRUE(std::isnan(got[static_cast<size_t>(o)])) << bad << " at " << at << ", row " << o;
        EXPECT_FALSE(std::isfinite(quant::dot_row(f.type, w.data() + o * row_bytes(f, n_in), x.data(), n_in)));
      }
    }
  }
}

// The kernel's conversion (q8_x_fixed: FFMA.RZ + F2I.TRUNC) and limb packing (q8_limb_words: PRMT)
// against x_fixed.cuh's plain integer definitions (x_to_fixed, x_limb) on the values where they
// could part: zeros, exact halves and their neighbours, the block maximum, subnormals, the
// exponent's clamp, and random values of every magnitude below a random maximum.
TEST(CudaMatvecQ8Emulation, LimbsMatchThePlainDefinition) {
  std::mt19937_64 rng(11);
  auto bits_of = [](float v) {
    uint32_t u;
    std::memcpy(&u, &v, 4);
    return u & 0x7FFFFFFFu;
  };
  int checked = 0;
  auto check4 = [&](const float (&v)[4], float mx) {
    const int e = detail::q8_x_exponent(bits_of(mx));
    int32_t X[4];
    for (int i = 0; i < 4; ++i) {
      X[i] = detail::q8_x_fixed(v[i], detail::q8_x_inv(e));
      ASSERT_EQ(X[i], detail::x_to_fixed(v[i], e)) << v[i] << " with max " << mx << ", e " << e;
      ASSERT_LE(std::abs(X[i]), 1 << detail::kQ8XTopBits) << v[i] << " with max " << mx;
    }
    uint32_t words[kQ8XLimbs];
    detail::q8_limb_words(X, words);
    for (int i = 0; i < 4; ++i) {
      int64_t back = 0;
      for (int p = 0; p < kQ8XLimbs; ++p) {
        const int32_t limb = static_cast<int8_t>(words[p] >> (8 * i));
        ASSERT_EQ(limb, detail::x_limb(X[i], p, kQ8XLimbs)) << "X " << X[i] << ", limb " << p;
        back += static_cast<int64_t>(limb) << (8 * p);
      }
      ASSERT_EQ(back, X[i]);
    }
    ++checked;
  };
  for (int round = 0; round < 20000; ++round) {
    const float mx = std::ldexp(1.0f + static_cast<float>(rng() % 1000) / 1000.0f, static_cast<int>(rng() % 250) - 140);
    const int e = detail::q8_x_exponent(bits_of(mx));
    float v[4];
    for (float& t : v) {
      const uint64_t r = rng();
      switch (r % 6) {
        case 0: t = 0.0f; break;
        case 1: t = std::ldexp(static_cast<float>(r >> 40 & 0xFFFFF) + 0.5f, e) ; break;  // an exact half
        case 2: t = std::nextafter(std::ldexp(static_cast<float>(r >> 40 & 0xFFFFF) + 0.5f, e), 0.0f); break;
        case 3: t = mx; break;
        case 4: t = std::ldexp(1.0f, -149 + static_cast<int>(r >> 40 & 15)); break;  // subnormals
        default: t = mx * static_cast<float>(std::ldexp(static_cast<double>(r >> 11), -53)) *
                     std::ldexp(1.0f, -static_cast<int>(r % 40)); break;
      }
      if (!(std::fabs(t) <= mx)) t = mx;  // an exact half above the maximum: not an element
      if (rng() & 1) t = -t;
    }
    check4(v, mx);
    if (HasFatalFailure()) return;
  }
  const float tiny[4] = {0.0f, -0.0f, std::ldexp(1.0f, -149), -std::ldexp(3.0f, -140)};
  check4(tiny, std::ldexp(3.0f, -140));
  const float huge[4] = {std::numeric_limits<float>::max(), -std::numeric_limits<float>::max(), 1.0f, -1e30f};
  check4(huge, std::numeric_limits<float>::max());
  const float zeros[4] = {0.0f, 0.0f, -0.0f, 0.0f};
  check4(zeros, 0.0f);
  EXPECT_EQ(checked, 20003);
}

// Every quant byte position and the scale of every block of a superblock decode to the value the
// format gives (one nonzero weight at a time: the dot is then that weight times its x).
TEST(CudaMatvecQ8Emulation, EveryBytePositionDecodes) {
  std::vector<float> x(kQ8SbElems);
  for (int i = 0; i < kQ8SbElems; ++i) x[static_cast<size_t>(i)] = static_cast<float>(i + 1);
  std::vector<uint32_t> planes(kQ8XLimbs * kQ8XPlaneWords);
  const float scale = stage_item(x.data(), planes.data());  // exact: x·2^-E are integers below 2^30
  for (int b = 0; b < 8; ++b) {
    for (int i = 0; i < 32; ++i) {
      for (int q : {-128, -1, 1, 127}) {
        // Row r of the tile holds the code q·(r % 4 + 1) / 4 at block b, byte i (rows that different
        // lanes and registers decode differ), every other code 0.
        std::vector<uint8_t> item(kQ8ItemBytes, 0);
        const uint16_t half_two = 0x4000;  // 2.0
        for (int r = 0; r < kQ8TileRows; ++r) {
          uint8_t* sbytes = item.data() + r * kQ8SbBytes;
          std::memcpy(sbytes + 34 * b, &half_two, 2);
          sbytes[34 * b + 2 + i] = static_cast<uint8_t>(static_cast<int8_t>(q * (r % 4 + 1) / 4));
        }
        const LaneSums s = decode_item(item.data(), planes.data());
        for (int r = 0; r < kQ8TileRows; ++r) {
          const float want = 2.0f * static_cast<float>(q * (r % 4 + 1) / 4) * static_cast<float>(32 * b + i + 1);
          EXPECT_EQ(row_value(s, r, scale), want) << "block " << b << ", byte " << i << ", q " << q << ", row " << r;
        }
      }
    }
  }
}

}  // namespace
}  // namespace dsv4::cuda::testing
