// main() of cuda_tests: like gtest_main, but a run (not a listing) without a usable GPU stops at
// once with a clear message and exit status 77 (which ctest reports as "skipped") instead of
// failing every test; a GPU that is not sm_90 exits with 1. ctest labels this binary "gpu";
// machines without a GPU run ctest -LE gpu.
#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include <cstdio>

int main(int argc, char** argv) {
  testing::InitGoogleTest(&argc, argv);
  if (GTEST_FLAG_GET(list_tests)) return RUN_ALL_TESTS();
  int n = 0;
  const cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess || n == 0) {
    std::fprintf(stderr, "cuda_tests: no usable CUDA device (%s). These tests need a GPU; "
                         "run `ctest -LE gpu` on machines without one.\n",
                 e != cudaSuccess ? cudaGetErrorString(e) : "device count 0");
    return 77;
  }
  cudaDeviceProp p{};
  if (cudaGetDeviceProperties(&p, 0) != cudaSuccess) {
    std::fprintf(stderr, "cuda_tests: cannot read the properties of device 0\n");
    return 1;
  }
  int driver = 0, runtime = 0;
  cudaDriverGetVersion(&driver);
  cudaRuntimeGetVersion(&runtime);
  std::printf("cuda_tests: device 0: %s, compute capability %d.%d, %d SMs, %.1f GiB, driver %d, "
              "runtime %d\n",
              p.name, p.major, p.minor, p.multiProcessorCount,
              static_cast<double>(p.totalGlobalMem) / (1024.0 * 1024 * 1024), driver, runtime);
  if (p.major != 9 || p.minor != 0) {
    std::fprintf(stderr, "cuda_tests: the kernels are built for sm_90a (Hopper) only; device 0 is "
                         "sm_%d%d\n", p.major, p.minor);
    return 1;
  }
  return RUN_ALL_TESTS();
}
