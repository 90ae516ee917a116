// Warp reduce-scatter: every lane brings N values, and after log2 N levels of halving (at each, a
// lane keeps one half of its values and adds its partner's copy of that half) lane L holds the sum
// over the warp's 32 lanes of value reduce_scatter_index(L, N); plain butterflies finish the
// levels left, so the lanes that share an index all get it. N - 1 shuffles plus those of the
// levels left, instead of 5·N for N separate butterflies (the hc kernels reduce 24 mixer sums per
// thread). The order of every addition is fixed by the lane numbers alone. The code is written
// over an xor-shuffle so that tests/cuda/cpu runs this very code on 32 host threads.
#pragma once

#include <cuda_runtime.h>

namespace dsv4::cuda::detail {

__host__ __device__ constexpr int log2_of(int n) { return n <= 1 ? 0 : 1 + log2_of(n / 2); }
__host__ __device__ constexpr int pow2_at_least(int n) { return n <= 1 ? 1 : 2 * pow2_at_least((n + 1) / 2); }

// The value whose warp sum lane `lane` holds after warp_reduce_scatter of N values.
__host__ __device__ constexpr int reduce_scatter_index(int lane, int N) { return lane >> (5 - log2_of(N)); }

// One level: the lanes pair up across bit o; each keeps `Half` of its values (the upper half where
// its bit o is set) plus its partner's copy of them.
template <int Half, class T, int N, class XorShuffle>
__host__ __device__ __forceinline__ void scatter_level(T (&v)[N], int lane, XorShuffle& shfl_xor) {
  if constexpr (Half >= 1) {
    constexpr int o = 32 * Half / N;
    const bool upper = (lane & o) != 0;
#ifdef __CUDA_ARCH__  // (host compilers warn about the pragma)
#pragma unroll
#endif
    for (int i = 0; i < Half; ++i) {
      const T send = upper ? v[i] : v[i + Half];
      const T keep = upper ? v[i + Half] : v[i];
      v[i] = keep + shfl_xor(send, o);
    }
    scatter_level<Half / 2>(v, lane, shfl_xor);
  }
}

// N a power of two up to 32; v is clobbered. shfl_xor(value, o) returns lane (lane ^ o)'s value.
template <class T, int N, class XorShuffle>
__host__ __device__ __forceinline__ T warp_reduce_scatter(T (&v)[N], int lane, XorShuffle& shfl_xor) {
  static_assert(N >= 1 && N <= 32 && (N & (N - 1)) == 0, "N must be a power of two up to 32");
  scatter_level<N / 2>(v, lane, shfl_xor);
  T s = v[0];
#ifdef __CUDA_ARCH__  // (host compilers warn about the pragma)
#pragma unroll
#endif
  for (int o = 16 / N; o > 0; o >>= 1) s += shfl_xor(s, o);
  return s;
}

#ifdef __CUDACC__
template <class T, int N>
__device__ __forceinline__ T warp_reduce_scatter(T (&v)[N]) {
  auto shfl_xor = [](T x, int o) { return __shfl_xor_sync(0xFFFFFFFFu, x, o); };
  return warp_reduce_scatter(v, static_cast<int>(threadIdx.x & 31), shfl_xor);
}
#endif

}  // namespace dsv4::cuda::detail
