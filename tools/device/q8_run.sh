#!/usr/bin/env bash
# The Q8_0 row-tile matvec in one GPU-machine call, against the baseline bundle on the same card:
# the tests that run it, the decode step (graph replay), cuda_bench's Q8_0 model shapes, ncu's
# isolated per-kernel times of one un-graphed decode step, the SASS of the kernel's plain
# instantiation, then memcheck and racecheck.
#
# Here: DSV4_BUILD=build-decode DSV4_BUNDLE=out/q8 DSV4_NO_BUILD=1 bash tools/device/decode_run.sh pack
# There (device tool, carry ["out/q8", "out/device"]): bash tools/device/q8_run.sh
#   $OUT: summary.txt, gpu_tests.log, sanitizer.log, bench.log, forward.log, ncu.log, sass.txt
# Knobs: DSV4_Q8_BUNDLE (default out/q8), DSV4_BASE_BUNDLE (default out/device), DSV4_GPU_BUDGET
# (seconds for all steps, default 250), DSV4_TEST_FILTER, DSV4_TEST_BUDGET (default 95),
# DSV4_SKIP (steps to leave out: any of "bench ncu sanitizer"), DSV4_HANG_FILTER (tests that did
# not finish: run first under ncu for DSV4_HANG_SECONDS, default 30; the last "Profiling" line of
# $OUT/hang.log names the kernel that did not return).
set -u -o pipefail
cd "$(dirname "$0")/../.."
source tools/device/common.sh

BIN=$(dsv4_unpack "${DSV4_Q8_BUNDLE:-out/q8}") || { echo "no bundle"; exit 3; }
BASE=$(dsv4_unpack "${DSV4_BASE_BUNDLE:-out/device}") || { echo "no baseline bundle"; exit 3; }
OUT=${OUT:-$PWD/out/q8-run}
dsv4_run_start "$BIN" 250

skip() { [[ " ${DSV4_SKIP:-} " == *" $1 "* ]]; }

# ---- 0. which kernel does not return ----
if [[ -n "${DSV4_HANG_FILTER:-}" ]]; then
  timeout "$(budget "${DSV4_HANG_SECONDS:-30}")" ncu --metrics gpu__time_duration.sum "$BIN/cuda_tests" --gtest_color=no \
    --gtest_filter="$DSV4_HANG_FILTER" >"$OUT/hang.log" 2>&1
  note "ncu $DSV4_HANG_FILTER: exit $?; last: $(grep -E '==PROF== Profiling' "$OUT/hang.log" | tail -1 | cut -c1-200)"
  grep -E '^\[ |Profiling' "$OUT/hang.log" | tail -4 | cut -c1-200 | tee -a "$SUMMARY"
fi

# ---- 1. tests of the kernel and of the forward/engine paths that run it ----
timeout "$(budget "${DSV4_TEST_BUDGET:-95}")" "$BIN/cuda_tests" --gtest_color=no --gtest_filter="${DSV4_TEST_FILTER:-CudaMatvec*:CudaMoe*:CudaNorms*:CudaForward*:CudaEngine*:CudaReference*}" \
  >"$OUT/gpu_tests.log" 2>&1
rc_tests=$?
note "cuda_tests: exit $rc_tests ($(grep -E '^\[  (PASSED|FAILED)  \]' "$OUT/gpu_tests.log" | tr '\n' ' '))"
grep -E '^\[  FAILED  \]|Failure' "$OUT/gpu_tests.log" | head -20 | tee -a "$SUMMARY"
grep -E '^\[       OK \]' "$OUT/gpu_tests.log" | awk '{print $(NF-1), $NF, $4}' | sort -t'(' -k2 -n | tail -5 | tee -a "$SUMMARY"

