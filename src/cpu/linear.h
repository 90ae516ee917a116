// Weight projections over a batch of tokens. Every output element is one quant::dot_row call on one
// weight row and one token's activation, so a token's result does not depend on how many other
// tokens share the batch or on the number of threads; batching only makes each weight row be
// read from memory once per chunk instead of once per token.
#pragma once

#include <cstdint>
#include <functional>

#include "model/weights.h"

namespace dsv4::cpu {

// Runs fn(begin, end) over [0, n) on the default pool, inline when `work` (a rough count of
// multiply-adds) is too small to be worth waking threads. fn must write only its own range.
// Never call from inside another parallel region (the pool is not reentrant).
void parallel_for(int64_t n, int64_t work, const std::function<void(int64_t, int64_t)>& fn);

// y[t·ldy + o] = W_o · x[t·ldx ...] for o < n_out = ne(1), t < n_tok; W_o a row of n_in = ne(0)
// values (of slab `slab` for a 3-D expert tensor).
void project(const model::Tensor& w, const float* x, int64_t ldx, int64_t n_tok, float* y,
             int64_t ldy, int64_t slab = 0);

// Grouped form (MODEL.md §7.11): the n_out rows form n_groups equal blocks and block g reads the
// slice x[t·ldx + g·n_in ...] of width n_in = ne(0).
void project_grouped(const model::Tensor& w, int64_t n_groups, const float* x, int64_t ldx,
                     int64_t n_tok, float* y, int64_t ldy);

// Row r (of slab `slab`) widened to f32 (n = ne(0) values): APE rows, embedding rows.
void dequantize_tensor_row(const model::Tensor& w, int64_t r, float* dst, int64_t slab = 0);

}  // namespace dsv4::cpu
