#!/usr/bin/env bash
# The Q8_0 row-tile matvec in one GPU-machine call, against the baseline bundle on the same card:
# the kernel's tests first, then the timings (cuda_bench's Q8_0 model shapes, the decode step's
# graph replay, ncu of the Q8_0 launches of one un-graphed decode step with stall reasons), the
# SASS of the kernel's plain instantiation, memcheck and racecheck of the Q8_0 tests, and last the
# rest of cuda_tests (the whole-model tests) with what is left of the budget.
#
# Here: DSV4_BUILD=build-matvec DSV4_BUNDLE=out/q8s7 DSV4_NO_BUILD=1 bash tools/device/decode_run.sh pack
# There (device tool, carry ["out/q8s7", "out/base7"]): bash tools/device/q8_run.sh
#   $OUT: summary.txt, gpu_tests.log, sanitizer.log, bench.log, forward.log, ncu.log, sass.txt, model_tests.log
# Knobs: DSV4_Q8_BUNDLE (default out/q8s7), DSV4_BASE_BUNDLE (default out/base7), DSV4_GPU_BUDGET
# (seconds for all steps, default 170), DSV4_MODEL_FILTER (the last step's tests),
# DSV4_RACECHECK_FILTER, DSV4_EXTRA_BUNDLE (a second variant for the timings), DSV4_SKIP (steps to leave out: any of "bench forward ncu sass sanitizer model").
set -u -o pipefail
cd "$(dirname "$0")/../.."
source tools/device/common.sh

BIN=$(dsv4_unpack "${DSV4_Q8_BUNDLE:-out/q8s7}") || { echo "no bundle"; exit 3; }
BASE=$(dsv4_unpack "${DSV4_BASE_BUNDLE:-out/base7}") || { echo "no baseline bundle"; exit 3; }
EXTRA=""  # a second variant, timed beside the two
[[ -n "${DSV4_EXTRA_BUNDLE:-}" ]] && { EXTRA=$(dsv4_unpack "$DSV4_EXTRA_BUNDLE") || { echo "no extra bundle"; exit 3; }; }
OUT=${OUT:-$PWD/out/q8-run}
dsv4_run_start "$BIN" 170

skip() { [[ " ${DSV4_SKIP:-} " == *" $1 "* ]]; }

# ---- 1. the kernel's tests ----
timeout "$(budget 40)" "$BIN/cuda_tests" --gtest_color=no --gtest_filter='CudaMatvec*:CudaMoe*:CudaNorms*' \
  >"$OUT/gpu_tests.log" 2>&1
rc_tests=$?
note "cuda_tests (matvec): exit $rc_tests ($(grep -E '^\[  (PASSED|FAILED)  \]' "$OUT/gpu_tests.log" | tr '\n' ' '))"
grep -E '^\[  FAILED  \]|Failure' "$OUT/gpu_tests.log" | head -20 | tee -a "$SUMMARY"

# ---- 2. cuda_bench, the Q8_0 model shapes (weights from HBM), new then baseline ----
skip bench || for b in "$BIN" "$BASE" $EXTRA; do
  echo "### $b" >>"$OUT/bench.log"
  timeout "$(budget 15)" "$b/cuda_bench" --only "(Q8_0)" >>"$OUT/bench.log" 2>&1
  note "cuda_bench $b: exit $?"
done
skip bench || grep -E '^###|copy ceiling used|Q8_0' "$OUT/bench.log" | tee -a "$SUMMARY"

# ---- 3. decode step, graph replay, new, baseline, new ----
skip forward || for b in "$BIN" "$BASE" $EXTRA "$BIN"; do
  echo "### $b" >>"$OUT/forward.log"
  timeout "$(budget 25)" "$b/cuda_forward_bench" --layers "$layers" --ctx 2048 --steps 64 >>"$OUT/forward.log" 2>&1
  note "cuda_forward_bench $b --layers $layers: exit $?"
done
skip forward || grep -E '^###|decode|tok/s' "$OUT/forward.log" | tee -a "$SUMMARY"

