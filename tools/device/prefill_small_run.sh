#!/usr/bin/env bash
# The prefill chunk's hyper-connection kernels (src/cuda/hc.cu, T > 1 paths) in one short GPU-machine
# call: their tests, the chunk profile of this bundle and the baseline's on the same card, ncu's
# time of the hc kernels at the chunk shape for both, then memcheck and racecheck of the hc tests.
# Ordered by value, so a short budget still brings back the numbers.
#
# Here (no GPU needed), from the repository root:
#     DSV4_BUILD=build-prefill DSV4_BUNDLE=out/prefill-small DSV4_NO_BUILD=1 bash tools/device/decode_run.sh pack
# On the GPU machine (device tool: carry ["out/prefill-small", "out/r2base"]):
#     bash tools/device/prefill_small_run.sh
#   -> $OUT: summary.txt, gpu_tests.log, forward_bench.log, ncu_hc.log, sanitizer.log.
#   Knobs: DSV4_GPU_BUDGET (seconds, default 90), DSV4_BUNDLE (default out/prefill-small),
#   DSV4_BASE_BUNDLE (default out/r2base), DSV4_CHUNK_LAYERS (layers of the chunk profile, default 8:
#   the hc stages are per layer, and a small model is made in seconds).
set -u -o pipefail
cd "$(dirname "$0")/../.."
source tools/device/common.sh

BUNDLE=${DSV4_BUNDLE:-out/prefill-small}
BASE_BUNDLE=${DSV4_BASE_BUNDLE:-out/r2base}
BIN=$(dsv4_unpack "$BUNDLE") || { echo "no bundle in $BUNDLE"; exit 3; }
BASE=""
[[ -f "$BASE_BUNDLE/bundle.tar.gz" ]] && BASE=$(dsv4_unpack "$BASE_BUNDLE")
OUT=${OUT:-$PWD/out/prefill-small-run}
dsv4_run_start "$BIN" 90
chunk_layers=${DSV4_CHUNK_LAYERS:-8}

# ---- 1. the hc tests (seconds) ----
timeout "$(budget 20)" "$BIN/cuda_tests" --gtest_color=no --gtest_filter="CudaHc.*" >"$OUT/gpu_tests.log" 2>&1
rc_tests=$?
note "cuda_tests CudaHc.*: exit $rc_tests ($(grep -E '^\[  (PASSED|FAILED)  \]' "$OUT/gpu_tests.log" | tr '\n' ' ')) at ${SECONDS}s"
grep -E '^\[  FAILED  \]|Failure' "$OUT/gpu_tests.log" | head -20 | tee -a "$SUMMARY"

# ---- 2. one chunk of 4096 at 2048, stage by stage: this bundle, then the baseline ----
fwd=(--layers "$chunk_layers" --ctx 2048 --chunk 4096 --steps 1)
{
  echo "### this bundle: cuda_forward_bench ${fwd[*]}"
  timeout "$(budget 30)" "$BIN/cuda_forward_bench" "${fwd[@]}"
  echo "### exit $?"
  if [[ -n "$BASE" ]]; then
    echo "### baseline $BASE_BUNDLE: cuda_forward_bench ${fwd[*]}"
    timeout "$(budget 30)" "$BASE/cuda_forward_bench" "${fwd[@]}"
    echo "### exit $?"
  fi
} >"$OUT/forward_bench.log" 2>&1
note "chunk profiles at ${SECONDS}s:"
grep -E '^###|hc_|one prefill chunk' "$OUT/forward_bench.log" | tee -a "$SUMMARY"

# ---- 3. ncu: the hc kernels of 2 layers (chunks of 2048 and 4096), this bundle then the baseline ----
ncu_args=(--clock-control none --print-units base --metrics gpu__time_duration.sum --csv
          -k "regex:hc_post_kernel|hc_finish|hc_partial")
small=(--layers 2 --ctx 2048 --chunk 4096 --steps 1)
{
  echo "### this bundle"
  timeout "$(budget 25)" ncu "${ncu_args[@]}" "$BIN/cuda_forward_bench" "${small[@]}" 2>/dev/null | ncu_kernel_times
  if [[ -n "$BASE" ]]; then
    echo "### baseline"
    timeout "$(budget 25)" ncu "${ncu_args[@]}" "$BASE/cuda_forward_bench" "${small[@]}" 2>/dev/null | ncu_kernel_times
  fi
} >"$OUT/ncu_hc.log" 2>&1
note "ncu at ${SECONDS}s: $(grep -c us "$OUT/ncu_hc.log") rows"

# ---- 4. memcheck of the hc tests, racecheck of the token loop's shared sums ----
{
  timeout "$(budget 40)" compute-sanitizer --tool memcheck --error-exitcode 9 "$BIN/cuda_tests" --gtest_color=no \
    --gtest_filter="CudaHc.Post*:CudaHc.Pre*:CudaHc.Head*"
  echo "### memcheck exit $?"
  timeout "$(budget 40)" compute-sanitizer --tool racecheck --error-exitcode 9 "$BIN/cuda_tests" --gtest_color=no \
    --gtest_filter="CudaHc.PostLeavesTheNextMixersPartialSums:CudaHc.PreMatchesCpu"
  echo "### racecheck exit $?"
} >"$OUT/sanitizer.log" 2>&1
note "sanitizers at ${SECONDS}s: $(grep -E '^### |ERROR SUMMARY' "$OUT/sanitizer.log" | tr '\n' ' ')"
exit "$rc_tests"
