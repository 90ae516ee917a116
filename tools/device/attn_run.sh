#!/usr/bin/env bash
# Prefill attention (src/cuda/prefill_attention.cu) in one GPU-machine call: its tests and memcheck,
# the attention stage of a prefill chunk for this bundle and a baseline bundle (same call, same card),
# ncu of the attention kernels at two chunk shapes, and (full mode) the whole cuda_tests and
# dsv4 bench.
#
# Here (no GPU needed), from the repository root:
#     DSV4_BUILD=build-attn DSV4_BUNDLE=out/attn DSV4_NO_BUILD=1 DSV4_PACK_DSV4=1 \
#       bash tools/device/decode_run.sh pack
# There (device tool: carry ["out/attn", "out/base7"]):
#     bash tools/device/attn_run.sh [quick]
#   1. cuda_tests CudaPrefillAttention.* (this bundle, then the baseline's for its accuracy)
#                                                                          -> $OUT/attn_tests.log
#   2. cuda_forward_bench --layers 4 --ctx 2048 --chunk 4096 --steps 1, both bundles (quick), or
#      --layers L --ctx 2048 --steps 1 (the 8K prompt's chunk 2048..6144) and --layers 8 --ctx
#      20480 --chunk 4096 --steps 1 (the 25K prompt's chunk 20480..24576), both bundles
#                                                                          -> $OUT/forward.log
#   3. ncu of the prefill attention kernels (both bundles) at both chunk shapes, 4 layers, the
#      profiled chunk only (full mode)                                    -> $OUT/ncu.log
#   4. memcheck of CudaPrefillAttention.* beside the whole cuda_tests (full mode; quick: memcheck
#      only)                                                  -> $OUT/sanitizer.log, $OUT/gpu_tests.log
#   5. dsv4 bench --synthetic flash-q2 --frontiers 2048,8192 --gen 16, both (full, if time is left)
#                                                                          -> $OUT/bench.log
#   L = 43 on a card of >= 120 GB, else 30. Steps share DSV4_GPU_BUDGET seconds (default 380).
set -u -o pipefail
cd "$(dirname "$0")/../.."
source tools/device/common.sh

MODE=${1:-full}
BIN=$(dsv4_unpack "${DSV4_BUNDLE:-out/attn}") || { echo "no bundle"; exit 3; }
BASE=$(dsv4_unpack "${DSV4_BASE_BUNDLE:-out/base7}") || { echo "no baseline bundle"; exit 3; }
OUT=${OUT:-$PWD/out/attn-run}
dsv4_run_start "$BIN" 380
ATTN_KERNELS='regex:prefill_attention_cu'

# ---- 1. the kernel's tests ----
{
  echo "### this bundle"
  timeout "$(budget 60)" "$BIN/cuda_tests" --gtest_color=no --gtest_filter='CudaPrefillAttention.*'
  echo "rc $?"
  echo "### baseline"
  timeout "$(budget 30)" "$BASE/cuda_tests" --gtest_color=no --gtest_filter='CudaPrefillAttention.*'
} >"$OUT/attn_tests.log" 2>&1
note "CudaPrefillAttention.*: $(grep -E '^\[  (PASSED|FAILED)  \]|^rc ' "$OUT/attn_tests.log" | tr '\n' ' ')"
grep -E 'worst rel L2|Failure|FAILED|###' "$OUT/attn_tests.log" | head -40 | tee -a "$SUMMARY"

# ---- 2. the attention stage of a prefill chunk, both bundles ----
forward() {  # forward LABEL ARGS...
  local label=$1
  shift
  for b in "$BIN" "$BASE"; do
    echo "### $label: $b cuda_forward_bench $*"
    timeout "$(budget 70)" "$b/cuda_forward_bench" "$@"
    echo "rc $?"
  done
}
{
  if [[ "$MODE" == quick ]]; then
    forward "8K chunk shape, 4 layers" --layers 4 --ctx 2048 --chunk 4096 --steps 1
  else
    forward "8K prompt chunk 2048..6144" --layers "$layers" --ctx 2048 --steps 1
    forward "25K prompt chunk 20480..24576, 8 layers" --layers 8 --ctx 20480 --chunk 4096 --steps 1
  fi
} >"$OUT/forward.log" 2>&1
grep -E '###|attention|one prefill chunk|^rc|rror' "$OUT/forward.log" | tee -a "$SUMMARY"

