// The wgmma split GEMM (GemmTile::kWgmma, kWgmma64, kWgmmaNarrow and the pairs kWgmmaTails and
// kWgmmaNarrowPair, cuda/gemm_wgmma.cu and, for IQ2_XXS's 64- and 16-token tiles,
// cuda/gemm_wgmma_regs.cu)
// against a double reference on fresh random inputs: f32 activations of mixed magnitudes inside a
// row (the small elements live in x_lo), a row of zeros, a random power of two per row, converted
// on the device by convert_f32_to_f16_split. Dense Q8_0: partial row and feature tiles, a single
// k-step, strides, every dense Q8_0 shape of flash-q2 at a prefill chunk (600 rows: four full
// 128-row tiles and a partial one). Grouped IQ2_XXS and Q8_0 (grouped_gemm, both tiles): random
// groups — empty ones, ones smaller than a tile, exactly one tile of either, ones spanning several
// tiles — gathered X rows, outputs scattered by a permutation, out-of-range expert ids and rows
// past n_rows (clamped offsets) writing nothing, a partial feature tile with padding columns; and
// out_a's grouped form as forward_attention.cc calls it (token t's group g a row of its own, 8
// slabs of one tensor, rows listed group by group).
//
// Tolerance per output: the split's (split_reference.h). The kernel forms the same numbers as the
// split: x_hi + x_lo is x to 2^-22 relative (2^-25·f absolute below f16's normal range), code ×
// x_hi / x_lo products are exact on the tensor cores (Q8_0 codes ≤ 128, IQ2_XXS codes
// ±grid·(2·ls + 1) ≤ 1333, both exact in f16; times an f16 x, exact in f32), each 32-column chain
// of four k16 MMAs starts at zero (its sum may truncate: within γ) and enters acc by one FFMA with
// the block scale (Q8_0: d, IQ2_XXS: d/8, exact); 2^-23·S covers the CPU's f32 rounding of the
// weight. A chain accumulated into acc (the session-6 v1 mistake) stays inside γ only by luck of k,
// which is why the whole-model tests run too; a wrong scale, code, row, group, slice or swizzle is
// off by far more.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "cuda/cuda_test_util.h"
#include "cuda/fill.h"
#include "cuda/gemm.h"
#include "cuda/matvec.h"
#include "cuda/split_activations.h"
#include "cuda/split_reference.h"

