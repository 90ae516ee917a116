#!/usr/bin/env bash
# Prefill (issue 5) in one GPU-machine call: tests, memcheck of the GEMM kernels, and the prefill
# benchmarks of this tree against a baseline bundle (the same call, the same card).
#
# Here (no GPU needed), from the repository root:
#     DSV4_BUILD=build-prefill bash tools/device/prefill_gpu.sh pack
#   builds cuda_tests, cuda_forward_bench, gemm_bench and dsv4 and bundles them (without debug
#   sections, plus the shared libraries dsv4 needs that the GPU machine lacks) into
#   out/prefill-device/bundle.tar.gz.
# There (device tool: carry ["out/prefill-device", "out/device"]):
#     bash tools/device/prefill_gpu.sh
#   1. cuda_tests (DSV4_TEST_FILTER, default the GEMM suites and the whole-model tests)
#                                                                        -> $OUT/gpu_tests.log
#   2. compute-sanitizer memcheck (DSV4_MEMCHECK_FILTER, default the split GEMM tests on three
#      formats and the f16 GEMM on one)                                  -> $OUT/sanitizer.log
#   3. gemm_bench --quick: f16 and split mode, same binary (DSV4_SKIP_GEMM_BENCH=1 skips)
#                                                                        -> $OUT/gemm_bench.log
#   4. cuda_forward_bench: 6144 tokens in chunks of 2048, then the chunk 6144..8192 stage by
#      stage, with this bundle's default prefill (split) and the baseline's (DSV4_BASELINE, default
#      out/device: its default, the f16 path at HEAD 819ff47) (DSV4_SKIP_FORWARD_BENCH=1 skips)
#                                                                        -> $OUT/forward_bench.log
#   5. with DSV4_RUN_DSV4_BENCH=1: dsv4 bench --synthetic flash-q2 --frontiers 8192 --gen 16, this
#      bundle's default prefill (exact = split GEMMs) and the baseline's --prefill fast
#                                                                        -> $OUT/bench.log
#   flash-q2 runs with 43 layers on a card of ≥ 120 GB, else 30 (DSV4_BENCH_LAYERS overrides).
#   Steps share DSV4_GPU_BUDGET seconds (default 330). Exit status non-zero if tests or memcheck fail.
set -u -o pipefail
cd "$(dirname "$0")/../.."
source tools/device/common.sh
BUNDLE_DIR=out/prefill-device

if [[ "${1:-}" == "pack" ]]; then
  set -e
  BUILD=${DSV4_BUILD:-build-prefill}
  cmake --build "$BUILD" --target cuda_tests cuda_forward_bench gemm_bench dsv4 -j2
  dsv4_pack "$BUILD" "$BUNDLE_DIR" cuda_tests cuda_forward_bench gemm_bench dsv4
  exit 0
fi

BIN=$(dsv4_unpack "$BUNDLE_DIR") || { echo "no bundle in $BUNDLE_DIR"; exit 3; }
BASE_DIR=${DSV4_BASELINE:-out/device}
BASE=""
[[ -f "$BASE_DIR/bundle.tar.gz" ]] && BASE=$(dsv4_unpack "$BASE_DIR")
OUT=${OUT:-$PWD/out/prefill-run}
dsv4_run_start "$BIN" 330

# ---- 1. tests ----
timeout "$(budget 120)" "$BIN/cuda_tests" --gtest_color=no \
  --gtest_filter="${DSV4_TEST_FILTER:-GemmSplit.*:SplitFormats/*:Gemm.*:AllFormats/*:CudaForward.*:CudaEngine*}" \
  >"$OUT/gpu_tests.log" 2>&1
rc_tests=$?
note "cuda_tests: exit $rc_tests ($(grep -E '^\[  (PASSED|FAILED)  \]' "$OUT/gpu_tests.log" | tr '\n' ' '))"
grep -E '^\[  FAILED  \]' "$OUT/gpu_tests.log" | head -30 | tee -a "$SUMMARY"
grep -E 'worst rel L2' "$OUT/gpu_tests.log" | head -60 | tee -a "$SUMMARY"

# ---- 2. memcheck on the GEMM paths ----
{
  echo "### memcheck"
  timeout "$(budget 60)" compute-sanitizer --tool memcheck --error-exitcode 3 "$BIN/cuda_tests" --gtest_color=no \
    --gtest_filter="${DSV4_MEMCHECK_FILTER:-GemmSplit.*:SplitFormats/GemmSplitTest.*/Q2_K:SplitFormats/GemmSplitTest.*/IQ2_XXS:SplitFormats/GemmSplitTest.*/Q8_0:AllFormats/GemmFormatTest.*/Q4_K}"
  echo "### memcheck exit $?"
} >"$OUT/sanitizer.log" 2>&1
rc_mem=$(grep -o '### memcheck exit [0-9]*' "$OUT/sanitizer.log" | grep -o '[0-9]*$')
note "memcheck: exit $rc_mem ($(grep -E 'ERROR SUMMARY' "$OUT/sanitizer.log" | tail -1))"

# ---- 3. GEMM rates, f16 and split ----
if [[ -z "${DSV4_SKIP_GEMM_BENCH:-}" ]] && ((DEADLINE - SECONDS > 40)); then
  timeout "$(budget 90)" "$BIN/gemm_bench" --quick >"$OUT/gemm_bench.log" 2>&1
  note "gemm_bench --quick: exit $?"
  grep -E 'ceiling|MoE|attn|shared|router|indexer|compressor|sweep' "$OUT/gemm_bench.log" | tee -a "$SUMMARY" >/dev/null
fi

# ---- 4. per-stage profile of a prefill chunk, this bundle and the baseline ----
if [[ -z "${DSV4_SKIP_FORWARD_BENCH:-}" ]]; then
  {
    echo "### this tree (default prefill), chunk 2048, $layers layers"
    timeout "$(budget 60)" "$BIN/cuda_forward_bench" --layers "$layers" --ctx 6144 --chunk 2048 --steps 4
    if [[ -n "$BASE" ]]; then
      echo "### baseline $BASE_DIR (its default prefill), chunk 2048, $layers layers"
      timeout "$(budget 60)" "$BASE/cuda_forward_bench" --layers "$layers" --ctx 6144 --chunk 2048 --steps 4
    fi
  } >"$OUT/forward_bench.log" 2>&1
  note "cuda_forward_bench (flash-q2, $layers layers):"
  grep -vE '^\s*$' "$OUT/forward_bench.log" | tee -a "$SUMMARY" >/dev/null
fi

# ---- 5. the issue's measurement ----
if [[ -n "${DSV4_RUN_DSV4_BENCH:-}" ]]; then
  {
    echo "### this tree, default prefill (exact = split GEMMs), $layers layers"
    timeout "$(budget 70)" "$BIN/dsv4" bench --synthetic flash-q2 --layers "$layers" --frontiers 8192 --gen 16
    if [[ -n "$BASE" ]]; then
      echo "### baseline $BASE_DIR, --prefill fast, $layers layers"
      timeout "$(budget 70)" "$BASE/dsv4" bench --synthetic flash-q2 --layers "$layers" --prefill fast --frontiers 8192 --gen 16
    fi
  } >"$OUT/bench.log" 2>&1
  note "dsv4 bench --frontiers 8192 --gen 16 ($layers layers):"
  tee -a "$SUMMARY" <"$OUT/bench.log" >/dev/null
fi

echo "---- summary ----"
cat "$SUMMARY"
if ((rc_tests != 0)); then exit 1; fi
if ((rc_mem != 0)); then exit 2; fi
exit 0
