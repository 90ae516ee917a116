// moe.h. Routing is one block per token: all threads score the experts, then one warp picks the
// top k by k warp arg-max passes (no block barriers); the weight normalisation runs on one lane in
// selection order, as cpu/moe.cc.
#include <cuda_runtime.h>

#include "cuda/check.h"
#include "cuda/device_math.cuh"
#include "cuda/moe.h"
#include "cuda/pdl.cuh"
#include "cuda/swiglu.cuh"

namespace dsv4::cuda {

namespace {

using namespace detail;

constexpr int kThreads = 256;
constexpr int kMaxExperts = 1024;
constexpr int kMaxUsed = 16;

// Ranks (value desc, index asc); NaN below everything.
__device__ __forceinline__ bool better(float va, int ia, float vb, int ib) {
  if (isnan(va)) va = -INFINITY;
  if (isnan(vb)) vb = -INFINITY;
  return va > vb || (va == vb && ia < ib);
}

// kPerLane: experts a lane of the selecting warp holds (E ≤ 32·kPerLane; the model's 256: 8, so that
// each of the k passes scans 8 registers, not kMaxExperts / 32).
template <int kPerLane>
__global__ void __launch_bounds__(kThreads) route_kernel(RouteArgs a) {
  pdl_wait();  // launched with PDL: nothing before this line (pdl.cuh)
  pdl_trigger();
  __shared__ float s[kMaxExperts];
  __shared__ float biased[kMaxExperts];
  __shared__ int sel[kMaxUsed];
  const int t = blockIdx.x;
  const float* l = a.logits + static_cast<int64_t>(t) * a.E;
  for (int e = threadIdx.x; e < a.E; e += blockDim.x) {
    s[e] = sqrtf(softplus_f32(l[e]));
    if (a.bias) biased[e] = __fadd_rn(s[e], a.bias[e]);
  }
  __syncthreads();
  if (threadIdx.x >= 32) return;
  // Warp 0: the selection, then the weights in selection order.
  const int lane = threadIdx.x;
  if (!a.bias) {
    if (lane < a.K) sel[lane] = a.tid2eid[static_cast<int64_t>(a.tokens[t]) * a.K + lane];
  } else {
    // Each lane keeps its experts' biased scores in registers; a picked expert is masked out at
    // the lane that owns it.
    static_assert(kPerLane <= 32, "taken: a bit per register");
    float v[kPerLane];
#pragma unroll
    for (int j = 0; j < kPerLane; ++j) {
      const int e = lane + 32 * j;
      v[j] = e < a.E ? (isnan(biased[e]) ? -INFINITY : biased[e]) : -INFINITY;
    }
    unsigned taken = 0;  // bit j: expert lane + 32j already selected (or absent)
#pragma unroll
    for (int j = 0; j < kPerLane; ++j) taken |= (lane + 32 * j >= a.E ? 1u : 0u) << j;
    for (int k = 0; k < a.K; ++k) {
      float bv = -INFINITY;
      int bi = -1;
#pragma unroll
      for (int j = 0; j < kPerLane; ++j) {
        const int e = lane + 32 * j;
        if (!((taken >> j) & 1u) && (bi < 0 || v[j] > bv)) {  // ascending e: ties keep the lower id
          bv = v[j];
          bi = e;
        }
      }
      for (int o = 16; o > 0; o >>= 1) {
        const float ov = __shfl_xor_sync(0xFFFFFFFFu, bv, o);
        const int oi = __shfl_xor_sync(0xFFFFFFFFu, bi, o);
        if (oi >= 0 && (bi < 0 || better(ov, oi, bv, bi))) {
          bv = ov;
          bi = oi;
        }
      }
      if (bi >= 0 && (bi & 31) == lane) taken |= 1u << (bi >> 5);
      if (lane == 0) sel[k] = bi;
    }
  }
  __syncwarp();
  if (lane == 0) {
    float sum = 0.0f;
    for (int i = 0; i < a.K; ++i) sum = __fadd_rn(sum, s[sel[i]]);
    const float den = fmaxf(sum, 0x1p-14f);
    for (int i = 0; i < a.K; ++i) {
      const float si = s[sel[i]];
      a.experts[static_cast<int64_t>(t) * a.K + i] = sel[i];
      a.weights[static_cast<int64_t>(t) * a.K + i] = __fmul_rn(a.normalize ? __fdiv_rn(si, den) : si, a.scale);
    }
  }
}

// Slot blockIdx.x (a prefill chunk's T·K slots pass grid.y's 65 535 from T = 10 923 on),
// elements blockIdx.y·blockDim.x + threadIdx.x.
__global__ void swiglu_kernel(SwigluArgs a) {
  pdl_wait();  // launched with PDL: nothing before this line (pdl.cuh)
  pdl_trigger();
  const int j = blockIdx.x;
  const int64_t f = blockIdx.y * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (f >= a.F) return;
  a.out[static_cast<int64_t>(j) * a.F + f] =
      swiglu_element(a.gate[j * a.stride + f], a.up[j * a.stride + f], a.weights ? a.weights + j : nullptr, a.limit);
}

__global__ void replicate_kernel(const float* x, int64_t n, int copies, float* out) {
  pdl_wait();  // launched with PDL: nothing before this line (pdl.cuh)
  pdl_trigger();
  const int t = blockIdx.y;
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i >= n) return;
  const float v = x[static_cast<int64_t>(t) * n + i];
  for (int c = 0; c < copies; ++c) out[(static_cast<int64_t>(t) * copies + c) * n + i] = v;
}

}  // namespace

Status moe_route(const RouteArgs& a, cudaStream_t stream) {
  if (a.T <= 0) return Status();
  if (a.E > kMaxExperts || a.K > kMaxUsed || a.K > a.E) return make_error("moe_route: too many experts");
  if (!a.bias && (!a.tid2eid || !a.tokens)) return make_error("moe_route: hash layer without tid2eid");
  auto kernel = a.E <= 256 ? route_kernel<8> : a.E <= 512 ? route_kernel<16> : route_kernel<kMaxExperts / 32>;
  DSV4_CUDA_TRY(launch_pdl(kernel, dim3(a.T), dim3(kThreads), 0, stream, a));
  return cuda_status(cudaGetLastError(), "routing kernel");
}

Status swiglu(const SwigluArgs& a, cudaStream_t stream) {
  if (a.n_slots <= 0) return Status();
  if ((a.F + kThreads - 1) / kThreads > 65535) return make_error("swiglu: rows too long");
  DSV4_CUDA_TRY(launch_pdl(swiglu_kernel, dim3(a.n_slots, static_cast<unsigned>((a.F + kThreads - 1) / kThreads)),
                           dim3(kThreads), 0, stream, a));
  return cuda_status(cudaGetLastError(), "swiglu kernel");
}

Status replicate_rows(const float* x, int64_t n, int copies, int T, float* out, cudaStream_t stream) {
  if (T <= 0) return Status();
  DSV4_CUDA_TRY(launch_pdl(replicate_kernel, dim3(static_cast<unsigned>((n + kThreads - 1) / kThreads), T),
                           dim3(kThreads), 0, stream, x, n, copies, out));
  return cuda_status(cudaGetLastError(), "replicate kernel");
}

}  // namespace dsv4::cuda
