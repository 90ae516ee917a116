#!/usr/bin/env bash
# Prefill (issue 5) in one GPU-machine call: tests, memcheck of the GEMM kernels, and the prefill
# benchmarks of this tree against a baseline bundle (the same call, the same card).
#
# Here (no GPU needed), from the repository root:
#     DSV4_BUILD=build-prefill bash tools/device/prefill_gpu.sh pack
#   builds cuda_tests, cuda_forward_bench, gemm_bench and dsv4 and bundles them (without debug
#   sections, plus the shared libraries dsv4 needs that the GPU machine lacks) into
#   out/prefill-device/bundle.tar.gz; BUILD/gemm_bench_base, where present (gemm_bench linked
#   against the baseline's GEMM kernels), goes in too.
# There (device tool: carry ["out/prefill-device", "out/device"]):
#     bash tools/device/prefill_gpu.sh
#   1. cuda_tests (DSV4_TEST_FILTER, default the GEMM suites and the whole-model tests) and, at the
#      same time (both mostly CPU references), compute-sanitizer memcheck (DSV4_MEMCHECK_FILTER,
#      default the split GEMM tests on every scaled format)
#                                                          -> $OUT/gpu_tests.log, $OUT/sanitizer.log
#   2. gemm_bench --quick: f16 and split mode, same binary, then gemm_bench_base if bundled
#      (DSV4_SKIP_GEMM_BENCH=1 skips)                                    -> $OUT/gemm_bench.log
#   3. cuda_forward_bench: 2048 tokens, then one chunk of 4096 (2048..6144) stage by stage, this
#      bundle's default prefill (split) and the baseline's (DSV4_BASELINE, default out/device)
#      (DSV4_SKIP_FORWARD_BENCH=1 skips)                                 -> $OUT/forward_bench.log
#   4. with DSV4_RUN_DSV4_BENCH=1: dsv4 bench --synthetic flash-q2 --frontiers 8192 --gen 16, this
#      bundle's and the baseline's default prefill (exact = split GEMMs)  -> $OUT/bench.log
#   flash-q2 runs with 43 layers on a card of ≥ 120 GB, else 30 (DSV4_BENCH_LAYERS overrides).
#   Steps share DSV4_GPU_BUDGET seconds (default 330). Exit status non-zero if tests or memcheck fail.
set -u -o pipefail
cd "$(dirname "$0")/../.."
source tools/device/common.sh
BUNDLE_DIR=out/prefill-device

if [[ "${1:-}" == "pack" ]]; then
  set -e
  BUILD=${DSV4_BUILD:-build-prefill}
  [[ -n "${DSV4_NO_BUILD:-}" ]] || cmake --build "$BUILD" --target cuda_tests cuda_forward_bench gemm_bench dsv4 -j2
  extra=()
  [[ -f "$BUILD/gemm_bench_base" ]] && extra=(gemm_bench_base)
  dsv4_pack "$BUILD" "$BUNDLE_DIR" cuda_tests cuda_forward_bench gemm_bench dsv4 "${extra[@]}"
  exit 0
fi

BIN=$(dsv4_unpack "$BUNDLE_DIR") || { echo "no bundle in $BUNDLE_DIR"; exit 3; }
BASE_DIR=${DSV4_BASELINE:-out/device}
BASE=""
[[ -f "$BASE_DIR/bundle.tar.gz" ]] && BASE=$(dsv4_unpack "$BASE_DIR")
OUT=${OUT:-$PWD/out/prefill-run}
dsv4_run_start "$BIN" 330

# ---- 1. tests, and memcheck of the GEMM paths beside them ----
timeout "$(budget 120)" compute-sanitizer --tool memcheck --error-exitcode 3 "$BIN/cuda_tests" --gtest_color=no \
  --gtest_filter="${DSV4_MEMCHECK_FILTER:-GemmSplit.*:SplitFormats/GemmSplitTest.MatchesDoubleReference/*:SplitFormats/GemmSplitTest.GroupedGatherAndScatter/Q4_K:SplitFormats/GemmSplitTest.GroupedGatherAndScatter/IQ2_XXS}" \
  >"$OUT/sanitizer.log" 2>&1 &
