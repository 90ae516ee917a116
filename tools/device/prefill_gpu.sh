#!/usr/bin/env bash
# Prefill (issue 5) in one GPU-machine call: tests, memcheck of the GEMM and prefill attention/indexer
# kernels, and the prefill benchmarks.
#
# Here (no GPU needed), from the repository root:
#     DSV4_BUILD=build-prefill bash tools/device/prefill_gpu.sh pack
#   builds cuda_tests, cuda_forward_bench, gemm_bench and dsv4 and bundles them (without debug
#   sections, plus the shared libraries dsv4 needs that the GPU machine lacks) into
#   out/prefill-device/bundle.tar.gz.
# There (device tool: carry ["out/prefill-device"]):
#     bash tools/device/prefill_gpu.sh
#   1. cuda_tests (DSV4_TEST_FILTER, default all but the matvec suites and the full-size synthetic test) -> $OUT/gpu_tests.log
#   2. cuda_forward_bench (tensor-core prefill): chunks of 2048 up to 6144, then the chunk
#      6144..8192 stage by stage; the same for chunks of DSV4_OTHER_CHUNKS (default "1024 4096")
#                                                                        -> $OUT/forward_bench.log
#   3. with DSV4_RUN_DSV4_BENCH=1: dsv4 bench --synthetic flash-q2 --frontiers 8192 --gen 16 on the
#      tensor-core path (--prefill fast), then on the default f32 path (--prefill exact) with
#      DSV4_EXACT_LAYERS layers (default 8: ≈ 1 min at 43 layers; scale by 43/N)
#                                                                        -> $OUT/bench.log
#   4. compute-sanitizer memcheck (DSV4_MEMCHECK_FILTER, default the GEMM and prefill
#      attention/indexer tests)                                          -> $OUT/sanitizer.log
#   5. gemm_bench --quick (time permitting)                              -> $OUT/gemm_bench.log
#   Steps share DSV4_GPU_BUDGET seconds (default 180). Exit status non-zero if tests or memcheck fail.
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
OUT=${OUT:-$PWD/out/prefill-run}
dsv4_run_start "$BIN" 180

# ---- 1. tests ----
timeout "$(budget 80)" "$BIN/cuda_tests" --gtest_color=no --gtest_filter="${DSV4_TEST_FILTER:-*-CudaMatvec*:CudaSyntheticLarge.*}" \
  >"$OUT/gpu_tests.log" 2>&1
rc_tests=$?
note "cuda_tests: exit $rc_tests ($(grep -E '^\[  (PASSED|FAILED)  \]' "$OUT/gpu_tests.log" | tr '\n' ' '))"
grep -E '^\[  FAILED  \]' "$OUT/gpu_tests.log" | head -30 | tee -a "$SUMMARY"
grep -E 'worst rel L2' "$OUT/gpu_tests.log" | head -40 | tee -a "$SUMMARY"

# ---- 2. per-stage profile of prefill chunks ----
{
  echo "### chunk 2048"
  timeout "$(budget 40)" "$BIN/cuda_forward_bench" --layers "$layers" --ctx 6144 --chunk 2048 --steps 16
  for k in ${DSV4_OTHER_CHUNKS-1024 4096}; do
    echo "### chunk $k"
    timeout "$(budget 25)" "$BIN/cuda_forward_bench" --layers "$layers" --ctx $((8192 - k)) --chunk "$k" --steps 4 | grep -E 'prefill|session'
  done
} >"$OUT/forward_bench.log" 2>&1
note "cuda_forward_bench (flash-q2, $layers layers):"
tee -a "$SUMMARY" <"$OUT/forward_bench.log"

# ---- 3. the issue's measurement (the engine's default prefill math) ----
if [[ -n "${DSV4_RUN_DSV4_BENCH:-}" ]]; then
  exact_layers=${DSV4_EXACT_LAYERS:-8}
  {
    echo "### --prefill fast, $layers layers"
    timeout "$(budget 60)" "$BIN/dsv4" bench --synthetic flash-q2 --layers "$layers" --prefill fast --frontiers 8192 --gen 16
    echo "### --prefill exact, $exact_layers layers"
    timeout "$(budget 120)" "$BIN/dsv4" bench --synthetic flash-q2 --layers "$exact_layers" --prefill exact --frontiers 8192 --gen 16
  } >"$OUT/bench.log" 2>&1
  note "dsv4 bench --frontiers 8192 --gen 16 (fast: $layers layers, exact: $exact_layers layers):"
  tee -a "$SUMMARY" <"$OUT/bench.log"
fi

# ---- 4. memcheck on the GEMM path ----
rc_mem=99
{
  echo "### memcheck"
  timeout "$(budget 45)" compute-sanitizer --tool memcheck --error-exitcode 3 "$BIN/cuda_tests" --gtest_color=no \
    --gtest_filter="${DSV4_MEMCHECK_FILTER:-Gemm.*:AllFormats/GroupedGemmTest.*/Q2_K:AllFormats/GroupedGemmTest.*/IQ2_XXS:AllFormats/GemmFormatTest.*/Q8_0:CudaPrefillAttention.*:CudaPrefillIndexer.*}"
  echo "### memcheck exit $?"
} >"$OUT/sanitizer.log" 2>&1
rc_mem=$(grep -o '### memcheck exit [0-9]*' "$OUT/sanitizer.log" | grep -o '[0-9]*$')
note "memcheck: exit $rc_mem ($(grep -E 'ERROR SUMMARY' "$OUT/sanitizer.log" | tail -1))"

# ---- 5. GEMM rates (f16) ----
if ((DEADLINE - SECONDS > 25)); then
  timeout "$(budget 60)" "$BIN/gemm_bench" --quick >"$OUT/gemm_bench.log" 2>&1
  note "gemm_bench --quick: exit $?"
fi

echo "---- summary ----"
cat "$SUMMARY"
if ((rc_tests != 0)); then exit 1; fi
if ((rc_mem != 0)); then exit 2; fi
exit 0
