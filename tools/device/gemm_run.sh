#!/usr/bin/env bash
# The int8 GEMM (session 7, src/cuda/gemm_int8.cu) in one GPU-machine call: its tests with the
# GEMM and whole-model suites, memcheck of its tests, its benchmark against the split and f16 modes
# (same binary: those kernels are unchanged), and the prefill chunk profile of this bundle and the
# baseline's.
#
# Here (no GPU needed), from the repository root:
#     DSV4_BUILD=build-prefill DSV4_NO_BUILD=1 bash tools/device/gemm_run.sh pack
#   bundles cuda_tests, gemm_bench, cuda_forward_bench and dsv4 into out/int8/bundle.tar.gz.
# There (device tool: carry ["out/int8", "out/base7"]):
#     bash tools/device/gemm_run.sh
#   1. cuda_tests (DSV4_TEST_FILTER, default the int8 and split GEMM suites and the whole-model
#      tests) and, beside it, compute-sanitizer memcheck of GemmInt8.*   -> gpu_tests.log, sanitizer.log
#   2. gemm_bench --int8 (MoE down Q2_K: f16, split, int8; 2048 and 4096 tokens) -> gemm_bench.log
#   3. cuda_forward_bench one 4096-token chunk at 2048, stage by stage, this bundle and out/base7,
#      DSV4_FORWARD_LAYERS layers (default 12: per-layer stages compare)    -> forward_bench.log
#   4. if time is left: dsv4 bench --synthetic flash-q2 --frontiers 2048,8192 --gen 16, both
#                                                                          -> bench.log
#   Steps share DSV4_GPU_BUDGET seconds (default 160).
#   With DSV4_INT8_CHECKS=1 instead: the whole cuda_tests suite (DSV4_TEST_FILTER, default all but
#   CudaForward.MatchesCpuInBothModes), racecheck of the grouped int8 test beside it, and ncu
#   sections (speed of light, warp states, instruction mix) of the int8 and split MoE down kernels
#   at 4096 tokens (gemm_bench --int8)      -> gpu_tests.log, sanitizer.log, ncu.txt
set -u -o pipefail
cd "$(dirname "$0")/../.."
source tools/device/common.sh
BUNDLE_DIR=out/int8

if [[ "${1:-}" == "pack" ]]; then
  set -e
  BUILD=${DSV4_BUILD:-build-prefill}
  [[ -n "${DSV4_NO_BUILD:-}" ]] || cmake --build "$BUILD" --target cuda_tests gemm_bench cuda_forward_bench dsv4 -j2
  dsv4_pack "$BUILD" "$BUNDLE_DIR" cuda_tests gemm_bench cuda_forward_bench dsv4
  exit 0
fi

BIN=$(dsv4_unpack "$BUNDLE_DIR") || { echo "no bundle in $BUNDLE_DIR"; exit 3; }
BASE=""
[[ -f out/base7/bundle.tar.gz ]] && BASE=$(dsv4_unpack out/base7)
OUT=${OUT:-$PWD/out/int8-run}
dsv4_run_start "$BIN" 160
flayers=${DSV4_FORWARD_LAYERS:-12}

if [[ "${DSV4_INT8_CHECKS:-0}" == 1 ]]; then
  timeout "$(budget 60)" compute-sanitizer --tool racecheck --error-exitcode 3 "$BIN/cuda_tests" --gtest_color=no \
    --gtest_filter='GemmInt8.Q2_KGroupedGatherAndScatter' >"$OUT/sanitizer.log" 2>&1 &
  race_pid=$!
  timeout "$(budget 110)" "$BIN/cuda_tests" --gtest_color=no \
    --gtest_filter="${DSV4_TEST_FILTER:--CudaForward.MatchesCpuInBothModes}" >"$OUT/gpu_tests.log" 2>&1
  rc_tests=$?
  wait "$race_pid"
  rc_mem=$?
  note "cuda_tests: exit $rc_tests ($(grep -E '^\[  (PASSED|FAILED)  \]' "$OUT/gpu_tests.log" | tr '\n' ' '))"
  grep -E '^\[  FAILED  \]|Failure' "$OUT/gpu_tests.log" | head -20 | tee -a "$SUMMARY"
  note "racecheck: exit $rc_mem ($(grep -E 'RACECHECK SUMMARY|ERROR SUMMARY' "$OUT/sanitizer.log" | tail -1))"
  # Kernel order in gemm_bench --int8 at 4096 tokens: f16 small, f16 large, split small, split
  # large, int8; each timed with 3 + 100 launches. The split large and int8 ones, once each.
  if ((DEADLINE - SECONDS > 30)); then
    timeout "$(budget 60)" ncu --clock-control none --section SpeedOfLight --section WarpStateStats \
      --section InstructionStats --section ComputeWorkloadAnalysis -k 'regex:gemm_int8_kernel|gemm_kernel' \
      --launch-skip 926 --launch-count 2 "$BIN/gemm_bench" --int8 >"$OUT/ncu.txt" 2>&1
    note "ncu: exit $? ($(grep -cE '^\s+gemm' "$OUT/ncu.txt") kernels)"
  fi
  echo "---- summary ----"
  cat "$SUMMARY"
  ((rc_tests != 0)) && exit 1
  ((rc_mem != 0)) && exit 2
  exit 0
