// The double reference of the split-mode GEMM tests (gemm_split_test.cc, gemm_wgmma_test.cc) and
// its bound. Per output, against exact = Σ_k x_k·w_k over the CPU's dequantised weights (double):
//   |y − exact| ≤ (2^-22 + 2^-23 + γ)·S + 2^-25·f·W1,   γ = (k/8 + 16)·2^-23,
// S = Σ_k |x_k|·mag_k (mag = |w|, or |step·q| + |offset| for Q2_K/Q4_K: cuda_test_util.h),
// W1 = Σ_k mag_k, f = the row factor. 2^-22·S: x_hi + x_lo represents x to 2^-22 relative
// (2^-25·f absolute where the low part is below f16's normal range); the codes and their products
// on the tensor cores are exact; 2^-23·S: the CPU rounds w (step·q − offset) in f32 where the GPU
// applies the exact scale, offset and code; γ bounds the f32 accumulation (tensor-core sums
// allowed to truncate, one scale FFMA per 32 columns, the offsets' FFMAs). The f16-product mode
// misses this by ≈ 2^-11·S, a wrong scale, code, group or row by far more.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "cuda/cuda_test_util.h"
#include "cuda/gemm.h"
#include "cuda/split_activations.h"

namespace dsv4::cuda::testing {

// Weights dequantised by the CPU, with their magnitudes.
struct RefWeights {
  int64_t rows = 0, cols = 0;
  std::vector<float> w;
  std::vector<double> mag;
};
inline RefWeights reference_weights(const Format& f, const uint8_t* bytes, int64_t rows, int64_t cols) {
  RefWeights r{rows, cols, std::vector<float>(static_cast<size_t>(rows * cols)), {}};
  for (int64_t i = 0; i < rows; ++i) {
    const uint8_t* row = bytes + i * row_bytes(f, cols);
    quant::dequantize_row(f.type, row, r.w.data() + i * cols, cols);
    const std::vector<double> m = magnitudes(f, row, cols);
    r.mag.insert(r.mag.end(), m.begin(), m.end());
  }
  return r;
}

// Checks y[out_rows[i]·y_stride + f] = x row x_rows[i] times wm, as the header bounds it; factor
// is that row's row factor (for the absolute term). int8: the int8 mode's bound instead
// (2^-22·T + (2^-23 + γ8)·S, T = Σ_k mag_k·M(k), M(k) the largest |x| of k's 256-block:
// gemm_split_test.cc's int8 tests).
inline void check_rows(const std::vector<float>& y, int64_t y_stride, const std::vector<int64_t>& out_rows,
                       const std::vector<int64_t>& x_rows, const float* x, int64_t x_stride,
                       const std::vector<float>& factors, const RefWeights& wm, const std::string& what,
                       bool int8 = false) {
  const int64_t k = wm.cols;
  const double gamma = static_cast<double>(k / 8 + 16) * std::ldexp(1.0, -23);
  const double rel = int8 ? std::ldexp(1.0, -23) + static_cast<double>(k / 256 + 8) * std::ldexp(1.0, -23)
                          : std::ldexp(1.0, -22) + std::ldexp(1.0, -23) + gamma;
  int reported = 0;
  for (size_t i = 0; i < out_rows.size(); ++i) {
    const float* xr = x + x_rows[i] * x_stride;
    const double factor = int8 ? 0.0 : factors[static_cast<size_t>(x_rows[i])];
    std::vector<double> bmax(static_cast<size_t>((k + 255) / 256), 0.0);
    for (int64_t c = 0; c < k; ++c) bmax[static_cast<size_t>(c / 256)] = std::max<double>(bmax[static_cast<size_t>(c / 256)], std::fabs(xr[c]));
    for (int64_t f = 0; f < wm.rows; ++f) {
      double exact = 0, s = 0, w1 = 0, t = 0;
      for (int64_t c = 0; c < k; ++c) {
        const size_t j = static_cast<size_t>(f * k + c);
        exact += static_cast<double>(xr[c]) * wm.w[j];
        s += std::fabs(static_cast<double>(xr[c])) * wm.mag[j];
        w1 += wm.mag[j];
        t += wm.mag[j] * bmax[static_cast<size_t>(c / 256)];
      }
      const float got = y[static_cast<size_t>(out_rows[i] * y_stride + f)];
      const double tol = rel * s + (int8 ? std::ldexp(t, -22) : std::ldexp(factor * w1, -25)) + 1e-37;
      if ((!std::isfinite(got) || std::fabs(got - exact) > tol) && reported++ < 5) {
        ADD_FAILURE() << what << ": row " << out_rows[i] << " feature " << f << ": got " << got << ", exact "
                      << exact << " (tol " << tol << ", " << std::fabs(got - exact) / std::max(s, 1e-300)
                      << " of S)";
      }
    }
  }
  if (reported > 5) ADD_FAILURE() << what << ": " << reported << " outputs out of tolerance";
}

// The output rows (y_rows) and gathered input rows (x_rows) of sorted group gi.
struct GroupRows {
  std::vector<int64_t> out, x;
};
inline GroupRows group_rows(const std::vector<int32_t>& offsets, const std::vector<int32_t>& x_rows,
                            const std::vector<int32_t>& y_rows, int gi) {
  GroupRows g;
  for (int r = offsets[static_cast<size_t>(gi)]; r < offsets[static_cast<size_t>(gi) + 1]; ++r) {
    g.out.push_back(y_rows[static_cast<size_t>(r)]);
    g.x.push_back(x_rows[static_cast<size_t>(r)]);
  }
  return g;
}

// The split-mode launch of the grouped tests: n_groups groups (offsets, group_expert) over the
// matrices of w, n_rows sorted rows; sorted row r reads row x_rows[r] of the x_count rows of sx
// (split_on_device's rows of w.n_in, with their row factors) and writes row y_rows[r] of y (y_count
// rows, y_stride apart).
inline GroupedGemm split_grouped_gemm(const GemmWeights& w, int n_groups, const DeviceBuffer& offsets,
                                      const DeviceBuffer& group_expert, int64_t n_rows, const SplitX& sx,
                                      const DeviceBuffer& x_rows, int64_t x_count, const DeviceBuffer& y,
                                      int64_t y_stride, const DeviceBuffer& y_rows, int64_t y_count) {
  GroupedGemm g;
  g.w = w;
  g.n_groups = n_groups;
  g.offsets = offsets.get<int32_t>();
  g.group_expert = group_expert.get<int32_t>();
  g.n_rows = n_rows;
  g.x = sx.hi.get<__half>();
  g.x_lo = sx.lo.get<__half>();
  g.x_stride = w.n_in;
  g.x_scale = sx.scale.get<float>();
  g.x_rows = x_rows.get<int32_t>();
  g.x_count = x_count;
  g.y = y.get<float>();
  g.y_stride = y_stride;
  g.y_rows = y_rows.get<int32_t>();
  g.y_count = y_count;
  return g;
}

// A group of an invalid expert writes nothing: its rows keep the 0xFF fill.
inline void expect_unwritten(const std::vector<float>& y, int64_t m, const std::vector<int64_t>& rows) {
  for (const int64_t r : rows) {
    for (int64_t c = 0; c < m; ++c) {
      uint32_t u;
      std::memcpy(&u, &y[static_cast<size_t>(r * m + c)], 4);
      ASSERT_EQ(u, 0xFFFFFFFFu) << "invalid expert wrote row " << r;
    }
  }
}

}  // namespace dsv4::cuda::testing