# ---- 3. ncu of the attention kernels ----
if [[ "$MODE" != quick ]] && command -v ncu >/dev/null; then
  for ctx in 2048 20480; do
    for b in "$BIN" "$BASE"; do
      ((DEADLINE - SECONDS > 120)) || break
      echo "### ncu $b, 4 layers, chunk $ctx..$((ctx + 4096))"
      timeout "$(budget 45)" ncu --clock-control none --print-units base --nvtx --nvtx-include "profile/" \
        --kernel-name-base mangled -k "$ATTN_KERNELS" -c 120 --metrics gpu__time_duration.sum --csv \
        "$b/cuda_forward_bench" --layers 4 --ctx "$ctx" --chunk 4096 --steps 1 2>&1 | ncu_kernel_times |
        python3 -c '
import sys, collections
tot = collections.OrderedDict()
lines = sys.stdin.read().splitlines()
for l in lines[:-1]:
    us, name = l.split(" us  ", 1)
    key = "partial" if "partial" in name else "combine" if "combine" in name else name
    n, s = tot.get(key, (0, 0.0))
    tot[key] = (n + 1, s + float(us))
for k, (n, s) in tot.items(): print("%-8s %4d launches %10.1f us (%.1f us each)" % (k, n, s, s / n))
print(lines[-1] if lines else "no kernels")'
    done
  done >"$OUT/ncu.log" 2>&1
  tee -a "$SUMMARY" <"$OUT/ncu.log" >/dev/null
  # One partial launch of the CSA layer (layer 2; 21 launches per layer at this shape) in detail.
  if ((DEADLINE - SECONDS > 100)); then
    timeout "$(budget 40)" ncu --nvtx --nvtx-include "profile/" --kernel-name-base mangled \
      -k 'regex:prefill_attention_cu.*partial' --launch-skip 45 -c 1 --section SpeedOfLight \
      --section WarpStateStats --section ComputeWorkloadAnalysis --section MemoryWorkloadAnalysis \
      --section Occupancy --section SchedulerStats --section LaunchStats \
      "$BIN/cuda_forward_bench" --layers 4 --ctx 2048 --chunk 4096 --steps 1 >"$OUT/ncu_detail.log" 2>&1
    note "ncu detail: exit $?"
  fi
fi

# ---- 4. memcheck of the kernel's tests (beside the whole suite in full mode) ----
timeout "$(budget 120)" compute-sanitizer --tool memcheck --error-exitcode 3 "$BIN/cuda_tests" --gtest_color=no \
  --gtest_filter='CudaPrefillAttention.*' >"$OUT/sanitizer.log" 2>&1 &
mem_pid=$!
rc_tests=0
if [[ "$MODE" != quick ]]; then
  timeout "$(budget 200)" "$BIN/cuda_tests" --gtest_color=no >"$OUT/gpu_tests.log" 2>&1
  rc_tests=$?
  note "cuda_tests (all): exit $rc_tests ($(grep -E '^\[  (PASSED|FAILED)  \]' "$OUT/gpu_tests.log" | tr '\n' ' '))"
  grep -E '^\[  FAILED  \]' "$OUT/gpu_tests.log" | head -30 | tee -a "$SUMMARY"
fi
wait "$mem_pid"
rc_mem=$?
note "memcheck CudaPrefillAttention.*: exit $rc_mem ($(grep -E 'ERROR SUMMARY' "$OUT/sanitizer.log" | tail -1); $(grep -E '^\[  (PASSED|FAILED)  \]' "$OUT/sanitizer.log" | tr '\n' ' '))"

# ---- 5. the issue's measurement ----
if [[ "$MODE" != quick ]]; then
  for b in "$BIN" "$BASE"; do
    ((DEADLINE - SECONDS > 40)) || break
    echo "### $b dsv4 bench --synthetic flash-q2 --layers $layers --frontiers 2048,8192 --gen 16"
    timeout "$(budget 80)" "$b/dsv4" bench --synthetic flash-q2 --layers "$layers" --frontiers 2048,8192 --gen 16
    echo "rc $?"
  done >"$OUT/bench.log" 2>&1
  tee -a "$SUMMARY" <"$OUT/bench.log" >/dev/null
fi

echo "---- summary ----"
cat "$SUMMARY"
((rc_tests == 0 && rc_mem == 0)) || exit 1
