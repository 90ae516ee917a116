// quant.h: routes each call to its format file and runs matvec on the default pool.
#include <cstdio>
#include <cstdlib>

#include "quant/formats.h"
#include "quant/quant.h"
#include "util/thread_pool.h"

namespace dsv4::quant {

namespace {

struct Kernels {
  int64_t block_elems;
  int64_t block_bytes;
  void (*dequantize)(const void*, float*, int64_t);
  float (*dot)(const void*, const float*, int64_t);
  void (*quantize)(const float*, void*, int64_t);
};

// Callers validate types and shapes when they load a file (model/); reaching here with a bad
// one is a bug, so it stops the program loudly rather than returning garbage.
[[noreturn]] void fail(const char* what, TensorType t, int64_t n) {
  std::fprintf(stderr, "dsv4 quant: %s (type id %u, n = %lld)\n", what, static_cast<unsigned>(t),
               static_cast<long long>(n));
  std::abort();
}

const Kernels* find(TensorType t) {
  static const Kernels f32{1, 4, dequantize_f32, dot_f32, quantize_f32};
  static const Kernels f16{1, 2, dequantize_f16, dot_f16, quantize_f16};
  static const Kernels bf16{1, 2, dequantize_bf16, dot_bf16, quantize_bf16};
  static const Kernels q8_0{kQ8_0Elems, kQ8_0Bytes, dequantize_q8_0, dot_q8_0, quantize_q8_0};
  static const Kernels q2_k{kQK_K, kQ2_KBytes, dequantize_q2_k, dot_q2_k, quantize_q2_k};
  static const Kernels q4_k{kQK_K, kQ4_KBytes, dequantize_q4_k, dot_q4_k, quantize_q4_k};
  static const Kernels iq2_xxs{kQK_K, kIQ2_XXSBytes, dequantize_iq2_xxs, dot_iq2_xxs, quantize_iq2_xxs};
  switch (t) {
    case TensorType::F32: return &f32;
    case TensorType::F16: return &f16;
    case TensorType::BF16: return &bf16;
    case TensorType::Q8_0: return &q8_0;
    case TensorType::Q2_K: return &q2_k;
    case TensorType::Q4_K: return &q4_k;
    case TensorType::IQ2_XXS: return &iq2_xxs;
    default: return nullptr;
  }
}

const Kernels& get(TensorType t, int64_t n) {
  const Kernels* k = find(t);
  if (!k) fail("not a weight type", t, n);
  if (n < 0 || n % k->block_elems != 0) fail("row length is not a multiple of the block size", t, n);
  return *k;
}

// Below this many weight elements a matvec is cheaper on the calling thread than the pool's
// wake-up and join (an empty parallel_for measured ~50 µs on a 16-core Xeon host, about the
// single-thread time of 2^18 quantised elements).
constexpr int64_t kMinParallelElems = 1 << 18;

}  // namespace

bool is_weight_type(TensorType t) { return find(t) != nullptr; }

void dequantize_row(TensorType t, const void* src, float* dst, int64_t n) {
  get(t, n).dequantize(src, dst, n);
}

float dot_row(TensorType t, const void* row, const float* x, int64_t n) {
  return get(t, n).dot(row, x, n);
}

void quantize_row(TensorType t, const float* src, void* dst, int64_t n) {
  get(t, n).quantize(src, dst, n);
}

void matvec(TensorType t, const void* w, int64_t n_in, int64_t n_out, const float* x, float* y) {
  const Kernels& k = get(t, n_in);
  const int64_t row_bytes = n_in / k.block_elems * k.block_bytes;
  const uint8_t* base = static_cast<const uint8_t*>(w);
  auto rows = [&](int64_t begin, int64_t end) {
    for (int64_t o = begin; o < end; ++o) y[o] = k.dot(base + o * row_bytes, x, n_in);
  };
  // Each y[o] is one dot_row, so the result does not depend on how rows are split.
  if (n_in * n_out < kMinParallelElems) {
    rows(0, n_out);
  } else {
    default_thread_pool().parallel_for(n_out, rows);
  }
}

}  // namespace dsv4::quant
