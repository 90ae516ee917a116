#!/usr/bin/env bash
# Prefill attention (src/cuda/prefill_attention.cu, round 3: rows split once per layer) in one
# short GPU-machine call: the kernel's tests, the attention stage of a prefill chunk for this bundle
# and the baseline (same call, same card), the whole-model tests, memcheck and racecheck, and ncu
# of one CSA partial launch if time is left.
#
# Here (no GPU needed), from the repository root:
#     source tools/device/common.sh && dsv4_pack build-attn out/attn3 cuda_tests cuda_forward_bench
# There (device tool: carry ["out/attn3", "out/base8"]):
#     bash tools/device/attn_run.sh
#   1. cuda_tests CudaPrefillAttention.*                                  -> $OUT/attn_tests.log
#   2. cuda_forward_bench --layers 4 --ctx C --chunk 4096 --steps 1, C = 2048 (the 8K prompt's
#      chunk 2048..6144) and 20480 (the 25K prompt's 20480..24576), this bundle then the baseline,
#      twice                                                               -> $OUT/forward.log
#   3. CudaForward.*:CudaReference*:CudaEngine.* beside memcheck of CudaPrefillAttention.*, then
#      racecheck of one test                        -> $OUT/gpu_tests.log, $OUT/sanitizer.log
#   4. ncu of one CSA partial launch, both bundles (if time is left)     -> $OUT/ncu.log
# Steps share DSV4_GPU_BUDGET seconds (default 150).
set -u -o pipefail
cd "$(dirname "$0")/../.."
source tools/device/common.sh

BIN=$(dsv4_unpack "${DSV4_BUNDLE:-out/attn3}") || { echo "no bundle"; exit 3; }
BASE=$(dsv4_unpack "${DSV4_BASE_BUNDLE:-out/base8}") || { echo "no baseline bundle"; exit 3; }
OUT=${OUT:-$PWD/out/attn-run}
dsv4_run_start "$BIN" 150

# ---- 1. the kernel's tests ----
timeout "$(budget 40)" "$BIN/cuda_tests" --gtest_color=no --gtest_filter='CudaPrefillAttention.*' >"$OUT/attn_tests.log" 2>&1
note "CudaPrefillAttention.*: exit $? $(grep -E '^\[  (PASSED|FAILED)  \]' "$OUT/attn_tests.log" | tr '\n' ' ')"
grep -E 'worst rel L2|Failure|FAILED' "$OUT/attn_tests.log" | head -30 | tee -a "$SUMMARY"

# ---- 2. the attention stage of a prefill chunk, both bundles, alternating ----
{
  for rep in 1 2; do
    for ctx in 2048 20480; do
      for b in "$BIN" "$BASE"; do
        ((DEADLINE - SECONDS > 50)) || break 3
        echo "### rep $rep ctx $ctx $b"
        timeout "$(budget 30)" "$b/cuda_forward_bench" --layers 4 --ctx "$ctx" --chunk 4096 --steps 1
        echo "rc $?"
      done
    done
  done
} >"$OUT/forward.log" 2>&1
grep -E '###|attention|one prefill chunk|^rc [^0]|rror' "$OUT/forward.log" | tee -a "$SUMMARY"

# ---- 3. whole-model tests beside memcheck, then racecheck ----
timeout "$(budget 60)" compute-sanitizer --tool memcheck --error-exitcode 3 "$BIN/cuda_tests" --gtest_color=no \
  --gtest_filter='CudaPrefillAttention.*' >"$OUT/sanitizer.log" 2>&1 &
mem_pid=$!
timeout "$(budget 60)" "$BIN/cuda_tests" --gtest_color=no --gtest_filter='CudaForward.*:CudaReference*:CudaEngine.*' \
  >"$OUT/gpu_tests.log" 2>&1
note "whole-model tests: exit $? $(grep -E '^\[  (PASSED|FAILED)  \]' "$OUT/gpu_tests.log" | tr '\n' ' ')"
grep -E '^\[  FAILED  \]|rel L2' "$OUT/gpu_tests.log" | head -20 | tee -a "$SUMMARY"
wait "$mem_pid"
note "memcheck CudaPrefillAttention.*: exit $? ($(grep -E 'ERROR SUMMARY' "$OUT/sanitizer.log" | tail -1); $(grep -E '^\[  (PASSED|FAILED)  \]' "$OUT/sanitizer.log" | tr '\n' ' '))"
if ((DEADLINE - SECONDS > 15)); then
  timeout "$(budget 40)" compute-sanitizer --tool racecheck --error-exitcode 3 "$BIN/cuda_tests" --gtest_color=no \
    --gtest_filter='CudaPrefillAttention.FlashGeometryMatchesPlainReference' >>"$OUT/sanitizer.log" 2>&1
  note "racecheck FlashGeometry: exit $? ($(grep -E 'RACECHECK SUMMARY|ERROR SUMMARY' "$OUT/sanitizer.log" | tail -1))"
fi

# ---- 4. one CSA partial launch (layer 2, the profiled chunk), both bundles ----
if command -v ncu >/dev/null; then
  for b in "$BIN" "$BASE"; do
    ((DEADLINE - SECONDS > 25)) || break
    echo "### $b"
    timeout "$(budget 25)" ncu --clock-control none --print-units base --nvtx --nvtx-include "profile/" \
      --kernel-name-base mangled -k 'regex:prefill_attention_cu.*partial' --launch-skip 25 -c 1 \
      --section SpeedOfLight --section WarpStateStats "$b/cuda_forward_bench" --layers 4 --ctx 2048 --chunk 4096 --steps 1
  done >"$OUT/ncu.log" 2>&1
fi
echo "---- summary ----"
cat "$SUMMARY"