mem_pid=$!
timeout "$(budget 120)" "$BIN/cuda_tests" --gtest_color=no \
  --gtest_filter="${DSV4_TEST_FILTER:-GemmSplit.*:SplitFormats/*:Gemm.*:AllFormats/*:CudaForward.*:CudaEngine*}" \
  >"$OUT/gpu_tests.log" 2>&1
rc_tests=$?
wait "$mem_pid"
rc_mem=$?
note "cuda_tests: exit $rc_tests ($(grep -E '^\[  (PASSED|FAILED)  \]' "$OUT/gpu_tests.log" | tr '\n' ' '))"
grep -E '^\[  FAILED  \]' "$OUT/gpu_tests.log" | head -30 | tee -a "$SUMMARY"
grep -E 'worst rel L2' "$OUT/gpu_tests.log" | head -60 | tee -a "$SUMMARY"
note "memcheck: exit $rc_mem ($(grep -E 'ERROR SUMMARY' "$OUT/sanitizer.log" | tail -1); $(grep -E '^\[  (PASSED|FAILED)  \]' "$OUT/sanitizer.log" | tr '\n' ' '))"

# ---- 2. GEMM rates, f16 and split, this tree's kernels and the baseline's ----
if [[ -z "${DSV4_SKIP_GEMM_BENCH:-}" ]]; then
  for gb in gemm_bench gemm_bench_base; do
    [[ -x "$BIN/$gb" ]] || continue
    ((DEADLINE - SECONDS > 30)) || break
    echo "### $gb --quick" >>"$OUT/gemm_bench.log"
    timeout "$(budget 40)" "$BIN/$gb" --quick >>"$OUT/gemm_bench.log" 2>&1
    note "$gb --quick: exit $?"
  done
  grep -E '###|ceiling|MoE|attn|shared|router|indexer|compressor|sweep' "$OUT/gemm_bench.log" | tee -a "$SUMMARY" >/dev/null
fi

# ---- 3. per-stage profile of a 4096-token prefill chunk, this bundle and the baseline ----
if [[ -z "${DSV4_SKIP_FORWARD_BENCH:-}" ]]; then
  {
    echo "### this tree (default prefill), chunk 4096 at 2048, $layers layers"
    timeout "$(budget 50)" "$BIN/cuda_forward_bench" --layers "$layers" --ctx 2048 --chunk 4096 --steps 1
    if [[ -n "$BASE" ]] && ((DEADLINE - SECONDS > 30)); then
      echo "### baseline $BASE_DIR (its default prefill), chunk 4096 at 2048, $layers layers"
      timeout "$(budget 50)" "$BASE/cuda_forward_bench" --layers "$layers" --ctx 2048 --chunk 4096 --steps 1
    fi
  } >"$OUT/forward_bench.log" 2>&1
  note "cuda_forward_bench (flash-q2, $layers layers):"
  grep -vE '^\s*$' "$OUT/forward_bench.log" | tee -a "$SUMMARY" >/dev/null
fi

# ---- 4. the issue's measurement ----
if [[ -n "${DSV4_RUN_DSV4_BENCH:-}" ]]; then
  {
    echo "### this tree, default prefill (exact = split GEMMs), $layers layers"
    timeout "$(budget 60)" "$BIN/dsv4" bench --synthetic flash-q2 --layers "$layers" --frontiers 8192 --gen 16
    if [[ -n "$BASE" ]] && ((DEADLINE - SECONDS > 25)); then
      echo "### baseline $BASE_DIR, default prefill, $layers layers"
      timeout "$(budget 60)" "$BASE/dsv4" bench --synthetic flash-q2 --layers "$layers" --frontiers 8192 --gen 16
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
