#!/usr/bin/env bash
# One device call that checks and measures a tree against a baseline (what a session's final
# integrated run needs), on the GPU machine:
#   all of cuda_tests, compute-sanitizer memcheck (CudaHc.*, CudaAttention.*, CudaEngine.*, graph
#   capture) and racecheck (CudaHc.*), decode graph replay (cuda_forward_bench --ctx 2048 --steps 64,
#   as many layers as the card holds) of this bundle, the baseline and this bundle again, ncu of one
#   un-graphed step, dsv4 bench --synthetic flash-q2 at 2048,8192 (this bundle and the baseline) and
#   at 25000 (first token).
# Here: source tools/device/common.sh; dsv4_pack <build> out/final cuda_tests cuda_bench
#   cuda_forward_bench dsv4 gemm_bench, and a baseline bundle (e.g. of HEAD) in out/device
#   (other folders: DSV4_NEW=out/x DSV4_BASE=out/y). DSV4_PARTS="tests" or "bench" runs one half
#   (two calls on a warm machine fit the per-call limit better than one); DSV4_Q4=1 adds flash-q4.
# There: bash tools/device/ab_run.sh (carry both folders); logs under $OUT (six files at most).
set -u -o pipefail
cd "$(dirname "$0")/../.."
source tools/device/common.sh
B=$(dsv4_unpack "${DSV4_NEW:-out/final}")
BASE=$(dsv4_unpack "${DSV4_BASE:-out/device}")
OUT=${OUT:-$PWD/out/final-run}
dsv4_run_start "$B" 540
want() { [[ " ${DSV4_PARTS:-tests bench} " == *" $1 "* ]]; }
want bench && for tag in ${DSV4_AB_ORDER:-new base new}; do
  bin=$B; [[ $tag == base ]] && bin=$BASE
  timeout "$(budget 60)" "$bin/cuda_forward_bench" --layers "$layers" --ctx 2048 --steps 64 >>"$OUT/forward_$tag.log" 2>&1
  note "forward $tag ($layers layers): $(grep -iE 'graph|replay' "$OUT/forward_$tag.log" | tail -1 | tr '\n' ' ')"
done
if want tests; then
timeout "$(budget 200)" "$B/cuda_tests" --gtest_color=no >"$OUT/gpu_tests.log" 2>&1
note "cuda_tests: exit $? ($(grep -E '^\[  (PASSED|FAILED)  \]' "$OUT/gpu_tests.log" | tr '\n' ' '))"
grep -E '^\[  FAILED  \]|Failure' "$OUT/gpu_tests.log" | head -30 | tee -a "$SUMMARY"
grep -E 'worst rel L2|first position|median' "$OUT/gpu_tests.log" | head -40 >>"$SUMMARY"
{
  echo "### memcheck"
  timeout "$(budget "${DSV4_MEMCHECK_S:-90}")" compute-sanitizer --tool memcheck --error-exitcode 3 "$B/cuda_tests" --gtest_color=no \
    --gtest_filter="${DSV4_MEMCHECK_FILTER:-CudaHc.*:CudaAttention.*:CudaEngine.*:CudaMatvec.GraphCapture*}"
  echo "### memcheck exit $?"
  echo "### racecheck"
  timeout "$(budget "${DSV4_RACECHECK_S:-50}")" compute-sanitizer --tool racecheck --error-exitcode 3 "$B/cuda_tests" --gtest_color=no \
    --gtest_filter="${DSV4_RACECHECK_FILTER:-CudaHc.*}"
  echo "### racecheck exit $?"
} >"$OUT/sanitizer.log" 2>&1
note "memcheck: $(grep -o '### memcheck exit [0-9]*' "$OUT/sanitizer.log") $(grep -E 'ERROR SUMMARY' "$OUT/sanitizer.log" | head -1)"
note "racecheck: $(grep -o '### racecheck exit [0-9]*' "$OUT/sanitizer.log") $(grep -E 'RACECHECK SUMMARY|ERROR SUMMARY' "$OUT/sanitizer.log" | tail -1)"
fi
ncu_step() {
  timeout "$(budget 45)" ncu --profile-from-start off --clock-control none --print-units base --metrics gpu__time_duration.sum \
    --csv "$1/cuda_forward_bench" --layers 4 --ctx 2100 --steps 2 2>&1 | ncu_kernel_times
}
# dsv4 bench's table straight into the summary (the folder that comes back holds at most 8 files).
bench_into_summary() {
  local what=$1 bin=$2 secs=$3 preset=$4 n_layers=$5 frontiers=$6 gen=$7 log
  log=$(mktemp)
  timeout "$(budget "$secs")" "$bin/dsv4" bench --synthetic "$preset" --layers "$n_layers" --frontiers "$frontiers" \
    --gen "$gen" >"$log" 2>&1
  note "$what: exit $?"
  cat "$log" >>"$SUMMARY"
  rm -f "$log"
}
if want bench; then
ncu_step "$B" >"$OUT/ncu_new.log" 2>&1; note "ncu new: $(tail -1 "$OUT/ncu_new.log")"
bench_into_summary "new bench 2K/8K" "$B" 100 flash-q2 "$layers" 2048,8192 64
bench_into_summary "baseline bench 2K/8K" "$BASE" 100 flash-q2 "$layers" 2048,8192 64
bench_into_summary "bench 25K" "$B" 80 flash-q2 "$layers" 25000 16
if [[ -n "${DSV4_Q4:-}" ]]; then
  bench_into_summary "bench flash-q4 (30 layers)" "$B" 60 flash-q4 30 2048 32
fi
fi
cat "$SUMMARY"
