// cuda/gemm.h against a CPU reference (quant::dequantize_row, double accumulation) on fresh random
// inputs: every weight format, both tiles, odd sizes (n = 1, 7, 129; n_out not a multiple of any
// tile), strides, the grouped expert form with the device counting sort (gathered X rows with row
// factors, outputs scattered back to pair order), the scaled f32 → f16 conversion, and bad
// arguments.
//
// Tolerances. The kernel multiplies f16(x)·f16(w) exactly and sums in f32 on the tensor cores.
// X is given in f16, so the reference uses the same x values (times the row factor, a power of two,
// where one is given). Two bounds per output, with S = Σ_k |x_k|·mag_k (mag_k = |w_k|, or
// |step·q| + |offset| for Q2_K/Q4_K, whose decoder uses one FMA where the CPU rounds twice;
// cuda_test_util.h's magnitudes()) and X1 = Σ_k |x_k|:
//  (1) the header's contract, against the exact Σ x·w:
//      |y − exact| ≤ (u_w + 2^-22 + γ)·S + 2^-25·X1,
//      u_w = 2^-11 (f16 rounding of w; 0 for F16 weights and BF16 ones, whose 8-bit significands
//      f16 holds exactly), 2^-25·X1 for weights below f16's normal range (absolute spacing 2^-24);
//  (2) the sharp one, against Σ x·f16(w) over the CPU's weights:  |y − ref_f16| ≤ γ·S + A, where
//      A = Σ_k |x_k|·(the gap between the two f16 roundings of w_k ± 2^-22·mag_k) is non-zero only
//      for Q2_K/Q4_K elements whose f32 value lies that close to an f16 rounding midpoint.
// γ = (k/16 + 16)·2^-23 bounds the f32 accumulation: k/16 accumulating MMA steps plus the
// in-instruction sums, each off by at most one f32 ulp (2^-23, allowing truncation).
// Bound (2) leaves no room for a wrong element, scale or row: any of those costs ≈ 2^-11·S or more.
#include "cuda/gemm.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <sstream>
#include <string>
#include <tuple>
#include <vector>

#include "cuda/cuda_test_util.h"
#include "cuda/device_util.h"
#include "cuda/matvec.h"

namespace dsv4::cuda::testing {
namespace {

const char* tile_name(GemmTile t) {
  switch (t) {
    case GemmTile::kAuto: return "auto";
    case GemmTile::kLarge: return "large";
    case GemmTile::kSmall: return "small";
    case GemmTile::kWgmma: return "wgmma";
    case GemmTile::kWgmma64: return "wgmma64";
    case GemmTile::kWgmmaTails: return "wgmma+64";
    case GemmTile::kWgmmaNarrow: return "wgmma16";
    case GemmTile::kWgmmaNarrowPair: return "wgmma16+64";
  }
  return "?";
}

std::vector<GemmTile> tiles_for(TensorType t) {
  if (t == TensorType::F32) return {GemmTile::kSmall, GemmTile::kAuto};
  return {GemmTile::kLarge, GemmTile::kSmall, GemmTile::kAuto};
}

// Random activations as f16 bits, and the same values as floats.
struct Activations {
  std::vector<uint16_t> bits;
  std::vector<float> values;
};
Activations random_x(int64_t rows, int64_t stride, int64_t cols, std::mt19937_64& rng) {
  Activations a;
  a.bits.assign(static_cast<size_t>(rows * stride), 0x7E00);  // NaN in the gaps between rows
  a.values.assign(static_cast<size_t>(rows * stride), std::nanf(""));
  const std::vector<float> g = gaussian(rows * cols, rng);
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < cols; ++c) {
      const uint16_t b = f32_to_f16(g[static_cast<size_t>(r * cols + c)]);
      a.bits[static_cast<size_t>(r * stride + c)] = b;
      a.values[static_cast<size_t>(r * stride + c)] = f16_to_f32(b);
    }
  }
  return a;
}

