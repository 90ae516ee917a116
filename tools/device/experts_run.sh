#!/usr/bin/env bash
# The routed experts' decode work (2-bit row-tile kernel: dp4a over fixed-point activation limbs,
# fused SwiGLU) in one GPU-machine call, this bundle against the baseline bundle on the same card,
# ordered so that what isolates the kernel comes first when the budget is short:
#   1. cuda_tests (DSV4_TEST_FILTER: the 2-bit kernel, experts, MoE)          -> gpu_tests.log
#   1b. cuda_forward_bench --layers L --ctx 2048 --steps 64 when DSV4_FORWARD_FIRST=1 (step 5 moved
#      here: the figure that decides comes before anything the budget may cut)
#   2. cuda_bench --only MoE: this bundle, the baseline, the alternative       -> cuda_bench.log
#   3. compute-sanitizer memcheck (DSV4_MEMCHECK_FILTER) and racecheck (DSV4_RACECHECK_FILTER)
#                                                                              -> sanitizer.log
#   4. ncu (clock unlocked, one un-graphed decode step of 4 layers), per-kernel times of the
#      2-bit launches (common.sh ncu_kernel_times), all bundles               -> ncu_times.log
#   5. cuda_forward_bench --layers L --ctx 2048 --steps 64: this bundle, the baseline, again both
#      (L = 43 on an H200, 30 on an H100)                                       -> forward.log
#   6. ncu sections and stall reasons (WarpStateStats) of this bundle's first two expert launches
#      (gate/up, down)                                                         -> ncu_stalls.log
#      or, with DSV4_NCU_SOURCE=1, their per-SASS-instruction executed counts and stall samples
#      (ncu source page)                                                       -> ncu_source.csv,
#      and the SASS of the 2-bit kernels (cuobjdump, DSV4_SASS=1)              -> sass.txt;
#      DSV4_NCU_STALLS=0 skips the stall sections (the source page still runs when asked for)
#   7. the whole cuda_tests with what is left of the budget (DSV4_FULL_SUITE=0: skipped; or the
#      filter DSV4_SUITE_FILTER)                                              -> gpu_all.log
# Here:   DSV4_BUILD=build-hc DSV4_BUNDLE=out/t3exp DSV4_NO_BUILD=1 bash tools/device/decode_run.sh pack
#         (optional DSV4_ALT_BUNDLE: another build's cuda_bench + cuda_forward_bench, timed in 2, 3)
# There:  bash tools/device/experts_run.sh   (carry the bundles; DSV4_BUNDLE, DSV4_BASE_BUNDLE)
# Everything under $OUT (default out/experts-run); summary.txt collects the results. The steps
# share DSV4_GPU_BUDGET seconds (default 300).
set -u -o pipefail
cd "$(dirname "$0")/../.."
source tools/device/common.sh
BIN=$(dsv4_unpack "${DSV4_BUNDLE:-out/experts}") || { echo "no bundle"; exit 3; }
BASE=""
[[ -f "${DSV4_BASE_BUNDLE:-out/base7}/bundle.tar.gz" ]] && BASE=$(dsv4_unpack "${DSV4_BASE_BUNDLE:-out/base7}")
ALT=""
[[ -n "${DSV4_ALT_BUNDLE:-}" && -f "$DSV4_ALT_BUNDLE/bundle.tar.gz" ]] && ALT=$(dsv4_unpack "$DSV4_ALT_BUNDLE")
OUT=${OUT:-$PWD/out/experts-run}
dsv4_run_start "$BIN" 300