namespace dsv4::cuda::testing {
namespace {

// One weight matrix (m × k, random blocks of `type`) on the host, dequantised by the CPU.
struct Matrix {
  int64_t m = 0, k = 0;
  std::vector<uint8_t> bytes;
  RefWeights ref;
  TensorType type = TensorType::Q8_0;
};
Matrix random_matrix(int64_t m, int64_t k, std::mt19937_64& rng, TensorType type = TensorType::Q8_0) {
  const Format& f = format_of(type);
  Matrix a{m, k, random_rows(f, k, m, rng), {}, type};
  a.ref = reference_weights(f, a.bytes.data(), m, k);
  return a;
}

// y row r (at y + r·y_stride) against x row r (columns [x_col, x_col + k) of rows x_width apart)
// times a, for each r in rows; features [m, pad_to) of every checked row must keep the 0xFF fill.
void check_dense(const std::vector<float>& y, int64_t y_stride, int64_t pad_to, const std::vector<float>& x,
                 int64_t x_width, int64_t x_col, const std::vector<float>& factors, const RefWeights& a,
                 const std::vector<int64_t>& rows, const std::string& what) {
  check_rows(y, y_stride, rows, rows, x.data() + x_col, x_width, factors, a, what);
  int reported = 0;
  for (const int64_t r : rows) {
    for (int64_t c = a.rows; c < pad_to; ++c) {
      uint32_t u;
      std::memcpy(&u, &y[static_cast<size_t>(r * y_stride + c)], 4);
      if (u != 0xFFFFFFFFu && reported++ < 5) ADD_FAILURE() << what << ": wrote padding at row " << r << " column " << c;
    }
  }
}

struct Shape {
  const char* name;
  int64_t k, m;
};

// n rows through gemm() with `tile`, weights a, activations x_width wide (x_width ≥ k, the matrix
// reads the first k columns), y_stride ≥ m; returns y (n × y_stride, 0xFF-filled before).
std::vector<float> run_gemm(const Matrix& a, const DeviceBuffer& dw, const SplitX& sx, int64_t x_width, int64_t n,
                            int64_t y_stride, GemmTile tile) {
  DeviceBuffer dy(static_cast<size_t>(n * y_stride) * 4);
  EXPECT_TRUE(dy.ok());
  EXPECT_EQ(cudaMemset(dy.get(), 0xFF, dy.size()), cudaSuccess);
  const GemmWeights w{a.type, dw.get(), a.k, a.m, 1};
  const Status s =
      gemm(w, sx.hi.get<__half>(), x_width, sx.scale.get<float>(), n, dy.get<float>(), y_stride, nullptr, tile,
           sx.lo.get<__half>());
  EXPECT_TRUE(s.ok()) << s.message();
  EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  return download<float>(dy, static_cast<size_t>(n * y_stride));
}

// Partial tiles in both directions, four k-steps (fewer than the slots plus the raw lead), n below
// one tile, x and y strides, an odd step count (5 k-steps, F16 only: Q8_0 rows of 320 are not
// 16-byte multiples); kAuto takes the
// wgmma kernel from 512 rows (same bits as kWgmma), and the mma.sync split kernel (kLarge) meets
// the same bound.
TEST(GemmWgmma, PartialTilesMatchDoubleReference) {
  const uint64_t seed = fresh_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937_64 rng(seed);
  struct Case {
    int64_t m, k, n, x_width, y_stride;
  };
  for (const TensorType type : {TensorType::Q8_0, TensorType::F16}) {
    for (const Case c :
         {Case{300, 1024, 517, 1064, 303}, Case{77, 256, 5, 256, 80}, Case{130, 512, 129, 520, 130},
          Case{70, 320, 131, 328, 72}}) {
      if (type == TensorType::Q8_0 && c.k % 256 != 0) continue;
      const Matrix a = random_matrix(c.m, c.k, rng, type);
      DeviceBuffer dw(a.bytes.size());
      ASSERT_TRUE(upload(dw, a.bytes));
      const std::vector<float> x = mixed_rows(c.n, c.x_width, c.x_width, rng);
      const SplitX sx = split_on_device(x, c.n, c.x_width, c.x_width);
      std::vector<int64_t> rows(static_cast<size_t>(c.n));
      for (int64_t r = 0; r < c.n; ++r) rows[static_cast<size_t>(r)] = r;
      std::ostringstream what;
      what << type_name(type) << " m=" << c.m << " k=" << c.k << " n=" << c.n;
      const std::vector<float> y = run_gemm(a, dw, sx, c.x_width, c.n, c.y_stride, GemmTile::kWgmma);
      check_dense(y, c.y_stride, c.y_stride, x, c.x_width, 0, sx.factors, a.ref, rows, what.str() + " wgmma");
      const std::vector<float> y_mma = run_gemm(a, dw, sx, c.x_width, c.n, c.y_stride, GemmTile::kLarge);
      check_dense(y_mma, c.y_stride, c.y_stride, x, c.x_width, 0, sx.factors, a.ref, rows, what.str() + " mma.sync");
      if (c.n >= 512) {
        const std::vector<float> y_auto = run_gemm(a, dw, sx, c.x_width, c.n, c.y_stride, GemmTile::kAuto);
        for (size_t i = 0; i < y.size(); ++i) {
          ASSERT_TRUE(same_bits(y[i], y_auto[i])) << what.str() << ": kAuto differs from kWgmma at " << i;
        }
      }
    }
  }
}

// Shapes of `type` at a 600-row chunk through kAuto (the wgmma kernel); rows checked: both ends of
// every 128-row tile.
void flash_shapes_case(TensorType type, std::initializer_list<Shape> shapes) {
  const uint64_t seed = fresh_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937_64 rng(seed);
  const int64_t n = 600;
  const std::vector<int64_t> rows = {0, 1, 2, 127, 128, 255, 256, 383, 384, 511, 512, 599};
  for (const Shape s : shapes) {
    const Matrix a = random_matrix(s.m, s.k, rng, type);
    DeviceBuffer dw(a.bytes.size());
    ASSERT_TRUE(upload(dw, a.bytes));
    const std::vector<float> x = mixed_rows(n, s.k, s.k, rng);
    const SplitX sx = split_on_device(x, n, s.k, s.k);
    const std::vector<float> y = run_gemm(a, dw, sx, s.k, n, s.m, GemmTile::kAuto);
    check_dense(y, s.m, s.m, x, s.k, 0, sx.factors, a.ref, rows, std::string(s.name) + " (kAuto)");
  }
}

// Every dense Q8_0 projection of flash-q2 (hidden 4096, q rank 1024, kv 512, 64 heads × 512, o rank
// 1024 × 8 groups, shared expert 2048).
TEST(GemmWgmma, FlashShapesMatchDoubleReference) {
  flash_shapes_case(TensorType::Q8_0, {Shape{"q_a", 4096, 1024}, Shape{"kv", 4096, 512}, Shape{"q_b", 1024, 32768},
                                       Shape{"out_b", 8192, 4096}, Shape{"shared gate/up", 4096, 2048},
                                       Shape{"shared down", 2048, 4096}});
}

// The dense F16 projections of flash-q2 that run as GEMMs at a prefill chunk: the compressors' kv
// and gate (4096 → 2·512 on the overlapping CSA layers), the indexer's (4096 → 2·128) and its query
// (1024 → 64 heads × 128).
TEST(GemmWgmma, FlashF16ShapesMatchDoubleReference) {
  flash_shapes_case(TensorType::F16, {Shape{"compressor kv", 4096, 1024}, Shape{"indexer compressor kv", 4096, 256},
                                      Shape{"indexer q_b", 1024, 8192}});
}

// out_a as forward_attention.cc runs it: the chunk's attention output as n·G rows of k (row t·G +
// g: token t's heads of group g), a row factor each, one grouped_gemm whose group g lists rows t·G + g in
// token order (fill_group_major) for x and y, group g's weights matrix g of one tensor. n = 520:
// 4 160 rows, the 128-token wgmma tile and its tails (520 = 4·128 + 8); n = 40: 320 rows, mma.sync.
TEST(GemmWgmma, GroupedOutputAMatchesDoubleReference) {
  const uint64_t seed = fresh_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937_64 rng(seed);
  const int64_t G = 8, k = 4096, m = 1024;
  const Matrix all = random_matrix(G * m, k, rng);
  DeviceBuffer dw(all.bytes.size());
  ASSERT_TRUE(upload(dw, all.bytes));
  for (const int64_t n : {int64_t{520}, int64_t{40}}) {
    SCOPED_TRACE("tokens " + std::to_string(n));
    const std::vector<float> x = mixed_rows(n * G, k, k, rng);
    const SplitX sx = split_on_device(x, n * G, k, k);
    DeviceBuffer dy(static_cast<size_t>(n * G * m) * 4), rows(static_cast<size_t>(n * G) * 4), offsets((G + 1) * 4);
    ASSERT_TRUE(dy.ok() && rows.ok() && offsets.ok());
    STATUS_ASSERT(fill_group_major(rows.get<int32_t>(), offsets.get<int32_t>(), static_cast<int>(n),
                                   static_cast<int>(G), nullptr));
    const std::vector<int32_t> listed = download<int32_t>(rows, static_cast<size_t>(n * G));
    const std::vector<int32_t> starts = download<int32_t>(offsets, static_cast<size_t>(G + 1));
    for (int64_t g = 0; g <= G; ++g) ASSERT_EQ(starts[static_cast<size_t>(g)], g * n) << "offset of group " << g;
    for (int64_t i = 0; i < n * G; ++i) {
      ASSERT_EQ(listed[static_cast<size_t>(i)], i % n * G + i / n) << "row " << i << " of the group-major list";
    }
    GroupedGemm gg;
    gg.w = GemmWeights{TensorType::Q8_0, dw.get(), k, m, G};
    gg.n_groups = static_cast<int>(G);
    gg.offsets = offsets.get<int32_t>();
    gg.n_rows = n * G;
    gg.x = sx.hi.get<__half>();
    gg.x_lo = sx.lo.get<__half>();
    gg.x_stride = k;
    gg.x_scale = sx.scale.get<float>();
    gg.x_rows = rows.get<int32_t>();
    gg.x_count = n * G;
    gg.y = dy.get<float>();
    gg.y_stride = m;
    gg.y_rows = rows.get<int32_t>();
    gg.y_count = n * G;
    STATUS_ASSERT(grouped_gemm(gg, nullptr));
    CUDA_ASSERT(cudaDeviceSynchronize());
    const std::vector<float> y = download<float>(dy, static_cast<size_t>(n * G * m));
    for (int64_t g = 0; g < G; ++g) {
      const auto slice = [&](const auto& v) { return std::vector(v.begin() + g * m * k, v.begin() + (g + 1) * m * k); };
      const RefWeights a{m, k, slice(all.ref.w), slice(all.ref.mag)};
      std::vector<int64_t> at;  // rows t·G + g of tokens 0, 1, 127, 128, n − 1
      for (const int64_t t : {int64_t{0}, int64_t{1}, int64_t{127}, int64_t{128}, n - 1}) {
        if (t < n) at.push_back(t * G + g);
      }
      check_rows(y, m, at, at, x.data(), k, sx.factors, a, "out_a group " + std::to_string(g));
    }
  }
}

// Routed-expert form through grouped_gemm on every wgmma tile and pair, each against the reference;
// for Q8_0 the 128- and 64-token tiles and their pair with the same bits (each output is the same
// sequence of MMAs and FFMAs in either tile), for IQ2_XXS the 64-token tile with its own (a kernel
// of its own) and the tails pair with the 64-token tile's bits in the short tails; the 16-token tile
// with its own, and its pair with the 64-token tile with the 16-token tile's bits in the groups of
// at most 16 rows and the 64-token tile's elsewhere;
// kAuto (the sizes below give 913..1509 rows for 20 groups: 46..75 per group on average, on either
// side of its rule at kWgmma64Below) with the bits of the one it takes: group sizes drawn afresh —
// ten empty, one of 1..20 rows, one below a 64-row tile, exactly one 64-row tile, one between 64
// and 128, exactly one 128-row tile, one of 129..328 and one of 500..627 rows (several tiles of
// either, the last partial), exactly 16 and 17 rows (the pair's edge), one of 1..128 — in random
// order over 7 experts, two
// non-empty groups with out-of-range expert ids (7 and -1); n_rows stops 9 rows short of the last
// offset (clamped: those rows write nothing). Sorted row r reads X row x_rows[r] (a random token)
// with its row factor and writes output row y_rows[r] (a permutation), 428 features (a partial
// 128-feature tile; a partial 256-feature one whose second warpgroup has 44 valid features) in
// rows of 432 (the padding must keep its fill).
void grouped_case(TensorType type) {
  ASSERT_TRUE(prepare_matvec().ok());
  const uint64_t seed = fresh_seed();
  SCOPED_TRACE("seed " + std::to_string(seed) + ", " + format_of(type).name);
  std::mt19937_64 rng(seed);
  const int n_expert = 7, n_tokens = 200;
  const int64_t m = 428, k = 2048, y_stride = 432;
  const auto draw = [&](int lo, int hi) { return lo + static_cast<int>(rng() % static_cast<uint64_t>(hi - lo + 1)); };
  std::vector<int32_t> sizes = {0,  0,   draw(1, 20), draw(1, 63), 64, draw(65, 127), 128, draw(129, 328),
                                draw(500, 627), 16, 17};
  while (sizes.size() < 12) sizes.push_back(draw(1, 128));
  sizes.resize(20, 0);
  std::shuffle(sizes.begin(), sizes.end(), rng);
  std::vector<int32_t> group_expert(sizes.size());
  for (int32_t& e : group_expert) e = draw(0, n_expert - 1);
  std::vector<size_t> nonempty;
  for (size_t g = 0; g < sizes.size(); ++g) {
    if (sizes[g] > 0) nonempty.push_back(g);
  }
  std::shuffle(nonempty.begin(), nonempty.end(), rng);
  group_expert[nonempty[0]] = n_expert;
  group_expert[nonempty[1]] = -1;
  std::vector<int32_t> offsets = {0};
  for (const int32_t n : sizes) offsets.push_back(offsets.back() + n);
  const int total = offsets.back(), n_rows = total - 9;
  std::vector<int32_t> clamped(offsets);
  for (int32_t& o : clamped) o = std::min(o, n_rows);
  std::vector<int32_t> x_rows(static_cast<size_t>(total)), y_rows(static_cast<size_t>(total));
  for (int r = 0; r < total; ++r) {
    x_rows[static_cast<size_t>(r)] = draw(0, n_tokens - 1);
    y_rows[static_cast<size_t>(r)] = r;
  }
  std::shuffle(y_rows.begin(), y_rows.end(), rng);

  const Format& f = format_of(type);
  const std::vector<uint8_t> wbytes = random_rows(f, k, m * n_expert, rng);
  const size_t slab = static_cast<size_t>(row_bytes(f, k) * m);
  DeviceBuffer dw(wbytes.size()), d_off(offsets.size() * 4), d_ge(group_expert.size() * 4), d_xr(x_rows.size() * 4),
      d_yr(y_rows.size() * 4), dy(static_cast<size_t>(total * y_stride) * 4);
  ASSERT_TRUE(upload(dw, wbytes) && upload(d_off, offsets) && upload(d_ge, group_expert) && upload(d_xr, x_rows) &&
              upload(d_yr, y_rows) && dy.ok());
  const std::vector<float> x = mixed_rows(n_tokens, k, k, rng);
  const SplitX sx = split_on_device(x, n_tokens, k, k);
  const GroupedGemm g = split_grouped_gemm({type, dw.get(), k, m, n_expert}, static_cast<int>(sizes.size()), d_off,
                                           d_ge, n_rows, sx, d_xr, n_tokens, dy, y_stride, d_yr, total);
  // Each forced tile against the reference first (a wrong tile fails on its own numbers), then the
  // bits it should have: kWgmma's, the 16-token tile's own (its hi and lo chains are summed apart),
  // IQ2_XXS's 64-token tile's own, and the pairs' and kAuto's per group and row from those.
  // IQ2_XXS's 64-token tile is its own kernel (gemm_wgmma_regs.cu), with bits of its own; Q8_0's
  // is the 128-token tile's kernel with the operands swapped, and has its bits.
  const bool own_wide = type == TensorType::IQ2_XXS;
  std::vector<float> first, narrow, wide;
  const bool auto_pair = n_rows < kWgmma64Below * static_cast<int64_t>(sizes.size());
  for (const GemmTile tile : {GemmTile::kWgmma, GemmTile::kWgmma64, GemmTile::kWgmmaTails, GemmTile::kWgmmaNarrow,
                              GemmTile::kWgmmaNarrowPair, GemmTile::kAuto}) {
    SCOPED_TRACE(tile == GemmTile::kWgmma              ? "kWgmma"
                 : tile == GemmTile::kWgmma64          ? "kWgmma64"
                 : tile == GemmTile::kWgmmaTails       ? "kWgmmaTails"
                 : tile == GemmTile::kWgmmaNarrow      ? "kWgmmaNarrow"
                 : tile == GemmTile::kWgmmaNarrowPair  ? "kWgmmaNarrowPair"
                                                       : auto_pair ? "kAuto (the 16/64 pair)" : "kAuto (128/64)");
    CUDA_ASSERT(cudaMemset(dy.get(), 0xFF, dy.size()));
    STATUS_ASSERT(grouped_gemm(g, nullptr, tile));
    CUDA_ASSERT(cudaDeviceSynchronize());
    const std::vector<float> y = download<float>(dy, static_cast<size_t>(total * y_stride));
    if (tile != GemmTile::kAuto) {
      std::vector<int64_t> unwritten;
      for (int r = n_rows; r < total; ++r) unwritten.push_back(y_rows[static_cast<size_t>(r)]);
      for (int gi = 0; gi < g.n_groups; ++gi) {
        const int e = group_expert[static_cast<size_t>(gi)];
        const GroupRows rows = group_rows(clamped, x_rows, y_rows, gi);
        if (e < 0 || e >= n_expert) {
          unwritten.insert(unwritten.end(), rows.out.begin(), rows.out.end());
          continue;
        }
        const RefWeights ref = reference_weights(f, wbytes.data() + static_cast<size_t>(e) * slab, m, k);
        const std::string what = "group " + std::to_string(gi) + " (" + std::to_string(rows.out.size()) +
                                 " rows, expert " + std::to_string(e) + ")";
        check_rows(y, y_stride, rows.out, rows.x, x.data(), k, sx.factors, ref, what);
        for (const int64_t r : rows.out) {
          for (int64_t c = m; c < y_stride; ++c) {
            uint32_t u;
            std::memcpy(&u, &y[static_cast<size_t>(r * y_stride + c)], 4);
            ASSERT_EQ(u, 0xFFFFFFFFu) << what << ": wrote padding at row " << r << " column " << c;
          }
        }
      }
      ASSERT_NO_FATAL_FAILURE(expect_unwritten(y, y_stride, unwritten));
    }
    if (first.empty()) {
      first = y;
      continue;
    }
    if (tile == GemmTile::kWgmmaNarrow) {
      narrow = y;
      continue;
    }
    if (tile == GemmTile::kWgmma64 && own_wide) {
      wide = y;
      continue;
    }
    // Which tile's bits each output row has: per group, by its size and the row's place in it.
    enum Source { kTall, kWide, kNarrow };
    std::vector<Source> source(static_cast<size_t>(total), kTall);
    const bool pair = tile == GemmTile::kWgmmaNarrowPair || (tile == GemmTile::kAuto && auto_pair);
    const bool tails = tile == GemmTile::kWgmmaTails || (tile == GemmTile::kAuto && !auto_pair);
    for (int gi = 0; gi < g.n_groups; ++gi) {
      const GroupRows rows = group_rows(clamped, x_rows, y_rows, gi);
      const size_t n = rows.out.size(), tail = n % 128;
      for (size_t i = 0; i < n; ++i) {
        Source& s = source[static_cast<size_t>(rows.out[i])];
        if (pair) s = n <= 16 ? kNarrow : kWide;
        if (tile == GemmTile::kWgmma64) s = kWide;
        if (tails && tail > 0 && tail <= 64 && i >= n - tail) s = kWide;
        if (s == kWide && !own_wide) s = kTall;
      }
    }
    for (size_t i = 0; i < y.size(); ++i) {
      const Source s = source[i / static_cast<size_t>(y_stride)];
      const std::vector<float>& expected = s == kNarrow ? narrow : s == kWide ? wide : first;
      ASSERT_TRUE(same_bits(y[i], expected[i]))
          << "differs from " << (s == kNarrow ? "kWgmmaNarrow" : s == kWide ? "kWgmma64" : "kWgmma") << " at " << i;
    }
  }
}

TEST(GemmWgmma, GroupedIQ2_XXSMatchesDoubleReference) { grouped_case(TensorType::IQ2_XXS); }
TEST(GemmWgmma, GroupedQ8_0MatchesDoubleReference) { grouped_case(TensorType::Q8_0); }

TEST(GemmWgmma, RejectsWhatItDoesNotTake) {
  ASSERT_TRUE(prepare_matvec().ok());
  DeviceBuffer dw(4096 * 34), dx(4096 * 2 * 4), dy(1024 * 4), d_off(8);
  ASSERT_TRUE(dw.ok() && dx.ok() && dy.ok() && upload(d_off, std::vector<int32_t>{0, 2}));
  const GemmWeights f16{TensorType::F16, dw.get(), 64, 8, 1};
  const GemmWeights q8{TensorType::Q8_0, dw.get(), 64, 8, 1};
  const GemmWeights iq2{TensorType::IQ2_XXS, dw.get(), 2048, 8, 1};
  // F16 without x_lo, Q8_0 without x_lo (f16 mode), IQ2_XXS in gemm() (dense), the 64-token tile and
  // the tails pair in gemm(), rows that are not a multiple of 16 bytes (TMA: Q8_0 n_in 64 is 68 bytes).
  EXPECT_FALSE(gemm(f16, dx.get<__half>(), 64, nullptr, 2, dy.get<float>(), 8, nullptr, GemmTile::kWgmma).ok());
  EXPECT_FALSE(gemm(q8, dx.get<__half>(), 64, nullptr, 2, dy.get<float>(), 8, nullptr, GemmTile::kWgmma).ok());
  for (const GemmTile grouped_only :
       {GemmTile::kWgmma64, GemmTile::kWgmmaTails, GemmTile::kWgmmaNarrow, GemmTile::kWgmmaNarrowPair}) {
    const GemmWeights f16_256{TensorType::F16, dw.get(), 256, 8, 1};  // a dense call the 128-token tile takes
    EXPECT_TRUE(gemm(f16_256, dx.get<__half>(), 256, nullptr, 2, dy.get<float>(), 8, nullptr, GemmTile::kWgmma,
                     dx.get<__half>() + 1024)
                    .ok());
    EXPECT_FALSE(gemm(f16_256, dx.get<__half>(), 256, nullptr, 2, dy.get<float>(), 8, nullptr, grouped_only,
                      dx.get<__half>() + 1024)
                     .ok());
  }
  EXPECT_FALSE(gemm(iq2, dx.get<__half>(), 2048, nullptr, 2, dy.get<float>(), 8, nullptr, GemmTile::kWgmma,
                    dx.get<__half>() + 4096)
                   .ok());
  EXPECT_FALSE(gemm(q8, dx.get<__half>(), 64, nullptr, 2, dy.get<float>(), 8, nullptr, GemmTile::kWgmma,
                    dx.get<__half>() + 1024)
                   .ok());
  // Grouped: the same IQ2_XXS call is taken in split mode, not in f16 mode, with F16 weights nor with
  // rows of 66 bytes (n_in 256).
  GroupedGemm g;
  g.w = iq2;
  g.n_groups = 1;
  g.offsets = d_off.get<int32_t>();
  g.n_rows = 2;
  g.x = dx.get<__half>();
  g.x_lo = dx.get<__half>() + 4096;
  g.x_stride = 2048;
  g.y = dy.get<float>();
  g.y_stride = 8;
  for (const GemmTile tile :
       {GemmTile::kWgmma, GemmTile::kWgmma64, GemmTile::kWgmmaNarrow, GemmTile::kWgmmaNarrowPair}) {
    g.w = iq2;
    g.x_stride = 2048;
    STATUS_ASSERT(grouped_gemm(g, nullptr, tile));
    CUDA_ASSERT(cudaDeviceSynchronize());
    g.w.n_in = 256;
    g.x_stride = 256;
    EXPECT_FALSE(grouped_gemm(g, nullptr, tile).ok());
    g.w.n_in = 2048;
    g.x_stride = 2048;
    g.x_lo = nullptr;
    EXPECT_FALSE(grouped_gemm(g, nullptr, tile).ok());
    g.x_lo = dx.get<__half>() + 4096;
    g.w = f16;
    g.x_stride = 64;
    EXPECT_FALSE(grouped_gemm(g, nullptr, tile).ok());
  }
}

}  // namespace
}  // namespace dsv4::cuda::testing