// A weight matrix dequantised for the references: w, f16 roundings at w ± δ, and mag.
struct RefWeights {
  int64_t rows = 0, cols = 0;
  std::vector<float> w, w_lo, w_hi;  // exact f32; f16(w − δ), f16(w + δ) as floats
  std::vector<double> mag;
};
RefWeights reference_weights(const Format& f, const std::vector<uint8_t>& bytes, int64_t rows, int64_t cols) {
  RefWeights r;
  r.rows = rows;
  r.cols = cols;
  const size_t n = static_cast<size_t>(rows * cols);
  r.w.resize(n);
  r.w_lo.resize(n);
  r.w_hi.resize(n);
  r.mag.resize(n);
  const bool fused = f.type == TensorType::Q2_K || f.type == TensorType::Q4_K;
  for (int64_t i = 0; i < rows; ++i) {
    const uint8_t* row = bytes.data() + i * row_bytes(f, cols);
    quant::dequantize_row(f.type, row, r.w.data() + i * cols, cols);
    const std::vector<double> m = magnitudes(f, row, cols);
    for (int64_t k = 0; k < cols; ++k) {
      const size_t j = static_cast<size_t>(i * cols + k);
      r.mag[j] = m[static_cast<size_t>(k)];
      const double delta = fused ? std::ldexp(m[static_cast<size_t>(k)], -22) : 0.0;
      r.w_lo[j] = f16_to_f32(f32_to_f16(static_cast<float>(r.w[j] - delta)));
      r.w_hi[j] = f16_to_f32(f32_to_f16(static_cast<float>(r.w[j] + delta)));
    }
  }
  return r;
}

// Checks out[r·y_stride + f] for the listed rows: x row src(r) (times x_scale[src(r)] when given)
// times weight matrix `wm`.
void check_rows(const std::vector<float>& y, int64_t y_stride, const std::vector<int64_t>& out_rows,
                const std::vector<int64_t>& x_rows, const Activations& x, int64_t x_stride,
                const RefWeights& wm, TensorType type, const std::string& what,
                const std::vector<float>* x_scale = nullptr) {
  const int64_t k = wm.cols;
  const double u_w = type == TensorType::BF16 || type == TensorType::F16 ? 0.0 : std::ldexp(1.0, -11);
  const double gamma = static_cast<double>(k / 16 + 16) * std::ldexp(1.0, -23);
  int reported = 0;
  for (size_t i = 0; i < out_rows.size(); ++i) {
    const float* xr = x.values.data() + x_rows[i] * x_stride;
    const double factor = x_scale ? (*x_scale)[static_cast<size_t>(x_rows[i])] : 1.0;
    for (int64_t f = 0; f < wm.rows; ++f) {
      double exact = 0, rounded = 0, s = 0, ambiguity = 0, x1 = 0;
      for (int64_t c = 0; c < k; ++c) {
        const size_t j = static_cast<size_t>(f * k + c);
        const double xv = xr[c] * factor;
        exact += xv * wm.w[j];
        rounded += xv * 0.5 * (static_cast<double>(wm.w_lo[j]) + wm.w_hi[j]);
        ambiguity += std::fabs(xv) * 0.5 * std::fabs(static_cast<double>(wm.w_hi[j]) - wm.w_lo[j]);
        s += std::fabs(xv) * wm.mag[j];
        x1 += std::fabs(xv);
      }
      const float got = y[static_cast<size_t>(out_rows[i] * y_stride + f)];
      const double tol1 = (u_w + std::ldexp(1.0, -22) + gamma) * s + std::ldexp(x1, -25) + 1e-30;
      const double tol2 = gamma * s + ambiguity + 1e-30;
      const bool ok = std::isfinite(got) && std::fabs(got - exact) <= tol1 && std::fabs(got - rounded) <= tol2;
      if (!ok && reported++ < 5) {
        ADD_FAILURE() << what << ": row " << out_rows[i] << " feature " << f << ": got " << got
                      << ", exact " << exact << " (tol " << tol1 << "), f16-rounded " << rounded
                      << " (tol " << tol2 << ")";
      }
    }
  }
  if (reported > 5) ADD_FAILURE() << what << ": " << reported << " outputs out of tolerance";
}

// Host vectors to and from device buffers.
template <class T>
size_t bytes_of(const std::vector<T>& v) {
  return v.size() * sizeof(T);
}

