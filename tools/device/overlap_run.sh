#!/usr/bin/env bash
# Prefill with the shared expert on the side stream (docs/PERF.md "prefill: independent branches on
# the side stream") in one short GPU-machine call: the whole-model tests, memcheck of the chunked
# prefill test, and the forked prefill's tokens/s of this tree, of this tree with the shared expert
# in line (cuda_forward_bench_inline: the same code otherwise, so other engineers' uncommitted work
# in the shared checkout cancels out) and of the baseline bundle, alternated.
#
# Here (no GPU needed), from the repository root, after building cuda_tests and cuda_forward_bench
# in $DSV4_BUILD and the in-line variant as $DSV4_BUILD/cuda_forward_bench_inline:
#     DSV4_BUILD=build-hc bash tools/device/overlap_run.sh pack      -> out/overlap/bundle.tar.gz
# There (device tool: carry ["out/overlap", "out/r3base"]):
#     bash tools/device/overlap_run.sh
#   1. cuda_tests (DSV4_TEST_FILTER), then compute-sanitizer memcheck (DSV4_MEMCHECK_FILTER; not
#      beside the tests: the two on one GPU ran past 25 s)  -> $OUT/gpu_tests.log, $OUT/sanitizer.log
#   2. cuda_forward_bench --layers N --ctx 8192 --chunk 4096 --steps 1 (the "prefill 8192 tokens"
#      line runs forked; the stage profile after it does not): overlap, inline, base
#      (DSV4_OVERLAP_VARIANTS), DSV4_OVERLAP_ROUNDS times (default 2)
#                                                        -> $OUT/forward_bench.log
#   Steps share DSV4_GPU_BUDGET seconds (default 50).
set -u -o pipefail
cd "$(dirname "$0")/../.."
source tools/device/common.sh

if [[ "${1:-}" == "pack" ]]; then
  set -e
  dsv4_pack "${DSV4_BUILD:-build-hc}" out/overlap cuda_tests cuda_tests_inline cuda_forward_bench cuda_forward_bench_inline
  exit 0
fi

BIN=$(dsv4_unpack out/overlap) || { echo "no bundle in out/overlap"; exit 3; }
BASE=$(dsv4_unpack "${DSV4_BASELINE:-out/r3base}")
OUT=${OUT:-$PWD/out/overlap-run}
dsv4_run_start "$BIN" 50
LAYERS=${DSV4_OVERLAP_LAYERS:-12}

timeout "$(budget 20)" "$BIN/cuda_tests" --gtest_color=no \
  --gtest_filter="${DSV4_TEST_FILTER:-CudaForward.*:CudaEngine.*:CudaSession*:CudaReference*:-CudaForward.MatchesCpuInBothModes}" \
  >"$OUT/gpu_tests.log" 2>&1
rc_tests=$?
timeout "$(budget 25)" compute-sanitizer --tool memcheck --error-exitcode 3 "$BIN/cuda_tests" --gtest_color=no \
  --gtest_filter="${DSV4_MEMCHECK_FILTER:-CudaForward.DecodeStepsMatchChunkedPrefill}" >"$OUT/sanitizer.log" 2>&1
rc_mem=$?
note "cuda_tests: exit $rc_tests ($(grep -E '^\[  (PASSED|FAILED)  \]' "$OUT/gpu_tests.log" | tr '\n' ' '))"
grep -E '^\[  FAILED  \]' "$OUT/gpu_tests.log" | head -20 | tee -a "$SUMMARY"
note "memcheck: exit $rc_mem ($(grep -E 'ERROR SUMMARY|^\[  (PASSED|FAILED)  \]' "$OUT/sanitizer.log" | tr '\n' ' '))"

for round in $(seq 1 "${DSV4_OVERLAP_ROUNDS:-2}"); do
  for v in ${DSV4_OVERLAP_VARIANTS:-overlap inline base}; do
    case $v in
      overlap) b="$BIN/cuda_forward_bench" ;;
      inline) b="$BIN/cuda_forward_bench_inline" ;;
      base) b="$BASE/cuda_forward_bench" ;;
    esac
    echo "### $v round $round" >>"$OUT/forward_bench.log"
    timeout "$(budget 15)" "$b" --layers "$LAYERS" --ctx 8192 --chunk 4096 --steps 1 >>"$OUT/forward_bench.log" 2>&1
    rc=$?
    note "$v $round ($LAYERS layers, exit $rc): $(grep -E '^prefill .* tokens/s|^one prefill chunk' "$OUT/forward_bench.log" | tail -2 | tr '\n' ' ')"
  done
done
note "seconds used: $SECONDS"
[[ $rc_tests == 0 && $rc_mem == 0 ]]
