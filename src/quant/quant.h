// Weight formats of FORMATS.md §4: dequantisation, dot products against f32 activations, and
// quantisers. One block layout per file (q8_0.cc, q2_k.cc, q4_k.cc, iq2_xxs.cc, plain.cc);
// this header is the dispatch surface the model and backends use.
#pragma once

#include <cstdint>

#include "gguf/types.h"

namespace dsv4::quant {

using gguf::TensorType;

// True for the types this module can dequantise and dot: F32, F16, BF16, Q8_0, Q2_K, Q4_K,
// IQ2_XXS. (I32 is an index table, not a weight; Q8_K is an activation format.)
bool is_weight_type(TensorType t);

// Dequantises n elements (n a multiple of the block size) starting at a block boundary.
void dequantize_row(TensorType t, const void* src, float* dst, int64_t n);

// Σ_i w[i]·x[i] over n elements of one row against an f32 activation, accumulated in f32.
// Equals dequantize-then-dot up to f32 rounding (tests bound it).
float dot_row(TensorType t, const void* row, const float* x, int64_t n);

// y[o] = Σ_i W[o·n_in + i]·x[i] for o in [0, n_out); W rows of row_bytes(t, n_in) each.
// Threaded over rows with the default pool.
void matvec(TensorType t, const void* w, int64_t n_in, int64_t n_out, const float* x, float* y);

// Quantises n elements into blocks (round-to-nearest quantisers in the ggml reference style;
// IQ2_XXS uses a search over the grid). Used by gen-model and round-trip tests.
void quantize_row(TensorType t, const float* src, void* dst, int64_t n);

}  // namespace dsv4::quant