bool poisoned(float v) {
  uint32_t u;
  std::memcpy(&u, &v, 4);
  return u == 0xFFFFFFFFu;
}

class GemmFormatTest : public ::testing::TestWithParam<TensorType> {};

TEST_P(GemmFormatTest, MatchesCpuReference) {
  const Format& f = format_of(GetParam());
  ASSERT_TRUE(prepare_matvec().ok());
  const uint64_t seed = fresh_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937_64 rng(seed);
  struct Shape {
    int64_t m, k;
  };
  for (const Shape shape : {Shape{77, 256}, Shape{300, 768}}) {
    const std::vector<uint8_t> wbytes = random_rows(f, shape.k, shape.m, rng);
    const RefWeights ref = reference_weights(f, wbytes, shape.m, shape.k);
    DeviceBuffer dw(bytes_of(wbytes));
    ASSERT_TRUE(upload(dw, wbytes));
    ASSERT_TRUE(dw.ok());
    for (const int64_t n : {int64_t{1}, int64_t{7}, int64_t{129}}) {
      // The larger shape also uses padded X rows and an odd Y stride (scalar stores).
      const bool strided = shape.m == 300;
      const int64_t xs = strided ? shape.k + 24 : shape.k, ys = strided ? shape.m + 3 : shape.m;
      const Activations x = random_x(n, xs, shape.k, rng);
      DeviceBuffer dx(bytes_of(x.bits));
      ASSERT_TRUE(upload(dx, x.bits));
      ASSERT_TRUE(dx.ok());
      std::vector<int64_t> rows(static_cast<size_t>(n));
      for (int64_t r = 0; r < n; ++r) rows[static_cast<size_t>(r)] = r;
      std::vector<float> first;
      for (const GemmTile tile : tiles_for(f.type)) {
        DeviceBuffer dy(static_cast<size_t>(n * ys) * 4);  // poisoned: 0xFF bytes
        ASSERT_TRUE(dy.ok());
        const GemmWeights w{f.type, dw.get(), shape.k, shape.m, 1};
        STATUS_ASSERT(gemm(w, dx.get<__half>(), xs, nullptr, n, dy.get<float>(), ys, nullptr, tile));
        CUDA_ASSERT(cudaDeviceSynchronize());
        const std::vector<float> y = download<float>(dy, static_cast<size_t>(n * ys));
        std::ostringstream what;
        what << f.name << " m=" << shape.m << " k=" << shape.k << " n=" << n << " tile " << tile_name(tile);
        check_rows(y, ys, rows, rows, x, xs, ref, f.type, what.str());
        for (int64_t r = 0; r < n; ++r) {  // the padding of each Y row is never written
          for (int64_t c = shape.m; c < ys; ++c) {
            ASSERT_TRUE(poisoned(y[static_cast<size_t>(r * ys + c)])) << what.str() << " wrote padding";
          }
        }
        // Every tile computes each output with the same sequence of operations.
        if (first.empty()) {
          first = y;
        } else {
          for (size_t i = 0; i < y.size(); ++i) {
            ASSERT_TRUE(same_bits(y[i], first[i])) << what.str() << ": differs from the first tile at " << i;
          }
        }
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(AllFormats, GemmFormatTest,
                         ::testing::Values(TensorType::F32, TensorType::F16, TensorType::BF16,
                                           TensorType::Q8_0, TensorType::Q2_K, TensorType::Q4_K,
                                           TensorType::IQ2_XXS),
                         [](const ::testing::TestParamInfo<TensorType>& i) {
                           return std::string(format_of(i.param).name);
                         });

TEST(Gemm, RowsDoNotDependOnTheBatch) {
  ASSERT_TRUE(prepare_matvec().ok());
  std::mt19937_64 rng(fresh_seed());
  const Format& f = format_of(TensorType::Q4_K);
  const int64_t m = 160, k = 512, n = 129;
  const std::vector<uint8_t> wbytes = random_rows(f, k, m, rng);
  DeviceBuffer dw(bytes_of(wbytes));
  ASSERT_TRUE(upload(dw, wbytes));
  const Activations x = random_x(n, k, k, rng);
  DeviceBuffer dx(bytes_of(x.bits));
  ASSERT_TRUE(upload(dx, x.bits));
  DeviceBuffer all(static_cast<size_t>(n * m) * 4), few(static_cast<size_t>(7 * m) * 4);
  ASSERT_TRUE(dw.ok() && dx.ok() && all.ok() && few.ok());
  const GemmWeights w{f.type, dw.get(), k, m, 1};
  STATUS_ASSERT(gemm(w, dx.get<__half>(), k, nullptr, n, all.get<float>(), m, nullptr));
  STATUS_ASSERT(gemm(w, dx.get<__half>(), k, nullptr, 7, few.get<float>(), m, nullptr));
  CUDA_ASSERT(cudaDeviceSynchronize());
  const std::vector<float> a = download<float>(all, static_cast<size_t>(n * m));
  const std::vector<float> b = download<float>(few, static_cast<size_t>(7 * m));
  for (size_t i = 0; i < b.size(); ++i) ASSERT_TRUE(same_bits(a[i], b[i])) << "element " << i;
}

TEST(Gemm, RejectsBadArguments) {
  DeviceBuffer w(1 << 16), x(1 << 16), y(1 << 16);
  ASSERT_TRUE(w.ok() && x.ok() && y.ok());
  const auto* xp = x.get<__half>();
  float* yp = y.get<float>();
  EXPECT_FALSE(gemm({TensorType::Q4_K, w.get(), 128, 4, 1}, xp, 128, nullptr, 1, yp, 4, nullptr).ok());  // k % 256
  EXPECT_FALSE(gemm({TensorType::Q8_0, w.get(), 96, 4, 1}, xp, 96, nullptr, 1, yp, 4, nullptr).ok());    // k % 64
  EXPECT_FALSE(gemm({TensorType::I32, w.get(), 64, 4, 1}, xp, 64, nullptr, 1, yp, 4, nullptr).ok());     // type
  EXPECT_FALSE(gemm({TensorType::F16, w.bytes() + 2, 64, 4, 1}, xp, 64, nullptr, 1, yp, 4, nullptr).ok());
  EXPECT_FALSE(gemm({TensorType::F16, w.get(), 64, 4, 1}, xp + 1, 64, nullptr, 1, yp, 4, nullptr).ok());
  EXPECT_FALSE(gemm({TensorType::F16, w.get(), 64, 4, 1}, xp, 60, nullptr, 1, yp, 4, nullptr).ok());  // stride
  EXPECT_FALSE(gemm({TensorType::F16, w.get(), 64, 4, 1}, xp, 64, nullptr, 1, yp, 3, nullptr).ok());
  EXPECT_FALSE(gemm({TensorType::F16, w.get(), 64, 4, 1}, xp, 64, nullptr, 0, yp, 4, nullptr).ok());
  EXPECT_FALSE(gemm({TensorType::F16, w.get(), 64, 4, 2}, xp, 64, nullptr, 1, yp, 4, nullptr).ok());  // experts
  EXPECT_FALSE(gemm({TensorType::F32, w.get(), 64, 4, 1}, xp, 64, nullptr, 1, yp, 4, nullptr, GemmTile::kLarge).ok());
  GroupedGemm g;
  g.w = {TensorType::F16, w.get(), 64, 4, 2};
  g.n_groups = 2;
  g.n_rows = 4;
  g.x = xp;
  g.x_stride = 64;
  g.y = yp;
  g.y_stride = 4;
  EXPECT_FALSE(grouped_gemm(g, nullptr).ok());  // null offsets
  DeviceBuffer offsets(64);
  ASSERT_TRUE(offsets.ok());
  g.offsets = offsets.get<int32_t>();
  g.y_rows = offsets.get<int32_t>();
  EXPECT_FALSE(grouped_gemm(g, nullptr).ok());  // y_rows without y_count
  ExpertSort s;
  EXPECT_FALSE(sort_by_expert(s, nullptr).ok());
}

// CPU version of sort_by_expert: stable by pair index.
struct HostSort {
  std::vector<int32_t> offsets, row_pair, row_token, pair_row;
};
HostSort host_sort(const std::vector<int32_t>& topk, int top_k, int n_expert) {
  HostSort h;
  const int pairs = static_cast<int>(topk.size());
  h.offsets.assign(static_cast<size_t>(n_expert + 1), 0);
  h.pair_row.assign(static_cast<size_t>(pairs), -1);
  for (int e = 0; e < n_expert; ++e) {
    h.offsets[static_cast<size_t>(e)] = static_cast<int32_t>(h.row_pair.size());
    for (int p = 0; p < pairs; ++p) {
      if (topk[static_cast<size_t>(p)] != e) continue;
      h.pair_row[static_cast<size_t>(p)] = static_cast<int32_t>(h.row_pair.size());
      h.row_pair.push_back(p);
      h.row_token.push_back(p / top_k);
    }
  }
  h.offsets[static_cast<size_t>(n_expert)] = static_cast<int32_t>(h.row_pair.size());
  return h;
}

// sort_by_expert of topk on the device, its outputs left in the buffers for the caller, checked
// against the stable host sort: offsets, each pair's row, the sorted rows' pairs and tokens, and
// (pair_weight given) the sorted route weights.
struct DeviceSort {
  DeviceBuffer topk, offsets, row_pair, row_token, pair_row, pair_weight, row_weight, workspace;
};
void sort_and_check(const std::vector<int32_t>& topk, int n_tokens, int top_k, int n_expert,
                    const std::vector<float>& pair_weight, DeviceSort& d) {
  const int pairs = n_tokens * top_k;
  const HostSort want = host_sort(topk, top_k, n_expert);
  d.topk = upload(topk);
  d.offsets = DeviceBuffer((n_expert + 1) * 4);
  d.row_pair = DeviceBuffer(pairs * 4);
  d.row_token = DeviceBuffer(pairs * 4);
  d.pair_row = DeviceBuffer(pairs * 4);
  d.workspace = DeviceBuffer(sort_by_expert_workspace_bytes(n_tokens, top_k, n_expert));
  ASSERT_TRUE(d.topk.ok() && d.offsets.ok() && d.row_pair.ok() && d.row_token.ok() && d.pair_row.ok() &&
              d.workspace.ok());
  ExpertSort s;
  s.topk = d.topk.get<int32_t>();
  s.n_tokens = n_tokens;
  s.top_k = top_k;
  s.n_expert = n_expert;
  s.offsets = d.offsets.get<int32_t>();
  s.row_pair = d.row_pair.get<int32_t>();
  s.row_token = d.row_token.get<int32_t>();
  s.pair_row = d.pair_row.get<int32_t>();
  s.workspace = d.workspace.get();
  if (!pair_weight.empty()) {
    d.pair_weight = upload(pair_weight);
    d.row_weight = DeviceBuffer(pairs * 4);
    ASSERT_TRUE(d.pair_weight.ok() && d.row_weight.ok());
    s.pair_weight = d.pair_weight.get<float>();
    s.row_weight = d.row_weight.get<float>();
  }
  STATUS_ASSERT(sort_by_expert(s, nullptr));
  CUDA_ASSERT(cudaDeviceSynchronize());
  const size_t valid = static_cast<size_t>(want.offsets.back());
  EXPECT_EQ(download<int32_t>(d.offsets, n_expert + 1), want.offsets);
  EXPECT_EQ(download<int32_t>(d.pair_row, pairs), want.pair_row);
  std::vector<int32_t> rp = download<int32_t>(d.row_pair, pairs), rt = download<int32_t>(d.row_token, pairs);
  rp.resize(valid);
  rt.resize(valid);
  EXPECT_EQ(rp, want.row_pair);
  EXPECT_EQ(rt, want.row_token);
  if (!pair_weight.empty()) {
    const std::vector<float> rw = download<float>(d.row_weight, pairs);
    for (size_t r = 0; r < valid; ++r) {
      ASSERT_EQ(rw[r], pair_weight[static_cast<size_t>(want.row_pair[r])]) << "sorted route weight of row " << r;
    }
  }
}

class GroupedGemmTest : public ::testing::TestWithParam<TensorType> {};

// sort_by_expert alone at the forward pass's shapes and beyond, against the stable host sort:
// many chunks (8192 tokens × 6 = 192 chunks of kSortChunk pairs), chunk and expert counts that are
// not multiples of 32, more experts than the scan's threads, routing skewed onto a few experts,
// and invalid ids.
TEST(Gemm, SortByExpertMatchesStableHostSort) {
  const uint64_t seed = fresh_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937_64 rng(seed);
  struct Shape {
    int n_tokens, top_k, n_expert;
    bool skewed;
  };
  for (const Shape& sh : {Shape{8192, 6, 256, false}, Shape{5000, 6, 300, true}, Shape{300, 8, 2000, false},
                          Shape{33, 2, 7, true}}) {
    SCOPED_TRACE(::testing::Message() << sh.n_tokens << " tokens, top " << sh.top_k << " of " << sh.n_expert);
    const int pairs = sh.n_tokens * sh.top_k;
    std::vector<int32_t> topk(static_cast<size_t>(pairs));
    for (int32_t& e : topk) {
      const int r = static_cast<int>(rng() % 1000);
      e = r == 0 ? -1 : r == 1 ? sh.n_expert : sh.skewed && r < 600 ? r % 3 : static_cast<int32_t>(rng() % sh.n_expert);
    }
    DeviceSort d;
    ASSERT_NO_FATAL_FAILURE(sort_and_check(topk, sh.n_tokens, sh.top_k, sh.n_expert, {}, d));
  }
}

TEST_P(GroupedGemmTest, SortedExpertsMatchCpu) {
  const Format& f = format_of(GetParam());
  ASSERT_TRUE(prepare_matvec().ok());
  const uint64_t seed = fresh_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937_64 rng(seed);
  // 150 tokens, top 3 of 6 experts: every token picks expert 1 (150 rows: two tiles of either
  // shape), nobody picks expert 5 (an empty group), and a few pairs carry invalid ids.
  const int n_tokens = 150, top_k = 3, n_expert = 6;
  const int64_t m = 200, k = 512;
  std::vector<int32_t> topk(static_cast<size_t>(n_tokens * top_k));
  for (int t = 0; t < n_tokens; ++t) {
    topk[static_cast<size_t>(t * top_k)] = 1;
    for (int j = 1; j < top_k; ++j) {
      const int r = static_cast<int>(rng() % 64);
      topk[static_cast<size_t>(t * top_k + j)] = r == 0 ? -1 : r == 1 ? n_expert : static_cast<int32_t>(r % 5);
    }
  }
  const HostSort want = host_sort(topk, top_k, n_expert);
  const int pairs = n_tokens * top_k;

  std::vector<float> pair_weight(static_cast<size_t>(pairs));
  for (float& w : pair_weight) w = static_cast<float>(rng() % 1000) / 7.0f;
  DeviceSort d;
  ASSERT_NO_FATAL_FAILURE(sort_and_check(topk, n_tokens, top_k, n_expert, pair_weight, d));

  const std::vector<uint8_t> wbytes = random_rows(f, k, m * n_expert, rng);
  DeviceBuffer dw(bytes_of(wbytes));
  ASSERT_TRUE(upload(dw, wbytes));
  std::vector<RefWeights> refs;
  for (int e = 0; e < n_expert; ++e) {
    const size_t slab = static_cast<size_t>(row_bytes(f, k) * m);
    const std::vector<uint8_t> part(wbytes.begin() + static_cast<std::ptrdiff_t>(e * slab),
                                    wbytes.begin() + static_cast<std::ptrdiff_t>((e + 1) * slab));
    refs.push_back(reference_weights(f, part, m, k));
  }
  const Activations x = random_x(n_tokens, k, k, rng);
  // Row factors as convert_f32_to_f16 makes them: powers of two.
  std::vector<float> x_scale(static_cast<size_t>(n_tokens));
  for (float& v : x_scale) v = std::ldexp(1.0f, static_cast<int>(rng() % 41) - 20);
  DeviceBuffer dx(bytes_of(x.bits)), dxs(bytes_of(x_scale));
  ASSERT_TRUE(upload(dx, x.bits) && upload(dxs, x_scale));
  ASSERT_TRUE(dw.ok() && dx.ok());
  for (const GemmTile tile : tiles_for(f.type)) {
    DeviceBuffer dy(static_cast<size_t>(pairs * m) * 4);
    ASSERT_TRUE(dy.ok());
    GroupedGemm g;
    g.w = {f.type, dw.get(), k, m, n_expert};
    g.n_groups = n_expert;
    g.offsets = d.offsets.get<int32_t>();
    g.n_rows = pairs;  // an upper bound: the invalid pairs have no row
    g.x = dx.get<__half>();
    g.x_stride = k;
    g.x_scale = dxs.get<float>();
    g.x_rows = d.row_token.get<int32_t>();
    g.x_count = n_tokens;
    g.y = dy.get<float>();
    g.y_stride = m;
    g.y_rows = d.row_pair.get<int32_t>();  // back to pair order, as the forward pass combines them
    g.y_count = pairs;
    STATUS_ASSERT(grouped_gemm(g, nullptr, tile));
    CUDA_ASSERT(cudaDeviceSynchronize());
    const std::vector<float> y = download<float>(dy, static_cast<size_t>(pairs * m));
    for (int e = 0; e < n_expert; ++e) {
      std::vector<int64_t> out_rows, x_rows;
      for (int r = want.offsets[static_cast<size_t>(e)]; r < want.offsets[static_cast<size_t>(e) + 1]; ++r) {
        out_rows.push_back(want.row_pair[static_cast<size_t>(r)]);
        x_rows.push_back(want.row_token[static_cast<size_t>(r)]);
      }
      std::ostringstream what;
      what << f.name << " grouped, expert " << e << ", tile " << tile_name(tile);
      check_rows(y, m, out_rows, x_rows, x, k, refs[static_cast<size_t>(e)], f.type, what.str(), &x_scale);
    }
    for (int p = 0; p < pairs; ++p) {  // the pairs without a valid expert have no row
      if (want.pair_row[static_cast<size_t>(p)] >= 0) continue;
      for (int64_t c = 0; c < m; ++c) {
        ASSERT_TRUE(poisoned(y[static_cast<size_t>(p * m + c)])) << "invalid pair " << p << " written";
      }
    }
  }

  // Explicit groups: expert 4 for rows 0..9, an empty group, then an invalid expert for rows
  // 10..29 (left unwritten); X rows not gathered.
  const std::vector<int32_t> offsets = {0, 10, 10, 30}, experts = {4, 0, 9};
  DeviceBuffer d_o2(bytes_of(offsets)), d_e2(bytes_of(experts)), dy2(30 * m * 4);
  ASSERT_TRUE(upload(d_o2, offsets) && upload(d_e2, experts) && dy2.ok());
  GroupedGemm g;
  g.w = {f.type, dw.get(), k, m, n_expert};
  g.n_groups = 3;
  g.offsets = d_o2.get<int32_t>();
  g.group_expert = d_e2.get<int32_t>();
  g.n_rows = 30;
  g.x = dx.get<__half>();
  g.x_stride = k;
  g.y = dy2.get<float>();
  g.y_stride = m;
  STATUS_ASSERT(grouped_gemm(g, nullptr));
  CUDA_ASSERT(cudaDeviceSynchronize());
  const std::vector<float> y2 = download<float>(dy2, static_cast<size_t>(30 * m));
  std::vector<int64_t> ten(10);
  for (int i = 0; i < 10; ++i) ten[static_cast<size_t>(i)] = i;
  check_rows(y2, m, ten, ten, x, k, refs[4], f.type, std::string(f.name) + " explicit groups");
  for (size_t i = 10 * m; i < y2.size(); ++i) ASSERT_TRUE(poisoned(y2[i])) << "invalid expert wrote " << i;
}

INSTANTIATE_TEST_SUITE_P(AllFormats, GroupedGemmTest,
                         ::testing::Values(TensorType::F32, TensorType::F16, TensorType::BF16,
                                           TensorType::Q8_0, TensorType::Q2_K, TensorType::Q4_K,
                                           TensorType::IQ2_XXS),
                         [](const ::testing::TestParamInfo<TensorType>& i) {
                           return std::string(format_of(i.param).name);
                         });

// convert_f32_to_f16: exact f16 of x·2^s per row, s as gemm.h states it, and the padding untouched;
// odd strides (the any-shape kernel) and multiples of 4 (rows held in registers).
TEST(Gemm, ConvertsF32ToF16) {
  std::mt19937_64 rng(fresh_seed());
  for (const auto& [cols, xs, os] : {std::tuple<int64_t, int64_t, int64_t>{300, 301, 304}, {1024, 1028, 1032}}) {
    SCOPED_TRACE(std::to_string(cols) + " columns, strides " + std::to_string(xs) + " / " + std::to_string(os));
    const int64_t rows = 7;
    std::vector<float> x = gaussian(rows * xs, rng);
    // Row 1 large (1e6: beyond f16), row 2 tiny (1e-9: below f16's normal range), row 3 zeros, row 4
    // holds an infinity, row 5 magnitudes 2^14 exactly at the target (s = 0).
    for (int64_t c = 0; c < cols; ++c) {
      x[static_cast<size_t>(1 * xs + c)] *= 1e6f;
      x[static_cast<size_t>(2 * xs + c)] *= 1e-9f;
      x[static_cast<size_t>(3 * xs + c)] = 0.0f;
      x[static_cast<size_t>(5 * xs + c)] = c % 2 ? 16384.0f : -1.0f;
    }
    x[static_cast<size_t>(4 * xs + 17)] = INFINITY;
    DeviceBuffer dx(bytes_of(x)), dout(static_cast<size_t>(rows * os) * 2), dscale(rows * 4);
    ASSERT_TRUE(upload(dx, x) && dout.ok() && dscale.ok());
    for (const bool scaled : {false, true}) {
      SCOPED_TRACE(scaled ? "scaled" : "unscaled");
      CUDA_ASSERT(cudaMemset(dout.get(), 0xFF, dout.size()));
      STATUS_ASSERT(convert_f32_to_f16(dx.get<float>(), xs, rows, cols, dout.get<__half>(), os,
                                       scaled ? dscale.get<float>() : nullptr, nullptr));
      CUDA_ASSERT(cudaDeviceSynchronize());
      const std::vector<uint16_t> out = download<uint16_t>(dout, static_cast<size_t>(rows * os));
      const std::vector<float> scale = download<float>(dscale, static_cast<size_t>(rows));
      for (int64_t r = 0; r < rows; ++r) {
        int s = 0;
        if (scaled) {
          float m = 0.0f;
          for (int64_t c = 0; c < cols; ++c) m = std::max(m, std::fabs(x[static_cast<size_t>(r * xs + c)]));
          if (m > 0.0f && std::isfinite(m)) s = std::clamp(14 - std::ilogb(m), -126, 126);
          ASSERT_EQ(scale[static_cast<size_t>(r)], std::ldexp(1.0f, -s)) << "row factor of row " << r;
          if (r == 5) {
            EXPECT_EQ(s, 0);
          }
        }
        for (int64_t c = 0; c < os; ++c) {
          const uint16_t got = out[static_cast<size_t>(r * os + c)];
          if (c >= cols) {
            ASSERT_EQ(got, 0xFFFF) << "padding written at " << r << "," << c;
            continue;
          }
          const float v = std::ldexp(x[static_cast<size_t>(r * xs + c)], s);
          uint16_t want = f32_to_f16(v);
          if ((want & 0x7FFFu) == 0x7C00u && std::isfinite(v)) want = static_cast<uint16_t>((want & 0x8000u) | 0x7BFFu);
          ASSERT_EQ(got, want) << r << "," << c << " value " << x[static_cast<size_t>(r * xs + c)];
          if (scaled && r != 4) {
            ASSERT_LT(std::fabs(f16_to_f32(got)), 32768.0f);  // never saturated
          }
        }
      }
    }
  }
}

}  // namespace
}  // namespace dsv4::cuda::testing