# ---- 2. sanitizers (before the timings: they are required, the timings are not) ----
skip sanitizer || {
  echo "### memcheck"
  timeout "$(budget 35)" compute-sanitizer --tool memcheck --error-exitcode 3 "$BIN/cuda_tests" --gtest_color=no \
    --gtest_filter='CudaMatvec.Q8RowTile*:CudaMatvecQ8Fused.*:CudaMatvecQ8IdentityExperts.*:CudaMatvec.GraphCapture*:CudaMatvec.DefaultPlans:CudaMatvec.Experts:CudaMatvec.BadArguments*'
  echo "### memcheck exit $?"
  echo "### racecheck"
  timeout "$(budget 20)" compute-sanitizer --tool racecheck --error-exitcode 3 "$BIN/cuda_tests" --gtest_color=no \
    --gtest_filter='CudaMatvec.Q8RowTileKernelEveryWarpSplit:CudaMatvecQ8Fused.*:CudaMatvecQ8IdentityExperts.*'
  echo "### racecheck exit $?"
} >"$OUT/sanitizer.log" 2>&1
skip sanitizer || note "$(grep -E '^### (memcheck|racecheck) exit' "$OUT/sanitizer.log" | tr '\n' ' ') $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' "$OUT/sanitizer.log" | tr '\n' ' ')"

# ---- 3. decode step, graph replay, new then baseline ----
for b in "$BIN" "$BASE"; do
  echo "### $b" >>"$OUT/forward.log"
  timeout "$(budget 30)" "$b/cuda_forward_bench" --layers "$layers" --ctx 2048 --steps 64 >>"$OUT/forward.log" 2>&1
  note "cuda_forward_bench $b --layers $layers: exit $?"
done
grep -E '^###|decode|tok/s' "$OUT/forward.log" | tee -a "$SUMMARY"

# ---- 4. cuda_bench, the Q8_0 model shapes (weights from HBM), new then baseline ----
skip bench || for b in "$BIN" "$BASE"; do
  echo "### $b" >>"$OUT/bench.log"
  timeout "$(budget 15)" "$b/cuda_bench" --only "(Q8_0)" >>"$OUT/bench.log" 2>&1
  note "cuda_bench $b: exit $?"
done
grep -E '^###|copy ceiling used|Q8_0' "$OUT/bench.log" | tee -a "$SUMMARY"

# ---- 5. ncu: the Q8_0 launches of one un-graphed decode step (cold L2), new then baseline ----
if command -v ncu >/dev/null && ! skip ncu; then
  for b in "$BIN" "$BASE"; do
    echo "### $b" >>"$OUT/ncu.log"
    timeout "$(budget 25)" ncu --profile-from-start off -k regex:matvec_q8 --csv --metrics \
      gpu__time_duration.sum,dram__throughput.avg.pct_of_peak_sustained_elapsed,sm__warps_active.avg.pct_of_peak_sustained_active,launch__grid_size,launch__block_size,launch__registers_per_thread,smsp__average_warps_issue_stalled_long_scoreboard_per_issue_active.ratio,smsp__average_warps_issue_stalled_short_scoreboard_per_issue_active.ratio,smsp__issue_active.avg.pct_of_peak_sustained_active,smsp__inst_executed.sum \
      "$b/cuda_forward_bench" --layers 2 --ctx 2100 --steps 2 >>"$OUT/ncu.log" 2>&1
    note "ncu $b: exit $?"
  done
fi

# ---- 6. SASS of the plain dense instantiation (instructions per item: counted afterwards) ----
if command -v cuobjdump >/dev/null; then
  for b in "$BIN" "$BASE"; do
    echo "### $b"
    cuobjdump -sass "$b/cuda_bench" 2>/dev/null | awk '/Function : .*matvec_q8_kernelILb0ELNS._7Q8InputE0E/{on=1} on&&/Function : /&&!/matvec_q8_kernelILb0ELNS._7Q8InputE0E/{on=0} on'
  done >"$OUT/sass.txt" 2>&1
  note "sass: $(grep -c '/\*[0-9a-f]\{4\}\*/' "$OUT/sass.txt") instruction lines"
fi

note "seconds used: $SECONDS"
[[ $rc_tests == 0 ]]
