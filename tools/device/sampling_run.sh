#!/usr/bin/env bash
# The device sampler (cuda/sampling.h) in one short GPU-machine call: its tests and the decode
# loop's tests that use it, the sampling kernel's time per kind of request for this bundle and a
# baseline bundle (cuda_forward_bench on 2 layers: only the logits matter), memcheck and racecheck.
#
# Here (no GPU needed), from the repository root:
#     DSV4_BUILD=build-decode bash tools/device/sampling_run.sh pack
#   builds cuda_tests and cuda_forward_bench in $DSV4_BUILD (DSV4_NO_BUILD=1: as they are) and
#   bundles them into $DSV4_BUNDLE (default out/sampling).
# On the GPU machine (device tool: carry ["out/sampling", "out/r2base"]):
#     bash tools/device/sampling_run.sh
#   1. cuda_tests CudaSampling.*:CudaSpeculativeStep.*:CudaEngine.*          -> $OUT/gpu_tests.log
#   2. cuda_forward_bench --layers 2 --ctx 512 --steps 8, this bundle and the baseline
#      (DSV4_BASE_BUNDLE, default out/r2base): the "sampling kernel" lines      -> $OUT/bench.log
#   3. compute-sanitizer memcheck of CudaSampling.* -> $OUT/sanitizer.log, racecheck of the
#      selection's tests (DSV4_RACECHECK_FILTER; slow: give it DSV4_GPU_BUDGET) -> $OUT/racecheck.log
#   $OUT/summary.txt collects the results; steps share DSV4_GPU_BUDGET seconds (default 90).
set -u -o pipefail
cd "$(dirname "$0")/../.."
source tools/device/common.sh

if [[ "${1:-}" == "pack" ]]; then
  set -e
  BUILD=${DSV4_BUILD:-build-decode}
  targets=(cuda_tests cuda_forward_bench)
  [[ "${DSV4_NO_BUILD:-0}" == 1 ]] || cmake --build "$BUILD" --target "${targets[@]}" -j2
  dsv4_pack "$BUILD" "${DSV4_BUNDLE:-out/sampling}" "${targets[@]}"
  exit 0
fi

BUNDLE=${DSV4_BUNDLE:-out/sampling}
BASE_BUNDLE=${DSV4_BASE_BUNDLE:-out/r2base}
BIN=$(dsv4_unpack "$BUNDLE") || { echo "no bundle in $BUNDLE"; exit 3; }
BASE=""
[[ -f "$BASE_BUNDLE/bundle.tar.gz" ]] && BASE=$(dsv4_unpack "$BASE_BUNDLE")
OUT=${OUT:-$PWD/out/sampling-run}
dsv4_run_start "$BIN" 90

# ---- 1. tests ----
tests=${DSV4_TEST_FILTER:-CudaSampling.*:CudaSpeculativeStep.*:CudaEngine.*}
timeout "$(budget 30)" "$BIN/cuda_tests" --gtest_color=no --gtest_filter="$tests" >"$OUT/gpu_tests.log" 2>&1
rc_tests=$?
note "cuda_tests $tests: exit $rc_tests ($(grep -E '^\[  (PASSED|FAILED)  \]' "$OUT/gpu_tests.log" | tr '\n' ' '))"
grep -E '^\[  FAILED  \]|Failure|^\[       OK \] CudaSampling' "$OUT/gpu_tests.log" | head -30 | tee -a "$SUMMARY"

# ---- 2. sampling kernel times, this bundle then the baseline (same card, same call) ----
for bin in "$BIN" $BASE; do
  timeout "$(budget 20)" "$bin/cuda_forward_bench" --layers 2 --ctx 512 --steps 8 >>"$OUT/bench.log" 2>&1
  note "cuda_forward_bench --layers 2 ($bin): exit $?"
  grep -E 'sampling kernel' "$OUT/bench.log" | tail -4 | tee -a "$SUMMARY"
done

# ---- 3. sanitizers ----
rc_mem=99
if command -v compute-sanitizer >/dev/null; then
  timeout "$(budget 30)" compute-sanitizer --tool memcheck --error-exitcode 3 "$BIN/cuda_tests" --gtest_color=no \
    --gtest_filter="CudaSampling.*" >"$OUT/sanitizer.log" 2>&1
  rc_mem=$?
  note "memcheck CudaSampling.*: exit $rc_mem ($(grep -E 'ERROR SUMMARY' "$OUT/sanitizer.log" | tail -1); $(grep -E '^\[  (PASSED|FAILED)  \]' "$OUT/sanitizer.log" | tr '\n' ' '))"
  race=${DSV4_RACECHECK_FILTER:-CudaSampling.ClusterRangesTiesAndLongListsMatchHostSampler:CudaSampling.DistributionMatchesHostSampler}
  timeout "$(budget 40)" compute-sanitizer --tool racecheck --error-exitcode 3 "$BIN/cuda_tests" --gtest_color=no \
    --gtest_filter="$race" >"$OUT/racecheck.log" 2>&1
  note "racecheck $race: exit $? ($(grep -E 'RACECHECK SUMMARY|ERROR SUMMARY' "$OUT/racecheck.log" | tail -1); $(grep -E '^\[  (PASSED|FAILED)  \]' "$OUT/racecheck.log" | tail -1))"
fi
note "seconds used: $SECONDS"
[[ $rc_tests == 0 && $rc_mem == 0 ]]
