// MODEL.md §5.
#include "cpu/hc.h"

#include <algorithm>
#include <cmath>

#include "cpu/ops.h"

namespace dsv4::cpu {

float hc_flat_rms_scale(const float* x, int64_t n, float eps) {
  double ss = 0.0;
  for (int64_t i = 0; i < n; ++i) ss += static_cast<double>(x[i]) * static_cast<double>(x[i]);
  return static_cast<float>(1.0 /
                            std::sqrt(ss / static_cast<double>(n) + static_cast<double>(eps)));
}

namespace {

void normalise_rows(float* c, int64_t n, float eps) {
  for (int64_t j = 0; j < n; ++j) {
    float s = 0.0f;
    for (int64_t k = 0; k < n; ++k) s += c[j * n + k];
    const float den = s + eps;
    for (int64_t k = 0; k < n; ++k) c[j * n + k] /= den;
  }
}

void normalise_columns(float* c, int64_t n, float eps) {
  for (int64_t k = 0; k < n; ++k) {
    float s = 0.0f;
    for (int64_t j = 0; j < n; ++j) s += c[j * n + k];
    const float den = s + eps;
    for (int64_t j = 0; j < n; ++j) c[j * n + k] /= den;
  }
}

}  // namespace

void sinkhorn(float* z, int64_t n, float eps, int64_t iters) {
  // Row softmax over the destination index, then +eps on every entry.
  for (int64_t j = 0; j < n; ++j) {
    float* row = z + j * n;
    float m = row[0];
    for (int64_t k = 1; k < n; ++k) m = std::max(m, row[k]);
    float s = 0.0f;
    for (int64_t k = 0; k < n; ++k) {
      row[k] = std::exp(row[k] - m);
      s += row[k];
    }
    for (int64_t k = 0; k < n; ++k) row[k] = row[k] / s + eps;
  }
  // The first of `iters` column normalisations; the last step is always a column one.
  normalise_columns(z, n, eps);
  for (int64_t it = 1; it < iters; ++it) {
    normalise_rows(z, n, eps);
    normalise_columns(z, n, eps);
  }
}

void hc_mix(const float* m, const float* s, const float* b, int64_t n, float hc_eps,
            int64_t sinkhorn_iters, float* mix) {
  float* pre = mix;
  float* post = mix + n;
  float* comb = mix + 2 * n;
  for (int64_t h = 0; h < n; ++h) pre[h] = sigmoid(m[h] * s[0] + b[h]) + hc_eps;
  for (int64_t h = 0; h < n; ++h) post[h] = 2.0f * sigmoid(m[n + h] * s[1] + b[n + h]);
  for (int64_t i = 0; i < n * n; ++i) comb[i] = m[2 * n + i] * s[2] + b[2 * n + i];
  sinkhorn(comb, n, hc_eps, sinkhorn_iters);
}

void hc_weighted_sum(const float* x, const float* w, int64_t n_hc, int64_t d, float* u) {
  for (int64_t i = 0; i < d; ++i) {
    float acc = w[0] * x[i];
    for (int64_t h = 1; h < n_hc; ++h) acc += w[h] * x[h * d + i];
    u[i] = acc;
  }
}

void hc_post(const float* x, const float* f, const float* mix, int64_t n, int64_t d, float* out) {
  const float* post = mix + n;
  const float* comb = mix + 2 * n;
  for (int64_t k = 0; k < n; ++k) {
    float* o = out + k * d;
    for (int64_t i = 0; i < d; ++i) {
      float acc = post[k] * f[i];
      for (int64_t j = 0; j < n; ++j) acc += comb[j * n + k] * x[j * d + i];
      o[i] = acc;
    }
  }
}

void hc_head_gates(const float* m, float scale, const float* b, int64_t n, float hc_eps, float* w) {
  for (int64_t h = 0; h < n; ++h) w[h] = sigmoid(m[h] * scale + b[h]) + hc_eps;
}

}  // namespace dsv4::cpu
