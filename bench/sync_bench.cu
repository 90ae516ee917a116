// sync_bench: what one step between two full-grid phases costs on this card, the floor under a
// decode step's ≈ 25 launches a layer (docs/PERF.md, "After session 42"). Five ways to order N
// phases of one block an SM (512 threads, the row-tile launches' shape), each phase a block-wide
// barrier and one relaxed atomic a block (so the phases are not empty):
//   launches   N kernels in a CUDA graph, stream order (each waits for the previous grid's end);
//   pdl        the same with programmatic dependent launch as the decode step uses it (pdl.cuh:
//              griddepcontrol.wait, then launch_dependents, at each kernel's start);
//   barrier    one kernel whose blocks meet at a grid barrier between phases: an arrival counter
//              (red.release, one per block) and a spin on it (ld.acquire), the counter never reset
//              (phase p waits for (p + 1)·blocks arrivals), as a persistent decode kernel would;
//   coop       the same kernel with cooperative_groups' grid sync (a cooperative launch);
//   neighbour  one kernel whose block b, after each phase, publishes its phase count (st.release)
//              and waits only for block b + 1's (ld.acquire): a point-to-point dependency, as a
//              dataflow decode kernel would have between a producer tile and its consumer.
// --blocks B runs every form on B blocks instead of one an SM.
// Prints µs a phase boundary (best of the repetitions; N phases, the whole timed by events).
#include <cooperative_groups.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "device_bench.cuh"

namespace {

using dsv4::bench::check;

constexpr int kThreads = 512;

__device__ __forceinline__ void phase_work(unsigned* sink) {
  __syncthreads();
  if (threadIdx.x == 0) atomicAdd(sink + blockIdx.x, 1u);
}

__global__ void __launch_bounds__(kThreads) phase_kernel(unsigned* sink, bool pdl) {
  if (pdl) asm volatile("griddepcontrol.wait;\n" ::: "memory");
  if (pdl) asm volatile("griddepcontrol.launch_dependents;\n" ::: "memory");
  phase_work(sink);
}

__device__ __forceinline__ void grid_barrier(unsigned* arrivals, unsigned target) {
  __syncthreads();
  if (threadIdx.x == 0) {
    asm volatile("red.release.gpu.global.add.u32 [%0], 1;\n" ::"l"(arrivals) : "memory");
    unsigned seen = 0;
    do {
      asm volatile("ld.acquire.gpu.global.u32 %0, [%1];\n" : "=r"(seen) : "l"(arrivals) : "memory");
    } while (seen < target);
  }
  __syncthreads();
}

__global__ void __launch_bounds__(kThreads) barrier_kernel(unsigned* sink, unsigned* arrivals, int phases) {
  for (int p = 0; p < phases; ++p) {
    phase_work(sink);
    grid_barrier(arrivals, static_cast<unsigned>(p + 1) * gridDim.x);
  }
}

__global__ void __launch_bounds__(kThreads) neighbour_kernel(unsigned* sink, unsigned* flags, int phases) {
  const unsigned* next = flags + (blockIdx.x + 1) % gridDim.x;
  for (int p = 0; p < phases; ++p) {
    phase_work(sink);
    if (threadIdx.x == 0) {
      asm volatile("st.release.gpu.global.u32 [%0], %1;\n" ::"l"(flags + blockIdx.x), "r"(p + 1) : "memory");
      unsigned seen = 0;
      do {
        asm volatile("ld.acquire.gpu.global.u32 %0, [%1];\n" : "=r"(seen) : "l"(next) : "memory");
      } while (seen < static_cast<unsigned>(p + 1));
    }
    __syncthreads();
  }
}

__global__ void __launch_bounds__(kThreads) coop_kernel(unsigned* sink, int phases) {
  cooperative_groups::grid_group grid = cooperative_groups::this_grid();
  for (int p = 0; p < phases; ++p) {
    phase_work(sink);
    grid.sync();
  }
}

// Best of `reps` timings (after a warm-up) of launch() on `stream`, prepare() queued before each.
template <class Prepare, class Launch>
float best_ms(int reps, cudaStream_t stream, Prepare&& prepare, Launch&& launch) {
  cudaEvent_t a, b;
  check(cudaEventCreate(&a), "event");
  check(cudaEventCreate(&b), "event");
  float best = 1e30f;
  for (int r = 0; r < reps + 1; ++r) {  // the first is a warm-up
    prepare();
    check(cudaEventRecord(a, stream), "record");
    launch();
    check(cudaEventRecord(b, stream), "record");
    check(cudaEventSynchronize(b), "sync");
    float ms = 0.0f;
    check(cudaEventElapsedTime(&ms, a, b), "elapsed");
    if (r > 0) best = std::min(best, ms);
  }
  check(cudaEventDestroy(a), "event");
  check(cudaEventDestroy(b), "event");
  return best;
}

// A graph of `phases` phase_kernel launches (pdl: with the programmatic-serialization attribute).
cudaGraphExec_t launch_graph(unsigned* sink, int blocks, int phases, bool pdl, cudaStream_t stream) {
  cudaGraph_t graph;
  check(cudaStreamBeginCapture(stream, cudaStreamCaptureModeGlobal), "capture");
  for (int p = 0; p < phases; ++p) {
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = dim3(blocks);
    cfg.blockDim = dim3(kThreads);
    cfg.stream = stream;
    cudaLaunchAttribute attr;
    attr.id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attr.val.programmaticStreamSerializationAllowed = 1;
    cfg.attrs = &attr;
    cfg.numAttrs = pdl ? 1 : 0;
    check(cudaLaunchKernelEx(&cfg, phase_kernel, sink, pdl), "launch");
  }
  check(cudaStreamEndCapture(stream, &graph), "end capture");
  cudaGraphExec_t exec;
  check(cudaGraphInstantiate(&exec, graph, 0), "instantiate");
  check(cudaGraphDestroy(graph), "graph");
  return exec;
}

}  // namespace