# ---- 4. ncu: the Q8_0 launches of one un-graphed decode step (cold L2), new then baseline ----
if command -v ncu >/dev/null && ! skip ncu; then
  for b in "$BIN" "$BASE" $EXTRA; do
    echo "### $b" >>"$OUT/ncu.log"
    timeout "$(budget 25)" ncu --profile-from-start off --clock-control none -k regex:matvec_q8 --csv --metrics \
      gpu__time_duration.sum,dram__throughput.avg.pct_of_peak_sustained_elapsed,sm__warps_active.avg.pct_of_peak_sustained_active,launch__grid_size,launch__block_size,launch__registers_per_thread,smsp__issue_active.avg.pct_of_peak_sustained_active,smsp__inst_executed.sum,smsp__average_warps_issue_stalled_long_scoreboard_per_issue_active.ratio,smsp__average_warps_issue_stalled_short_scoreboard_per_issue_active.ratio,smsp__average_warps_issue_stalled_mio_throttle_per_issue_active.ratio,smsp__average_warps_issue_stalled_lg_throttle_per_issue_active.ratio,smsp__average_warps_issue_stalled_barrier_per_issue_active.ratio,smsp__average_warps_issue_stalled_wait_per_issue_active.ratio,smsp__average_warps_issue_stalled_math_pipe_throttle_per_issue_active.ratio,smsp__average_warps_issue_stalled_dispatch_stall_per_issue_active.ratio,smsp__average_warps_issue_stalled_no_instruction_per_issue_active.ratio \
      "$b/cuda_forward_bench" --layers 2 --ctx 2100 --steps 2 >>"$OUT/ncu.log" 2>&1
    note "ncu $b: exit $?"
  done
fi

# ---- 5. SASS of the plain dense instantiation (instructions per item: counted afterwards) ----
if command -v cuobjdump >/dev/null && ! skip sass; then
  for b in "$BIN" "$BASE"; do
    echo "### $b"
    cuobjdump -sass "$b/cuda_bench" 2>/dev/null | awk '/Function : .*matvec_q8_kernelILb0ELNS._7Q8InputE0E/{on=1} on&&/Function : /&&!/matvec_q8_kernelILb0ELNS._7Q8InputE0E/{on=0} on'
  done >"$OUT/sass.txt" 2>&1
  note "sass: $(grep -c '/\*[0-9a-f]\{4\}\*/' "$OUT/sass.txt") instruction lines"
fi

# ---- 6. sanitizers of the Q8_0 tests ----
skip sanitizer || {
  echo "### memcheck"
  timeout "$(budget 30)" compute-sanitizer --tool memcheck --error-exitcode 3 "$BIN/cuda_tests" --gtest_color=no \
    --gtest_filter='CudaMatvec.Q8RowTile*:CudaMatvecQ8Fused.*:CudaMatvecQ8IdentityExperts.*:CudaMatvec.GraphCapture*:CudaMatvec.DefaultPlans:CudaMatvec.BadArguments*'
  echo "### memcheck exit $?"
  echo "### racecheck"
  timeout "$(budget 40)" compute-sanitizer --tool racecheck --error-exitcode 3 "$BIN/cuda_tests" --gtest_color=no \
    --gtest_filter="${DSV4_RACECHECK_FILTER:-CudaMatvec.Q8RowTileKernelEveryWarpSplit:CudaMatvecQ8Fused.*:CudaMatvecQ8IdentityExperts.*}"
  echo "### racecheck exit $?"
} >"$OUT/sanitizer.log" 2>&1
skip sanitizer || note "$(grep -E '^### (memcheck|racecheck) exit' "$OUT/sanitizer.log" | tr '\n' ' ') $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' "$OUT/sanitizer.log" | tr '\n' ' ')"

# ---- 7. the rest of cuda_tests (the whole-model tests among them) with what is left ----
skip model || {
  timeout "$(budget 120)" "$BIN/cuda_tests" --gtest_color=no \
    --gtest_filter="${DSV4_MODEL_FILTER:-*-CudaMatvec*:CudaMoe*:CudaNorms*}" >"$OUT/model_tests.log" 2>&1
  note "cuda_tests (model): exit $? ($(grep -E '^\[  (PASSED|FAILED)  \]' "$OUT/model_tests.log" | tr '\n' ' '))"
  grep -E '^\[  FAILED  \]|Failure|worst rel L2' "$OUT/model_tests.log" | head -20 | tee -a "$SUMMARY"
  grep -E '^\[ RUN|^\[       OK' "$OUT/model_tests.log" | tail -2 | tee -a "$SUMMARY"
}

note "seconds used: $SECONDS"
[[ $rc_tests == 0 ]]
