// The 2-bit row-tile kernel's per-lane code (cuda/matvec_2bit.cuh) run on the CPU: one item of a
// tile copied word by word the way the warp's cp.async do it (into a buffer full of garbage), each
// lane's row read back from its place in the buffer and dotted with the same decoders the kernel
// uses (Q2_K's group sums computed as the kernel's lanes do), against quant::dot_row and the exact
// dot. Partial last tiles (rows past the matrix re-read its last row) and rows of one to many
// items. The GPU suite (tests/cuda/matvec_test.cc) checks the kernel itself.
#include <cuda_runtime.h>  // __host__ / __device__ and the vector types, for host compilation
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <set>
#include <vector>

#include "cuda/cuda_test_util.h"
#include "cuda/matvec_2bit.cuh"
#include "cuda/row_tile.cuh"
#include "quant/iq2_xxs_tables.h"

namespace dsv4::cuda::testing {
namespace {

using detail::Fmt2bIQ2;
using detail::Fmt2bQ2K;
using detail::k2bTileRows;

template <class Fmt>
void expect_copies_cover_the_tile() {
  constexpr int kWords = Fmt::kItemWords;
  std::set<int> seen;
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
}

// The schedule with G groups of W warps per block (group g of block b walks the units of virtual
// block b·G + g), per-slot units numbered slot-major or tile-major (slot_fastest, the 2-bit
// kernel's): every (slot, tile) unit goes to exactly one group, every (slot, item) of a unit to
// exactly one warp of it, whatever the grid and G; when summed, a slot's partial is closed at its
// last item. Tile-major with 2·132 groups and 6 slots: each group sees one slot.
template <bool kSum>
void expect_groups_cover_the_work(int n_items, int n_slots, int n_tiles, int W, int G, int grid, bool slot_fastest) {
  SCOPED_TRACE(::testing::Message() << "sum " << kSum << " items " << n_items << " slots " << n_slots << " tiles "
                                    << n_tiles << " W " << W << " G " << G << " grid " << grid << " slot_fastest "
                                    << slot_fastest);
  const int n_units = kSum ? n_tiles : n_slots * n_tiles;
  std::vector<int> done(static_cast<size_t>(n_slots * n_tiles * n_items), 0);
  for (int b = 0; b < grid; ++b) {
    for (int g = 0; g < G; ++g) {
      for (int warp = 0; warp < W; ++warp) {
        const detail::RowTileSchedule<kSum> s(n_items, n_slots, n_units, n_tiles, W, warp, b * G + g, grid * G,
                                              slot_fastest);
        for (int k = 0; k < s.my_units; ++k) {
          if (!kSum && slot_fastest && (grid * G) % n_slots == 0) {
            EXPECT_EQ(s.unit_slot(k), s.unit_slot(0));
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
      for (int grid : {1, 3, 132}) {
        expect_groups_cover_the_work<false>(8, 6, 128, 8, G, grid, slot_fastest);  // the experts' gate/up and down
        expect_groups_cover_the_work<true>(8, 6, 128, 8, G, grid, slot_fastest);
        expect_groups_cover_the_work<false>(9, 3, 5, 4, G, grid, slot_fastest);  // uneven items per warp
        expect_groups_cover_the_work<true>(9, 3, 5, 2, G, grid, slot_fastest);
        if (HasFatalFailure()) return;
      }
    }
  }
}

detail::Iq2RowTables row_tables() {
  detail::Iq2RowTables t;
  constexpr int kCopies = detail::kIq2TableCopies;
  for (int i = 0; i < 256 * kCopies; ++i) t.grid[i] = detail::iq2_grid_entry(quant::iq2xxs_grid[i / kCopies]);
  for (int i = 0; i < 128 * kCopies; ++i) t.signs[i] = detail::iq2_sign_entry(quant::ksigns_iq2xs[i / kCopies]);
  return t;
}

// Item `item` of the tile at rows row0.. of a matrix of n_rows, staged and decoded as the kernel
// does; returns each valid lane's Σ over that item.
template <class Fmt>
std::vector<float> emulate_item(const std::vector<uint8_t>& w, int64_t row_bytes, int64_t n_rows, int64_t row0,
                                int item, const float* x, std::mt19937_64& rng) {
  constexpr int kWords = Fmt::kItemWords;
  std::vector<uint32_t> buf(k2bTileRows * kWords);
  for (auto& v : buf) v = static_cast<uint32_t>(rng());
  const int last_row = static_cast<int>(n_rows - 1 - row0);
  const uint8_t* base = w.data() + row0 * row_bytes + static_cast<int64_t>(item) * kWords * 4;
  for (int lane = 0; lane < 32; ++lane) {
    for (int j = 0; j < detail::rt_copies<kWords>(); ++j) {
      int row = 0, word = 0;
      if (!detail::rt_copy<kWords>(lane, j, last_row < 31 ? last_row : 31, row, word)) continue;
      const uint8_t* src = base + row * row_bytes + 4 * word;
      EXPECT_TRUE(src >= w.data() && src + 4 <= w.data() + w.size()) << "read outside the tensor";
      if (src < w.data() || src + 4 > w.data() + w.size()) return {};
      const int dst_row = j < 32 ? j : lane;
      std::memcpy(&buf[static_cast<size_t>(dst_row * kWords + word)], src, 4);
    }
  }
  const float* xs = x + static_cast<int64_t>(item) * Fmt::kItemElems;
  auto load_x4 = [xs](int e) { return make_float4(xs[e], xs[e + 1], xs[e + 2], xs[e + 3]); };
  static const detail::Iq2RowTables tables = row_tables();
  std::vector<float> out;
  for (int lane = 0; lane < 32 && lane <= last_row; ++lane) {
    const uint32_t* row = &buf[static_cast<size_t>(lane * kWords)];
    if constexpr (Fmt::kGroupSums) {
      auto group_sum = [xs](int g) {  // lane g's sum in the kernel, in element order
        float s = 0.0f;
        for (int i = 0; i < 16; ++i) s += xs[16 * g + i];
        return s;
      };
      out.push_back(detail::q2k_block_dot(row, load_x4, group_sum));
    } else {
      out.push_back(detail::iq2_item_dot(row, tables, lane & 15, load_x4));
    }
  }
  return out;
}

template <class Fmt>
void expect_rows_match_the_cpu(TensorType type, std::initializer_list<int64_t> n_ins) {
  std::random_device rd;
  const uint64_t seed = (static_cast<uint64_t>(rd()) << 32) ^ rd();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937_64 rng(seed);
  const Format& f = format_of(type);
  for (int64_t n_in : n_ins) {
    for (int64_t n_rows : {1, 31, 32, 45, 96}) {
      const std::vector<uint8_t> w = random_rows(f, n_in, n_rows, rng);
      const std::vector<float> x = gaussian(n_in, rng);
      const int64_t rb = row_bytes(f, n_in);
      ASSERT_EQ(rb % (Fmt::kItemWords * 4), 0);
      std::vector<double> got(static_cast<size_t>(n_rows), 0.0);
      for (int64_t row0 = 0; row0 < n_rows; row0 += k2bTileRows) {
        for (int item = 0; item < n_in / Fmt::kItemElems; ++item) {
          const std::vector<float> part = emulate_item<Fmt>(w, rb, n_rows, row0, item, x.data(), rng);
          if (::testing::Test::HasFailure()) return;
          ASSERT_EQ(static_cast<int64_t>(part.size()), std::min<int64_t>(k2bTileRows, n_rows - row0));
          for (size_t r = 0; r < part.size(); ++r) got[static_cast<size_t>(row0) + r] += part[r];
        }
      }
      for (int64_t o = 0; o < n_rows; ++o) {
        const RowRef ref = row_reference(f, w.data() + o * rb, x.data(), n_in);
        const double tol = 1e-5 * ref.scale + 1e-30;
        EXPECT_NEAR(got[static_cast<size_t>(o)], ref.cpu, tol) << n_in << " x " << n_rows << ", row " << o;
        EXPECT_NEAR(got[static_cast<size_t>(o)], ref.exact, tol) << n_in << " x " << n_rows << ", row " << o;
      }
    }
  }
}

TEST(CudaMatvec2bitEmulation, Q2KRowsMatchTheCpu) { expect_rows_match_the_cpu<Fmt2bQ2K>(TensorType::Q2_K, {256, 768, 2048}); }

TEST(CudaMatvec2bitEmulation, Iq2XxsRowsMatchTheCpu) {
  expect_rows_match_the_cpu<Fmt2bIQ2>(TensorType::IQ2_XXS, {512, 1536, 4096});
}

// Every sign pattern and grid point: 64 ± m per byte, exactly the signed magnitudes.
TEST(CudaMatvec2bitEmulation, SignFoldingIsExact) {
  for (int gi = 0; gi < 256; ++gi) {
    const uint2 g = detail::iq2_grid_entry(quant::iq2xxs_grid[gi]);
    for (int si = 0; si < 128; ++si) {
      const uint32_t s = quant::ksigns_iq2xs[si];
      const uint2 m = detail::iq2_sign_entry(s);
      const uint32_t lo = detail::iq2_signed_bytes(g.x, m.x), hi = detail::iq2_signed_bytes(g.y, m.y);
      for (int e = 0; e < 8; ++e) {
        const int mag = static_cast<int>((quant::iq2xxs_grid[gi] >> (8 * e)) & 0xFF);
        const int want = 64 + (((s >> e) & 1u) ? -mag : mag);
        const int got = static_cast<int>(((e < 4 ? lo : hi) >> (8 * (e % 4))) & 0xFF);
        ASSERT_EQ(got, want) << "grid " << gi << ", signs " << si << ", element " << e;
      }
    }
  }
}

}  // namespace
}  // namespace dsv4::cuda::testing
