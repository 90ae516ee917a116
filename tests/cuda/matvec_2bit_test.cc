// The 2-bit row-tile kernel (matvec_2bit.cu; also Q4_K) against its own lane code run on the CPU
// (matvec_2bit_emulation.h: the staging of the activations as fixed-point limbs and the integer
// decoders of matvec_2bit.cuh), bit for bit: both are the same sequence of IEEE f32 operations
// (integer sums are exact, every float step is one correctly rounded operation, the items of a
// warp are added in order, the W warps' partials in warp order). Activations of every kind the
// staging must take (Gaussian, zeros, subnormal, tiny, huge, mixed magnitudes), and ±inf/NaN
// (every output NaN, where the CPU's dot is non-finite). Closeness to the CPU reference is the
// job of tests/cuda/matvec_test.cc and tests/cuda/cpu/matvec_2bit_emulation_test.cc.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "cuda/cuda_test_util.h"
#include "cuda/matvec.h"
#include "cuda/matvec_2bit_emulation.h"

namespace dsv4::cuda::testing {
namespace {

// y = W·x through matvec() on the row-tile kernel with W warps per row.
std::vector<float> run_kernel(TensorType type, const std::vector<uint8_t>& w, const std::vector<float>& x,
                              int64_t n_in, int64_t n_out, int warps) {
  DeviceBuffer dw(w.size()), dx(x.size() * 4), dy(static_cast<size_t>(n_out) * 4);
  EXPECT_TRUE(dw.ok() && dx.ok() && dy.ok());
  std::vector<float> y(static_cast<size_t>(n_out), 0.0f);
  if (!dw.ok() || !dx.ok() || !dy.ok()) return y;
  EXPECT_EQ(cudaMemcpy(dw.get(), w.data(), w.size(), cudaMemcpyHostToDevice), cudaSuccess);
  EXPECT_EQ(cudaMemcpy(dx.get(), x.data(), x.size() * 4, cudaMemcpyHostToDevice), cudaSuccess);
  const Status st = matvec(type, dw.bytes(), n_in, n_out, dx.get<float>(), dy.get<float>(), nullptr,
                           MatvecImpl::kFast, {32, warps});
  EXPECT_TRUE(st.ok()) << st.message();
  EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  EXPECT_EQ(cudaMemcpy(y.data(), dy.get(), y.size() * 4, cudaMemcpyDeviceToHost), cudaSuccess);
  return y;
}

// What the kernel computes for row o: warp k's items k, k + W, ... added in order, the warps'
// partials added in warp order.
template <class Fmt>
float emulated_row(const uint8_t* row, int64_t n_in, const std::vector<detail::XBlock2b>& xs, int warps, int lane) {
  const int items = static_cast<int>(n_in / Fmt::kItemElems);
  float y = 0.0f;
  for (int k = 0; k < warps; ++k) {
    float acc = 0.0f;
    for (int i = k; i < items; i += warps) acc += item_dot_emulated<Fmt>(row, i, xs, lane);
    y = k == 0 ? acc : y + acc;
  }
  return y;
}

// 8 items per row: the kernel with the row stride as a constant (the experts' decode shapes);
// 9: the one with a run-time stride. 77 rows: full tiles and a partial one.
template <class Fmt>
void expect_kernel_is_the_lane_code(TensorType type, int items) {
  const uint64_t seed = fresh_seed();
  SCOPED_TRACE("seed " + std::to_string(seed) + ", items " + std::to_string(items));
  std::mt19937_64 rng(seed);
  const Format& f = format_of(type);
  const int64_t n_in = items * Fmt::kItemElems, n_out = 77;
  const std::vector<uint8_t> w = random_rows(f, n_in, n_out, rng);
  const int64_t rb = row_bytes(f, n_in);
  for (int kind = 0; kind < kStagingKinds; ++kind) {
    const std::vector<float> x = staging_activations(kind, n_in, rng);
    const std::vector<detail::XBlock2b> xs = stage_blocks<Fmt>(x.data(), n_in);
    for (int warps : {1, 2, 8}) {
      const std::vector<float> y = run_kernel(type, w, x, n_in, n_out, warps);
      int bad = 0;
      for (int64_t o = 0; o < n_out; ++o) {
        const float want = emulated_row<Fmt>(w.data() + o * rb, n_in, xs, warps, static_cast<int>(o % 32));
        if (!same_bits(y[static_cast<size_t>(o)], want) && ++bad <= 3) {
          ADD_FAILURE() << "kind " << kind << ", W " << warps << ", row " << o << ": kernel " << y[static_cast<size_t>(o)]
                        << ", lane code " << want;
        }
      }
      ASSERT_EQ(bad, 0) << "kind " << kind << ", W " << warps;
    }
  }
  for (float bad : {INFINITY, -INFINITY, NAN}) {
    std::vector<float> x = staging_activations(0, n_in, rng);
    x[static_cast<size_t>(n_in / 2 + 3)] = bad;
    const std::vector<float> y = run_kernel(type, w, x, n_in, n_out, 2);
    for (int64_t o = 0; o < n_out; ++o) {
      ASSERT_TRUE(std::isnan(y[static_cast<size_t>(o)])) << "row " << o << " with " << bad;
      ASSERT_FALSE(std::isfinite(quant::dot_row(type, w.data() + o * rb, x.data(), n_in))) << "row " << o;
    }
  }
}

TEST(CudaMatvec2bit, Q2KKernelIsTheLaneCodeBitForBit) {
  for (int items : {8, 9}) expect_kernel_is_the_lane_code<detail::Fmt2bQ2K>(TensorType::Q2_K, items);
}

TEST(CudaMatvec2bit, Iq2XxsKernelIsTheLaneCodeBitForBit) {
  for (int items : {8, 9}) expect_kernel_is_the_lane_code<detail::Fmt2bIQ2>(TensorType::IQ2_XXS, items);
}

TEST(CudaMatvec2bit, Q4KKernelIsTheLaneCodeBitForBit) {
  for (int items : {8, 9}) expect_kernel_is_the_lane_code<detail::Fmt4bQ4K>(TensorType::Q4_K, items);
}

}  // namespace
}  // namespace dsv4::cuda::testing
