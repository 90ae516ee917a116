#!/usr/bin/env bash
# The hyper-connection kernels (src/cuda/hc.cu) in one GPU-machine call: decode_run.sh with the hc
# and whole-model tests, memcheck and racecheck of the hc tests and the decode step (this bundle's
# and the baseline's), then ncu's isolated time of every hc kernel of one un-graphed decode step
# of 4 layers (cold L2), this bundle's and the baseline's.
#
# Here (no GPU needed), from the repository root:
#     DSV4_BUILD=build-prefill DSV4_BUNDLE=out/hc bash tools/device/decode_run.sh pack
# On the GPU machine (device tool: carry ["out/hc", "out/device"]):
#     bash tools/device/hc_run.sh
#   -> $OUT: decode_run.sh's logs (summary.txt, gpu_tests.log, forward_bench.log, forward_base.log,
#      cuda_bench.log, sanitizer.log) and ncu_hc.log, ncu_hc_base.log (ncu's CSV rows: kernel, grid, time).
set -u -o pipefail
cd "$(dirname "$0")/../.."
export OUT=${OUT:-$PWD/out/hc-run}
export DSV4_BUNDLE=${DSV4_BUNDLE:-out/hc}
export DSV4_TEST_FILTER=${DSV4_TEST_FILTER:-CudaHc.*:CudaForward.*:CudaEngine.*}
export DSV4_MEMCHECK_FILTER=${DSV4_MEMCHECK_FILTER:-CudaHc.*}
export DSV4_RACECHECK_FILTER=${DSV4_RACECHECK_FILTER:-CudaHc.*}
export DSV4_MATVEC_BENCH=${DSV4_MATVEC_BENCH:---only no-matvec-case}
export DSV4_GPU_BUDGET=${DSV4_GPU_BUDGET:-170}
bash tools/device/decode_run.sh
rc=$?

# One decode step (cudaProfilerStart/Stop in cuda_forward_bench), the hc kernels only.
hc_ncu() {
  command -v ncu >/dev/null || { echo "no ncu on this machine"; return; }
  timeout 45 ncu --profile-from-start off --print-kernel-base function -k regex:'hc_|embed_kernel' \
    --metrics gpu__time_duration.sum --csv "$1/cuda_forward_bench" --layers 4 --ctx 2100 --steps 2 2>&1 |
    grep -E '"ID"|gpu__time_duration|ERROR|rror'
}
hc_ncu /tmp/dsv4-"$(basename "$DSV4_BUNDLE")" >"$OUT/ncu_hc.log"
[[ -d /tmp/dsv4-device ]] && hc_ncu /tmp/dsv4-device >"$OUT/ncu_hc_base.log"
echo "ncu: $(wc -l <"$OUT/ncu_hc.log") kernels (this bundle), seconds used: $SECONDS" | tee -a "$OUT/summary.txt"
exit $rc
