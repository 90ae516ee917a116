// MODEL.md §7.4.
#include "cpu/rope.h"

#include <algorithm>
#include <cmath>
#include <numbers>

namespace dsv4::cpu {

namespace {

// corr(β) = n_rot · ln(L_orig / (2π·β)) / (2 · ln θ), in double like the official helper.
double correction_dim(double beta, int64_t n_rot, double base, double orig_ctx) {
  return static_cast<double>(n_rot) * std::log(orig_ctx / (beta * 2.0 * std::numbers::pi)) /
         (2.0 * std::log(base));
}

}  // namespace

std::vector<float> yarn_ramp(int64_t n_rot, float base, const YarnParams& yarn) {
  const int64_t n_pairs = n_rot / 2;
  const double orig = static_cast<double>(yarn.orig_ctx);
  double lo = std::floor(correction_dim(yarn.beta_fast, n_rot, base, orig));
  double hi = std::ceil(correction_dim(yarn.beta_slow, n_rot, base, orig));
  lo = std::max(lo, 0.0);
  hi = std::min(hi, static_cast<double>(n_rot - 1));
  if (lo == hi) hi += 0.001;
  // (j - lo) and the division happen on f32 tensors in the reference.
  const float flo = static_cast<float>(lo);
  const float span = static_cast<float>(hi - lo);
  std::vector<float> ramp(static_cast<size_t>(n_pairs));
  for (int64_t j = 0; j < n_pairs; ++j) {
    ramp[static_cast<size_t>(j)] = std::clamp((static_cast<float>(j) - flo) / span, 0.0f, 1.0f);
  }
  return ramp;
}

std::vector<float> rope_frequencies(int64_t n_rot, float base, const YarnParams* yarn) {
  const int64_t n_pairs = n_rot / 2;
  std::vector<float> omega(static_cast<size_t>(n_pairs));
  for (int64_t j = 0; j < n_pairs; ++j) {
    const float e = static_cast<float>(2 * j) / static_cast<float>(n_rot);
    omega[static_cast<size_t>(j)] = 1.0f / std::pow(base, e);
  }
  if (yarn && yarn->factor > 0.0f && yarn->orig_ctx > 0) {
    const std::vector<float> ramp = yarn_ramp(n_rot, base, *yarn);
    for (size_t j = 0; j < omega.size(); ++j) {
      // Same expression order as the reference's precompute (smooth = 1 - ramp).
      const float smooth = 1.0f - ramp[j];
      omega[j] = (omega[j] / yarn->factor) * (1.0f - smooth) + omega[j] * smooth;
    }
  }
  return omega;
}

std::vector<float> layer_rope_frequencies(const model::Config& c, int64_t layer) {
  if (c.ratio(layer) == 0) return rope_frequencies(c.n_rot, c.rope_theta, nullptr);
  const YarnParams yarn{c.rope_scaling_factor, c.rope_orig_ctx, c.yarn_beta_fast, c.yarn_beta_slow};
  return rope_frequencies(c.n_rot, c.compress_rope_theta, &yarn);
}

RopeAngles rope_angles(const std::vector<float>& omega, int64_t pos) {
  RopeAngles a;
  a.cos.resize(omega.size());
  a.sin.resize(omega.size());
  const float p = static_cast<float>(pos);
  for (size_t j = 0; j < omega.size(); ++j) {
    const float phi = p * omega[j];
    a.cos[j] = static_cast<float>(std::cos(static_cast<double>(phi)));
    a.sin[j] = static_cast<float>(std::sin(static_cast<double>(phi)));
  }
  return a;
}

void rope_rotate(float* head, int64_t width, const RopeAngles& a) {
  const int64_t n_pairs = static_cast<int64_t>(a.cos.size());
  float* x = head + width - 2 * n_pairs;
  for (int64_t j = 0; j < n_pairs; ++j) {
    const float c = a.cos[static_cast<size_t>(j)], s = a.sin[static_cast<size_t>(j)];
    const float x0 = x[2 * j], x1 = x[2 * j + 1];
    x[2 * j] = x0 * c - x1 * s;
    x[2 * j + 1] = x0 * s + x1 * c;
  }
}

void rope_rotate_inverse(float* head, int64_t width, const RopeAngles& a) {
  const int64_t n_pairs = static_cast<int64_t>(a.cos.size());
  float* x = head + width - 2 * n_pairs;
  for (int64_t j = 0; j < n_pairs; ++j) {
    const float c = a.cos[static_cast<size_t>(j)], s = a.sin[static_cast<size_t>(j)];
    const float x0 = x[2 * j], x1 = x[2 * j + 1];
    x[2 * j] = x0 * c + x1 * s;
    x[2 * j + 1] = x1 * c - x0 * s;
  }
}

}  // namespace dsv4::cpu
