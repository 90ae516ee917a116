// The fast matvec kernel's own per-lane code (cuda/matvec_fast.cuh, cuda/quant_decode.cuh) run on
// the CPU: every block, warp and lane of a launch in turn, cp.async replaced by memcpy into a
// buffer full of random garbage, the shuffle butterfly by the same additions over an array. It
// checks the index math, the lane-to-element maps, the staging offsets and the bit tricks of every
// format against quant::dot_row without a GPU (the GPU suite, tests/cuda/*_test.cc, checks the same
// against the real kernel). Also: the reference kernel's element decoders equal
// quant::dequantize_row bit for bit.
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
#include "cuda/matvec_fast.cuh"
#include "cuda/matvec_launch.h"
#include "quant/iq2_xxs_tables.h"

namespace dsv4::cuda::testing {
namespace {

using detail::FastParams;
using detail::FastWarp;
using detail::Geometry;
using detail::kFastWarps;

const detail::Iq2Tables& host_iq2_tables() {
  static const detail::Iq2Tables t = [] {
    detail::Iq2Tables v;
    for (int i = 0; i < 256; ++i) v.grid[i] = quant::iq2xxs_grid[i];
    for (int i = 0; i < 128; ++i) v.signs[i] = quant::ksigns_iq2xs[i];
    return v;
  }();
  return t;
}

// The shared-memory tables as FmtIQ2_XXS::load_tables lays them out.
std::vector<uint8_t> smem_tables(int bytes) {
  std::vector<uint8_t> t(static_cast<size_t>(bytes) + 16, 0);
  if (bytes == 0) return t;
  const detail::Iq2Tables& src = host_iq2_tables();
  for (int i = 0; i < 256; ++i) {
    const uint32_t lo = static_cast<uint32_t>(src.grid[i]), hi = static_cast<uint32_t>(src.grid[i] >> 32);
    std::memcpy(t.data() + 8 * i, &lo, 4);
    std::memcpy(t.data() + 8 * i + 4, &hi, 4);
  }
  for (int i = 0; i < 128; ++i) t[static_cast<size_t>(2048 + i)] = src.signs[i];
  return t;
}

// One launch of matvec_fast_kernel<F, R, kSum>, emulated. Returns y (NaN where nothing was
// written); fails the test on a read outside the tensor, a write outside y or a double write.
template <class F, int R, bool kSum>
std::vector<float> emulate(const FastParams& p, size_t y_size, std::mt19937_64& rng) {
  std::vector<float> y(y_size, std::numeric_limits<float>::quiet_NaN());
  std::vector<char> written(y_size, 0);
  const std::vector<uint8_t> tables = smem_tables(F::kTableBytes);
  constexpr int kStride = Geometry<F>::kRowStride;
  std::vector<uint4> storage((R * kStride + 15) / 16);
  uint8_t* buf = reinterpret_cast<uint8_t*>(storage.data());
  const int groups_per_block = kFastWarps / p.wpr;
  const int grid_x = p.n_groups / groups_per_block;
  bool bad_read = false;
  auto copy = [&](uint8_t* dst, const uint8_t* src, int bytes) {
    if (src < p.w || src + bytes > p.w_end || bytes < 1 || bytes > 16 || dst < buf ||
        dst + 16 > buf + R * kStride || (reinterpret_cast<uintptr_t>(dst) & 15) ||
        (reinterpret_cast<uintptr_t>(src) & 15)) {
      bad_read = true;
      return;
    }
    std::memcpy(dst, src, static_cast<size_t>(bytes));
    std::memset(dst + bytes, 0, static_cast<size_t>(16 - bytes));
  };
  for (int bx = 0; bx < grid_x; ++bx) {
    // red[warp][k][r]: warp's lane-summed value of row r of its k-th unit.
    std::vector<std::vector<std::vector<float>>> red(kFastWarps);
    for (int warp = 0; warp < kFastWarps; ++warp) {
      const FastWarp<F, R, kSum> wk(p, bx, warp);
      for (int k = 0; k < wk.my_units; ++k) {
        const detail::FastUnit un = wk.unit(k);
        float acc[32][R] = {}, part[32][R] = {};
        for (int i = 0; i < wk.per_unit; ++i) {
          for (int b = 0; b < R * kStride; ++b) buf[b] = static_cast<uint8_t>(rng());  // stale data
          for (int lane = 0; lane < 32; ++lane) wk.issue(un, i, lane, buf, copy);
          for (int lane = 0; lane < 32; ++lane) {
            float xv[F::kStageSteps][F::kXPerLane], xsum[F::kStageSteps];
            wk.load_x(un, i, lane, xv, xsum);
            wk.decode(un, i, lane, buf, xv, xsum, tables.data(), part[lane]);
            wk.end_item(un, i, acc[lane], part[lane]);
          }
        }
        std::vector<float> sums(R);
        for (int r = 0; r < R; ++r) {
          float v[32];
          for (int lane = 0; lane < 32; ++lane) v[lane] = acc[lane][r];
          for (int o = 16; o > 0; o >>= 1) {
            float nv[32];
            for (int lane = 0; lane < 32; ++lane) nv[lane] = v[lane] + v[lane ^ o];
            std::memcpy(v, nv, sizeof v);
          }
          sums[static_cast<size_t>(r)] = v[0];
        }
        red[static_cast<size_t>(warp)].push_back(sums);
      }
    }
    // Each group's first warp adds the group's warps in order.
    for (int g = 0; g < groups_per_block; ++g) {
      const int first = g * p.wpr;
      const FastWarp<F, R, kSum> wk(p, bx, first);
      for (int k = 0; k < wk.my_units; ++k) {
        const detail::FastUnit un = wk.unit(k);
        std::vector<float> rb(static_cast<size_t>(p.wpr * R));
        for (int j = 0; j < p.wpr; ++j) {
          const auto& warp_units = red[static_cast<size_t>(first + j)];
          if (warp_units.size() != static_cast<size_t>(wk.my_units)) {
            ADD_FAILURE() << "warps of one group disagree on their units";
            return y;
          }
          for (int r = 0; r < R; ++r) rb[static_cast<size_t>(j * R + r)] = warp_units[static_cast<size_t>(k)][static_cast<size_t>(r)];
        }
        for (int r = 0; r < un.rows; ++r) {
          const int64_t index = wk.output_index(un, r);
          if (index < 0 || static_cast<size_t>(index) >= y_size || written[static_cast<size_t>(index)]) {
            ADD_FAILURE() << "write outside y or twice: " << index;
            return y;
          }
          written[static_cast<size_t>(index)] = 1;
          y[static_cast<size_t>(index)] = detail::fast_group_sum<R>(rb.data(), p.wpr, r);
        }
      }
    }
  }
  EXPECT_FALSE(bad_read) << "a chunk copy outside the tensor, unaligned or outside the buffer";
  return y;
}

template <class F>
std::vector<float> emulate_rows(const FastParams& p, int rows, bool sum, size_t y_size, std::mt19937_64& rng) {
  switch (rows * 2 + (sum ? 1 : 0)) {
    case 2: return emulate<F, 1, false>(p, y_size, rng);
    case 3: return emulate<F, 1, true>(p, y_size, rng);
    case 4: return emulate<F, 2, false>(p, y_size, rng);
    case 5: return emulate<F, 2, true>(p, y_size, rng);
    case 8: return emulate<F, 4, false>(p, y_size, rng);
    default: return emulate<F, 4, true>(p, y_size, rng);
  }
}

std::vector<float> emulate_launch(TensorType t, const FastParams& p, int rows, bool sum, size_t y_size,
                                  std::mt19937_64& rng) {
  switch (t) {
    case TensorType::F32: return emulate_rows<detail::FmtF32>(p, rows, sum, y_size, rng);
    case TensorType::F16: return emulate_rows<detail::FmtF16>(p, rows, sum, y_size, rng);
    case TensorType::BF16: return emulate_rows<detail::FmtBF16>(p, rows, sum, y_size, rng);
    case TensorType::Q8_0: return emulate_rows<detail::FmtQ8_0>(p, rows, sum, y_size, rng);
    case TensorType::Q2_K: return emulate_rows<detail::FmtQ2_K>(p, rows, sum, y_size, rng);
    case TensorType::Q4_K: return emulate_rows<detail::FmtQ4_K>(p, rows, sum, y_size, rng);
    default: return emulate_rows<detail::FmtIQ2_XXS>(p, rows, sum, y_size, rng);
  }
}

int64_t stage_elems(TensorType t) {
  switch (t) {
    case TensorType::F32: return Geometry<detail::FmtF32>::kStageElems;
    case TensorType::F16: return Geometry<detail::FmtF16>::kStageElems;
    case TensorType::BF16: return Geometry<detail::FmtBF16>::kStageElems;
    case TensorType::Q8_0: return Geometry<detail::FmtQ8_0>::kStageElems;
    case TensorType::Q2_K: return Geometry<detail::FmtQ2_K>::kStageElems;
    case TensorType::Q4_K: return Geometry<detail::FmtQ4_K>::kStageElems;
    default: return Geometry<detail::FmtIQ2_XXS>::kStageElems;
  }
}

struct Case {
  TensorType type;
  int64_t n_in, n_out, n_expert = 1;
  std::vector<int32_t> experts = {};  // empty: dense
  bool x_per_slot = false, scaled = false, sum = false;
  int rows = 4, warps = 8;
  int blocks = 0;  // 0: one unit per group; else this many blocks, each group walking its units
};

void run(const Case& c) {
  const Format& f = format_of(c.type);
  const uint64_t seed = fresh_seed();
  std::ostringstream what;
  what << f.name << " " << c.n_in << " -> " << c.n_out << " x" << c.n_expert << ", "
       << (c.experts.empty() ? std::string("dense") : std::to_string(c.experts.size()) + " slots")
       << (c.sum ? " summed" : "") << (c.x_per_slot ? ", x per slot" : "") << ", R " << c.rows << ", W "
       << c.warps << ", blocks " << c.blocks << ", seed " << seed;
  SCOPED_TRACE(what.str());
  std::mt19937_64 rng(seed);
  const bool dense = c.experts.empty();
  const int k = dense ? 1 : static_cast<int>(c.experts.size());
  const std::vector<uint8_t> w_host = random_rows(f, c.n_in, c.n_out * c.n_expert, rng);
  // 16-aligned copy of the weights, as in device memory.
  std::vector<uint4> w_storage((w_host.size() + 15) / 16 + 1);
  uint8_t* w = reinterpret_cast<uint8_t*>(w_storage.data());
  std::memcpy(w, w_host.data(), w_host.size());
  std::vector<uint4> x_storage(static_cast<size_t>((c.x_per_slot ? k : 1) * c.n_in + 3) / 4 + 1);
  float* x = reinterpret_cast<float*>(x_storage.data());
  const std::vector<float> xg = gaussian((c.x_per_slot ? k : 1) * c.n_in, rng);
  std::memcpy(x, xg.data(), xg.size() * 4);
  std::vector<float> scale = gaussian(k, rng);
  if (!c.scaled) scale.assign(static_cast<size_t>(k), 1.0f);

  FastParams p{};
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
  p.wpr = c.warps;
  p.n_row_groups = static_cast<int>((c.n_out + c.rows - 1) / c.rows);
  p.n_units = c.sum ? p.n_row_groups : k * p.n_row_groups;
  const int groups_per_block = kFastWarps / c.warps;
  const int blocks = c.blocks ? c.blocks : (p.n_units + groups_per_block - 1) / groups_per_block;
  p.n_groups = blocks * groups_per_block;
  const size_t y_size = static_cast<size_t>(c.sum ? c.n_out : k * c.n_out);
  const std::vector<float> y = emulate_launch(c.type, p, c.rows, c.sum, y_size, rng);

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

std::vector<int64_t> row_lengths(const Format& f) {
  switch (f.block_elems) {
    case 32: return {32, 96, 416, 1056};
    case 256: return {256, 768, 3328};
    default: return f.type == TensorType::F32 ? std::vector<int64_t>{4, 132, 1000} : std::vector<int64_t>{8, 136, 1000};
  }
}

TEST(CudaFastEmulation, EveryFormatAndShape) {
  for (const Format& f : all_formats()) {
    for (int64_t n_in : row_lengths(f)) {
      for (int64_t n_out : {1, 9, 37}) {
        run({f.type, n_in, n_out});
        if (HasFailure()) return;
      }
    }
  }
}

TEST(CudaFastEmulation, EveryLaunchShape) {
  for (const Format& f : all_formats()) {
    const int64_t short_by = f.block_elems > 1 ? f.block_elems : (f.type == TensorType::F32 ? 4 : 8);
    const int64_t n_in = 5 * stage_elems(f.type) - short_by;
    for (int rows : {1, 2, 4}) {
      for (int warps : {1, 2, 4, 8}) {
        Case c{f.type, n_in, 21};
        c.rows = rows;
        c.warps = warps;
        run(c);
        c.blocks = 1;  // a persistent grid: each group walks several units
        run(c);
        if (HasFailure()) return;
      }
    }
  }
}

TEST(CudaFastEmulation, Experts) {
  for (const Format& f : all_formats()) {
    const int64_t n_in = 2 * stage_elems(f.type) + (f.block_elems > 1 ? f.block_elems : 8);
    for (bool sum : {false, true}) {
      for (int rows : {1, 4}) {
        Case c{f.type, n_in, 19, 5, {4, 0, 2, 4}, sum, sum, sum, rows, 2};
        run(c);
        c.x_per_slot = !sum;  // and the other combinations
        c.scaled = !sum;
        run(c);
        c.blocks = 3;  // units of different slots on one group
        run(c);
        if (HasFailure()) return;
      }
    }
  }
}

// Fmt::elem (the reference kernel's decoder) is the CPU dequantiser, bit for bit.
TEST(CudaFastEmulation, ElementDecodersMatchDequantize) {
  std::mt19937_64 rng(std::random_device{}());
  const detail::Iq2Tables& tables = host_iq2_tables();
  for (const Format& f : all_formats()) {
    const int64_t n = f.block_elems == 1 ? 64 : 4 * f.block_elems;
    const std::vector<uint8_t> row = random_rows(f, n, 1, rng);
    std::vector<float> want(static_cast<size_t>(n));
    quant::dequantize_row(f.type, row.data(), want.data(), n);
    for (int64_t i = 0; i < n; ++i) {
      const uint8_t* b = row.data() + (i / f.block_elems) * f.block_bytes;
      const int e = static_cast<int>(i % f.block_elems);
      float got = 0;
      switch (f.type) {
        case TensorType::F32: got = detail::FmtF32::elem(b, e, &tables); break;
        case TensorType::F16: got = detail::FmtF16::elem(b, e, &tables); break;
        case TensorType::BF16: got = detail::FmtBF16::elem(b, e, &tables); break;
        case TensorType::Q8_0: got = detail::FmtQ8_0::elem(b, e, &tables); break;
        case TensorType::Q2_K: got = detail::FmtQ2_K::elem(b, e, &tables); break;
        case TensorType::Q4_K: got = detail::FmtQ4_K::elem(b, e, &tables); break;
        default: got = detail::FmtIQ2_XXS::elem(b, e, &tables); break;
      }
      ASSERT_TRUE(same_bits(got, want[static_cast<size_t>(i)]))
          << f.name << " element " << i << ": " << got << " vs " << want[static_cast<size_t>(i)];
    }
  }
}

// The sign folding of IQ2_XXS and the sign-replicating PRMT emulation, exhaustively.
TEST(CudaFastEmulation, Iq2SignFolding) {
  for (uint32_t n = 0; n < 16; ++n) {
    const uint32_t m = detail::FmtIQ2_XXS::sign_mask4(n);
    for (int b = 0; b < 4; ++b) EXPECT_EQ((m >> (8 * b)) & 0xFF, ((n >> b) & 1) ? 0xFFu : 0u) << n;
  }
  const uint32_t mags[3] = {8, 25, 43};
  for (int a = 0; a < 81; ++a) {
    uint32_t word = 0;
    for (int b = 0, v = a; b < 4; ++b, v /= 3) word |= mags[v % 3] << (8 * b);
    for (uint32_t n = 0; n < 16; ++n) {
      const uint32_t v = detail::FmtIQ2_XXS::fold_signs(word, detail::FmtIQ2_XXS::sign_mask4(n));
      for (int b = 0; b < 4; ++b) {
        const int mag = static_cast<int>((word >> (8 * b)) & 0xFF);
        const int want = ((n >> b) & 1) ? -mag : mag;
        EXPECT_EQ(static_cast<int>((v >> (8 * b)) & 0xFF) - 64, want);
      }
    }
  }
}

}  // namespace
}  // namespace dsv4::cuda::testing