# ---- 1. tests ----
filter=${DSV4_TEST_FILTER:-CudaMatvecSwigluRows.*:CudaMatvec2bit*:CudaMatvec.TwoBit*:CudaMatvec.Experts:CudaMatvec.ExpertSum*:CudaMatvec.DefaultPlans:CudaMatvecLarge.ExpertDecodeShapes:CudaMoeFusedDown.*:CudaMoe.*}
timeout "$(budget 60)" "$BIN/cuda_tests" --gtest_color=no --gtest_filter="$filter" >"$OUT/gpu_tests.log" 2>&1
rc_tests=$?
note "cuda_tests: exit $rc_tests ($(grep -E '^\[  (PASSED|FAILED)  \]' "$OUT/gpu_tests.log" | tr '\n' ' '))"
grep -E '^\[  FAILED  \]|Failure' "$OUT/gpu_tests.log" | head -30 | tee -a "$SUMMARY"

# ---- 5. decode step (graph replay), alternated ----
forward() {  # TAG BIN_DIR
  timeout "$(budget 30)" "$2/cuda_forward_bench" --layers "$layers" --ctx 2048 --steps 64 >"$OUT/forward_$1.tmp" 2>&1
  { echo "== $1"; cat "$OUT/forward_$1.tmp"; } >>"$OUT/forward.log"
  note "forward $1 ($layers layers): $(grep -E 'decode \(graph\)' "$OUT/forward_$1.tmp" | tail -1)"
  rm -f "$OUT/forward_$1.tmp"
}
forward_ab() {
  forward new "$BIN"
  [[ -n "$BASE" ]] && forward base "$BASE"
  forward new2 "$BIN"
  [[ -n "$BASE" ]] && forward base2 "$BASE"
}
[[ "${DSV4_FORWARD_FIRST:-0}" == 1 ]] && forward_ab

# ---- 2. matvec benchmark ----
bench() {  # TAG BIN_DIR
  echo "== $1"
  timeout "$(budget 15)" "$2/cuda_bench" --only MoE
}
{
  bench new "$BIN"
  [[ -n "$BASE" ]] && bench base "$BASE"
  [[ -n "$ALT" ]] && bench alt "$ALT"
  bench new-again "$BIN"
} >"$OUT/cuda_bench.log" 2>&1
grep -E '^==|MoE|copy' "$OUT/cuda_bench.log" | tee -a "$SUMMARY"

# ---- 3. sanitizers ----
rc_mem=99
if command -v compute-sanitizer >/dev/null; then
  {
    echo "### memcheck"
    timeout "$(budget 40)" compute-sanitizer --tool memcheck --error-exitcode 3 "$BIN/cuda_tests" --gtest_color=no \
      --gtest_filter="${DSV4_MEMCHECK_FILTER:-CudaMatvecSwigluRows.*:CudaMatvec2bit*:CudaMatvec.TwoBitRowTile*:CudaMoeFusedDown.*}"
    echo "### memcheck exit $?"
    echo "### racecheck"
    timeout "$(budget 25)" compute-sanitizer --tool racecheck --error-exitcode 3 "$BIN/cuda_tests" --gtest_color=no \
      --gtest_filter="${DSV4_RACECHECK_FILTER:-CudaMatvecSwigluRows.*:CudaMatvec2bit*}"
    echo "### racecheck exit $?"
  } >"$OUT/sanitizer.log" 2>&1
  rc_mem=$(grep -o '### memcheck exit [0-9]*' "$OUT/sanitizer.log" | grep -o '[0-9]*$')
  note "memcheck: exit $rc_mem ($(grep -E 'ERROR SUMMARY' "$OUT/sanitizer.log" | head -1)); $(grep -o '### racecheck exit [0-9]*' "$OUT/sanitizer.log") ($(grep -E 'RACECHECK SUMMARY|ERROR SUMMARY' "$OUT/sanitizer.log" | tail -1))"
fi

