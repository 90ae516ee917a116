#!/usr/bin/env bash
# Prefill attention round 2 (docs/PERF.md "session 7 — prefill attention, round 2") in one short
# GPU call (~90 s): two candidate bundles and the baseline, same card, same call.
#   B = out/attn2b (FP8-exact skip + 16 × 32 warp tiles + 128-row splits),
#   A = out/attn2a (FP8-exact skip + 16 × 32 warp tiles, 64-row splits), base = out/r2base.
# Here: pack each with DSV4_BUILD=build-attn DSV4_BUNDLE=out/attn2X DSV4_NO_BUILD=1 \
#   bash tools/device/decode_run.sh pack        (carry ["out/attn2a", "out/attn2b", "out/r2base"])
# There: bash tools/device/attn_r2_run.sh
#   1. CudaPrefillAttention.* of B (of A too only if B fails)                 -> $OUT/attn_tests.log
#   2. cuda_forward_bench --layers 4 --chunk 4096 --steps 1 at ctx 2048 (the 8K prompt's second
#      chunk) and 20480 (the 25K prompt's last), for B (or A), base, then A   -> $OUT/forward.log
#   3. memcheck of CudaPrefillAttention.* of the passing candidate in what is left -> $OUT/sanitizer.log
set -u -o pipefail
cd "$(dirname "$0")/../.."
source tools/device/common.sh

A=$(dsv4_unpack out/attn2a) || { echo "no bundle A"; exit 3; }
B=$(dsv4_unpack out/attn2b) || { echo "no bundle B"; exit 3; }
BASE=$(dsv4_unpack out/r2base) || { echo "no baseline bundle"; exit 3; }
OUT=${OUT:-$PWD/out/attn-r2-run}
dsv4_run_start "$B" 85

tests() {  # tests BUNDLE LABEL
  echo "### $2"
  LD_LIBRARY_PATH="$1/lib:$LD_LIBRARY_PATH" timeout "$(budget 40)" "$1/cuda_tests" --gtest_color=no --gtest_filter='CudaPrefillAttention.*'
}
CAND=$B
{
  tests "$B" "B" || { echo "rc $?"; CAND=$A; tests "$A" "A"; echo "rc $?"; }
} >"$OUT/attn_tests.log" 2>&1
note "tests: $(grep -E '^\[  (PASSED|FAILED)  \]|^rc |^###' "$OUT/attn_tests.log" | tr '\n' ' '); candidate $CAND"
grep -E 'worst rel L2|Failure|FAILED' "$OUT/attn_tests.log" | head -30 | tee -a "$SUMMARY"

fwd() {  # fwd BUNDLE CTX
  ((DEADLINE - SECONDS > 8)) || return
  echo "### $1 ctx $2"
  LD_LIBRARY_PATH="$1/lib:$LD_LIBRARY_PATH" timeout "$(budget 25)" "$1/cuda_forward_bench" --layers 4 --ctx "$2" --chunk 4096 --steps 1
  echo "rc $?"
}
{
  for ctx in 2048 20480; do
    fwd "$CAND" $ctx
    fwd "$BASE" $ctx
  done
  [[ "$CAND" == "$B" ]] && fwd "$A" 2048
} >"$OUT/forward.log" 2>&1
grep -E '###|attention|one prefill chunk|^rc|rror' "$OUT/forward.log" | tee -a "$SUMMARY"

if ((DEADLINE - SECONDS > 10)); then
  LD_LIBRARY_PATH="$CAND/lib:$LD_LIBRARY_PATH" timeout "$(budget 60)" compute-sanitizer --tool memcheck --error-exitcode 3 "$CAND/cuda_tests" --gtest_color=no \
    --gtest_filter='CudaPrefillAttention.*' >"$OUT/sanitizer.log" 2>&1
  note "memcheck CudaPrefillAttention.* ($CAND): exit $? ($(grep -E 'ERROR SUMMARY' "$OUT/sanitizer.log" | tail -1); $(grep -E '^\[  (PASSED|FAILED)  \]' "$OUT/sanitizer.log" | tr '\n' ' '))"
fi
echo "---- summary ----"
cat "$SUMMARY"
