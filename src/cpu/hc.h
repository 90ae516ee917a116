// Manifold-constrained hyper-connections, MODEL.md §5, for one token. The state X is n_hc streams
// of width D stored stream-major (flat[h·D + d] = X[h][d]).
#pragma once

#include <cstdint>

namespace dsv4::cpu {

// Mixing coefficients of one sub-layer for one token, in one flat block of hc_mix_size(n) floats:
// pre[n] | post[n] | comb[n·n] with comb[j·n + k], j = source stream, k = destination stream.
inline int64_t hc_mix_size(int64_t n_hc) { return 2 * n_hc + n_hc * n_hc; }

// 1/sqrt(mean(v²) + eps) over all n_hc·D values jointly (§5.2 step 2; eps = rms_eps), double sum.
float hc_flat_rms_scale(const float* x, int64_t n, float eps);

// §5.3 exactly: row softmax (max-subtracted) + eps, one column normalisation, then iters-1
// (row, column) pairs; eps is added to every denominator. z (n×n, row = source) becomes C in place.
void sinkhorn(float* z, int64_t n, float eps, int64_t iters);

// §5.2 steps 4-7: from the mix logits m[(2+n)·n] (already multiplied by the flat rms scale), the
// scale s[3] and base b[(2+n)·n]: pre = σ(m·s0 + b) + eps, post = 2σ(m·s1 + b), comb =
// Sinkhorn(m·s2 + b). Writes hc_mix_size(n) floats to `mix`.
void hc_mix(const float* m, const float* s, const float* b, int64_t n_hc, float hc_eps,
            int64_t sinkhorn_iters, float* mix);

// u[d] = Σ_h w[h]·X[h][d] over the unnormalised streams (h ascending). Used with w = pre (§5.2
// step 8) and with the head gates (§5.5).
void hc_weighted_sum(const float* x, const float* w, int64_t n_hc, int64_t d, float* u);

// §5.4: out[k][d] = post_k·f[d] + Σ_j C[j][k]·X[j][d] (the comb consumed transposed), X the
// sub-layer's input state. out must not alias x.
void hc_post(const float* x, const float* f, const float* mix, int64_t n_hc, int64_t d, float* out);

// §5.5 gates: w_h = σ(m_h·scale + b_h) + eps, m already multiplied by the flat rms scale.
void hc_head_gates(const float* m, float scale, const float* b, int64_t n_hc, float hc_eps,
                   float* w);

}  // namespace dsv4::cpu