# ---- 4. ncu per-kernel times of the 2-bit launches ----
ncu_times() {  # TAG BIN_DIR
  echo "== $1"
  timeout "$(budget 30)" ncu --profile-from-start off --clock-control none --print-units base -k 'regex:matvec_2bit' \
    --metrics gpu__time_duration.sum --csv "$2/cuda_forward_bench" --layers 4 --ctx 2100 --steps 2 2>&1 | ncu_kernel_times
}
if command -v ncu >/dev/null; then
  {
    ncu_times new "$BIN"
    [[ -n "$BASE" ]] && ncu_times base "$BASE"
    [[ -n "$ALT" ]] && ncu_times alt "$ALT"
  } >"$OUT/ncu_times.log" 2>&1
  # Mean per format over the step's launches (IQ2_XXS = gate/up, Q2_K = down).
  awk '/^==/ {tag = $2} / us / && /matvec_2bit/ {k = ($0 ~ /Fmt2bIQ2/) ? "gate/up IQ2_XXS" : "down Q2_K"; s[tag " " k] += $1; n[tag " " k]++}
       END {for (t in s) printf "ncu %s: %.2f us (mean of %d)\n", t, s[t] / n[t], n[t]}' "$OUT/ncu_times.log" | sort |
    tee -a "$SUMMARY"
fi

[[ "${DSV4_FORWARD_FIRST:-0}" == 1 ]] || forward_ab

# ---- 6. stall reasons of this bundle's gate/up and down launches ----
if [[ "${DSV4_SASS:-0}" == 1 ]] && command -v cuobjdump >/dev/null; then
  timeout "$(budget 20)" cuobjdump -sass "$BIN/cuda_bench" 2>/dev/null |
    awk '/Function : / {inside = ($0 ~ /matvec_2bit_kernel/)} inside' >"$OUT/sass.txt"
  note "sass: $(grep -c 'Function : ' "$OUT/sass.txt") kernels, $(wc -l <"$OUT/sass.txt") lines"
fi
if [[ "${DSV4_NCU_SOURCE:-0}" == 1 ]] && command -v ncu >/dev/null; then
  timeout "$(budget 40)" ncu --profile-from-start off --clock-control none -k 'regex:matvec_2bit' -c 2 \
    --section SourceCounters --section WarpStateStats --page source --print-source sass --csv \
    "$BIN/cuda_forward_bench" --layers 4 --ctx 2100 --steps 2 >"$OUT/ncu_source.csv" 2>&1
  note "ncu source: exit $?, $(wc -l <"$OUT/ncu_source.csv") lines"
elif [[ "${DSV4_NCU_STALLS:-1}" == 1 ]] && command -v ncu >/dev/null; then
  timeout "$(budget 35)" ncu --profile-from-start off --clock-control none -k 'regex:matvec_2bit' -c 2 \
    --section SpeedOfLight --section WarpStateStats --section SchedulerStats --section Occupancy \
    --section LaunchStats --print-details all \
    "$BIN/cuda_forward_bench" --layers 4 --ctx 2100 --steps 2 >"$OUT/ncu_stalls.log" 2>&1
  grep -E 'matvec_2bit_kernel|Duration|Issued Warp|No Eligible|Throughput|Registers Per|Dynamic Shared|Grid Size' \
    "$OUT/ncu_stalls.log" | head -40 >>"$SUMMARY"
  grep -iE 'stall|scoreboard|throttle|wait|barrier|branch|dispatch|selected|no instruction' "$OUT/ncu_stalls.log" |
    grep -v '^ *$' | head -60 >>"$SUMMARY"
fi

# ---- 7. the whole suite with what is left ----
if [[ "${DSV4_FULL_SUITE:-1}" == 1 ]]; then
  timeout "$(budget 120)" "$BIN/cuda_tests" --gtest_color=no --gtest_filter="${DSV4_SUITE_FILTER:-*}" >"$OUT/gpu_all.log" 2>&1
  note "whole cuda_tests: exit $? ($(grep -E '^\[  (PASSED|FAILED)  \]' "$OUT/gpu_all.log" | tr '\n' ' '); last: $(grep -E '^\[ +(OK|FAILED) +\]' "$OUT/gpu_all.log" | tail -1))"
  grep -E '^\[  FAILED  \]' "$OUT/gpu_all.log" | head -20 | tee -a "$SUMMARY"
fi
note "experts_run seconds: $SECONDS"
[[ $rc_tests == 0 && $rc_mem == 0 ]]
