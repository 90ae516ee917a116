// The 2-bit row-tile kernel's per-lane code (cuda/matvec_2bit.cuh; also Q4_K's) run on the CPU: the activations
// staged as fixed-point limb blocks the way the kernel's warps do it (lane by lane, the warp's
// reductions in the kernel's order), one item of a tile copied word by word the way the warp's
// cp.async do it (into a buffer full of garbage), each lane's row read back from its place in the
// buffer and dotted with the kernel's integer decoders, against quant::dot_row and the exact dot.
// Partial last tiles (rows past the matrix re-read its last row) and rows of one to many items.
// The GPU suite (tests/cuda/matvec_test.cc) checks the kernel itself.
#include <cuda_runtime.h>  // __host__ / __device__ and the vector types, for host compilation
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <set>
#include <vector>

#include "cuda/cuda_test_util.h"
#include "cuda/matvec_2bit.cuh"
#include "cuda/matvec_2bit_emulation.h"
#include "cuda/row_tile.cuh"
#include "quant/iq2_xxs_tables.h"

namespace dsv4::cuda::testing {
namespace {

using detail::Fmt2bIQ2;
using detail::Fmt2bQ2K;
using detail::Fmt4bQ4K;
using detail::k2bTileRows;

template <class Fmt>
void expect_copies_cover_the_tile() {
  constexpr int kWords = Fmt::kItemWords;
  std::set<int> seen;
  if constexpr (Fmt::kChunks16) {
    // Chunk j to buffer word 4j: word w of row r is at r·kRowWords + w.
    for (int j = 0; j < detail::rt_chunks<Fmt>(); ++j) {
      int row = 0, chunk = 0;
      detail::rt_chunk<Fmt>(j, 31, row, chunk);
      EXPECT_EQ(4 * j, row * Fmt::kRowWords + 4 * chunk) << "chunk " << j << " lands off its row";
      for (int w = 0; w < 4; ++w) EXPECT_TRUE(seen.insert(row * kWords + 4 * chunk + w).second) << "chunk " << j;
    }
    EXPECT_EQ(seen.size(), static_cast<size_t>(k2bTileRows * kWords));
    return;
  }
  for (int lane = 0; lane < 32; ++lane) {
    for (int j = 0; j < detail::rt_copies<kWords>(); ++j) {
      int row = 0, word = 0;
      if (!detail::rt_copy<kWords>(lane, j, 31, row, word)) continue;
      EXPECT_TRUE(seen.insert(row * kWords + word).second) << "word " << row * kWords + word << " copied twice";
    }
  }
  EXPECT_EQ(seen.size(), static_cast<size_t>(k2bTileRows * kWords));
}

TEST(CudaMatvec2bitEmulation, CopiesCoverTheTileOnce) {
  expect_copies_cover_the_tile<Fmt2bQ2K>();
  expect_copies_cover_the_tile<Fmt2bIQ2>();
  expect_copies_cover_the_tile<Fmt4bQ4K>();
}

// The schedule with G groups of W warps per block (group g of block b walks the units of virtual
// block rt2_vblock(b, g, grid) = g·grid + b), per-slot units numbered slot-major or tile-major
// (slot_fastest, the 2-bit kernel's): every (slot, tile) unit goes to exactly one group, every
// (slot, item) of a unit to exactly one warp of it, whatever the grid and G; when summed, a slot's
// partial is closed at its last item. Tile-major with a grid that is a multiple of the slots (132
// blocks, 6 slots): every group of a block sees one and the same slot (the block stages one).
template <bool kSum>
void expect_groups_cover_the_work(int n_items, int n_slots, int n_tiles, int W, int G, int grid, bool slot_fastest) {
  SCOPED_TRACE(::testing::Message() << "sum " << kSum << " items " << n_items << " slots " << n_slots << " tiles "
                                    << n_tiles << " W " << W << " G " << G << " grid " << grid << " slot_fastest "
                                    << slot_fastest);
  const int n_units = kSum ? n_tiles : n_slots * n_tiles;
  std::vector<int> done(static_cast<size_t>(n_slots * n_tiles * n_items), 0);
  for (int b = 0; b < grid; ++b) {
    int block_slot = -1;
    for (int g = 0; g < G; ++g) {
      for (int warp = 0; warp < W; ++warp) {
        const int vblock = detail::rt2_vblock(b, g, grid);
        const detail::RowTileSchedule<kSum> s(n_items, n_slots, n_units, n_tiles, W, warp, vblock, grid * G,
                                              slot_fastest);
        // The kernel's division-free cursor (per slot it deals tile-major only).
        detail::UnitCursor<kSum> cursor(vblock, grid * G, n_slots, n_tiles);
        for (int k = 0; k < s.my_units; ++k, cursor.next()) {
          if (kSum || slot_fastest) {
            ASSERT_EQ(cursor.tile(), s.unit_tile(k)) << "unit " << k;
            if (!kSum) {
              ASSERT_EQ(cursor.slot(), s.unit_slot(k)) << "unit " << k;
            }
          }
          if (!kSum && slot_fastest && grid % n_slots == 0) {
            if (block_slot < 0) block_slot = s.unit_slot(k);
            EXPECT_EQ(s.unit_slot(k), block_slot) << "block " << b << " group " << g;
          }
          for (int i = 0; i < s.per_unit; ++i) {
            const int slot = s.item_slot(k, i), item = s.item_index(i);
            ASSERT_TRUE(slot >= 0 && slot < n_slots && item >= 0 && item < n_items);
            ++done[static_cast<size_t>((slot * n_tiles + s.unit_tile(k)) * n_items + item)];
            const bool last_of_slot = i + 1 == s.per_unit || s.item_slot(k, i + 1) != slot;
            EXPECT_EQ(s.closes_slot(i), !kSum || last_of_slot);  // per slot: each item is scaled and added
          }
        }
      }
    }
  }
  for (size_t i = 0; i < done.size(); ++i) ASSERT_EQ(done[i], 1) << "work item " << i;
}

TEST(CudaMatvec2bitEmulation, GroupsCoverEveryUnitAndItemOnce) {
  for (bool slot_fastest : {false, true}) {
    for (int G : {1, 2, 4}) {
      for (int grid : {1, 3, 7, 132}) {
        expect_groups_cover_the_work<false>(8, 6, 128, 8, G, grid, slot_fastest);  // the experts' gate/up and down
        expect_groups_cover_the_work<true>(8, 6, 128, 8, G, grid, slot_fastest);
        expect_groups_cover_the_work<false>(9, 3, 5, 4, G, grid, slot_fastest);  // uneven items per warp
        expect_groups_cover_the_work<true>(9, 3, 5, 2, G, grid, slot_fastest);
        if (HasFatalFailure()) return;
      }
    }
  }
}

TEST(CudaMatvec2bitEmulation, StagedLimbsRepresentTheActivations) {
  const uint64_t seed = fresh_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937_64 rng(seed);
  for (int kind = 0; kind < kStagingKinds; ++kind) {
    const std::vector<float> x = staging_activations(kind, 1024, rng);
    // IQ2_XXS staging (limbs) and Q2_K staging (limbs, group sums).
    const std::vector<detail::XBlock2b> st = stage_blocks<Fmt2bIQ2>(x.data(), 1024);
    const std::vector<detail::XBlock2b> sq = stage_blocks<Fmt2bQ2K>(x.data(), 1024);
    constexpr int kLast = detail::kXLimbs2b - 1;
    for (size_t b = 0; b < st.size(); ++b) {
      const detail::XBlock2b& o = st[b];
      uint32_t mx = 0;
      for (int i = 0; i < 256; ++i) mx = std::max(mx, abs_bits(x[b * 256 + i]));
      const int e = detail::xblock_exponent(mx, detail::kXTopBits2b);
      ASSERT_EQ(o.scale, std::ldexp(1.0f, e)) << "kind " << kind << " block " << b;
      ASSERT_EQ(sq[b].scale, o.scale);
      ASSERT_EQ(std::memcmp(sq[b].limbs, o.limbs, sizeof(o.limbs)), 0);
      int64_t top = 0;
      for (int i = 0; i < 256; ++i) {
        int64_t X = 0;
        for (int p = kLast; p >= 0; --p) {
          const int32_t l = limb_of(o, p, i);
          if (p == kLast) {
            ASSERT_TRUE(l >= -64 && l <= 64) << l;
          }
          X = X * 256 + l;
        }
        top = std::max<int64_t>(top, X < 0 ? -X : X);
        // |X − x/2^E| ≤ 1/2: every element rounded to within half a unit of the block's scale.
        const double want = std::ldexp(static_cast<double>(x[b * 256 + i]), -e);
        ASSERT_LE(std::fabs(static_cast<double>(X) - want), 0.5) << "kind " << kind << " element " << i;
      }
      if (mx >= 0x00800000u) {  // a normal largest |x|: the top bits are used, rounding ≤ 2^-30 of it
        EXPECT_GE(top, int64_t{1} << (detail::kXTopBits2b - 1));
        EXPECT_LE(top, int64_t{1} << detail::kXTopBits2b);
      }
      for (int g = 0; g < 16; ++g) {
        float want = 0.0f;
        for (int h = 0; h < 2; ++h) {
          float s8 = x[b * 256 + 16 * g + 8 * h];
          for (int k = 1; k < 8; ++k) s8 += x[b * 256 + 16 * g + 8 * h + k];
          want = h == 0 ? s8 : want + s8;
        }
        ASSERT_EQ(sq[b].gsum[g], want);
      }
    }
  }
  // A block holding inf or NaN: scale NaN (the dot is NaN, as the CPU's is non-finite), finite
  // elements of other blocks unaffected.
  std::vector<float> x = gaussian(512, rng);
  x[300] = INFINITY;
  x[10] = NAN;
  const std::vector<detail::XBlock2b> st = stage_blocks<Fmt2bQ2K>(x.data(), 512);
  EXPECT_TRUE(std::isnan(st[0].scale));
  EXPECT_TRUE(std::isnan(st[1].scale));
  x[10] = 0.5f;
  EXPECT_FALSE(std::isnan(stage_blocks<Fmt2bQ2K>(x.data(), 512)[0].scale));
}

// Item `item` of the tile at rows row0.. of a matrix of n_rows, staged and decoded as the kernel
// does; returns each valid lane's Σ over that item.
template <class Fmt>
std::vector<float> emulate_item(const std::vector<uint8_t>& w, int64_t row_bytes, int64_t n_rows, int64_t row0,
                                int item, const std::vector<detail::XBlock2b>& xs, std::mt19937_64& rng) {
  constexpr int kWords = Fmt::kItemWords, kRow = Fmt::kRowWords;
  std::vector<uint32_t> buf(k2bTileRows * kRow);
  for (auto& v : buf) v = static_cast<uint32_t>(rng());
  const int last_row = static_cast<int>(n_rows - 1 - row0);
  const uint8_t* base = w.data() + row0 * row_bytes + static_cast<int64_t>(item) * kWords * 4;
  if constexpr (Fmt::kChunks16) {
    for (int j = 0; j < detail::rt_chunks<Fmt>(); ++j) {
      int row = 0, chunk = 0;
      detail::rt_chunk<Fmt>(j, last_row < 31 ? last_row : 31, row, chunk);
      const uint8_t* src = base + row * row_bytes + 16 * chunk;
      EXPECT_TRUE(src >= w.data() && src + 16 <= w.data() + w.size()) << "read outside the tensor";
      if (src < w.data() || src + 16 > w.data() + w.size()) return {};
      std::memcpy(&buf[static_cast<size_t>(4 * j)], src, 16);
    }
  } else {
    for (int lane = 0; lane < 32; ++lane) {
      for (int j = 0; j < detail::rt_copies<kWords>(); ++j) {
        int row = 0, word = 0;
        if (!detail::rt_copy<kWords>(lane, j, last_row < 31 ? last_row : 31, row, word)) continue;
        const uint8_t* src = base + row * row_bytes + 4 * word;
        EXPECT_TRUE(src >= w.data() && src + 4 <= w.data() + w.size()) << "read outside the tensor";
        if (src < w.data() || src + 4 > w.data() + w.size()) return {};
        const int dst_row = j < 32 ? j : lane;
        std::memcpy(&buf[static_cast<size_t>(dst_row * kRow + word)], src, 4);
      }
    }
  }
  const detail::XBlock2b* xb = xs.data() + static_cast<int64_t>(item) * Fmt::kItemElems / detail::kXBlock2b;
  static const detail::Iq2RowTables tables = row_tables();
  std::vector<float> out;
  for (int lane = 0; lane < 32 && lane <= last_row; ++lane) {
    out.push_back(lane_item_dot<Fmt>(&buf[static_cast<size_t>(lane * kRow)], tables, lane, xb));
  }
  return out;
}

// Tolerance of a row: f32's 1e-5 of Σ|w·x| (the GPU suite's) plus the staging's rounding bound
// Σ_i |w_i|·2^(E_b − 1) (every element within half a unit of its block's scale; ≤ 2^-30 of the
// block's largest |x|, so it only matters for blocks of mixed magnitudes).
double row_tolerance(const Format& f, const uint8_t* row, const float* x, int64_t n, const RowRef& ref) {
  const std::vector<double> m = magnitudes(f, row, n);
  double bound = 0.0;
  for (int64_t b = 0; b < n / 256; ++b) {
    uint32_t mx = 0;
    for (int i = 0; i < 256; ++i) mx = std::max(mx, abs_bits(x[256 * b + i]));
    const double half_unit = std::ldexp(1.0, detail::xblock_exponent(mx, detail::kXTopBits2b) - 1);
    for (int i = 0; i < 256; ++i) bound += m[static_cast<size_t>(256 * b + i)] * half_unit;
  }
  return 1e-5 * ref.scale + bound + 1e-40;
}

template <class Fmt>
void expect_rows_match_the_cpu(TensorType type, std::initializer_list<int64_t> n_ins) {
  const uint64_t seed = fresh_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937_64 rng(seed);
  const Format& f = format_of(type);
  for (int kind = 0; kind < kStagingKinds; ++kind) {
    for (int64_t n_in : n_ins) {
      for (int64_t n_rows : {1, 31, 32, 45, 96}) {
        const std::vector<uint8_t> w = random_rows(f, n_in, n_rows, rng);
        const std::vector<float> x = staging_activations(kind, n_in, rng);
        const std::vector<detail::XBlock2b> xs = stage_blocks<Fmt>(x.data(), n_in);
        const int64_t rb = row_bytes(f, n_in);
        ASSERT_EQ(rb % (Fmt::kItemWords * 4), 0);
        std::vector<double> got(static_cast<size_t>(n_rows), 0.0);
        for (int64_t row0 = 0; row0 < n_rows; row0 += k2bTileRows) {
          for (int item = 0; item < n_in / Fmt::kItemElems; ++item) {
            const std::vector<float> part = emulate_item<Fmt>(w, rb, n_rows, row0, item, xs, rng);
            if (::testing::Test::HasFailure()) return;
            ASSERT_EQ(static_cast<int64_t>(part.size()), std::min<int64_t>(k2bTileRows, n_rows - row0));
            for (size_t r = 0; r < part.size(); ++r) got[static_cast<size_t>(row0) + r] += part[r];
          }
        }
        for (int64_t o = 0; o < n_rows; ++o) {
          const uint8_t* row = w.data() + o * rb;
          const RowRef ref = row_reference(f, row, x.data(), n_in);
          const double tol = row_tolerance(f, row, x.data(), n_in, ref);
          const double g = got[static_cast<size_t>(o)];
          EXPECT_NEAR(g, ref.cpu, tol) << "kind " << kind << ", " << n_in << " x " << n_rows << ", row " << o;
          EXPECT_NEAR(g, ref.exact, tol) << "kind " << kind << ", " << n_in << " x " << n_rows << ", row " << o;
          if (kind == 1) {
            EXPECT_EQ(g, 0.0);
          }
        }
        if (::testing::Test::HasFailure()) return;
      }
    }
  }
}

TEST(CudaMatvec2bitEmulation, Q2KRowsMatchTheCpu) { expect_rows_match_the_cpu<Fmt2bQ2K>(TensorType::Q2_K, {256, 768, 2048}); }

TEST(CudaMatvec2bitEmulation, Iq2XxsRowsMatchTheCpu) {
  expect_rows_match_the_cpu<Fmt2bIQ2>(TensorType::IQ2_XXS, {512, 1536, 4096});
}

TEST(CudaMatvec2bitEmulation, Q4KRowsMatchTheCpu) {
  expect_rows_match_the_cpu<Fmt4bQ4K>(TensorType::Q4_K, {256, 768, 4096});
}

// A block of activations holding ±inf or NaN makes every row's dot NaN; the CPU's dot is then
// non-finite too (inf·w, or inf − inf, or NaN).
template <class Fmt>
void expect_non_finite_activations_give_nan(TensorType type) {
  std::mt19937_64 rng(7);
  const Format& f = format_of(type);
  const int64_t n_in = 1024;
  const std::vector<uint8_t> w = random_rows(f, n_in, 32, rng);
  for (float bad : {INFINITY, -INFINITY, NAN}) {
    std::vector<float> x = gaussian(n_in, rng);
    x[700] = bad;
    const std::vector<detail::XBlock2b> xs = stage_blocks<Fmt>(x.data(), n_in);
    const int64_t rb = row_bytes(f, n_in);
    std::vector<double> got(32, 0.0);
    for (int item = 0; item < n_in / Fmt::kItemElems; ++item) {
      const std::vector<float> part = emulate_item<Fmt>(w, rb, 32, 0, item, xs, rng);
      for (size_t r = 0; r < part.size(); ++r) got[r] += part[r];
    }
    for (int o = 0; o < 32; ++o) {
      EXPECT_TRUE(std::isnan(got[static_cast<size_t>(o)])) << "row " << o << " with " << bad;
      EXPECT_FALSE(std::isfinite(row_reference(f, w.data() + o * rb, x.data(), n_in).cpu)) << "row " << o;
    }
  }
}

TEST(CudaMatvec2bitEmulation, NonFiniteActivationsGiveNaN) {
  expect_non_finite_activations_give_nan<Fmt2bQ2K>(TensorType::Q2_K);
  expect_non_finite_activations_give_nan<Fmt2bIQ2>(TensorType::IQ2_XXS);
  expect_non_finite_activations_give_nan<Fmt4bQ4K>(TensorType::Q4_K);
}

// Every grid point under every sign pattern through the integer sub-block decode: for grid index
// gi and sign index si, the sub-block's four 8-element points are gi + 64g, signs si + 32g (mod the
// table sizes), scale ls = gi % 16; A_p must be (2·ls + 1)·Σ ±m·limb_p exactly.
TEST(CudaMatvec2bitEmulation, Iq2SubBlockIsExactForEveryGridPointAndSignPattern) {
  std::mt19937_64 rng(11);
  const std::vector<float> x = gaussian(256, rng);
  const std::vector<detail::XBlock2b> xs = stage_blocks<Fmt2bIQ2>(x.data(), 256);
  static const detail::Iq2RowTables tables = row_tables();
  const int32_t start[4] = {5, -7, 11, -13};  // the first kXLimbs2b
  for (int gi = 0; gi < 256; ++gi) {
    for (int si = 0; si < 128; ++si) {
      const int s = (gi + si) % 8, ls = gi % 16;
      uint32_t a0 = 0, a1 = static_cast<uint32_t>(ls) << 28;
      for (int g = 0; g < 4; ++g) {
        a0 |= static_cast<uint32_t>((gi + 64 * g) % 256) << (8 * g);
        a1 |= static_cast<uint32_t>((si + 32 * g) % 128) << (7 * g);
      }
      // The grid bytes in one word (kOff 0), and across two words from byte 2 (kOff 2: block 0's
      // half-word aligned sub-blocks), with other data in the bytes around them.
      const int copy = (gi + si) & (detail::kIq2TableCopies - 1);
      const detail::Iq2LaneTable grid(tables.grid + copy), signs(tables.signs + copy);
      int32_t A[detail::kXLimbs2b], A2[detail::kXLimbs2b];  // accumulate onto what is there
      std::copy(start, start + detail::kXLimbs2b, A);
      std::copy(start, start + detail::kXLimbs2b, A2);
      detail::iq2_sub_accumulate<0>(a0, 0xA5A5A5A5u, a1, grid, signs, xs[0], s, A);
      detail::iq2_sub_accumulate<2>((a0 << 16) | 0x3C5Au, (a0 >> 16) | 0x96C30000u, a1, grid, signs, xs[0], s, A2);
      for (int p = 0; p < detail::kXLimbs2b; ++p) {
        ASSERT_EQ(A2[p], A[p]) << "grid " << gi << ", signs " << si << ", limb " << p << ": half-word aligned";
        int64_t want = 0;
        for (int g = 0; g < 4; ++g) {
          const uint64_t grid = quant::iq2xxs_grid[(gi + 64 * g) % 256];
          const uint32_t signs = quant::ksigns_iq2xs[(si + 32 * g) % 128];
          for (int k = 0; k < 8; ++k) {
            const int m = static_cast<int>((grid >> (8 * k)) & 0xFF);
            want += ((signs >> k) & 1u ? -m : m) * limb_of(xs[0], p, 32 * s + 8 * g + k);
          }
        }
        ASSERT_EQ(A[p], start[p] + (2 * ls + 1) * want) << "grid " << gi << ", signs " << si << ", limb " << p;
      }
    }
  }
}

// Every sign pattern and grid point: ±m per signed byte, exactly the signed magnitudes (this also
// checks that every grid magnitude is one of the three the nibble codes can name).
TEST(CudaMatvec2bitEmulation, SignedCodesAreExact) {
  for (int gi = 0; gi < 256; ++gi) {
    const uint32_t g = detail::iq2_grid_entry(quant::iq2xxs_grid[gi]);
    for (int si = 0; si < 128; ++si) {
      const uint32_t s = quant::ksigns_iq2xs[si];
      const uint32_t sel = g | detail::iq2_sign_entry(s);
      const uint32_t lo = detail::iq2_signed_codes(sel), hi = detail::iq2_signed_codes(sel >> 16);
      for (int e = 0; e < 8; ++e) {
        const int mag = static_cast<int>((quant::iq2xxs_grid[gi] >> (8 * e)) & 0xFF);
        const int want = ((s >> e) & 1u) ? -mag : mag;
        const int got = static_cast<int8_t>((e < 4 ? lo : hi) >> (8 * (e % 4)));
        ASSERT_EQ(got, want) << "grid " << gi << ", signs " << si << ", element " << e;
      }
    }
  }
}

}  // namespace
}  // namespace dsv4::cuda::testing