int main(int argc, char** argv) {
  int phases = 1000, reps = 5, blocks = 0;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (std::strcmp(argv[i], "--phases") == 0) phases = std::max(1, std::atoi(argv[i + 1]));
    if (std::strcmp(argv[i], "--reps") == 0) reps = std::max(1, std::atoi(argv[i + 1]));
    if (std::strcmp(argv[i], "--blocks") == 0) blocks = std::max(1, std::atoi(argv[i + 1]));
  }
  cudaDeviceProp prop{};
  check(cudaGetDeviceProperties(&prop, 0), "properties");
  // At most one block an SM, so that the one-kernel forms' blocks are all resident.
  blocks = blocks > 0 ? std::min(blocks, prop.multiProcessorCount) : prop.multiProcessorCount;
  std::printf("device: %s, %d SMs; %d phases of %d blocks x %d threads\n", prop.name, blocks, phases, blocks, kThreads);
  unsigned* sink = dsv4::bench::device_alloc<unsigned>(static_cast<size_t>(blocks));
  unsigned* arrivals = dsv4::bench::device_alloc<unsigned>(1);
  unsigned* flags = dsv4::bench::device_alloc<unsigned>(static_cast<size_t>(blocks));
  cudaStream_t stream;
  check(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), "stream");

  for (bool pdl : {false, true}) {
    cudaGraphExec_t exec = launch_graph(sink, blocks, phases, pdl, stream);
    const float ms = best_ms(reps, stream, [] {}, [&] { check(cudaGraphLaunch(exec, stream), "graph launch"); });
    std::printf("%-9s %7.3f us a phase (%.3f ms for %d)\n", pdl ? "pdl" : "launches", 1e3 * ms / phases, ms, phases);
    check(cudaGraphExecDestroy(exec), "exec");
  }
  {
    const float ms = best_ms(
        reps, stream, [&] { check(cudaMemsetAsync(arrivals, 0, sizeof(unsigned), stream), "memset"); },
        [&] {
          barrier_kernel<<<blocks, kThreads, 0, stream>>>(sink, arrivals, phases);
          check(cudaGetLastError(), "barrier kernel");
        });
    std::printf("%-9s %7.3f us a phase (%.3f ms for %d, one launch)\n", "barrier", 1e3 * ms / phases, ms, phases);
  }
  {
    const float ms = best_ms(
        reps, stream, [&] { check(cudaMemsetAsync(flags, 0, blocks * sizeof(unsigned), stream), "memset"); },
        [&] {
          neighbour_kernel<<<blocks, kThreads, 0, stream>>>(sink, flags, phases);
          check(cudaGetLastError(), "neighbour kernel");
        });
    std::printf("%-9s %7.3f us a phase (%.3f ms for %d, one launch)\n", "neighbour", 1e3 * ms / phases, ms, phases);
  }
  {
    int coop = 0;
    check(cudaDeviceGetAttribute(&coop, cudaDevAttrCooperativeLaunch, 0), "attribute");
    if (coop) {
      const float ms = best_ms(reps, stream, [] {}, [&] {
        void* args[] = {&sink, &phases};
        check(cudaLaunchCooperativeKernel(reinterpret_cast<void*>(coop_kernel), dim3(blocks), dim3(kThreads), args, 0,
                                          stream),
              "cooperative launch");
      });
      std::printf("%-9s %7.3f us a phase (%.3f ms for %d, one launch)\n", "coop", 1e3 * ms / phases, ms, phases);
    }
  }
  check(cudaStreamDestroy(stream), "stream");
  return 0;
}
