#include "cpu/linear.h"

#include "quant/quant.h"
#include "util/thread_pool.h"

namespace dsv4::cpu {

void parallel_for(int64_t n, int64_t work, const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  // Below ~64k multiply-adds a wake-up costs more than it saves.
  if (work < (int64_t{1} << 16) || n == 1) {
    fn(0, n);
    return;
  }
  default_thread_pool().parallel_for(n, fn);
}

void project_grouped(const model::Tensor& w, int64_t n_groups, const float* x, int64_t ldx,
                     int64_t n_tok, float* y, int64_t ldy) {
  const int64_t n_in = w.ne(0);
  const int64_t n_out = w.ne(1);
  const int64_t rows_per_group = n_out / n_groups;
  const quant::TensorType type = w.type();
  parallel_for(n_out, n_out * n_in * n_tok, [&](int64_t begin, int64_t end) {
    for (int64_t o = begin; o < end; ++o) {
      const uint8_t* row = w.row(o);
      const float* xg = x + (o / rows_per_group) * n_in;
      for (int64_t t = 0; t < n_tok; ++t) {
        y[t * ldy + o] = quant::dot_row(type, row, xg + t * ldx, n_in);
      }
    }
  });
}

void project(const model::Tensor& w, const float* x, int64_t ldx, int64_t n_tok, float* y,
             int64_t ldy, int64_t slab) {
  const int64_t n_in = w.ne(0);
  const int64_t n_out = w.ne(1);
  const quant::TensorType type = w.type();
  parallel_for(n_out, n_out * n_in * n_tok, [&](int64_t begin, int64_t end) {
    for (int64_t o = begin; o < end; ++o) {
      const uint8_t* row = w.row(o, slab);
      for (int64_t t = 0; t < n_tok; ++t) {
        y[t * ldy + o] = quant::dot_row(type, row, x + t * ldx, n_in);
      }
    }
  });
}

void dequantize_tensor_row(const model::Tensor& w, int64_t r, float* dst, int64_t slab) {
  quant::dequantize_row(w.type(), w.row(r, slab), dst, w.ne(0));
}

}  // namespace dsv4::cpu
