#!/usr/bin/env bash
# Decode PDL prologues (docs/PERF.md "session 7 — decode: PDL prologues of the small kernels") in
# one short GPU call: this bundle against the baseline, same card, same call.
# Here: DSV4_BUILD=build-attn DSV4_BUNDLE=out/prologue DSV4_NO_BUILD=1 bash tools/device/decode_run.sh pack
#   (carry ["out/prologue", "out/r3base"]; DSV4_BASE_BUNDLE=out/base7 for another baseline)
# There: bash tools/device/prologue_run.sh; the steps share DSV4_GPU_BUDGET seconds (default 85):
#   1. the changed kernels' tests                                          -> $OUT/tests.log
#   2. graph replay (cuda_forward_bench --ctx 2048 --steps 64), new base new base -> $OUT/forward_*.log
#   3. compute-sanitizer memcheck of the changed kernels' tests            -> $OUT/sanitizer.log
#   4. ncu of one un-graphed step (4 layers), new then base                -> $OUT/ncu_*.log
#   5. CudaForward.* and CudaEngine.* in what is left                      -> $OUT/whole.log
set -u -o pipefail
cd "$(dirname "$0")/../.."
source tools/device/common.sh

B=$(dsv4_unpack "${DSV4_BUNDLE:-out/prologue}") || { echo "no bundle"; exit 3; }
BASE=$(dsv4_unpack "${DSV4_BASE_BUNDLE:-out/r3base}") || { echo "no baseline bundle"; exit 3; }
OUT=${OUT:-$PWD/out/prologue-run}
dsv4_run_start "$B" 85
KERNEL_TESTS='CudaAttention.*:CudaIndexer.*:CudaCompressor.*:CudaNorms.*:CudaMoe.*'

timeout "$(budget 25)" "$B/cuda_tests" --gtest_color=no --gtest_filter="$KERNEL_TESTS" >"$OUT/tests.log" 2>&1
note "kernel tests: exit $? ($(grep -E '^\[  (PASSED|FAILED)  \]' "$OUT/tests.log" | tr '\n' ' '))"
grep -E '^\[  FAILED  \]|Failure' "$OUT/tests.log" | head -20 | tee -a "$SUMMARY"

for tag in new base new base; do
  ((DEADLINE - SECONDS > 12)) || break
  bin=$B; [[ $tag == base ]] && bin=$BASE
  timeout "$(budget 22)" "$bin/cuda_forward_bench" --layers "$layers" --ctx 2048 --steps 64 >>"$OUT/forward_$tag.log" 2>&1
  note "forward $tag ($layers layers): rc $? $(grep -iE 'graph|replay' "$OUT/forward_$tag.log" | tail -1 | tr '\n' ' ')"
done

if ((DEADLINE - SECONDS > 10)); then
  timeout "$(budget 25)" compute-sanitizer --tool memcheck --error-exitcode 3 "$B/cuda_tests" --gtest_color=no \
    --gtest_filter='CudaAttention.*:CudaIndexer.*:CudaCompressor.*:CudaNorms.*' >"$OUT/sanitizer.log" 2>&1
  note "memcheck: exit $? ($(grep -E 'ERROR SUMMARY' "$OUT/sanitizer.log" | tail -1); $(grep -E '^\[  (PASSED|FAILED)  \]' "$OUT/sanitizer.log" | tr '\n' ' '))"
fi

ncu_step() {
  timeout "$(budget 15)" ncu --profile-from-start off --clock-control none --print-units base --metrics gpu__time_duration.sum \
    --csv "$1/cuda_forward_bench" --layers 4 --ctx 2100 --steps 2 2>&1 | ncu_kernel_times
}
for tag in new base; do
  ((DEADLINE - SECONDS > 8)) || break
  bin=$B; [[ $tag == base ]] && bin=$BASE
  ncu_step "$bin" >"$OUT/ncu_$tag.log" 2>&1
  note "ncu $tag: $(tail -1 "$OUT/ncu_$tag.log")"
  grep -E 'partial_kernel|combine_kernel|q_kv_finish|frontier_kernel|route_kernel' "$OUT/ncu_$tag.log" | sort -k3 |
    awk '{n[$3]++; s[$3]+=$1} END {for (k in n) printf "  %-40s %3d launches, mean %.2f us\n", substr(k,1,40), n[k], s[k]/n[k]}' |
    tee -a "$SUMMARY"
done

if ((DEADLINE - SECONDS > 8)); then
  timeout "$(budget 100)" "$B/cuda_tests" --gtest_color=no --gtest_filter='CudaForward.*:CudaEngine.*' >"$OUT/whole.log" 2>&1
  note "CudaForward.*:CudaEngine.*: exit $? ($(grep -E '^\[  (PASSED|FAILED)  \]|^\[       OK \]' "$OUT/whole.log" | tr '\n' ' ' | cut -c1-600))"
fi
echo "---- summary ----"
cat "$SUMMARY"
