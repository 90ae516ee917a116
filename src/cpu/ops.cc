#include "cpu/ops.h"

#include <algorithm>
#include <numeric>

#if defined(__AVX2__)
#include <immintrin.h>
#endif

namespace dsv4::cpu {

float dot(const float* a, const float* b, int64_t n) {
  const int64_t n8 = n & ~int64_t{7};
  float lane[8];
#if defined(__AVX2__)
  __m256 acc = _mm256_setzero_ps();
  for (int64_t i = 0; i < n8; i += 8) {
    acc = _mm256_add_ps(acc, _mm256_mul_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i)));
  }
  _mm256_storeu_ps(lane, acc);
#else
  for (int l = 0; l < 8; ++l) lane[l] = 0.0f;
  for (int64_t i = 0; i < n8; i += 8) {
    for (int l = 0; l < 8; ++l) lane[l] += a[i + l] * b[i + l];
  }
#endif
  // The tail joins lanes 0.. in order, then a fixed pairwise fold.
  for (int64_t i = n8; i < n; ++i) lane[i - n8] += a[i] * b[i];
  const float s0 = lane[0] + lane[4], s1 = lane[1] + lane[5];
  const float s2 = lane[2] + lane[6], s3 = lane[3] + lane[7];
  return (s0 + s2) + (s1 + s3);
}

void axpy(float a, const float* x, float* y, int64_t n) {
  int64_t i = 0;
#if defined(__AVX2__)
  const __m256 va = _mm256_set1_ps(a);
  for (; i + 8 <= n; i += 8) {
    _mm256_storeu_ps(
        y + i, _mm256_add_ps(_mm256_loadu_ps(y + i), _mm256_mul_ps(va, _mm256_loadu_ps(x + i))));
  }
#endif
  for (; i < n; ++i) y[i] += a * x[i];
}

void rms_norm(const float* x, const float* w, int64_t n, float eps, float* y) {
  double ss = 0.0;
  for (int64_t i = 0; i < n; ++i) ss += static_cast<double>(x[i]) * static_cast<double>(x[i]);
  const double mean = ss / static_cast<double>(n);
  const float r = static_cast<float>(1.0 / std::sqrt(mean + static_cast<double>(eps)));
  if (w) {
    for (int64_t i = 0; i < n; ++i) y[i] = (x[i] * r) * w[i];
  } else {
    for (int64_t i = 0; i < n; ++i) y[i] = x[i] * r;
  }
}

std::vector<int32_t> top_k_desc(std::span<const float> score, int64_t k) {
  const int64_t n = static_cast<int64_t>(score.size());
  k = std::clamp<int64_t>(k, 0, n);
  std::vector<int32_t> idx(static_cast<size_t>(n));
  std::iota(idx.begin(), idx.end(), 0);
  // A strict weak order with no equal elements (the index breaks ties), so the result is unique.
  // NaN ranks below everything so that a broken score cannot break the ordering itself.
  auto key = [&](int32_t i) {
    const float s = score[static_cast<size_t>(i)];
    return std::isnan(s) ? -INFINITY : s;
  };
  auto before = [&](int32_t a, int32_t b) {
    const float sa = key(a), sb = key(b);
    if (sa != sb) return sa > sb;
    return a < b;
  };
  if (k < n) {
    std::nth_element(idx.begin(), idx.begin() + k, idx.end(), before);
    idx.resize(static_cast<size_t>(k));
  }
  std::sort(idx.begin(), idx.end(), before);
  return idx;
}

}  // namespace dsv4::cpu
