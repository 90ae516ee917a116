#include "quant/kquant_fit.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "quant/formats.h"

namespace dsv4::quant {

namespace {

struct ScaleMin {
  float scale, min;
};

// Least-squares (scale, min) for x ≈ scale·q − min with scale, min ≥ 0: the format subtracts
// the min, so a sub-block that is all positive must use min = 0 (a pure scale).
ScaleMin fit_scale_min(const float* x, int n, int qmax) {
  float xmin = 0.0f, xmax = -std::numeric_limits<float>::infinity();
  for (int i = 0; i < n; ++i) {
    xmin = std::min(xmin, x[i]);
    xmax = std::max(xmax, x[i]);
  }
  const float range = xmax - xmin;
  if (!(range > 0.0f)) return {0.0f, -xmin};

  ScaleMin best{range / qmax, -xmin};
  double best_err = std::numeric_limits<double>::infinity();
  uint8_t q[32];
  // Starting grids slightly finer and coarser than the plain range/qmax: clipping the extremes
  // often lowers the error of the bulk.
  for (int step = 0; step <= 20; ++step) {
    const float s0 = range / (static_cast<float>(qmax) + (-0.5f + 0.1f * static_cast<float>(step)));
    double sq = 0, sqq = 0, sx = 0, sqx = 0;
    for (int i = 0; i < n; ++i) {
      const float v = std::nearbyint((x[i] - xmin) / s0);
      q[i] = static_cast<uint8_t>(std::clamp(v, 0.0f, static_cast<float>(qmax)));
      sq += q[i];
      sqq += static_cast<double>(q[i]) * q[i];
      sx += x[i];
      sqx += q[i] * static_cast<double>(x[i]);
    }
    double s, b;  // x ≈ s·q + b
    const double det = n * sqq - sq * sq;
    if (det > 0) {
      s = (n * sqx - sq * sx) / det;
      b = (sqq * sx - sq * sqx) / det;
    } else {
      s = 0;
      b = sx / n;
    }
    if (b > 0) {  // would need a negative min: refit as a pure scale
      b = 0;
      s = sqq > 0 ? sqx / sqq : 0;
    }
    if (s < 0) continue;
    double err = 0;
    for (int i = 0; i < n; ++i) {
      const double e = x[i] - (s * q[i] + b);
      err += e * e;
    }
    if (err < best_err) {
      best_err = err;
      best = {static_cast<float>(s), static_cast<float>(-b)};
    }
  }
  return best;
}

// Nearest q for every element given the stored step (d·sc) and offset (dmin·mn); returns the
// squared error of the dequantised values, computed exactly as the dequantiser does.
float assign_q(const float* x, int n, int qmax, float step, float offset, uint8_t* q) {
  float err = 0.0f;
  for (int i = 0; i < n; ++i) {
    float v = 0.0f;
    if (step > 0.0f) v = std::clamp(std::nearbyint((x[i] + offset) / step), 0.0f, static_cast<float>(qmax));
    q[i] = static_cast<uint8_t>(v);
    const float e = x[i] - (step * v - offset);
    err += e * e;
  }
  return err;
}

}  // namespace

void quantize_k_superblock(const float* x, int n_sub, int sub_len, int qmax, int code_max,
                           KSuperBlock* out) {
  ScaleMin fits[16];
  float max_scale = 0.0f, max_min = 0.0f;
  for (int j = 0; j < n_sub; ++j) {
    fits[j] = fit_scale_min(x + j * sub_len, sub_len, qmax);
    max_scale = std::max(max_scale, fits[j].scale);
    max_min = std::max(max_min, fits[j].min);
  }
  out->d = f16_to_f32(f32_to_f16(max_scale / static_cast<float>(code_max)));
  out->dmin = f16_to_f32(f32_to_f16(max_min / static_cast<float>(code_max)));

  auto code = [&](float v, float unit) {
    if (!(unit > 0.0f)) return 0;
    return static_cast<int>(std::clamp(std::nearbyint(v / unit), 0.0f, static_cast<float>(code_max)));
  };
  uint8_t q[32];
  for (int j = 0; j < n_sub; ++j) {
    const float* xs = x + j * sub_len;
    const int sc0 = code(fits[j].scale, out->d);
    const int mn0 = code(fits[j].min, out->dmin);
    float best = std::numeric_limits<float>::infinity();
    // Rounding each code on its own ignores how scale and min trade off; the 3×3 neighbourhood
    // recovers most of that at 9 cheap passes over 16 or 32 values.
    for (int sc = std::max(0, sc0 - 1); sc <= std::min(code_max, sc0 + 1); ++sc) {
      for (int mn = std::max(0, mn0 - 1); mn <= std::min(code_max, mn0 + 1); ++mn) {
        const float err = assign_q(xs, sub_len, qmax, out->d * static_cast<float>(sc),
                                   out->dmin * static_cast<float>(mn), q);
        if (err < best) {
          best = err;
          out->sc[j] = static_cast<uint8_t>(sc);
          out->mn[j] = static_cast<uint8_t>(mn);
          std::copy(q, q + sub_len, out->q + j * sub_len);
        }
      }
    }
  }
}

}  // namespace dsv4::quant
