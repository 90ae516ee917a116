// Rotary position embedding, MODEL.md §7.4: interleaved pairs (x[2j], x[2j+1]) on the LAST n_rot
// dims of a head, two regimes (ratio-0 layers: base rope_theta; compressed layers:
// compress_rope_theta with the YaRN frequency blend, no magnitude scaling).
#pragma once

#include <cstdint>
#include <vector>

#include "model/config.h"

namespace dsv4::cpu {

struct YarnParams {
  float factor = 1;      // s
  int64_t orig_ctx = 0;  // L_orig
  float beta_fast = 32;
  float beta_slow = 1;
};

// ω_j for j < n_rot/2, in f32 the way the official code forms them: ω_j = 1 /
// base^(fl32(2j)/n_rot), then (yarn only) ramp_j = clamp((j - lo)/(hi - lo), 0, 1), smooth = 1 -
// ramp and ω'_j = (ω_j / s)·(1 - smooth) + ω_j·smooth, with lo/hi from the correction dims
// (double).
std::vector<float> rope_frequencies(int64_t n_rot, float base, const YarnParams* yarn);

// The regime of a layer: ratio 0 -> rope_theta without YaRN; any other ratio -> compress_rope_theta
// with YaRN (every RoPE use in a compressed layer shares it).
std::vector<float> layer_rope_frequencies(const model::Config& config, int64_t layer);

// The YaRN ramp of §7.4 (exposed for tests): ramp_j for j < n_rot/2.
std::vector<float> yarn_ramp(int64_t n_rot, float base, const YarnParams& yarn);

// cos/sin of φ_j = fl32(fl32(p)·ω_j) for every pair. The angle is formed in f32 (as the reference
// does) and evaluated accurately (double sin/cos of that f32 angle, rounded once), never with a
// fast approximation: the j = 0 angle is p radians.
struct RopeAngles {
  std::vector<float> cos, sin;
};
RopeAngles rope_angles(const std::vector<float>& omega, int64_t pos);

// Rotates the last 2·n_pairs values of a head of width `width` by +φ (forward) or -φ (inverse, the
// complex conjugate): x0' = x0·c ∓ x1·s, x1' = ±x0·s + x1·c.
void rope_rotate(float* head, int64_t width, const RopeAngles& a);
void rope_rotate_inverse(float* head, int64_t width, const RopeAngles& a);

}  // namespace dsv4::cpu