fi

# ---- 1. tests, memcheck beside them ----
timeout "$(budget 70)" compute-sanitizer --tool memcheck --error-exitcode 3 "$BIN/cuda_tests" --gtest_color=no \
  --gtest_filter='GemmInt8.*' >"$OUT/sanitizer.log" 2>&1 &
mem_pid=$!
timeout "$(budget 80)" "$BIN/cuda_tests" --gtest_color=no \
  --gtest_filter="${DSV4_TEST_FILTER:-GemmInt8.*:GemmSplit.*:SplitFormats/*:CudaForward.*:CudaEngine.*}" \
  >"$OUT/gpu_tests.log" 2>&1
rc_tests=$?
wait "$mem_pid"
rc_mem=$?
note "cuda_tests: exit $rc_tests ($(grep -E '^\[  (PASSED|FAILED)  \]' "$OUT/gpu_tests.log" | tr '\n' ' '))"
grep -E '^\[  FAILED  \]|Failure' "$OUT/gpu_tests.log" | head -20 | tee -a "$SUMMARY"
grep -E 'worst rel L2' "$OUT/gpu_tests.log" | head -40 | tee -a "$SUMMARY"
note "memcheck: exit $rc_mem ($(grep -E 'ERROR SUMMARY' "$OUT/sanitizer.log" | tail -1); $(grep -E '^\[  (PASSED|FAILED)  \]' "$OUT/sanitizer.log" | tr '\n' ' '))"

# ---- 2. the GEMM's rates ----
for d in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib; do
  [[ -e "$d/libcublas.so.13" ]] && export LD_LIBRARY_PATH="$d:${LD_LIBRARY_PATH:-}"
done
timeout "$(budget 35)" "$BIN/gemm_bench" --int8 >"$OUT/gemm_bench.log" 2>&1
note "gemm_bench --int8: exit $?"
grep -E 'MoE|ceiling' "$OUT/gemm_bench.log" | tee -a "$SUMMARY" >/dev/null

# ---- 3. one 4096-token chunk stage by stage, this bundle and the baseline ----
{
  echo "### this bundle, chunk 4096 at 2048, $flayers layers"
  timeout "$(budget 40)" "$BIN/cuda_forward_bench" --layers "$flayers" --ctx 2048 --chunk 4096 --steps 1
  if [[ -n "$BASE" ]] && ((DEADLINE - SECONDS > 25)); then
    echo "### baseline out/base7, chunk 4096 at 2048, $flayers layers"
    timeout "$(budget 40)" "$BASE/cuda_forward_bench" --layers "$flayers" --ctx 2048 --chunk 4096 --steps 1
  fi
} >"$OUT/forward_bench.log" 2>&1
note "cuda_forward_bench ($flayers layers): see forward_bench.log"

# ---- 4. the issue's measurement, if time is left ----
if ((DEADLINE - SECONDS > 40)); then
  {
    echo "### this bundle, $layers layers"
    timeout "$(budget 45)" "$BIN/dsv4" bench --synthetic flash-q2 --layers "$layers" --frontiers 2048,8192 --gen 16
    if [[ -n "$BASE" ]] && ((DEADLINE - SECONDS > 30)); then
      echo "### baseline out/base7, $layers layers"
      timeout "$(budget 45)" "$BASE/dsv4" bench --synthetic flash-q2 --layers "$layers" --frontiers 2048,8192 --gen 16
    fi
  } >"$OUT/bench.log" 2>&1
  note "dsv4 bench: see bench.log"
fi

echo "---- summary ----"
cat "$SUMMARY"
((rc_tests != 0)) && exit 1
((rc_mem != 0)) && exit 2
exit 0
