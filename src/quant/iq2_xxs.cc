// IQ2_XXS (FORMATS.md §4.6): 256-element blocks of 8 sub-blocks × 32, each sub-block four
// groups of 8 taking one of 256 grid points (magnitudes 8/25/43) with an even number of
// negative signs, and a 4-bit scale: w = d·(0.5 + ls)·0.25 · grid · sign.
#include <algorithm>
#include <bit>
#include <cmath>
#include <limits>

#include "quant/formats.h"
#include "quant/iq2_xxs_tables.h"
#include "quant/simd.h"

namespace dsv4::quant {

namespace {

// The byte tables widened once: 8 floats per grid point and 8 sign-bit masks per sign index,
// so the dot is a load, an xor and an FMA per 8 elements.
struct WideTables {
  alignas(32) float grid[256][8];
  alignas(32) uint32_t sign[128][8];  // 0x80000000 where the element is negated
  float grid_sq[256];                 // Σ grid², for the quantiser's error expansion
};

const WideTables& wide_tables() {
  static const WideTables t = [] {
    WideTables w{};
    for (int k = 0; k < 256; ++k) {
      w.grid_sq[k] = 0.0f;
      for (int i = 0; i < 8; ++i) {
        w.grid[k][i] = static_cast<float>((iq2xxs_grid[k] >> (8 * i)) & 0xFF);
        w.grid_sq[k] += w.grid[k][i] * w.grid[k][i];
      }
    }
    for (int s = 0; s < 128; ++s) {
      for (int i = 0; i < 8; ++i) w.sign[s][i] = (ksigns_iq2xs[s] & kmask_iq2xs[i]) ? 0x80000000u : 0u;
    }
    return w;
  }();
  return t;
}

inline float sub_scale(float d, uint32_t a1) {
  return d * (0.5f + static_cast<float>(a1 >> 28)) * 0.25f;
}

}  // namespace

void dequantize_iq2_xxs(const void* src, float* dst, int64_t n) {
  const uint8_t* b = static_cast<const uint8_t*>(src);
  for (int64_t i = 0; i < n; i += kQK_K, b += kIQ2_XXSBytes, dst += kQK_K) {
    const float d = load_f16(b);
    for (int sb = 0; sb < 8; ++sb) {
      const uint32_t a0 = load_u32(b + 2 + 8 * sb), a1 = load_u32(b + 2 + 8 * sb + 4);
      const float db = sub_scale(d, a1);
      for (int g = 0; g < 4; ++g) {
        const uint64_t grid = iq2xxs_grid[(a0 >> (8 * g)) & 0xFF];
        const uint8_t signs = ksigns_iq2xs[(a1 >> (7 * g)) & 127];
        for (int t = 0; t < 8; ++t) {
          const float mag = static_cast<float>((grid >> (8 * t)) & 0xFF);
          dst[32 * sb + 8 * g + t] = db * mag * ((signs & kmask_iq2xs[t]) ? -1.0f : 1.0f);
        }
      }
    }
  }
}

// db is factored out of each sub-block: Σ db·(±grid)·x = db·Σ (±grid)·x.
float dot_iq2_xxs_scalar(const void* row, const float* x, int64_t n) {
  const uint8_t* b = static_cast<const uint8_t*>(row);
  float acc = 0.0f;
  for (int64_t i = 0; i < n; i += kQK_K, b += kIQ2_XXSBytes, x += kQK_K) {
    const float d = load_f16(b);
    for (int sb = 0; sb < 8; ++sb) {
      const uint32_t a0 = load_u32(b + 2 + 8 * sb), a1 = load_u32(b + 2 + 8 * sb + 4);
      float s = 0.0f;
      for (int g = 0; g < 4; ++g) {
        const uint64_t grid = iq2xxs_grid[(a0 >> (8 * g)) & 0xFF];
        const uint8_t signs = ksigns_iq2xs[(a1 >> (7 * g)) & 127];
        for (int t = 0; t < 8; ++t) {
          const float mag = static_cast<float>((grid >> (8 * t)) & 0xFF);
          s += ((signs & kmask_iq2xs[t]) ? -mag : mag) * x[32 * sb + 8 * g + t];
        }
      }
      acc += sub_scale(d, a1) * s;
    }
  }
  return acc;
}

float dot_iq2_xxs(const void* row, const float* x, int64_t n) {
#ifdef DSV4_QUANT_AVX2
  const WideTables& w = wide_tables();
  const uint8_t* b = static_cast<const uint8_t*>(row);
  auto signed_grid = [&](uint32_t a0, uint32_t a1, int g) {
    const __m256 mag = _mm256_load_ps(w.grid[(a0 >> (8 * g)) & 0xFF]);
    const __m256i sg = _mm256_load_si256(reinterpret_cast<const __m256i*>(w.sign[(a1 >> (7 * g)) & 127]));
    return _mm256_xor_ps(mag, _mm256_castsi256_ps(sg));
  };
  __m256 acc = _mm256_setzero_ps();
  for (int64_t i = 0; i < n; i += kQK_K, b += kIQ2_XXSBytes, x += kQK_K) {
    const float d = load_f16(b);
    for (int sb = 0; sb < 8; ++sb) {
      const uint32_t a0 = load_u32(b + 2 + 8 * sb), a1 = load_u32(b + 2 + 8 * sb + 4);
      const float* xs = x + 32 * sb;
      __m256 s = _mm256_mul_ps(signed_grid(a0, a1, 0), _mm256_loadu_ps(xs));
      __m256 t = _mm256_mul_ps(signed_grid(a0, a1, 1), _mm256_loadu_ps(xs + 8));
      s = _mm256_fmadd_ps(signed_grid(a0, a1, 2), _mm256_loadu_ps(xs + 16), s);
      t = _mm256_fmadd_ps(signed_grid(a0, a1, 3), _mm256_loadu_ps(xs + 24), t);
      acc = _mm256_fmadd_ps(_mm256_set1_ps(sub_scale(d, a1)), _mm256_add_ps(s, t), acc);
    }
  }
  return hsum(acc);
#else
  return dot_iq2_xxs_scalar(row, x, n);
#endif
}

// ---- quantiser ----

namespace {

struct GroupCode {
  uint8_t grid = 0;
  uint8_t signs = 0;  // full sign byte, even popcount
  float err = 0.0f;
};

// Best grid point and sign byte for 8 values at scale s ≥ 0. With magnitudes fixed, the best
// signs are the signs of x, except that an odd count of negatives must flip the one element
// where it costs least (4·s·|x|·grid). So the error of grid point k is
//   Σ|x|² − 2s·Σ|x|·g + s²·Σg² + [odd]·4s·min(|x|·g),
// a brute-force pass over the 256 points.
GroupCode best_group(const float* x, float s, const WideTables& w) {
  float ax[8], xx = 0.0f;
  unsigned neg = 0;
  for (int t = 0; t < 8; ++t) {
    ax[t] = std::fabs(x[t]);
    xx += ax[t] * ax[t];
    if (x[t] < 0.0f) neg |= 1u << t;
  }
  const bool odd = std::popcount(neg) & 1;
  float best = std::numeric_limits<float>::infinity();
  int best_k = 0;
  for (int k = 0; k < 256; ++k) {
    float dot = 0.0f, mn = std::numeric_limits<float>::infinity();
    for (int t = 0; t < 8; ++t) {
      const float p = ax[t] * w.grid[k][t];
      dot += p;
      mn = std::min(mn, p);
    }
    float e = s * s * w.grid_sq[k] - 2.0f * s * dot;
    if (odd) e += 4.0f * s * mn;
    if (e < best) {
      best = e;
      best_k = k;
    }
  }
  if (odd) {
    int flip = 0;
    for (int t = 1; t < 8; ++t) {
      if (ax[t] * w.grid[best_k][t] < ax[flip] * w.grid[best_k][flip]) flip = t;
    }
    neg ^= 1u << flip;
  }
  return {static_cast<uint8_t>(best_k), static_cast<uint8_t>(neg), std::max(0.0f, xx + best)};
}

float best_sub_block(const float* x, float s, const WideTables& w, GroupCode* codes) {
  float err = 0.0f;
  for (int g = 0; g < 4; ++g) {
    codes[g] = best_group(x + 8 * g, s, w);
    err += codes[g].err;
  }
  return err;
}

// Continuous scale for one sub-block: a sweep of starting scales around amax/43 (the largest
// value on the largest magnitude), each refined once by the least-squares scale of its
// assignment.
float fit_sub_scale(const float* x, const WideTables& w) {
  float amax = 0.0f;
  for (int i = 0; i < 32; ++i) amax = std::max(amax, std::fabs(x[i]));
  if (amax == 0.0f) return 0.0f;
  GroupCode codes[4];
  float best_s = amax / 43.0f, best_err = std::numeric_limits<float>::infinity();
  for (int step = 0; step <= 10; ++step) {
    const float s0 = amax / 43.0f * (0.6f + 0.1f * static_cast<float>(step));
    best_sub_block(x, s0, w, codes);
    float xu = 0.0f, uu = 0.0f;
    for (int g = 0; g < 4; ++g) {
      for (int t = 0; t < 8; ++t) {
        const float u = ((codes[g].signs >> t) & 1 ? -1.0f : 1.0f) * w.grid[codes[g].grid][t];
        xu += x[8 * g + t] * u;
        uu += u * u;
      }
    }
    const float s1 = xu > 0.0f ? xu / uu : s0;
    const float err = best_sub_block(x, s1, w, codes);
    if (err < best_err) {
      best_err = err;
      best_s = s1;
    }
  }
  return best_s;
}

}  // namespace

void quantize_iq2_xxs(const float* src, void* dst, int64_t n) {
  const WideTables& w = wide_tables();
  uint8_t* b = static_cast<uint8_t*>(dst);
  for (int64_t i = 0; i < n; i += kQK_K, b += kIQ2_XXSBytes, src += kQK_K) {
    float s[8], smax = 0.0f;
    for (int sb = 0; sb < 8; ++sb) {
      s[sb] = fit_sub_scale(src + 32 * sb, w);
      smax = std::max(smax, s[sb]);
    }
    // The largest sub-block scale takes the largest code: db(15) = d·31/8.
    const float d = f16_to_f32(f32_to_f16(smax * 8.0f / 31.0f));
    store_f16(b, d);
    for (int sb = 0; sb < 8; ++sb) {
      const float* xs = src + 32 * sb;
      int ls0 = 0;
      if (d > 0.0f) {
        ls0 = static_cast<int>(std::clamp(std::nearbyint((8.0f * s[sb] / d - 1.0f) / 2.0f), 0.0f, 15.0f));
      }
      // Neighbouring codes judged with the exact db the dequantiser will use.
      GroupCode best[4], codes[4];
      int best_ls = ls0;
      float best_err = std::numeric_limits<float>::infinity();
      for (int ls = std::max(0, ls0 - 1); ls <= std::min(15, ls0 + 1); ++ls) {
        const float err = best_sub_block(xs, sub_scale(d, static_cast<uint32_t>(ls) << 28), w, codes);
        if (err < best_err) {
          best_err = err;
          best_ls = ls;
          std::copy(codes, codes + 4, best);
        }
      }
      uint32_t a0 = 0, a1 = static_cast<uint32_t>(best_ls) << 28;
      for (int g = 0; g < 4; ++g) {
        a0 |= static_cast<uint32_t>(best[g].grid) << (8 * g);
        // Even parity makes the byte equal to ksigns_iq2xs[its low 7 bits].
        a1 |= static_cast<uint32_t>(best[g].signs & 127) << (7 * g);
      }
      std::memcpy(b + 2 + 8 * sb, &a0, 4);
      std::memcpy(b + 2 + 8 * sb + 4, &a1, 4);
    }
  }
}

}  // namespace dsv4::quant
