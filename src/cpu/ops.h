// Small f32 building blocks of the CPU reference (MODEL.md §0.3 notation, §6 norms, §8.2
// softplus). Every reduction has a fixed order that does not depend on batching or threading,
// so a token evaluated inside a chunk gets the same bits as the same token decoded alone.
#pragma once

#include <cmath>
#include <cstdint>
#include <span>
#include <vector>

namespace dsv4::cpu {

// Σ a[i]·b[i] in f32 with 8 interleaved partial sums (lane i mod 8) folded pairwise at the end:
// a fixed order, identical with and without AVX2 (multiply then add, never fused).
float dot(const float* a, const float* b, int64_t n);

// y[i] += a·x[i] (multiply then add, elementwise: the same bits with or without AVX2).
void axpy(float a, const float* x, float* y, int64_t n);

// y = x · (1/sqrt(mean(x²) + eps)) · w (w may be null: the unweighted norm). Σx² is accumulated
// in double; the scale is rounded to f32 once and applied as (x·r)·w. y may alias x.
void rms_norm(const float* x, const float* w, int64_t n, float eps, float* y);

inline float sigmoid(float z) { return 1.0f / (1.0f + std::exp(-z)); }
inline float silu(float z) { return z * sigmoid(z); }

// Overflow-safe softplus (§8.2): x for x > 20, exp(x) for x < -20, log1p(exp(x)) otherwise.
inline float softplus(float x) {
  if (x > 20.0f) return x;
  if (x < -20.0f) return std::exp(x);
  return std::log1p(std::exp(x));
}

// Indices of the k largest scores, ordered by descending score with ties to the lower index
// (the dsv4 rule for both the router and the indexer, MODEL.md §7.7 / §8.3). k >= n returns all
// indices in that order.
std::vector<int32_t> top_k_desc(std::span<const float> score, int64_t k);

}  // namespace dsv4::cpu
