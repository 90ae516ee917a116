#!/usr/bin/env bash
# The hyper-connection kernels (src/cuda/hc.cu) in one GPU-machine call, lean enough for a small
# device budget: the hc and whole-model tests, memcheck and racecheck of the fused hc_post +
# collapse tests, the decode step of the full model for this bundle, the baseline's and, when
# carried, an A/B bundle (cuda_forward_bench of the same tree without the lever under test),
# all on the same card, then ncu's time of every hc kernel of one un-graphed decode step (4
# layers) for this bundle and the A/B bundle (else the baseline).
#
# Here (no GPU needed), from the repository root:
#     DSV4_BUILD=build-hc DSV4_BUNDLE=out/hc DSV4_NO_BUILD=1 bash tools/device/decode_run.sh pack
# On the GPU machine (device tool: carry ["out/hc", "out/device"], plus "out/hc-ab" if packed):
#     bash tools/device/hc_run.sh
#   -> $OUT: summary.txt, gpu_tests.log, sanitizer.log, forward_bench.log, forward_base.log,
#      forward_ab.log, ncu_hc.log, ncu_hc_base.log (ncu's CSV rows: kernel, time).
#   Knobs: DSV4_TEST_FILTER, DSV4_SANITIZER_FILTER, DSV4_GPU_BUDGET (seconds, default 320),
#   DSV4_BUNDLE (default out/hc), DSV4_BASE_BUNDLE (default out/device), DSV4_AB_BUNDLE
#   (default out/hc-ab).
set -u -o pipefail
cd "$(dirname "$0")/../.."
source tools/device/common.sh

BUNDLE=${DSV4_BUNDLE:-out/hc}
BASE_BUNDLE=${DSV4_BASE_BUNDLE:-out/device}
BIN=$(dsv4_unpack "$BUNDLE") || { echo "no bundle in $BUNDLE"; exit 3; }
BASE=""
[[ -f "$BASE_BUNDLE/bundle.tar.gz" ]] && BASE=$(dsv4_unpack "$BASE_BUNDLE")
AB_BUNDLE=${DSV4_AB_BUNDLE:-out/hc-ab}
AB=""
[[ -f "$AB_BUNDLE/bundle.tar.gz" ]] && AB=$(dsv4_unpack "$AB_BUNDLE")
OUT=${OUT:-$PWD/out/hc-run}
dsv4_run_start "$BIN" 320

# ---- 1. tests: the hc kernels first (seconds), then the whole-model ones ----
# (CudaForward.MatchesCpuInBothModes alone takes ≈ 70 s on an H100.)
filter=${DSV4_TEST_FILTER:-CudaForward.*:CudaEngine.*:CudaMatvec.GraphCapture*}
{
  timeout "$(budget 30)" "$BIN/cuda_tests" --gtest_color=no --gtest_filter="CudaHc.*"
  echo "### hc tests exit $?"
  timeout "$(budget 150)" "$BIN/cuda_tests" --gtest_color=no --gtest_filter="$filter"
  echo "### whole-model tests exit $?"
} >"$OUT/gpu_tests.log" 2>&1
rc_tests=$(grep -o '### [a-z -]* exit [0-9]*' "$OUT/gpu_tests.log" | grep -o '[0-9]*$' | sort -n | tail -1)
note "cuda_tests (CudaHc.*, then $filter): $(grep -o '### [a-z -]* exit [0-9]*' "$OUT/gpu_tests.log" | tr '\n' ' ')($(grep -E '^\[  (PASSED|FAILED)  \]' "$OUT/gpu_tests.log" | tr '\n' ' ')) at ${SECONDS}s"
grep -E '^\[  FAILED  \]|Failure|worst rel L2|first position' "$OUT/gpu_tests.log" | head -30 | tee -a "$SUMMARY"

# ---- 2. the decode step of the whole model, this bundle then the baseline, same card ----
fwd=(--layers "$layers" --ctx 2048 --steps 64)
timeout "$(budget 40)" "$BIN/cuda_forward_bench" "${fwd[@]}" >"$OUT/forward_bench.log" 2>&1
note "cuda_forward_bench ${fwd[*]}: exit $? at ${SECONDS}s"
grep -E 'decode|graph|hc_|chunk' "$OUT/forward_bench.log" | tee -a "$SUMMARY"
if [[ -n "$BASE" ]]; then
  timeout "$(budget 40)" "$BASE/cuda_forward_bench" "${fwd[@]}" >"$OUT/forward_base.log" 2>&1
  note "baseline cuda_forward_bench ($BASE_BUNDLE): exit $? at ${SECONDS}s"
  grep -E 'decode|graph|hc_|chunk' "$OUT/forward_base.log" | tee -a "$SUMMARY"
fi
if [[ -n "$AB" ]]; then
  timeout "$(budget 40)" "$AB/cuda_forward_bench" "${fwd[@]}" >"$OUT/forward_ab.log" 2>&1
  note "A/B cuda_forward_bench ($AB_BUNDLE): exit $? at ${SECONDS}s"
  grep -E 'decode|graph|hc_|chunk' "$OUT/forward_ab.log" | tee -a "$SUMMARY"
fi

# ---- 3. ncu: the hc kernels of one un-graphed decode step (cudaProfilerStart/Stop in the bench) ----
hc_ncu() {
  command -v ncu >/dev/null || { echo "no ncu on this machine"; return; }
  timeout "$(budget 25)" ncu --profile-from-start off --clock-control none --print-units base \
    --print-kernel-base function -k regex:'hc_|embed_kernel' --metrics gpu__time_duration.sum --csv \
    "$1/cuda_forward_bench" --layers 4 --ctx 2100 --steps 2 2>&1 | grep -E '"ID"|gpu__time_duration|ERROR|rror'
}
hc_ncu "$BIN" >"$OUT/ncu_hc.log"
ncu_base=${AB:-$BASE}
[[ -n "$ncu_base" ]] && hc_ncu "$ncu_base" >"$OUT/ncu_hc_base.log"
note "ncu: $(grep -c gpu__time "$OUT/ncu_hc.log") kernels (this bundle), $(grep -c gpu__time "$OUT/ncu_hc_base.log" 2>/dev/null) ($ncu_base); seconds used: $SECONDS"

# ---- 4. sanitizers on the fused kernel's tests (distributed shared memory: read racecheck's lines) ----
san=${DSV4_SANITIZER_FILTER:-CudaHc.PostCollapse*}
{
  echo "### memcheck"
  timeout "$(budget 20)" compute-sanitizer --tool memcheck --error-exitcode 3 "$BIN/cuda_tests" --gtest_color=no \
    --gtest_filter="$san"
  echo "### memcheck exit $?"
  echo "### racecheck"
  timeout "$(budget 20)" compute-sanitizer --tool racecheck --error-exitcode 3 "$BIN/cuda_tests" --gtest_color=no \
    --gtest_filter="$san"
  echo "### racecheck exit $?"
} >"$OUT/sanitizer.log" 2>&1
note "sanitizers ($san): $(grep -o '### [a-z]* exit [0-9]*' "$OUT/sanitizer.log" | tr '\n' ' ') ($(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' "$OUT/sanitizer.log" | tr '\n' ' ')) at ${SECONDS}s"
note "seconds used: $SECONDS"
[[ $rc_tests == 0 ]]
