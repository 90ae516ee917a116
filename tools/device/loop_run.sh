#!/usr/bin/env bash
# The decode loop as users run it (sample on the device, then eval the token) against the graph
# replay, in one GPU-machine call: the speculative-step and sampling tests, the loop figures of
# this bundle and of a baseline bundle, and memcheck of those tests.
#
# Here (no GPU needed), from the repository root:
#     DSV4_BUILD=build-decode DSV4_BUNDLE=out/loop DSV4_PACK_DSV4=1 bash tools/device/decode_run.sh pack
#   (the same bundle as decode_run.sh: cuda_tests cuda_bench cuda_forward_bench dsv4).
# On the GPU machine (device tool: carry ["out/loop", "out/base7"]):
#     bash tools/device/loop_run.sh
#   1. cuda_tests (DSV4_TEST_FILTER, default the loop's tests)                 -> $OUT/gpu_tests.log
#   2. cuda_forward_bench --layers L --ctx 2048 --steps 64: graph replay, the host loop with
#      speculation off and on, the checkpoint copy                             -> $OUT/forward.log
#   3. dsv4 bench --synthetic flash-q2 --layers L --frontiers 2048,8192 --gen 64 -> $OUT/bench.log
#   4. the baseline bundle's (DSV4_BASE_BUNDLE, default out/base7) 2 and 3      -> $OUT/base.log
#   5. compute-sanitizer memcheck (DSV4_MEMCHECK_FILTER, default the loop's tests) -> $OUT/sanitizer.log
#   The loop's cost = bench per-token time - graph replay of the same bundle: robust to other
#   kernels in the bundle. $OUT/summary.txt collects the results; steps share DSV4_GPU_BUDGET
#   seconds (default 220).
set -u -o pipefail
cd "$(dirname "$0")/../.."
source tools/device/common.sh

BUNDLE=${DSV4_BUNDLE:-out/loop}
BASE_BUNDLE=${DSV4_BASE_BUNDLE:-out/base7}
BIN=$(dsv4_unpack "$BUNDLE") || { echo "no bundle in $BUNDLE"; exit 3; }
BASE=""
[[ -f "$BASE_BUNDLE/bundle.tar.gz" ]] && BASE=$(dsv4_unpack "$BASE_BUNDLE")
OUT=${OUT:-$PWD/out/loop-run}
dsv4_run_start "$BIN" 220
tests=${DSV4_TEST_FILTER:-CudaSpeculativeStep.*:CudaSampling.*:CudaEngine.*}

# ---- 1. tests (a run past its time leaves the host threads' stacks in the log) ----
limit=$(budget 60)
"$BIN/cuda_tests" --gtest_color=no --gtest_filter="$tests" >"$OUT/gpu_tests.log" 2>&1 &
pid=$!
for ((i = 0; i < limit; ++i)); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
if kill -0 "$pid" 2>/dev/null; then
  command -v gdb >/dev/null && gdb -p "$pid" -batch -ex "thread apply all bt 15" >>"$OUT/gpu_tests.log" 2>&1
  kill "$pid"
fi
wait "$pid"
rc_tests=$?
note "cuda_tests $tests: exit $rc_tests ($(grep -E '^\[  (PASSED|FAILED)  \]' "$OUT/gpu_tests.log" | tr '\n' ' '))"
grep -E '^\[  FAILED  \]|Failure|^\[       OK \]' "$OUT/gpu_tests.log" | head -30 | tee -a "$SUMMARY"

# ---- 2-4. this bundle's loop and graph, then the baseline's ----
loop_figures() {  # BIN_DIR LOG
  timeout "$(budget 45)" "$1/cuda_forward_bench" --layers "$layers" --ctx 2048 --steps 64 >"$2" 2>&1
  note "cuda_forward_bench ($1): exit $?"
  grep -E 'session of|decode \(|rollback checkpoint|sampling kernel' "$2" | tee -a "$SUMMARY"
  timeout "$(budget 50)" "$1/dsv4" bench --synthetic flash-q2 --layers "$layers" --frontiers 2048,8192 --gen 64 >>"$2" 2>&1
  note "dsv4 bench ($1): exit $?"
  grep -E '^(device|phase|prefill|decode) ' "$2" | tee -a "$SUMMARY"
}
loop_figures "$BIN" "$OUT/forward.log"
[[ -n "$BASE" ]] && loop_figures "$BASE" "$OUT/base.log"

# ---- 5. memcheck ----
rc_mem=99
if command -v compute-sanitizer >/dev/null; then
  timeout "$(budget 60)" compute-sanitizer --tool memcheck --error-exitcode 3 "$BIN/cuda_tests" --gtest_color=no \
    --gtest_filter="${DSV4_MEMCHECK_FILTER:-$tests}" >"$OUT/sanitizer.log" 2>&1
  rc_mem=$?
  note "memcheck: exit $rc_mem ($(grep -E 'ERROR SUMMARY' "$OUT/sanitizer.log" | tail -1); $(grep -E '^\[  (PASSED|FAILED)  \]' "$OUT/sanitizer.log" | tr '\n' ' '))"
fi
note "seconds used: $SECONDS"
[[ $rc_tests == 0 && $rc_mem == 0 ]]
