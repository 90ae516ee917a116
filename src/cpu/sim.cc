// MODEL.md §11: the FP8 / Hadamard / FP4 activation round trips.
#include "cpu/sim.h"

#include <algorithm>
#include <cmath>

#include "util/half.h"

namespace dsv4::cpu {

float pow2_ceil(float f) {
  const uint32_t bits = f32_bits(f) & 0x7fffffffu;
  const uint32_t exp = bits >> 23;
  const uint32_t mant = bits & 0x7fffffu;
  if (exp == 0xffu) return f;  // inf / NaN: nothing sensible to do, pass through
  if (exp == 0) {
    // Subnormal: f = mant * 2^-149; the next power of two of mant, as a bit pattern, is the
    // answer (1 << 23 lands exactly on 2^-126, the smallest normal).
    uint32_t p = 1;
    while (p < mant) p <<= 1;
    return f32_from_bits(mant == 0 ? 0u : p);
  }
  // The exponent/mantissa rule of §11.2 (exact, no log2f): a non-zero mantissa rounds up.
  return f32_from_bits((exp + (mant != 0 ? 1u : 0u)) << 23);
}

float e4m3_round(float x) {
  const float a = std::fabs(x);
  if (!(a > 0.0f)) return x;  // ±0 (and NaN) unchanged
  // Spacing of e4m3 values around a: 2^(E-3) for normals (E = unbiased exponent of a, a >= 2^-6),
  // and the fixed subnormal step 2^-9 below the smallest normal 2^-6.
  float quantum;
  if (a < 0x1p-6f) {
    quantum = 0x1p-9f;
  } else {
    const int e = static_cast<int>((f32_bits(a) >> 23) & 0xffu) - 127;
    quantum = std::ldexp(1.0f, e - 3);
  }
  // a/quantum is exact (power-of-two scaling); nearbyint rounds half to even in the default
  // rounding mode, and an even integer here is an even mantissa code (normals span 8..16,
  // subnormals 0..8). Rounding up to 16*quantum is the next binade's code 0: still exact.
  const float r = std::nearbyint(a / quantum) * quantum;
  return std::copysign(r, x);
}

float e2m1_round(float x) {
  const float a = std::fabs(x);
  // Midpoints between neighbouring magnitudes; at a tie the even code wins:
  // codes 0..7 = 0, .5, 1, 1.5, 2, 3, 4, 6 -> ties go to 0 (0.25), 1 (0.75, 1.25), 2 (1.75, 2.5),
  // 4 (3.5, 5).
  float r;
  if (a <= 0.25f)
    r = 0.0f;
  else if (a < 0.75f)
    r = 0.5f;
  else if (a <= 1.25f)
    r = 1.0f;
  else if (a < 1.75f)
    r = 1.5f;
  else if (a <= 2.5f)
    r = 2.0f;
  else if (a < 3.5f)
    r = 3.0f;
  else if (a <= 5.0f)
    r = 4.0f;
  else
    r = 6.0f;
  return std::copysign(r, x);
}

namespace {

// One block of the generic power-of-two-scaled round trip: scale = POW2CEIL(amax * fl32(1/qmax))
// formed as the f32 product (not the quotient), then round(clamp(v/scale)) * scale.
template <class Round>
void sim_block(float* v, int64_t n, float amax_floor, float inv_qmax, float qmax, Round round) {
  float amax = 0.0f;
  for (int64_t i = 0; i < n; ++i) amax = std::max(amax, std::fabs(v[i]));
  amax = std::max(amax, amax_floor);
  const float scale = pow2_ceil(amax * inv_qmax);
  // Exact reciprocal of a power of two: v*inv equals v/scale bit for bit.
  const float inv = 1.0f / scale;
  for (int64_t i = 0; i < n; ++i) {
    const float t = std::clamp(v[i] * inv, -qmax, qmax);
    v[i] = round(t) * scale;
  }
}

}  // namespace

void fp8_sim(float* v, int64_t n, int64_t block) {
  for (int64_t b = 0; b < n; b += block) {
    sim_block(v + b, std::min(block, n - b), 1e-4f, 1.0f / 448.0f, 448.0f, e4m3_round);
  }
}

void fp4_sim(float* v, int64_t n, int64_t block) {
  for (int64_t b = 0; b < n; b += block) {
    sim_block(v + b, std::min(block, n - b), 6.0f * 0x1p-126f, 1.0f / 6.0f, 6.0f, e2m1_round);
  }
}

void hadamard(float* v, int64_t n) {
  for (int64_t h = 1; h < n; h <<= 1) {
    for (int64_t i = 0; i < n; i += 2 * h) {
      for (int64_t j = i; j < i + h; ++j) {
        const float a = v[j];
        const float b = v[j + h];
        v[j] = a + b;
        v[j + h] = a - b;
      }
    }
  }
  const float scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(n)));
  for (int64_t i = 0; i < n; ++i) v[i] *= scale;
}

}  // namespace dsv4::cpu
