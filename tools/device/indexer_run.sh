#!/usr/bin/env bash
# The prefill indexer's scores on tensor cores (docs/PERF.md "session 8 — prefill: the indexer's
# scores on tensor cores") in one short GPU call, the candidate and the baseline on the same card.
# Here: DSV4_BUILD=build-hc DSV4_BUNDLE=out/indexer DSV4_NO_BUILD=1 bash tools/device/decode_run.sh pack
#   (device tool: carry ["out/indexer", "out/base8"])
# There: bash tools/device/indexer_run.sh
#   1. CudaPrefillIndexer.* (candidate)                                      -> $OUT/tests.log
#   2. cuda_forward_bench --layers 4 --chunk 4096 --steps 1 (layer 2 is CSA) at ctx 2048 (the 8K
#      prompt's second chunk) and 20480 (the 25K prompt's last), candidate then baseline -> $OUT/forward.log
#   3. memcheck of CudaPrefillIndexer.*, racecheck of its selection test       -> $OUT/sanitizer.log
#   4. CudaForward.*:CudaReference*:CudaEngine.* (candidate) in what is left   -> $OUT/model_tests.log
#   Steps share DSV4_GPU_BUDGET seconds (default 110).
# DSV4_NEW_BUNDLE names another candidate bundle (default out/indexer).
# There, second call: bash tools/device/indexer_run.sh kernels
#   ncu times of the indexer's kernels (prep, scores; the q_b GEMM and the top-k are in the stage
#   too) in the same 4-layer run, candidate then baseline                    -> $OUT/ncu.log
#   then CudaForward.*:CudaReference* (candidate) in what is left            -> $OUT/model_tests.log
set -u -o pipefail
cd "$(dirname "$0")/../.."
source tools/device/common.sh

NEW=$(dsv4_unpack "${DSV4_NEW_BUNDLE:-out/indexer}") || { echo "no candidate bundle"; exit 3; }
BASE=$(dsv4_unpack out/base8) || { echo "no baseline bundle"; exit 3; }
OUT=${OUT:-$PWD/out/indexer-run}
dsv4_run_start "$NEW" 110

if [[ "${1:-}" == "kernels" ]]; then
  for b in "$NEW" "$BASE"; do
    echo "### $b"
    timeout "$(budget 25)" ncu --clock-control none --print-units base --metrics gpu__time_duration.sum --csv \
      -c 8 -k 'regex:score_kernel|prep_kernel|topk' "$b/cuda_forward_bench" --layers 4 --ctx 2048 \
      --chunk 4096 --steps 1 2>&1 | ncu_kernel_times
  done >"$OUT/ncu.log" 2>&1
  tee -a "$SUMMARY" <"$OUT/ncu.log"
  if [[ -n "${DSV4_KERNELS_TESTS_ONLY:-}" ]]; then  # the indexer's own tests instead of the model's
    timeout "$(budget 25)" "$NEW/cuda_tests" --gtest_color=no --gtest_filter='CudaPrefillIndexer.*' >"$OUT/tests.log" 2>&1
    note "CudaPrefillIndexer.*: exit $? ($(grep -E '^\[  (PASSED|FAILED)  \]' "$OUT/tests.log" | tr '\n' ' '))"
    timeout "$(budget 30)" compute-sanitizer --tool memcheck --error-exitcode 3 "$NEW/cuda_tests" --gtest_color=no \
      --gtest_filter='CudaPrefillIndexer.*' >"$OUT/sanitizer.log" 2>&1
    note "memcheck: exit $? ($(grep -E 'ERROR SUMMARY' "$OUT/sanitizer.log"))"
    exit 0
  fi
  timeout "$(budget 80)" "$NEW/cuda_tests" --gtest_color=no --gtest_filter='CudaForward.*:CudaReference*' \
    >"$OUT/model_tests.log" 2>&1
  note "CudaForward.*:CudaReference*: exit $? ($(grep -E '^\[  (PASSED|FAILED)  \]|^\[       OK|^\[  FAILED' "$OUT/model_tests.log" | tr '\n' ' '))"
  exit 0
fi

timeout "$(budget 25)" "$NEW/cuda_tests" --gtest_color=no --gtest_filter='CudaPrefillIndexer.*' >"$OUT/tests.log" 2>&1
note "CudaPrefillIndexer.*: exit $? ($(grep -E '^\[  (PASSED|FAILED)  \]' "$OUT/tests.log" | tr '\n' ' '))"
grep -E 'Failure|FAILED' "$OUT/tests.log" | head -20 | tee -a "$SUMMARY"

fwd() {  # fwd BUNDLE CTX
  ((DEADLINE - SECONDS > 8)) || return
  echo "### $1 ctx $2"
  timeout "$(budget 20)" "$1/cuda_forward_bench" --layers 4 --ctx "$2" --chunk 4096 --steps 1
  echo "rc $?"
}
{
  for ctx in 2048 20480; do
    fwd "$NEW" $ctx
    fwd "$BASE" $ctx
  done
} >"$OUT/forward.log" 2>&1
grep -E '###|indexer|one prefill chunk|^rc|rror' "$OUT/forward.log" | tee -a "$SUMMARY"

{
  if ((DEADLINE - SECONDS > 10)); then
    timeout "$(budget 30)" compute-sanitizer --tool memcheck --error-exitcode 3 "$NEW/cuda_tests" --gtest_color=no \
      --gtest_filter='CudaPrefillIndexer.*'
    echo "memcheck exit $?"
  fi
  if ((DEADLINE - SECONDS > 10)); then
    timeout "$(budget 30)" compute-sanitizer --tool racecheck --error-exitcode 3 "$NEW/cuda_tests" --gtest_color=no \
      --gtest_filter='CudaPrefillIndexer.SelectionMatchesPlainReference'
    echo "racecheck exit $?"
  fi
} >"$OUT/sanitizer.log" 2>&1
grep -E 'ERROR SUMMARY|RACECHECK SUMMARY|exit [0-9]|^\[  (PASSED|FAILED)' "$OUT/sanitizer.log" | tee -a "$SUMMARY"

if ((DEADLINE - SECONDS > 10)); then
  timeout "$(budget 60)" "$NEW/cuda_tests" --gtest_color=no --gtest_filter='CudaForward.*:CudaReference*:CudaEngine.*' \
    >"$OUT/model_tests.log" 2>&1
  note "CudaForward.*:CudaReference*:CudaEngine.*: exit $? ($(grep -E '^\[  (PASSED|FAILED)  \]|^\[       OK|^\[  FAILED' "$OUT/model_tests.log" | tr '\n' ' '))"
fi
echo "---- summary ----"
cat "$SUMMARY"
